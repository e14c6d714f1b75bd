"""A modal that shows a block of text: a run's frozen config, or two runs' config difference."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.screen import ModalScreen
from textual.widgets import Static


class RunTextScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    RunTextScreen { align: center middle; }
    RunTextScreen > ScrollableContainer {
        width: 78; max-width: 100%; height: 90%; padding: 0 1;
    }
    RunTextScreen #run-text.table { width: auto; text-wrap: nowrap; }
    """
    BINDINGS = [Binding("escape,q", "close", "Close", id="run_text.close")]

    def __init__(self, title: str, text: str, table: bool = False):
        super().__init__()
        self.title_text = title
        self.text = text
        self.table = table  # columns: never wrapped, scrolled sideways instead

    def compose(self) -> ComposeResult:
        with ScrollableContainer(classes="dialog") as scroll:
            scroll.border_title = f"{self.title_text} (esc closes)"
            yield Static(self.text, id="run-text", markup=False, classes="table" if self.table else "")

    def action_close(self) -> None:
        self.dismiss(None)
