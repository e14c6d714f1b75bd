"""The chat's sampling settings: temperature, top-p, min-p, top-k, repetition penalty, max tokens,
seed and the system prompt, checked before they apply."""

from __future__ import annotations

from dataclasses import fields

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from phi3tui.core.chat import ChatError, GenerationSettings


class ChatSettingsScreen(ModalScreen):
    """Dismisses with new GenerationSettings, or None when cancelled."""

    DEFAULT_CSS = """
    ChatSettingsScreen { align: center middle; }
    ChatSettingsScreen > VerticalScroll {
        width: 76; max-width: 100%; height: auto; max-height: 95%; padding: 0 1;
    }
    ChatSettingsScreen Horizontal { height: 1; }
    ChatSettingsScreen Label { width: 24; }
    ChatSettingsScreen Input { width: 1fr; }
    ChatSettingsScreen #settings-help { color: $text-muted; height: 2; }
    ChatSettingsScreen #settings-error { color: $error; height: auto; }
    """
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel", id="chat_settings.cancel"),
        Binding("ctrl+s", "apply", "Apply", id="chat_settings.apply"),
        Binding("enter", "apply", "Apply", show=False, id="chat_settings.apply_enter"),
        Binding("down", "app.focus_next", "Next field", show=False, id="chat_settings.next"),
        Binding("up", "app.focus_previous", "Previous field", show=False, id="chat_settings.previous"),
    ]

    def __init__(self, settings: GenerationSettings):
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Static("Sampling settings (both panes)")
            for f in fields(GenerationSettings):
                with Horizontal():
                    yield Label(f.name)
                    yield Input(str(getattr(self.settings, f.name)), id=f"setting-{f.name}")
            yield Static("", id="settings-help")
            yield Static("", id="settings-error")
            yield Static("tab/↑/↓ move · enter or ctrl+s apply · esc cancel", id="settings-keys")

    def on_mount(self) -> None:
        self.query_one("#setting-temp", Input).focus()

    def on_descendant_focus(self, event) -> None:
        name = (event.widget.id or "").removeprefix("setting-")
        self.query_one("#settings-help", Static).update(GenerationSettings.HELP.get(name, ""))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_apply()

    def action_apply(self) -> None:
        values = {f.name: self.query_one(f"#setting-{f.name}", Input).value for f in fields(GenerationSettings)}
        try:
            settings = GenerationSettings.from_text(values)
        except ChatError as exc:
            self.query_one("#settings-error", Static).update(str(exc))
            return
        self.dismiss(settings)
