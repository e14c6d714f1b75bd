"""What the runner writes into its run folder: metrics.jsonl records, run.json fields and state, alarms, and the
health checks that raise them. A no-op on ranks other than 0 (only rank 0 writes the run folder)."""

from __future__ import annotations

import math
import time
from pathlib import Path

from phi3tui.core.run_folder import METRICS_FILE, append_alarm, metrics_line, read_run_json, update_run_json
from phi3tui.core.runs.state import IllegalTransition, RunState, transition

OVERFIT_EVALS = 3  # validation loss rising this many evaluations in a row warns of overfitting
SLOWDOWN_RATIO = 0.3  # tokens/s below this share of the run's median so far warns
MEMORY_SHARE = 0.9  # peak memory above this share of the machine's memory warns


class Diverged(Exception):
    pass


class RunRecorder:
    """Everything the runner writes; a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, writer: bool):
        self.run_dir = run_dir
        self.writer = writer
        self.metrics = open(run_dir / METRICS_FILE, "a", encoding="utf-8") if writer else None
        self.val_history: list[float] = []
        self.tps_history: list[float] = []
        self.warned: set[str] = set()
        self.last_iteration = 0
        self.slowest_step_s = 0.0  # the longest a step has taken so far: the stall watch scales from it
        self._last_line: tuple[float, int] | None = None  # (time, iteration) of the last metrics line
        best = read_run_json(run_dir).get("best_val_loss")
        self.best_val: float | None = float(best) if isinstance(best, (int, float)) else None

    def record(self, record: dict) -> None:
        self.last_iteration = record.get("iteration", self.last_iteration)
        now = record.setdefault("time", time.time())
        rate = record.get("it_per_s")
        if isinstance(rate, (int, float)) and rate > 0:
            self.slowest_step_s = max(self.slowest_step_s, 1 / rate)
        if self._last_line is not None and self.last_iteration > self._last_line[1]:
            gap = (now - self._last_line[0]) / (self.last_iteration - self._last_line[1])
            self.slowest_step_s = max(self.slowest_step_s, gap)
        self._last_line = (now, self.last_iteration)
        if self.writer:
            self.metrics.write(metrics_line(record))
            self.metrics.flush()  # a reader attached now sees it at once

    def update(self, **changes) -> None:
        """Fields of run.json other than its state (move() writes that)."""
        if "state" in changes:
            raise ValueError("a run's state is written by move(), through state.transition")
        if self.writer:
            update_run_json(self.run_dir, **changes)

    def move(self, to: RunState, **why) -> None:
        """The run's new state with its why (reason, error, …), through state.transition. A move the recorded
        state does not allow (another process ended the run meanwhile: a kill, a stall) leaves that state as
        it is, and is said in the log."""
        if not self.writer:
            return
        try:
            transition(self.run_dir, to, **why)
        except IllegalTransition as exc:
            print(f"phi3tui runner: run.json not moved: {exc}", flush=True)

    def alarm(self, kind: str, message: str, iteration: int, once: bool = True) -> None:
        if once and kind in self.warned:
            return
        self.warned.add(kind)
        print(f"phi3tui runner: ALARM {kind} at iteration {iteration}: {message}", flush=True)
        if self.writer:
            append_alarm(
                self.run_dir, {"kind": kind, "message": message, "iteration": iteration, "time": time.time()}
            )

    # -- health checks -------------------------------------------------------
    def check_val(self, iteration: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise Diverged(f"validation loss is {loss} at iteration {iteration}")
        self.val_history.append(loss)
        if self.best_val is None or loss < self.best_val:
            self.best_val = loss
            self.update(best_val_loss=loss, best_val_iteration=iteration)
        recent = self.val_history[-(OVERFIT_EVALS + 1) :]
        rising = len(recent) == OVERFIT_EVALS + 1 and all(b > a for a, b in zip(recent, recent[1:]))
        if rising:
            self.alarm(
                "overfitting",
                f"validation loss rose {OVERFIT_EVALS} evaluations in a row "
                f"({recent[0]:.3f} → {recent[-1]:.3f}); consider the best checkpoint",
                iteration,
            )

    def check_train(self, info: dict, memory_limit_gb: float, memory_source: str = "") -> None:
        it = info["iteration"]
        if not math.isfinite(info["loss"]):
            raise Diverged(f"training loss is {info['loss']} at iteration {it}")
        tps = info["tokens_per_s"]
        if len(self.tps_history) >= 3:
            median = sorted(self.tps_history)[len(self.tps_history) // 2]
            if tps < SLOWDOWN_RATIO * median:
                self.alarm(
                    "slow",
                    f"tokens/s fell to {tps:,.0f} from a median of {median:,.0f} "
                    "(another program using the machine, or memory swapping?)",
                    it,
                )
        self.tps_history.append(tps)
        if memory_limit_gb and info["peak_mem"] > MEMORY_SHARE * memory_limit_gb:
            self.alarm(
                "memory",
                f"peak memory {info['peak_mem']:.1f} GB is near the {memory_limit_gb:.1f} GB MLX can use here "
                f"({memory_source}); "
                "lower batch_size or max_seq_length, or turn on grad_checkpoint",
                it,
            )
