"""A run stopped off the report grid and resumed reports on the same iterations as an uninterrupted run, its
first report after the resume averages only the steps trained since it, and it ends with the same weights."""

from __future__ import annotations

import os
import signal
import time

import pytest

from phi3tui.core import runs
from phi3tui.core.run_folder import read_run_json, run_lock
from phi3tui.core.workspace import Workspace
from tests.test_runner import curve, wait_until

EVERY = 5
# save_every 1: a checkpoint at every iteration, so a stop anywhere resumes from exactly there.
GRID = dict(iters=30, steps_per_report=EVERY, steps_per_eval=10, save_every=1, val_batches=2)


def stop_off_grid(run_dir, after: int) -> int:
    """Stop the run through its stop file at an iteration past `after` that is not on the report grid.

    The trainer is paused (SIGSTOP) to read how far it got; it stops one or two iterations later (the one
    in progress, or the next if the checkpoint being written was not yet recorded), so it is let go on
    until both of those are off the grid. Returns the iteration it stopped at."""
    while True:
        wait_until(lambda: (read_run_json(run_dir).get("last_checkpoint") or 0) >= after, what=f"iteration {after}")
        pid = read_run_json(run_dir)["runner_pid"]
        with run_lock(run_dir):  # never paused while it holds run.json's lock: the stop below needs it
            os.kill(pid, signal.SIGSTOP)
        try:
            done = read_run_json(run_dir)["last_checkpoint"]
            if done % EVERY <= EVERY - 3:  # done+1 and done+2 both fall between two reports
                runs.stop_run(run_dir)
                break
        finally:
            os.kill(pid, signal.SIGCONT)
        after = done + 1
        time.sleep(0.05)
    info = runs.wait_for_run(run_dir, timeout=120)
    assert info["state"] == "stopped", info
    at = int(info["reason"].rsplit(" ", 1)[-1])
    assert at % EVERY and done < at <= done + 2, (done, at)
    return at


def weights(run_dir):
    import mlx.core as mx

    return mx.load(str(run_dir / "adapters" / "adapters.safetensors"))


def max_abs_diff(a: dict, b: dict) -> float:
    import mlx.core as mx

    assert a.keys() == b.keys()
    return max(mx.abs(a[k] - b[k]).max().item() for k in a)


def test_resumed_runs_report_on_the_uninterrupted_grid(demo_workspace):
    ws = Workspace.open(demo_workspace)
    straight = runs.start_run(ws, overrides=GRID)
    every_step = runs.start_run(ws, overrides=dict(GRID, steps_per_report=1))  # each step's own loss
    stopped = [runs.start_run(ws, overrides=GRID) for _ in range(3)]
    stops = [stop_off_grid(run_dir, after) for run_dir, after in zip(stopped, (3, 11, 21))]
    assert all(s % EVERY for s in stops)  # every stop fell between two reports
    for run_dir in stopped:
        runs.resume_run(run_dir)
    for run_dir in (straight, every_step, *stopped):
        assert runs.wait_for_run(run_dir, timeout=300)["state"] == "finished"

    grid = curve(straight, "train")
    assert [it for it, _ in grid] == list(range(EVERY, 31, EVERY))
    step_loss = dict(curve(every_step, "train"))
    reference = weights(straight)
    assert max_abs_diff(weights(every_step), reference) == 0.0  # reporting more often changes nothing
    for run_dir, at in zip(stopped, stops):
        reports = curve(run_dir, "train")
        assert [it for it, _ in reports] == [it for it, _ in grid], (at, reports)
        first = (at // EVERY + 1) * EVERY  # the first point of the grid after the stop
        loss = dict(reports)
        # The first report after the resume is the mean of the steps trained since it, not of a whole window.
        since = [step_loss[it] for it in range(at + 1, first + 1)]
        assert loss[first] == pytest.approx(sum(since) / len(since), rel=1e-5)
        for it, value in grid:
            if it > first:  # whole windows after it: the uninterrupted run's figures
                assert loss[it] == pytest.approx(value, rel=1e-5), it
        assert curve(run_dir, "val") == pytest.approx(curve(straight, "val"))
        assert max_abs_diff(weights(run_dir), reference) == 0.0, at
