"""The data screen and its modals."""

from phi3tui.screens.data.screen import DataScreen

__all__ = ["DataScreen"]
