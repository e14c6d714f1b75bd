"""Export: fuse an adapter into its base, write a phi3 GGUF (or a GGUF LoRA), verify it, package it for Ollama.

The work is plain functions in this package's modules; steps.py names the steps (one ExportStep each, ONE registry,
EXPORT_STEPS) that the Export screen, `phi3tui export ...` and the headless demo run through job.ExportJob.
Long steps take an optional ``progress(done, total, message)`` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Progress = Callable[[int, int, str], None]

# GGUF tensor types the export writes (the default first: the wizard cycles through them in this order).
OUT_TYPES = ("f16", "f32", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1")
# What `ollama create --quantize` accepts for a phi3 GGUF.
OLLAMA_QUANTIZE = ("q4_K_M", "q4_K_S", "q8_0")

# The o200k split regex (Phi-4-mini's tokenizer.json pre_tokenizer Split; llama.cpp's "gpt-4o" pre-tokenizer).
# Here, not in vocab.py, so the demo model builder can use it without importing an export module.
O200K_SPLIT_REGEX = "|".join((
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"\s*[\r\n]+",
    r"\s+(?!\S)",
    r"\s+",
))


class ExportError(Exception):
    """A problem the user can fix (bad input, missing file, refused overwrite). str() says what to do."""


def no_progress(done: int, total: int, message: str) -> None:
    """The default progress callback: report nothing."""


@dataclass(frozen=True)
class StepOutcome:
    """What one step did: the lines to show, whether it passed, and what a pass did not do."""

    step: str
    lines: tuple[str, ...]
    ok: bool = True
    shortfall: str | None = None  # passed, but short of what its ✓ promises (verify without llama.cpp, no Ollama)
    ask_replace: bool = False  # failed only because an Ollama model of that name exists: ask, then run with replace
    result: object = None  # the step's own result (also in job.results[step])
