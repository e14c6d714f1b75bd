"""The help screen (?): the keys of every screen, and the global ones."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.keys import key_to_character
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def key_name(key: str) -> str:
    """A key as the footer writes it: f1 -> F1, ctrl+g -> ^g, question_mark -> ?, left_square_bracket -> [."""
    if key.startswith("f") and key[1:].isdigit():
        return key.upper()
    if key.startswith("ctrl+"):
        return "^" + key[len("ctrl+"):]
    return {"question_mark": "?", "slash": "/", "space": "space", "delete": "del"}.get(key) or key_character(key)


def key_character(key: str) -> str:
    """A key named for its character as that character (left_square_bracket -> [, slash -> /); others as named."""
    character = "/" if key == "slash" else key_to_character(key) if len(key) > 1 else None
    return character if character and character.isprintable() and not character.isspace() else key


def describe_bindings(bindings) -> list[tuple[str, str]]:
    """(keys, description) rows; a binding with several keys lists them all (F-keys beside their plain key)."""
    rows = []
    for b in bindings:
        if isinstance(b, tuple):
            b = Binding(*b)
        if not b.description:
            continue
        keys = [key_name(k.strip()) for k in b.key.split(",")]
        shown = b.key_display or keys[0]
        rows.append((" ".join([shown] + [k for k in keys if k != shown]), b.description))
    return rows


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 76; max-width: 100%; height: 90%; padding: 0 1;
    }
    """
    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="help.close"),
    ]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]):
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        lines = ["[b]phi3tui keys[/b]  (esc closes)", ""]
        for title, rows in self.sections:
            lines.append(f"[b]{escape(title)}[/b]")
            for key, desc in rows:
                lines.append(f"  [b]{escape(key):<14}[/b] {escape(desc)}")
            lines.append("")
        with VerticalScroll(classes="dialog"):
            yield Static("\n".join(lines), id="help-text")

    def action_dismiss(self) -> None:
        self.dismiss(None)
