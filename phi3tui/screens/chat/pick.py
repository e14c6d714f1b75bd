"""Pick what a chat pane runs: the base model, or any run's / adapter folder's checkpoint."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from phi3tui.core.chat import ChatError, side_for_path


class SidePickerScreen(ModalScreen):
    """Dismisses with the chosen core.chat.Side, or None."""

    DEFAULT_CSS = """
    SidePickerScreen { align: center middle; }
    SidePickerScreen > Vertical {
        width: 72; max-width: 100%; height: auto; max-height: 90%;
        border: round $accent; background: $panel; padding: 0 1;
    }
    SidePickerScreen OptionList { height: auto; max-height: 16; }
    SidePickerScreen .hint { color: $text-muted; }
    SidePickerScreen Input { height: 1; border: none; padding: 0 1; }
    SidePickerScreen Input:focus { background: $boost; border: none; }
    SidePickerScreen #pick-error { color: $error; height: auto; }
    """
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel", id="chat_pick.cancel"),
        Binding("enter", "choose", "Choose", id="chat_pick.choose"),
    ]

    def __init__(self, title: str, choices: list, current=None):
        super().__init__()
        self.title_text = title
        self.choices = choices
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text)
            options = [Option(side.label + ("  (now)" if side == self.current else "")) for side in self.choices]
            yield OptionList(*options, id="sides")
            if len(self.choices) == 1:
                yield Static("No adapters yet: train a run (F3), or put an adapter folder in the workspace.", classes="hint")
            yield Input(placeholder="or an adapter folder anywhere: type its path, enter", id="pick-path")
            yield Static("", id="pick-error", markup=False)
            yield Static("↑/↓ move · tab to the path box · enter choose · esc cancel", classes="hint")

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        if self.current in self.choices:
            option_list.highlighted = self.choices.index(self.current)
        option_list.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            side = side_for_path(Path(event.value.strip() or "."))
        except ChatError as exc:
            self.query_one("#pick-error", Static).update(str(exc))
            return
        self.dismiss(side)

    def action_choose(self) -> None:
        index = self.query_one(OptionList).highlighted
        if index is not None:
            self.dismiss(self.choices[index])
