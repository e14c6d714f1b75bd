"""Data screen (placeholder until issue 3 lands: preview, validate and measure train/valid/test.jsonl)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from phi3tui.screens.base import ModeScreen


class DataScreen(ModeScreen):
    TITLE = "Data"

    def compose_body(self) -> ComposeResult:
        yield Static("Data: preview, validate and measure train/valid/test.jsonl.\n\nThis screen is not built yet (issue 3).", id="placeholder")
