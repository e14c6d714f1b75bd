"""A run whose process lives but no longer steps is stalled (issue 23): a real runner, stopped with SIGSTOP, and a
one-second minimum (PHI3TUI_STALL_MIN_S). The one watcher records it with an alarm; `runs status` says so; with
stalled_run: wait the queue waits and the run is running again once it steps; with kill the runner is killed and
the queue goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from phi3tui.core import runs
from phi3tui.core.run_folder import read_run_json, run_lock
from phi3tui.core.runs.stall import STALL_MIN_ENV
from phi3tui.core.runs.watcher import RunWatcher
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli
from tests.test_runner import wait_until

LONG = dict(iters=2000, steps_per_report=1, steps_per_eval=10_000, save_every=5, val_batches=1)


@pytest.fixture
def stopped_run(demo_workspace, monkeypatch):
    """A running run whose trainer has made steps, then is stopped (SIGSTOP); continued and ended after the test."""
    monkeypatch.setenv(STALL_MIN_ENV, "1")
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=LONG, keep_awake="off")
    wait_until(lambda: (read_run_json(run_dir).get("iteration") or 0) >= 3
               and read_run_json(run_dir).get("slowest_step_s"), what="three steps")
    pid = read_run_json(run_dir)["runner_pid"]
    with run_lock(run_dir):  # stopped outside its own writes: a stop inside one would hold the lock (see stall.py)
        os.kill(pid, signal.SIGSTOP)
    yield ws, run_dir, pid
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def poll_until(watcher: RunWatcher, run_dir, state: str, events: list, timeout: float = 120) -> None:
    def seen() -> bool:
        poll = watcher.poll()
        events.extend(poll.events)
        return read_run_json(run_dir)["state"] == state

    wait_until(seen, timeout=timeout, what=f"the run {state}")


def test_a_stopped_runner_is_stalled_and_running_again_when_it_steps(stopped_run):
    ws, run_dir, pid = stopped_run
    behind = runs.queue_runs(ws, overrides=dict(iters=2), start=False)[0]
    watcher, events = RunWatcher(ws, stalled_run="wait"), []
    poll_until(watcher, run_dir, "stalled", events)
    info = read_run_json(run_dir)
    assert "no metrics line for" in info["reason"] and "the queue waits" in info["reason"]
    assert [a["kind"] for a in info["alarms"]] == ["stalled"]
    assert [(e.run_id, e.state, e.severity) for e in events] == [(run_dir.name, "stalled", "error")]
    status = run_cli("runs", "status", run_dir.name, "-w", str(ws.root))
    assert "stalled" in status.stdout and "no metrics line" in status.stdout
    # The stalled process still holds its memory: the queue does not start the next run beside it.
    assert runs.start_next(ws) is None and read_run_json(behind)["state"] == "waiting"

    os.kill(pid, signal.SIGCONT)
    poll_until(watcher, run_dir, "running", events)
    runs.stop_run(run_dir)
    assert runs.wait_for_run(run_dir, timeout=120)["state"] == "stopped"


def test_stalled_run_kill_ends_it_and_the_queue_goes_on(stopped_run):
    ws, run_dir, pid = stopped_run
    behind = runs.queue_runs(ws, overrides=dict(iters=2), start=False)[0]
    watcher = RunWatcher(ws, stalled_run="kill")
    poll_until(watcher, run_dir, "stalled", [])
    assert "killed it so the queue goes on" in read_run_json(run_dir)["reason"]
    info = runs.wait_for_run(behind, timeout=300)
    assert info["state"] == "finished", info
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2],
               what="the stalled runner gone")
    assert read_run_json(run_dir)["state"] == "stalled"  # its recorded end: resumable from its last checkpoint


def test_nothing_is_judged_before_the_first_step():
    from phi3tui.core.runs.stall import STALL_FACTOR, stall_threshold_s

    assert stall_threshold_s({}) is None
    assert stall_threshold_s({"slowest_step_s": 100.0}) == STALL_FACTOR * 100.0
    assert stall_threshold_s({"slowest_step_s": 0.5}) == 300.0  # never under five minutes by default


def test_a_lock_held_by_a_stopped_process_never_blocks_the_watcher(demo_workspace, monkeypatch):
    import multiprocessing
    import time

    from phi3tui.core.runs.stall import silence_s, stall_threshold_s, watch_stall

    monkeypatch.setenv(STALL_MIN_ENV, "1")
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=LONG, keep_awake="off")
    wait_until(lambda: read_run_json(run_dir).get("slowest_step_s"), what="a step")
    pid = read_run_json(run_dir)["runner_pid"]
    held, release = multiprocessing.Event(), multiprocessing.Event()

    def hold():  # as a process stopped in the middle of its own write would
        with run_lock(run_dir):
            held.set()
            release.wait(120)

    holder = multiprocessing.get_context("fork").Process(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        os.kill(pid, signal.SIGSTOP)
        info = read_run_json(run_dir)
        wait_until(lambda: silence_s(run_dir) > stall_threshold_s(info), what="a silence past the threshold")
        started = time.monotonic()
        assert watch_stall(run_dir, info, "wait") is None
        assert time.monotonic() - started < 5  # it did not wait for the lock
        assert read_run_json(run_dir)["state"] == "running"
    finally:
        release.set()
        holder.join(30)
        os.kill(pid, signal.SIGCONT)
        runs.stop_run(run_dir)
        runs.wait_for_run(run_dir, timeout=120)


def test_the_queue_goes_on_after_a_stalled_run_whose_supervisor_is_slow_to_exit(demo_workspace):
    """A run killed as stalled keeps `stalled` as its end, and counts as live while its supervisor (run.json's pid)
    lives. The supervisor hands on to the queue just before it exits: the next run must start once it has exited,
    even when it exits slowly (a loaded machine), not be judged while it still lives and then never start."""
    import psutil

    from phi3tui.core.run_folder import update_run_json
    from phi3tui.core.runs.launcher import create_run
    from phi3tui.core.runs.state import RunState, transition

    ws = Workspace.open(demo_workspace)
    stalled = create_run(ws, overrides=dict(iters=2))
    behind = runs.queue_runs(ws, overrides=dict(iters=2), start=False)[0]
    # The supervisor's last moments: it hands on (supervisor.hand_on_queue), then takes 3 s to exit.
    supervisor = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; sys.stdin.readline(); "
         "from phi3tui.core.runs.supervisor import hand_on_queue; hand_on_queue(Path(sys.argv[1])); time.sleep(3)",
         str(stalled)], stdin=subprocess.PIPE, text=True)
    update_run_json(stalled, pid=supervisor.pid, pid_started=psutil.Process(supervisor.pid).create_time())
    transition(stalled, RunState.RUNNING, expect=(RunState.QUEUED,))
    transition(stalled, RunState.STALLED, expect=(RunState.RUNNING,), reason="stalled: killed it (test)")
    assert [d.name for d in runs.live_here(ws)] == [stalled.name]  # live while its supervisor lives
    supervisor.stdin.write("go\n")
    supervisor.stdin.close()
    assert supervisor.wait(timeout=60) == 0
    info = runs.wait_for_run(behind, timeout=300)
    assert info["state"] == "finished", info
    assert read_run_json(stalled)["state"] == "stalled"
