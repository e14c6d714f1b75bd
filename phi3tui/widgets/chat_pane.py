"""One side of the Chat screen: its model's name, the conversation, and the live answer statistics."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static


class ChatPane(VerticalScroll, can_focus=True):
    """A conversation whose answers stream in: each new piece is appended to a Markdown stream,
    never re-rendering the whole answer per token."""

    DEFAULT_CSS = """
    ChatPane {
        width: 1fr;
        height: 1fr;
        border: round $panel-lighten-2;
        padding: 0 1;
    }
    ChatPane:focus { border: round $accent; }
    ChatPane.base { border-title-color: $base-model; }
    ChatPane.adapted { border-title-color: $adapted-model; }
    ChatPane > .user { color: $text-muted; text-style: bold; margin-top: 1; }
    ChatPane > .error { color: $error; margin-top: 1; }
    ChatPane > .note { color: $text-muted; }
    ChatPane > .note:first-child { display: none; }
    ChatPane > Markdown { margin: 0; padding: 0; background: transparent; }
    """

    def __init__(self, role: str, **kwargs):
        super().__init__(**kwargs)
        self.add_class(role)  # "base" or "adapted": which colour its title takes
        self._stream = None
        self.answer_text = ""  # the answer streaming now, or the last one

    def compose(self) -> ComposeResult:
        yield Static("", classes="note", markup=False)

    def set_side(self, label: str, is_base: bool) -> None:
        self.border_title = label
        self.set_class(is_base, "base")
        self.set_class(not is_base, "adapted")

    def set_stats(self, text: str) -> None:
        self.border_subtitle = text

    def note(self, text: str) -> None:
        note = self.query(".note").first(Static)
        note.update(text)
        note.display = bool(text)

    def clear(self) -> None:
        self._stream = None
        self.answer_text = ""
        self.remove_children()
        self.mount(Static("", classes="note", markup=False))
        self.set_stats("")

    def show_error(self, message: str) -> None:
        self.mount(Static(message, classes="error", markup=False))
        self.scroll_end(animate=False)

    def start_answer(self, user_text: str) -> None:
        self.mount(Static(f"> {user_text}", classes="user", markup=False))
        answer = Markdown("")
        self.mount(answer)
        self.answer_text = ""
        self._stream = Markdown.get_stream(answer)
        self.call_after_refresh(self.scroll_end, animate=False)

    async def write(self, text: str) -> None:
        if self._stream is not None and text:
            self.answer_text += text
            follow = self.scroll_y >= self.max_scroll_y - 1  # stay at the bottom unless the user scrolled up
            await self._stream.write(text)
            if follow:
                self.call_after_refresh(self.scroll_end, animate=False)

    async def finish(self, note: str = "") -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.stop()
            if note:
                self.mount(Static(note, classes="note", markup=False))
            self.call_after_refresh(self.scroll_end, animate=False)
