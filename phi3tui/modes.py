"""The app's screens, one row each. The app's modes and screen keys, `?` help, the command palette and
`phi3tui --screen` all read this table: a new screen is one folder under phi3tui/screens/ plus one row here.

No Textual here: cli.py reads the table to parse `--screen` before Textual is loaded, and a row names its
screen class by module and name, so a screen's module is imported only when that screen is first shown.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    """One screen. With a `key` it is an app mode: `key` and F<key> switch to it from anywhere. Without one it
    is a view that its `over` mode's screen opens by its action `opens` (a dialog that needs that screen's state):
    `--screen` and the palette open that mode, then run the action."""

    id: str  # the mode's name: switch_mode(id), `--screen id`, the keymap's binding id app.mode.<id>
    title: str  # the header, the footer, `?` and the palette ("Go to <title>") say this
    module: str  # where the screen class is: imported when the screen is first shown
    cls: str
    key: str = ""  # "1": the footer shows it; "1" and "f1" switch to the mode
    over: str = ""  # a view: the mode whose screen opens it ...
    opens: str = ""  # ... by this action of that screen

    @property
    def is_view(self) -> bool:
        return not self.key

    @property
    def keys(self) -> str:
        """The binding's keys: the plain key and its F-key (which works inside a text box holding text)."""
        return f"{self.key},f{self.key}"

    @property
    def binding_id(self) -> str:
        return f"app.mode.{self.id}"


MODES: tuple[Mode, ...] = (
    Mode("data", "Data", "phi3tui.screens.data.screen", "DataScreen", key="1"),
    Mode("config", "Config", "phi3tui.screens.config.screen", "ConfigScreen", key="2"),
    Mode("train", "Train", "phi3tui.screens.train.screen", "TrainScreen", key="3"),
    Mode("chat", "Chat", "phi3tui.screens.chat.screen", "ChatScreen", key="4"),
    Mode("export", "Export", "phi3tui.screens.export.screen", "ExportScreen", key="5"),
    Mode("eval", "Evaluate", "phi3tui.screens.eval.screen", "EvaluateScreen", over="chat", opens="evaluate"),
)


def find(mode_id: str) -> Mode:
    """The row of `mode_id` (KeyError for an unknown one)."""
    for row in MODES:
        if row.id == mode_id:
            return row
    raise KeyError(mode_id)


def app_modes() -> list[Mode]:
    """The rows that are app modes (each a screen key), in the footer's order."""
    return [row for row in MODES if not row.is_view]


def key_rule() -> str:
    """Where the screen keys work, for `?` help (e.g. "1–5 and ? work everywhere …; F1–F5 switch …")."""
    keys = [row.key for row in app_modes()]
    plain = f"{keys[0]}–{keys[-1]}" if len(keys) > 2 else " and ".join(keys)
    fkeys = f"F{keys[0]}–F{keys[-1]}" if len(keys) > 2 else " and ".join(f"F{k}" for k in keys)
    return (
        f"{plain} and ? work everywhere but in a text box that holds text, where they are typed "
        f"(a number box keeps its digits; keys typed fast count as typed); {fkeys} switch screens from anywhere "
        f"but a dialog, which keeps its own keys: close it first (esc)."
    )
