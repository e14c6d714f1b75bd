"""Run states: written only through core/runs/state.transition, which refuses a move the life of a run does not
allow; readers never write (a dead runner's end is derived when read, recorded by settle_dead_run)."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from phi3tui.core import runs
from phi3tui.core.machine import host_name, machine_id
from phi3tui.core.run_folder import update_run_json
from phi3tui.core.runs.state import END_UNRECORDED, IllegalTransition, RunState, settle_dead_run, transition
from phi3tui.core.runs.watcher import RunWatcher
from phi3tui.core.workspace import Workspace
from tests.conftest import REPO, run_cli


def new_run(root: Path, name: str = "20261206-120000-ab12") -> Path:
    run_dir = root / "runs" / name
    run_dir.mkdir(parents=True)
    transition(run_dir, RunState.QUEUED, id=name, created=time.time(), host=host_name(), machine_id=machine_id(),
               iteration=3, iters=10)
    return run_dir


def running_with(run_dir: Path, proc) -> None:
    """The run recorded running under `proc`'s pid, as launch and the runner record it."""
    update_run_json(run_dir, pid=proc.pid, pid_started=runs.state._create_time(proc.pid))
    transition(run_dir, RunState.RUNNING, started=time.time())


def ended_process():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = runs.state._create_time(proc.pid)
    proc.wait()
    return proc, started


@pytest.mark.parametrize("path, to", [
    ([RunState.RUNNING, RunState.FINISHED], RunState.RUNNING),  # a finished run cannot start again
    ([RunState.RUNNING, RunState.FINISHED], RunState.QUEUED),  # nor be resumed
    (None, RunState.STOPPED),  # a waiting run never ran: it cannot end stopped
    ([RunState.RUNNING, RunState.STOPPED], RunState.FAILED),  # an ended run does not end again
    ([], RunState.STOPPING),  # shown, never written
    ([], RunState.UNREADABLE),
])
def test_an_illegal_move_is_refused_and_writes_nothing(tmp_path, path, to):
    if path is None:
        run_dir = tmp_path / "runs" / "waiting-one"
        run_dir.mkdir(parents=True)
        transition(run_dir, RunState.WAITING, id=run_dir.name)
    else:
        run_dir = new_run(tmp_path)
        for state in path:
            transition(run_dir, state)
    before = (run_dir / "run.json").read_bytes()
    with pytest.raises(IllegalTransition, match=run_dir.name):
        transition(run_dir, to, reason="should not be kept")
    assert (run_dir / "run.json").read_bytes() == before


def test_a_run_lives_through_its_legal_moves(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    seen = []
    for state in (RunState.WAITING, RunState.QUEUED, RunState.RUNNING, RunState.STOPPED, RunState.QUEUED,
                  RunState.RUNNING, RunState.OUT_OF_MEMORY, RunState.QUEUED, RunState.RUNNING, RunState.FINISHED):
        data = transition(run_dir, state, step=len(seen), **({"created": time.time()} if not seen else {}))
        seen.append(data["state"])
        assert runs.read_run_json(run_dir)["state"] == state.value
        if state in runs.END_STATES:
            assert data["ended"] >= data["created"]  # stamped by transition
    assert seen[-1] == "finished" and runs.read_run_json(run_dir)["step"] == 9


def test_expect_refuses_a_legal_move_from_another_state(tmp_path):
    run_dir = new_run(tmp_path)
    transition(run_dir, RunState.RUNNING)
    with pytest.raises(IllegalTransition, match="not queued"):
        transition(run_dir, RunState.FAILED, expect=(RunState.QUEUED,))  # running -> failed is legal, but unexpected
    assert runs.read_run_json(run_dir)["state"] == "running"


def test_of_two_racing_writers_exactly_one_wins(tmp_path):
    # A stalled run may go running or failed, and running may go failed too: without `expect` the later of two
    # writers who both saw it stalled would overwrite the first one's move.
    for attempt in range(5):
        run_dir = new_run(tmp_path, f"race-{attempt}")
        transition(run_dir, RunState.RUNNING)
        transition(run_dir, RunState.STALLED)
        barrier = threading.Barrier(2)
        won, lost = [], []

        def writer(to, name):
            barrier.wait()
            try:
                transition(run_dir, to, expect=(RunState.STALLED,), by=name)
                won.append(name)
            except IllegalTransition:
                lost.append(name)

        threads = [threading.Thread(target=writer, args=(RunState.RUNNING, "watchdog")),
                   threading.Thread(target=writer, args=(RunState.FAILED, "user"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1 and len(lost) == 1, (won, lost)
        assert runs.read_run_json(run_dir)["by"] == won[0]


def test_update_run_json_refuses_a_state(tmp_path):
    run_dir = new_run(tmp_path)
    before = (run_dir / "run.json").read_bytes()
    with pytest.raises(ValueError, match="transition"):
        update_run_json(run_dir, state="finished")
    assert (run_dir / "run.json").read_bytes() == before


def test_reading_a_dead_run_writes_nothing_and_settling_records_it(tmp_path):
    run_dir = new_run(tmp_path)
    proc, _ = ended_process()
    running_with(run_dir, proc)
    path = run_dir / "run.json"
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns

    first = runs.run_info(run_dir)
    assert first["state"] == "failed" and "ended without recording a result" in first["reason"]
    assert first[END_UNRECORDED] and first["ended"] <= time.time()
    time.sleep(0.05)
    again = runs.run_info(run_dir)
    assert again["ended"] == first["ended"]  # the same view on every read
    assert runs.list_runs(Workspace(tmp_path))[0].state == "failed"
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime

    recorded = settle_dead_run(run_dir)
    assert recorded["state"] == "failed" and recorded["reason"] == first["reason"]
    assert runs.read_run_json(run_dir)["state"] == "failed"
    assert END_UNRECORDED not in runs.run_info(run_dir)
    assert settle_dead_run(run_dir) is None  # nothing left to record


def test_a_live_run_is_left_alone(tmp_path):
    run_dir = new_run(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running_with(run_dir, proc)
        before = (run_dir / "run.json").read_bytes()
        assert settle_dead_run(run_dir) is None
        assert runs.run_info(run_dir)["state"] == "running"
        assert (run_dir / "run.json").read_bytes() == before
    finally:
        proc.kill()
        proc.wait()


def test_the_watcher_records_a_dead_run(tmp_path):
    run_dir = new_run(tmp_path)
    proc, _ = ended_process()
    running_with(run_dir, proc)
    watcher = RunWatcher(Workspace(tmp_path))
    watcher.last_states[run_dir.name] = "running"  # seen live before: its end is announced
    poll = watcher.poll()
    assert [e.state for e in poll.events] == ["failed"]
    assert runs.read_run_json(run_dir)["state"] == "failed"


def test_runs_list_and_status_show_a_dead_run_failed(demo_workspace):
    run_dir = new_run(demo_workspace)
    proc, _ = ended_process()
    running_with(run_dir, proc)
    listed = run_cli("runs", "list", "-w", str(demo_workspace))
    assert listed.returncode == 0 and f"{run_dir.name} failed" in " ".join(listed.stdout.split()), listed.stderr
    status = run_cli("runs", "status", run_dir.name, "-w", str(demo_workspace))
    assert "ended without recording a result" in status.stdout, status.stdout + status.stderr


# -- only state.py writes a state ---------------------------------------------------------------------------
def _called(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _passes_state(node: ast.Call) -> bool:
    for kw in node.keywords:
        if kw.arg == "state":
            return True
        if kw.arg is None and isinstance(kw.value, ast.Dict):  # **{"state": ...}
            if any(isinstance(k, ast.Constant) and k.value == "state" for k in kw.value.keys):
                return True
        if kw.arg is None and isinstance(kw.value, ast.Call) and _called(kw.value) == "dict":
            if any(k.arg == "state" for k in kw.value.keywords):
                return True
    return False


def test_only_state_py_writes_a_run_state():
    package = REPO / "phi3tui"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(REPO).as_posix()
        if where in ("phi3tui/core/runs/state.py", "phi3tui/core/run_folder.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = _called(node)
            if name == "update_run_json" and _passes_state(node):
                offenders.append(f"{where}:{node.lineno} update_run_json(state=...)")
            if name == "write_run_json":  # the whole of run.json, state included: state.py's alone
                offenders.append(f"{where}:{node.lineno} write_run_json")
            if name in ("atomic_write_text", "write_text", "open") and "RUN_FILE" in ast.dump(node):
                offenders.append(f"{where}:{node.lineno} writes run.json directly")
    assert not offenders, "run.json's state is written through core/runs/state.transition only:\n" + "\n".join(offenders)
