"""MLX work on a thread, the one way: `with mlx_thread(): ...` instead of rituals each caller must remember.

- `tuner=True` imports mlx_lm.tuner first without its reporting packages (mlx_lm_private.load_tuner), so code
  inside may import mlx_lm.tuner.* and mlx_lm.lora.
- No block changes MLX's default device or stream: in MLX the default device is the whole process's, so a
  background check that entered `mx.stream(mx.cpu)` would move Chat, Eval and Export onto the CPU whenever two
  such blocks overlapped (one restores the device the other had set). Only the model worker (the thread named
  MODEL_THREAD_NAME, core/chat/session.py) enters a stream, one it made itself. Background work either
  evaluates nothing (building a model's structure from config.json: arrays stay lazy, so no stream is used) or
  passes an explicit stream to the ops it runs (`stream=mx.cpu`).
- `worker=True` marks the block that holds a worker thread's whole MLX work: as it ends (outermost, off the main
  thread) the thread's MLX streams are cleared. MLX requires it before the thread (and later the interpreter)
  ends, or the process may abort at exit with "terminate called without an active exception" (mx.clear_streams;
  ml-explore/mlx#3126). Only then: a thread whose streams are cleared cannot use MLX again ("There is no
  Stream(cpu, 0) in current thread"), so a core function's block inside a worker never clears them.

mlx is imported only when the block needs it: entering without `tuner` on the main thread imports nothing.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager

_DEPTH = threading.local()
MODEL_THREAD_NAME = "phi3tui-model"  # the one thread that may enter an MLX stream (its own) in the app process


@contextmanager
def mlx_thread(*, tuner: bool = False, worker: bool = False):
    if tuner:
        from phi3tui.core.mlx_lm_private import load_tuner

        load_tuner()
    depth = getattr(_DEPTH, "value", 0)
    _DEPTH.value = depth + 1
    try:
        yield
    finally:
        _DEPTH.value = depth
        # Nothing to clear when MLX was never imported (see the module's text for why and when).
        if worker and depth == 0 and threading.current_thread() is not threading.main_thread() \
                and "mlx.core" in sys.modules:
            sys.modules["mlx.core"].clear_streams()
