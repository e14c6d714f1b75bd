"""Train screen (placeholder until issue 5 lands: detached runs with a live loss plot)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from phi3tui.screens.base import ModeScreen


class TrainScreen(ModeScreen):
    TITLE = "Train"

    def compose_body(self) -> ComposeResult:
        yield Static("Train: detached runs with a live loss plot.\n\nThis screen is not built yet (issue 5).", id="placeholder")
