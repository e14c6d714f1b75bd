"""Chat screen (placeholder until issue 6 lands: base and adapted model side by side)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from phi3tui.screens.base import ModeScreen


class ChatScreen(ModeScreen):
    TITLE = "Chat"

    def compose_body(self) -> ComposeResult:
        yield Static("Chat: base and adapted model side by side.\n\nThis screen is not built yet (issue 6).", id="placeholder")
