"""Pick one item (a preset, a cached model) or several (LoRA keys) from a list, by keyboard."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, SelectionList, Static
from textual.widgets.option_list import Option
from textual.widgets.selection_list import Selection


class PickScreen(ModalScreen[Any]):
    """Dismisses with the chosen value (single) or the list of chosen values (multi); None when cancelled."""

    DEFAULT_CSS = """
    PickScreen { align: center middle; }
    PickScreen > Vertical { width: 90%; height: 80%; border: thick $accent; background: $panel; padding: 0 1; }
    PickScreen OptionList, PickScreen SelectionList { height: 1fr; }
    PickScreen #pick-title { text-style: bold; }
    """
    BINDINGS = [
        Binding("enter", "choose", "Choose", priority=True, id="config.pick.choose"),
        Binding("escape", "cancel", "Cancel", id="config.pick.cancel"),
    ]

    def __init__(self, title: str, options: list[tuple[str, Any]], multi: bool = False, selected=()):
        super().__init__()
        self.title_text = title
        self.options = options
        self.multi = multi
        self.selected = set(selected)

    def compose(self) -> ComposeResult:
        with Vertical():
            hint = "space: toggle · enter: done · escape: cancel" if self.multi else "enter: choose · escape: cancel"
            yield Static(f"{self.title_text}  ({hint})", id="pick-title", markup=False)
            if not self.options:
                yield Static("nothing to pick from", id="pick-empty")
            if self.multi:
                yield SelectionList(*[Selection(label, i, value in self.selected)
                                      for i, (label, value) in enumerate(self.options)], id="pick-list")
            else:
                yield OptionList(*[Option(label, id=str(i)) for i, (label, _) in enumerate(self.options)], id="pick-list")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#pick-list").focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if not self.multi:
            self.dismiss(self.options[int(event.option.id)][1])

    def action_choose(self) -> None:
        if self.multi:
            chosen = sorted(self.query_one(SelectionList).selected)
            self.dismiss([self.options[i][1] for i in chosen])
            return
        option_list = self.query_one(OptionList)
        if option_list.highlighted is not None:
            self.dismiss(self.options[option_list.highlighted][1])

    def action_cancel(self) -> None:
        self.dismiss(None)
