"""Pick the adapter to export: any run's (or adapter folder's) latest adapters or one of its checkpoints."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class ExportPickScreen(ModalScreen):
    """Dismisses with (adapter folder, checkpoint file) or None."""

    DEFAULT_CSS = """
    ExportPickScreen { align: center middle; }
    ExportPickScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 90%;
        border: round $accent; background: $panel; padding: 0 1;
    }
    ExportPickScreen OptionList { height: auto; max-height: 16; }
    ExportPickScreen .hint { color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel", id="export_pick.cancel"),
        Binding("enter", "choose", "Choose", id="export_pick.choose"),
    ]

    def __init__(self, sources: list):
        super().__init__()
        # one row per (source, checkpoint), newest run first, latest checkpoint first
        self.rows = [(s, c) for s in sources for c in reversed(s.checkpoints)]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Which adapter to export?")
            yield OptionList(*[Option(f"{s.label}: {c.label}") for s, c in self.rows], id="export-adapters")
            if not self.rows:
                yield Static("No adapters yet: train a run (F3), or put an adapter folder in the workspace.", classes="hint")
            yield Static("↑/↓ move · enter choose · esc cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        source, checkpoint = self.rows[event.option_index]
        self.dismiss((source.adapter_dir, checkpoint.path))

    def action_choose(self) -> None:
        index = self.query_one(OptionList).highlighted
        if index is not None and self.rows:
            source, checkpoint = self.rows[index]
            self.dismiss((source.adapter_dir, checkpoint.path))
