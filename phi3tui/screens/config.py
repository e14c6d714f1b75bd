"""Config screen (placeholder until issue 4 lands: every lora_config.yaml key as a form, migrated and checked)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from phi3tui.screens.base import ModeScreen


class ConfigScreen(ModeScreen):
    TITLE = "Config"

    def compose_body(self) -> ComposeResult:
        yield Static("Config: every lora_config.yaml key as a form, migrated and checked.\n\nThis screen is not built yet (issue 4).", id="placeholder")
