"""How a trainer's failure reads: out of memory, or the GPU watchdog, from MLX's and Metal's own texts.

On a Mac, Metal reports a failed command buffer from its completion handler, on a thread of its own:
"[METAL] Command buffer execution failed: Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)"
or "…: Impacting Interactivity (0000000e:kIOGPUCommandBufferCallbackErrorImpactingInteractivity)" (the GPU
watchdog that keeps the screen responsive, ml-explore/mlx#3267). Uncaught there, it aborts the process
("libc++abi: terminating due to uncaught exception…"): the trainer cannot say so itself, the supervisor reads
the text in the log. Raised in the Python thread instead (mx.eval), the runner sees it as a RuntimeError.
Both paths ask the same questions here.
"""

from __future__ import annotations

import os
import sys

# Lower-case parts of the texts an allocation failure prints: MLX's allocator ([metal::malloc], bad_alloc) and
# Metal's command buffer (Insufficient Memory / kIOGPUCommandBufferCallbackErrorOutOfMemory).
MEMORY_MESSAGES = ("[metal::malloc]", "bad_alloc", "unable to allocate", "out of memory", "insufficient memory",
                   "kiogpucommandbuffercallbackerroroutofmemory")
WATCHDOG_MESSAGES = ("impacting interactivity", "kiogpucommandbuffercallbackerrorimpactinginteractivity")
WATCHDOG_HINT = ("macOS's GPU watchdog stopped a Metal command buffer that held the GPU too long while the display "
                 "needed it (ml-explore/mlx#3267): let the display sleep (or close GPU-heavy apps) during the run, "
                 "or make MLX's command buffers smaller with MLX_MAX_OPS_PER_BUFFER / MLX_MAX_MB_PER_BUFFER set lower "
                 "than their defaults; a smaller batch_size or max_seq_length also shortens each one; then resume")

# Test-only: "abort|raise:ITERATION:TEXT" makes the trainer print TEXT and abort (as Metal's uncaught error does),
# or raise RuntimeError(TEXT), after that iteration, so Linux tests see Mac failures through a real runner.
FAULT_ENV = "PHI3TUI_TEST_FAULT"


def is_memory_text(text: str) -> bool:
    lowered = text.lower()
    return any(m in lowered for m in MEMORY_MESSAGES)


def is_memory_failure(exc: BaseException) -> bool:
    """An allocation that failed: MemoryError, or MLX's RuntimeError saying so ([metal::malloc], bad_alloc, Metal's
    Insufficient Memory)."""
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and is_memory_text(str(exc))


def watchdog_hint(text: str) -> str:
    """The hint for a GPU-watchdog failure, "" for any other text."""
    lowered = text.lower()
    return WATCHDOG_HINT if any(m in lowered for m in WATCHDOG_MESSAGES) else ""


def inject_fault(iteration: int) -> None:
    """FAULT_ENV's failure, after its iteration (nothing when unset)."""
    raw = os.environ.get(FAULT_ENV)
    if not raw:
        return
    how, at, text = raw.split(":", 2)
    if int(at) != iteration:
        return
    if how == "raise":
        raise RuntimeError(text)
    sys.stdout.flush()
    sys.stderr.write(f"libc++abi: terminating due to uncaught exception of type std::runtime_error: {text}\n")
    sys.stderr.flush()
    os.abort()
