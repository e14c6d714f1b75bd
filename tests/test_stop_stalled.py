"""`phi3tui runs stop RUN` on a stalled run whose process still lives (issue 23): it makes no next step, so the polite
stop never reaches it; the stop records it stopped (through state.transition), kills its trainer, and the queue goes
on. A real runner stopped with SIGSTOP, as in test_stall.py."""

from __future__ import annotations

import os

from phi3tui.core import runs
from phi3tui.core.run_folder import read_run_json
from phi3tui.core.runs.watcher import RunWatcher
from tests.conftest import run_cli
from tests.test_runner import wait_until
from tests.test_stall import poll_until, stopped_run  # noqa: F401 (a fixture)


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] == "Z"
    except OSError:
        return True


def test_runs_stop_ends_a_stalled_run_whose_process_lives(stopped_run):  # noqa: F811
    ws, run_dir, pid = stopped_run
    behind = runs.queue_runs(ws, overrides=dict(iters=2), start=False)[0]
    poll_until(RunWatcher(ws, stalled_run="wait"), run_dir, "stalled", [])
    assert not gone(pid)

    stop = run_cli("runs", "stop", run_dir.name, "-w", str(ws.root))
    assert stop.returncode == 0 and "it was stalled, so its trainer was killed" in stop.stdout, stop.stdout + stop.stderr
    info = read_run_json(run_dir)
    assert info["state"] == "stopped" and "stopped by the user while stalled" in info["reason"], info
    assert info["state"] in runs.RESUMABLE_STATES
    wait_until(lambda: gone(pid), what="the stalled trainer gone")
    # Its supervisor saw the recorded stop and handed on the queue.
    assert runs.wait_for_run(behind, timeout=300)["state"] == "finished"
    assert read_run_json(run_dir)["state"] == "stopped"  # the stop stands: nothing recorded over it
    # Stopping it again is refused: it is not running.
    again = run_cli("runs", "stop", run_dir.name, "-w", str(ws.root))
    assert again.returncode == 1 and "not running" in again.stderr


def test_stop_of_a_running_run_still_asks_politely(demo_workspace):
    from phi3tui.core.workspace import Workspace

    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(iters=2000, steps_per_report=1, steps_per_eval=10_000),
                             keep_awake="off")
    wait_until(lambda: read_run_json(run_dir).get("state") == "running", what="the run to run")
    assert runs.stop_run(run_dir) == f"asked run {run_dir.name} to stop at its next step (it saves its adapter first)"
    assert runs.wait_for_run(run_dir, timeout=120)["state"] == "stopped"
    assert os.path.exists(run_dir / "adapters")
