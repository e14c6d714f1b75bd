"""The migration list: each change an old lora_config.yaml needs, with why; the user keeps or drops each."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, SelectionList, Static
from textual.widgets.selection_list import Selection


class MigrationScreen(ModalScreen[set | None]):
    """Dismisses with the ids of the accepted changes, or None when cancelled."""

    DEFAULT_CSS = """
    MigrationScreen { align: center middle; }
    MigrationScreen > Vertical { width: 96%; height: 90%; padding: 0 1; }
    MigrationScreen SelectionList { height: 1fr; }
    MigrationScreen #migration-why { height: auto; max-height: 8; padding: 0 1; border-top: solid $primary; }
    MigrationScreen #migration-title { text-style: bold; }
    """
    BINDINGS = [
        Binding("enter", "apply", "Apply selected", priority=True, id="config.migration.apply"),
        Binding("a", "all", "Select all", id="config.migration.all"),
        Binding("escape", "cancel", "Cancel", id="config.migration.cancel"),
    ]

    def __init__(self, changes: list, rejected: set[str]):
        super().__init__()
        self.changes = changes
        self.rejected = rejected

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(
                f"{len(self.changes)} change(s) make this file work with today's mlx-lm. "
                "space: keep/drop one · enter: apply the kept ones to the form (save with ctrl+s) · escape: cancel",
                id="migration-title",
            )
            items = [Selection(Text(change.summary), change.id, change.id not in self.rejected)
                     for change in self.changes]
            yield SelectionList(*items, id="migration-list")
            yield Static("", id="migration-why", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()
        self._explain(0)

    def on_selection_list_selection_highlighted(self, event: SelectionList.SelectionHighlighted) -> None:
        self._explain(event.selection_index)

    def _explain(self, index: int) -> None:
        if 0 <= index < len(self.changes):
            change = self.changes[index]
            self.query_one("#migration-why", Static).update(f"{change.summary}\nwhy: {change.why}")

    def action_apply(self) -> None:
        self.dismiss(set(self.query_one(SelectionList).selected))

    def action_all(self) -> None:
        self.query_one(SelectionList).select_all()

    def action_cancel(self) -> None:
        self.dismiss(None)
