"""MLX work on a thread, the one way: `with mlx_thread(): ...` instead of rituals each caller must remember.

- `tuner=True` imports mlx_lm.tuner first without its reporting packages (mlx_lm_private.load_tuner), so code
  inside may import mlx_lm.tuner.* and mlx_lm.lora.
- `cpu=True` runs the block on MLX's CPU stream: building a structure evaluates nothing, and on Metal a worker
  thread has no GPU stream of its own (see reference/mlx-lm.md).
- `worker=True` marks the block that holds a worker thread's whole MLX work: as it ends (outermost, off the main
  thread) the thread's MLX streams are cleared. MLX requires it before the thread (and later the interpreter)
  ends, or the process may abort at exit with "terminate called without an active exception" (mx.clear_streams;
  ml-explore/mlx#3126). Only then: a thread whose streams are cleared cannot use MLX again ("There is no
  Stream(cpu, 0) in current thread"), so a core function's block inside a worker never clears them.

mlx is imported only when the block needs it: entering with neither option on the main thread imports nothing.
"""

from __future__ import annotations

import sys
import threading
from contextlib import ExitStack, contextmanager

_DEPTH = threading.local()


@contextmanager
def mlx_thread(*, tuner: bool = False, cpu: bool = False, worker: bool = False):
    if tuner:
        from phi3tui.core.mlx_lm_private import load_tuner

        load_tuner()
    depth = getattr(_DEPTH, "value", 0)
    _DEPTH.value = depth + 1
    try:
        with ExitStack() as stack:
            if cpu:
                import mlx.core as mx

                stack.enter_context(mx.stream(mx.cpu))
            yield
    finally:
        _DEPTH.value = depth
        # Nothing to clear when MLX was never imported (see the module's text for why and when).
        if worker and depth == 0 and threading.current_thread() is not threading.main_thread() \
                and "mlx.core" in sys.modules:
            sys.modules["mlx.core"].clear_streams()
