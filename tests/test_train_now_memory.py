"""`phi3tui train --now` beside a running run (issue 23): unified memory is not double-booked. The running run's
recorded MLX peak counts as in use; the second run starts only if both fit, else it is refused with both figures.
The Mac is faked through PHI3TUI_WORKING_SET_GB; the runs are real runners on the demo model."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from phi3tui.core import runs
from phi3tui.core.config import review_config
from phi3tui.core.machine import WORKING_SET_ENV
from phi3tui.core.models import human_bytes
from phi3tui.core.runs.launcher import create_run
from phi3tui.core.runs.supervisor import recorded_peak_bytes
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli
from tests.test_queue import wait_until
from tests.test_train_screen import quick_config


@pytest.fixture
def running(demo_workspace):
    """A run that trains until stopped, once it has recorded an MLX peak; stopped after the test."""
    quick_config(demo_workspace, 2)
    ws = Workspace.open(demo_workspace)
    first = runs.start_run(ws, overrides={"iters": 100000, "steps_per_eval": 100000, "steps_per_report": 1})
    try:
        wait_until(lambda: recorded_peak_bytes(first) > 0, timeout=180, what="the first run's first report")
        yield ws, first
    finally:
        if runs.run_info(first).get("state") in runs.LIVE_STATES:
            runs.stop_run(first)
        runs.wait_for_run(first, timeout=120)


def gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.9f}"


def test_train_now_is_refused_with_both_figures_when_both_do_not_fit(running):
    ws, first = running
    alone = review_config(ws.config_path.read_text(), ws.root).memory.total
    peak = recorded_peak_bytes(first)
    (held,) = runs.memory_held_here(ws)
    assert held.run_id == first.name and held.bytes >= peak and held.source == "its recorded MLX peak"
    # This Mac fits the new run alone, not beside the running one.
    refused = run_cli("train", "--now", "-w", str(ws.root), env={WORKING_SET_ENV: gb(alone + held.bytes / 2)})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    err = refused.stderr
    assert "was not started" in err and "above what MLX can use" in err and "already in use" in err, err
    assert f"this run alone ~{human_bytes(alone)}" in err, err  # the new run's own figure
    # The running run's figure: its peak as the CLI read it (it may have grown a little since `held` was read).
    figure = re.search(rf"running here: run {first.name} ([\d.]+) MB \(its recorded MLX peak\)", err)
    assert figure and float(figure[1]) >= float(human_bytes(held.bytes).split()[0]), err
    assert [d.name for d in runs.run_dirs(ws)] == [first.name]  # nothing written


def test_train_now_starts_when_both_fit(running):
    ws, first = running
    alone = review_config(ws.config_path.read_text(), ws.root).memory.total
    (held,) = runs.memory_held_here(ws)
    now = run_cli("train", "--now", "-w", str(ws.root), env={WORKING_SET_ENV: gb(1.5 * (alone + held.bytes))})
    assert now.returncode == 0 and now.stdout.startswith("started run "), now.stdout + now.stderr
    beside = ws.root / "runs" / now.stdout.split()[2]
    assert runs.wait_for_run(beside, timeout=240)["state"] == "finished"
    assert runs.run_info(first)["state"] == "running"


def test_two_train_now_typed_at_once_where_one_more_fits_start_exactly_one(demo_workspace):
    """Two `phi3tui train --now` at the same moment, beside a live run, on a Mac with room for one more: one
    starts, the other counts it and is refused naming both runs; never both on memory that fits one."""
    quick_config(demo_workspace, 2)
    ws = Workspace.open(demo_workspace)
    first = create_run(ws, overrides={"iters": 100000})  # live here, not started: it holds its estimate, steadily
    (held,) = runs.memory_held_here(ws)
    alone = review_config(ws.config_path.read_text(), ws.root).memory.total
    assert held.source == "its estimate" and held.bytes == alone
    # Room for one more run; not for two, whichever figure the newer one counts with: its estimate, or the MLX peak
    # of its first report (the weights and a batch's activations: well above a quarter of the estimate).
    room = held.bytes + alone + alone // 4
    env = dict(os.environ, **{WORKING_SET_ENV: gb(room)})
    both = [subprocess.Popen([sys.executable, "-m", "phi3tui", "train", "--now", "-w", str(ws.root)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    said = [proc.communicate(timeout=300) for proc in both]
    assert sorted(proc.returncode for proc in both) == [0, 2], said
    (out, _), = [s for proc, s in zip(both, said) if proc.returncode == 0]
    (_, err), = [s for proc, s in zip(both, said) if proc.returncode == 2]
    assert out.startswith("started run "), out
    started = ws.root / "runs" / out.split()[2]
    assert "above what MLX can use" in err and "; running here: " in err, err
    beside = err.split("; running here: ", 1)[1]
    assert f"run {first.name} " in beside and f"run {started.name} " in beside, err  # the one started just before too
    assert sorted(d.name for d in runs.run_dirs(ws)) == sorted([first.name, started.name])
    assert runs.wait_for_run(started, timeout=240)["state"] == "finished"


def test_a_run_not_yet_reporting_counts_with_its_estimate(demo_workspace):
    quick_config(demo_workspace, 2)
    ws = Workspace.open(demo_workspace)
    first = create_run(ws, overrides={"iters": 100000})  # queued: live here, no report yet
    (held,) = runs.memory_held_here(ws)
    estimate = review_config((first / "config.yaml").read_text(), ws.root).memory.total
    assert held.run_id == first.name and held.bytes == estimate and held.source == "its estimate"
