"""The config screen and its modals."""

from phi3tui.screens.config.screen import ConfigScreen

__all__ = ["ConfigScreen"]
