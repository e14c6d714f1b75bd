"""core/mlx_thread.py: the one context manager for MLX work on a thread."""

from __future__ import annotations

import sys
import threading

from phi3tui.core.mlx_thread import mlx_thread


def _on_a_thread(work) -> list:
    out: list = []

    def run():
        try:
            out.append(work())
        except Exception as exc:  # reported to the test, not lost in the thread
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out


def test_a_worker_block_clears_the_thread_streams_as_it_ends_and_only_the_outermost():
    import mlx.core as mx

    def work():
        with mlx_thread(worker=True):
            with mlx_thread():  # a core function's block inside the worker's: streams stay
                inner = (mx.ones(3) * 2).sum().item()
            again = (mx.ones(3) * 3).sum().item()
        try:
            mx.eval(mx.ones(2) * 5)
        except RuntimeError as exc:  # what MLX says on a thread whose streams were cleared
            return inner, again, str(exc)
        return inner, again, None

    inner, again, after = _on_a_thread(work)[0]
    assert (inner, again) == (6.0, 9.0)
    assert after is not None and "Stream" in after


def test_the_tuner_block_imports_the_tuner_without_the_reporting_packages():
    def work():
        with mlx_thread(tuner=True):
            from mlx_lm.tuner import callbacks
        return callbacks.wandb is None or "wandb" in sys.modules

    assert _on_a_thread(work) == [True]
