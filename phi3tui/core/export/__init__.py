"""Export: fuse an adapter into its base, write a phi3 GGUF (or a GGUF LoRA), verify it, package it for Ollama.

Every step is a plain function here (used by the Export screen, `phi3tui export ...` and the
headless demo). Long steps take an optional ``progress(done, total, message)`` callback.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, str], None]

# GGUF tensor types the export writes (the default first: the wizard cycles through them in this order).
OUT_TYPES = ("f16", "f32", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")


class ExportError(Exception):
    """A problem the user can fix (bad input, missing file, refused overwrite). str() says what to do."""


def no_progress(done: int, total: int, message: str) -> None:
    """The default progress callback: report nothing."""
