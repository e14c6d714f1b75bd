"""The train screen and its modals."""

from phi3tui.screens.train.screen import TrainScreen

__all__ = ["TrainScreen"]
