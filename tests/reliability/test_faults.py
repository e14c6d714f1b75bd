"""Faults: killed apps and runners, closed terminals, full disks, two watchers, a read-only workspace.
Real processes, real signals, real (tmpfs) file systems; a run's work is never lost."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from phi3tui.core import runs
from phi3tui.core.workspace import Workspace
from tests.conftest import REPO, run_cli
from tests.reliability.conftest import (
    assert_refused,
    assert_unchanged,
    open_app_on,
    remount_read_only,
    screen_text,
    snapshot,
)

FAST = {"steps_per_report": 2, "steps_per_eval": 1000, "val_batches": 1}


def _start(workspace: Path, **overrides) -> Path:
    return runs.start_run(Workspace.open(workspace), overrides={**FAST, **overrides})


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _runner_pid(run_dir: Path) -> int:
    info = _wait(lambda: (i := runs.read_run_json(run_dir)).get("state") == "running" and i, 60, "the runner to start")
    return int(info.get("runner_pid") or info["pid"])


def _train_iterations(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["iteration"] for r in map(json.loads, lines) if r.get("kind") == "train"]


def _checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "adapters").glob("*_adapters.safetensors"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _log(run_dir: Path) -> str:
    return (run_dir / "log.txt").read_text(errors="replace")[-3000:]


def test_runner_sigkill_is_failed_within_seconds_and_resumes(bad_workspace):
    run_dir = _start(bad_workspace, iters=40, save_every=5)
    pid = _runner_pid(run_dir)
    # a whole checkpoint: adapter, optimizer state and step (a kill between those files resumes from the one before)
    _wait(lambda: runs.resumable_checkpoint(run_dir) >= 5, 120, "a first checkpoint")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    info = _wait(lambda: (i := runs.run_info(run_dir)).get("state") == "failed" and i, 10, "the run to show as failed")
    assert time.monotonic() - killed < 10
    assert "resume" in info["reason"], info["reason"]
    listed = run_cli("runs", "list", "-w", str(bad_workspace))
    assert "failed" in listed.stdout and "running" not in listed.stdout, listed.stdout
    at = runs.resumable_checkpoint(run_dir)
    assert at >= 5
    runs.resume_run(run_dir)
    info = runs.wait_for_run(run_dir, timeout=180)
    assert info["state"] == "finished", _log(run_dir)
    iterations = _train_iterations(run_dir)
    assert iterations[-1] == 40 and iterations == sorted(set(iterations)), iterations


def test_runner_sigterm_saves_the_adapter(bad_workspace):
    run_dir = _start(bad_workspace, iters=400, save_every=1000)
    pid = _runner_pid(run_dir)
    _wait(lambda: (run_dir / "metrics.jsonl").exists() and _train_iterations(run_dir), 120, "a first report")
    os.kill(pid, signal.SIGTERM)
    info = runs.wait_for_run(run_dir, timeout=60)
    assert info["state"] == "stopped", _log(run_dir)
    adapters = run_dir / "adapters"
    assert (adapters / "adapters.safetensors").is_file() and (adapters / "adapter_config.json").is_file()
    import mlx.core as mx

    assert mx.load(str(adapters / "adapters.safetensors")), "the saved adapter is empty"
    assert runs.resumable_checkpoint(run_dir) > 0


# -- the app in a real terminal (tmux) ---------------------------------------------------------------


class Tmux:
    def __init__(self):
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed (needed to run the app in a real terminal)")
        self.socket = f"phi3tui-rel-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "app")

    def close(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def tmux():
    t = Tmux()
    yield t
    t.close()


@pytest.mark.parametrize("how", ["app-sigkill", "terminal-closed"])
async def test_run_outlives_the_app(bad_workspace, tmux, how):
    config = bad_workspace / "lora_config.yaml"
    config.write_text(config.read_text().replace("iters: 100", "iters: 30").replace("save_every: 50", "save_every: 10"))
    command = f"cd {REPO} && exec {sys.executable} -m phi3tui {bad_workspace} --screen train"
    tmux("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)
    _wait(lambda: "Train" in tmux.screen(), 60, "the app's Train screen")
    run_dir = None
    for _ in range(6):  # a key pressed before the screen is ready is lost: press again while no run exists
        tmux("send-keys", "-t", "app", "n")
        try:
            run_dir = _wait(lambda: next(iter(runs.run_dirs(Workspace.open(bad_workspace))), None), 10, "the run folder")
            break
        except AssertionError:
            continue
    assert run_dir is not None, tmux.screen()
    _wait(lambda: (run_dir / "metrics.jsonl").exists() and _train_iterations(run_dir), 120, "a first report")
    app_pid = int(tmux("display-message", "-p", "-t", "app", "#{pane_pid}").strip())
    if how == "app-sigkill":
        os.kill(app_pid, signal.SIGKILL)
    else:
        tmux("kill-session", "-t", "app")
    _wait(lambda: not _alive(app_pid), 10, "the app to end")
    info = runs.wait_for_run(run_dir, timeout=180)
    assert info["state"] == "finished", _log(run_dir)
    iterations = _train_iterations(run_dir)
    assert iterations[-1] == 30
    # A new app attaches and shows every point of the run.
    from phi3tui.app import Phi3App

    app = Phi3App(Workspace.open(bad_workspace), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        _ = await _await(pilot, lambda: screen.metrics.train_x == iterations, 10)
        assert screen.metrics.train_x == iterations
        # The run's own title line, as drawn: its id, its final state and its last iteration.
        shown = f"run {run_dir.name} finished  30/30"
        await _await(pilot, lambda: shown in screen_text(app), 10)
        assert shown in screen_text(app), screen_text(app)[-2000:]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def _await(pilot, predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        await pilot.pause(0.2)
    return predicate()


def test_two_watchers_on_one_run(bad_workspace):
    """Two `runs attach` at once: both see the whole run; neither disturbs it."""
    run_dir = _start(bad_workspace, iters=20, save_every=10)
    watchers = [subprocess.Popen([sys.executable, "-m", "phi3tui", "runs", "attach", "-w", str(bad_workspace), run_dir.name],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=180)[0] for w in watchers]
    info = runs.wait_for_run(run_dir, timeout=30)
    assert info["state"] == "finished", _log(run_dir)
    assert _train_iterations(run_dir)[-1] == 20
    for watcher, output in zip(watchers, outputs):
        assert watcher.returncode == 0 and "Traceback" not in output, output[-2000:]
        assert "finished" in output, output[-2000:]


# -- full disks -------------------------------------------------------------------------------------


def _fill(folder: Path, leave: int) -> Path:
    """Take all but `leave` bytes of the file system's free space."""
    filler = folder / "filler.bin"
    room = shutil.disk_usage(folder).free - leave
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, room))
    return filler


def _frozen_between_saves(run_dir: Path, pid: int, timeout: float) -> int:
    """SIGSTOP the runner at a moment when no checkpoint is being written; return the last saved iteration.

    A frozen process writes nothing, so what happens next no longer depends on how fast the runner is: every
    file of its last save is complete (adapters, optimizer, state, run.json's last_checkpoint) and no temporary
    file is open. A runner frozen mid-save is let go and frozen again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        os.kill(pid, signal.SIGSTOP)
        last = runs.read_run_json(run_dir).get("last_checkpoint")
        adapters = run_dir / "adapters"
        half_written = [p.name for d in (run_dir, adapters) for p in d.iterdir()
                        if p.name.startswith(".tmp-") or (p.name.startswith(".") and p.name.endswith(".tmp"))]
        if last and not half_written:
            stems = {f"{last:07d}_adapters.safetensors", f"{last:07d}_optimizer.safetensors", f"{last:07d}_state.json"}
            if stems <= {p.name for p in adapters.iterdir()} and (adapters / "adapters.safetensors").is_file():
                return int(last)
        assert runs.read_run_json(run_dir).get("state") == "running", _log(run_dir)
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError(f"no moment between two saves within {timeout:.0f} s:\n{_log(run_dir)}")


def test_disk_full_during_adapter_save(bad_workspace, small_tmpfs):
    mount = small_tmpfs("16m", at=bad_workspace / "runs")  # runs/ is a small disk of its own
    run_dir = _start(bad_workspace, iters=400, save_every=5)
    pid = _runner_pid(run_dir)
    _wait(lambda: runs.read_run_json(run_dir).get("last_checkpoint"), 120, "a first checkpoint")
    last = _frozen_between_saves(run_dir, pid, 60)
    try:
        _fill(mount, leave=96 * 1024)  # room for run.json, metrics and the log, not for an adapter
        saved = {p.name: _sha(p) for p in (run_dir / "adapters").iterdir()}
    finally:
        os.kill(pid, signal.SIGCONT)
    info = runs.wait_for_run(run_dir, timeout=120)
    assert info["state"] == "failed", _log(run_dir)
    assert "disk is full" in info["reason"] and "resume" in info["reason"], info["reason"]
    # The save that failed is the next one: nothing of it is left, every earlier file is as it was.
    assert info.get("last_checkpoint") == last, info
    assert {p.name: _sha(p) for p in (run_dir / "adapters").iterdir()} == saved
    assert runs.resumable_checkpoint(run_dir) == last
    import mlx.core as mx

    assert mx.load(str(run_dir / "adapters" / "adapters.safetensors"))


def test_disk_full_during_gguf_export(trained_workspace, small_tmpfs):
    fused = run_cli("export", "fuse", "-w", str(trained_workspace), "--name", "g")
    assert fused.returncode == 0, fused.stdout + fused.stderr
    mount = small_tmpfs("1m")
    old = mount / "g.gguf"
    old.write_bytes(b"the previous export" * 5000)
    digest = _sha(old)
    result = run_cli("export", "gguf", "-w", str(trained_workspace), "--name", "g", "--model-dir",
                     str(trained_workspace / "exports" / "g" / "fused"), "--outfile", str(old), "--outtype", "f32",
                     "--force", "--no-verify")
    assert_refused(result, "disk is full", str(old), codes=(1, 2))
    assert _sha(old) == digest, "the destination changed"
    assert sorted(p.name for p in mount.iterdir()) == ["g.gguf"], "a partial file was left behind"


# -- a read-only workspace --------------------------------------------------------------------------


def _read_only_copy(workspace: Path, small_tmpfs) -> Path:
    # A tmpfs remounted read-only: writes fail with EROFS even for root, who ignores chmod.
    mount = small_tmpfs("32m")
    root = mount / "ws"
    shutil.copytree(workspace, root)
    remount_read_only(mount)
    return root


@pytest.fixture
def read_only_workspace(bad_workspace, small_tmpfs) -> Path:
    return _read_only_copy(bad_workspace, small_tmpfs)


@pytest.fixture
def read_only_trained_workspace(trained_template, small_tmpfs) -> Path:
    """A read-only workspace holding a finished run: an export has everything it needs except a place to write."""
    return _read_only_copy(trained_template, small_tmpfs)


async def test_read_only_workspace_opens_and_says_so(read_only_workspace):
    from phi3tui.app import Phi3App

    app = Phi3App(Workspace.open(read_only_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        for key, mode in [("1", "data"), ("2", "config"), ("3", "train"), ("4", "chat"), ("5", "export")]:
            app.set_focus(None)
            await pilot.press(key)
            await pilot.pause(0.3)
            assert app.current_mode == mode and app.is_running
            header = str(app.screen.query_one("WorkspaceHeader").render())
            assert "READ-ONLY" in header, header
        app.set_focus(None)
        await pilot.press("3")
        await pilot.pause(0.2)
        await pilot.press("n")  # start a run: refused with a message, the app stays up
        await _await(pilot, lambda: any("read-only" in str(n.message) for n in app._notifications), 10)
        assert any("read-only" in str(n.message) for n in app._notifications), [n.message for n in app._notifications]
        assert app.is_running


def test_read_only_workspace_cli_refuses_writes(read_only_trained_workspace):
    ws = read_only_trained_workspace
    before = snapshot(ws)
    result = run_cli("train", "-w", str(ws))
    assert_refused(result, "read-only", codes=(1, 2))
    # The run's adapter is there and valid: the only thing that can stop the fuse is the read-only folder.
    (run_dir,) = runs.run_dirs(Workspace.open(ws))
    assert (run_dir / "adapters" / "adapters.safetensors").is_file()
    result = run_cli("export", "fuse", "-w", str(ws), "--name", "x", "--adapter-path", str(run_dir / "adapters"))
    assert_refused(result, "read-only", codes=(1, 2))
    assert_unchanged(before, snapshot(ws))
