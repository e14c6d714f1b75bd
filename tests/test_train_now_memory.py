"""`phi3tui train --now` beside a running run (issue 23): unified memory is not double-booked. The running run's
recorded MLX peak counts as in use; the second run starts only if both fit, else it is refused with both figures.
The Mac is faked through PHI3TUI_WORKING_SET_GB; the runs are real runners on the demo model."""

from __future__ import annotations

import re

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


def test_a_run_not_yet_reporting_counts_with_its_estimate(demo_workspace):
    quick_config(demo_workspace, 2)
    ws = Workspace.open(demo_workspace)
    first = create_run(ws, overrides={"iters": 100000})  # queued: live here, no report yet
    (held,) = runs.memory_held_here(ws)
    estimate = review_config((first / "config.yaml").read_text(), ws.root).memory.total
    assert held.run_id == first.name and held.bytes == estimate and held.source == "its estimate"
