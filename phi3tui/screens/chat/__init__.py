"""The chat screen and its modals."""

from phi3tui.screens.chat.screen import ChatScreen

__all__ = ["ChatScreen"]
