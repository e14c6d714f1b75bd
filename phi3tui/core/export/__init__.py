"""Export: fuse an adapter into its base, write a phi3 GGUF (or a GGUF LoRA), verify it, package it for Ollama.

Every step is a plain function here (used by the Export screen, `phi3tui export ...` and the
headless demo). Long steps take an optional ``progress(done, total, message)`` callback.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]


class ExportError(Exception):
    """A problem the user can fix (bad input, missing file, refused overwrite). str() says what to do."""


def no_progress(done: int, total: int, message: str) -> None:
    """The default progress callback: report nothing."""
