"""The app's text box: an Input that lets the screen keys and `?` through until you start typing.

The one rule (shown in the footer and `?` help): in a text box that is still empty, 1–5 switch screens
and `?` opens help; once the box holds text they are typed. "Holds text" counts the keys already sent to
the box that it has not applied yet: keys arrive in bursts (over SSH, a whole question at once), and the
app decides each key's fate before the box has taken the ones before it, so `Hi 2` typed fast must not
switch to screen 2. A box for numbers keeps its digits (so
`g 120` or a Config number field never jumps screens) but passes `?` and letters (Config's n/N, z/Z);
a box for text takes every letter, empty or not. F1–F5 work everywhere.

Only the app's priority bindings (the screen keys and help, app.py) can take a key the box passes:
every other key still reaches the box first, as in a plain Input.
"""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import Input

NUMBER_CHARACTERS = set("0123456789+-.eE_")


def box_takes(holds_text: bool, number: bool, character: str) -> bool:
    """Whether a box (holding text or not) keeps `character` from the app's screen keys and help."""
    if number:
        return character in NUMBER_CHARACTERS
    # Letters are always typed: a screen's letter keys (Config's n/N, z/Z) must not take a word's first letter.
    return holds_text or character.isalpha()


class TextBox(Input):
    """number=True marks a box for numbers (default: Input type integer or number; a float typed as
    text, e.g. Config's learning_rate, passes number=True)."""

    def __init__(self, *args, number: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.number = self.type in ("integer", "number") if number is None else number
        self.passing = ""  # characters let through to the screen's keys until another key (let_through)
        # Keys and pastes the app has sent here and this box has not applied yet (see the module's rule).
        self.keys_on_the_way = 0

    def post_message(self, message: Message) -> bool:
        # The app forwards each key it does not bind to the focused box by posting it here: counted at once,
        # so the next key of the same burst already finds the box "holding text".
        posted = super().post_message(message)
        if posted and isinstance(message, (events.Key, events.Paste)):
            self.keys_on_the_way += 1
        return posted

    @property
    def holds_text(self) -> bool:
        """Whether the box holds text, or will once the keys already sent to it are applied."""
        return bool(self.value) or self.keys_on_the_way > 0

    def let_through(self, characters: str) -> None:
        """Until the next other key or the focus leaves, these characters go to the screen's keys rather than
        into the box: a screen that moved the focus here by a letter key (Config's n) can take it again."""
        self.passing = characters

    def on_key(self, event) -> None:
        # Runs just before Input applies the key, in the same step: nothing can read the count in between.
        self.keys_on_the_way = max(0, self.keys_on_the_way - 1)
        if event.character is None or event.character not in self.passing:
            self.passing = ""

    def on_paste(self, event) -> None:
        self.keys_on_the_way = max(0, self.keys_on_the_way - 1)

    def on_blur(self) -> None:
        self.passing = ""

    def check_consume_key(self, key: str, character: str | None) -> bool:
        # Textual drops the app's bindings for keys the focused widget says it consumes.
        if character is not None and character in self.passing:
            return False
        if character is not None and character.isprintable() and not box_takes(self.holds_text, self.number, character):
            return False
        return super().check_consume_key(key, character)
