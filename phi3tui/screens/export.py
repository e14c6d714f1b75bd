"""Export screen (placeholder until issue 7 lands: fuse, GGUF, Ollama)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from phi3tui.screens.base import ModeScreen


class ExportScreen(ModeScreen):
    TITLE = "Export"

    def compose_body(self) -> ComposeResult:
        yield Static("Export: fuse, GGUF, Ollama.\n\nThis screen is not built yet (issue 7).", id="placeholder")
