"""A log whose lines wrap again when its width changes: RichLog wraps each line once, when it is written, so a log
written at 55 columns stayed split mid-path after the terminal was widened."""

from __future__ import annotations

from textual.events import Resize
from textual.widgets import RichLog


class ReflowLog(RichLog):
    def __init__(self, **kwargs):
        super().__init__(wrap=True, markup=False, **kwargs)
        self.texts: list[str] = []  # every line written, unwrapped
        self.wrapped_width = 0  # the width the lines are wrapped at now

    def add(self, text: str) -> None:
        self.texts.append(text)
        self.write(text, width=self.line_width())

    def line_width(self) -> int | None:
        """The width to wrap at: the log's own (the console's measure stays at the terminal's first width); None
        until the size is known (RichLog then waits)."""
        return max(self.scrollable_content_region.width, self.min_width) if self._size_known else None

    def on_resize(self, event: Resize) -> None:
        first = not self._size_known  # RichLog writes what waited for the first size itself
        super().on_resize(event)
        if not first and self.texts:
            self.call_after_refresh(self.rewrap)

    def rewrap(self) -> None:
        width = self.line_width()
        if width is None or width == self.wrapped_width:
            return
        self.wrapped_width = width
        self.clear()
        for text in self.texts:
            self.write(text, width=width)
