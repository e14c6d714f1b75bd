"""A modal that shows a block of text: a run's frozen config, or two runs' config difference."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class RunTextScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    RunTextScreen { align: center middle; }
    RunTextScreen > VerticalScroll {
        width: 78; max-width: 100%; height: 90%;
        border: round $accent; background: $panel; padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape,q", "close", "Close", id="run_text.close")]

    def __init__(self, title: str, text: str):
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = f"{self.title_text} (esc closes)"
            yield Static(self.text, id="run-text", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
