"""The export screen and its modals."""

from phi3tui.screens.export.screen import ExportScreen

__all__ = ["ExportScreen"]
