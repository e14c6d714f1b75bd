"""Keep awake: the command chosen per platform, the setting and the per-run option, the real inhibitor where
this machine can take one, and a holder that ends with the runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from phi3tui.core import runs
from phi3tui.core.awake import keep_awake_plan, start_keep_awake
from phi3tui.core.run_folder import read_run_json
from phi3tui.core.settings import load_settings
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli
from tests.test_runner import wait_until

TINY = dict(iters=400, steps_per_report=5, steps_per_eval=1000, save_every=1000, val_batches=1)


def which_in(found: dict):
    return lambda name: found.get(name)


def test_the_command_chosen_per_platform():
    mac = keep_awake_plan(4242, platform="darwin", which=which_in({"caffeinate": "/usr/bin/caffeinate"}))
    assert mac.command == ["/usr/bin/caffeinate", "-i", "-w", "4242"]
    assert "caffeinate -i -w 4242" in mac.how
    linux = keep_awake_plan(4242, platform="linux", which=which_in({"systemd-inhibit": "/usr/bin/systemd-inhibit",
                                                                     "tail": "/usr/bin/tail"}))
    assert linux.command[:5] == ["/usr/bin/systemd-inhibit", "--what=sleep:idle", "--who=phi3tui",
                                 "--why=a phi3tui training run", "--mode=block"]
    assert linux.command[5:] == ["/usr/bin/tail", "--pid=4242", "-f", "/dev/null"]  # the lock ends with pid 4242
    bare = keep_awake_plan(4242, platform="linux", which=which_in({"tail": "/usr/bin/tail"}))
    assert bare.command is None and "systemd-inhibit is not installed" in bare.how
    assert keep_awake_plan(1, platform="win32").command is None
    for platform in ("darwin", "linux"):
        off = keep_awake_plan(4242, mode="off", platform=platform, which=shutil.which)
        assert off.command is None and "keep_awake is off" in off.how


def test_setting_and_option(config_dir, demo_workspace):
    (config_dir / "settings.yaml").write_text("keep_awake: off\n")
    assert load_settings().settings.keep_awake == "off"
    shown = run_cli("settings")
    assert shown.returncode == 0 and "keep_awake: off" in shown.stdout
    (config_dir / "settings.yaml").write_text("keep_awake: always\n")
    bad = run_cli("settings")
    assert bad.returncode == 2 and "settings.yaml:1: keep_awake" in bad.stderr and "auto, off" in bad.stderr
    # The option overrides the setting for one run, and the run says what kept the machine awake.
    (config_dir / "settings.yaml").write_text("keep_awake: auto\n")
    started = run_cli("train", "-w", str(demo_workspace), "--iters", "2", "--keep-awake", "off")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[2]
    # The printed follow-up commands work as typed from another folder: they name the workspace.
    assert f"phi3tui runs attach {run_id} -w {demo_workspace}" in started.stdout
    run_dir = demo_workspace / "runs" / run_id
    assert runs.wait_for_run(run_dir, timeout=120)["state"] == "finished"
    info = read_run_json(run_dir)
    assert info["keep_awake"] == "off" and info["awake"] == "nothing: keep_awake is off"
    status = run_cli("runs", "status", run_id, "-w", str(demo_workspace))
    assert status.returncode == 0 and "kept awake:    nothing: keep_awake is off" in status.stdout


def inhibitor_works() -> str | None:
    """None when this machine's systemd-inhibit can take a lock, else why not."""
    if not sys.platform.startswith("linux"):
        return f"systemd-inhibit is Linux's; this is {sys.platform}"
    if not shutil.which("systemd-inhibit"):
        return "systemd-inhibit is not installed"
    probe = subprocess.run(["systemd-inhibit", "--what=idle", "--who=phi3tui-test", "--why=probe", "true"],
                           capture_output=True, text=True, timeout=20)
    if probe.returncode:
        return f"systemd-inhibit cannot take a lock here (no logind?): {probe.stderr.strip()}"
    return None


def test_a_refused_inhibitor_is_said_not_hidden():
    if inhibitor_works() is None:
        pytest.skip("this machine's systemd-inhibit takes locks; the refusal cannot be seen here")
    holder, how = start_keep_awake(keep_awake_plan(os.getpid()))
    assert holder is None and how.startswith("nothing: ")


def test_real_inhibitor_holds_while_the_runner_lives(demo_workspace, config_dir):
    why = inhibitor_works()
    if why:
        pytest.skip(why)
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=TINY, keep_awake="auto")
    wait_until(lambda: read_run_json(run_dir).get("awake"), what="the keep-awake record")
    assert read_run_json(run_dir)["awake"].startswith("systemd-inhibit")
    listed = subprocess.run(["systemd-inhibit", "--list", "--no-pager"], capture_output=True, text=True).stdout
    assert f"phi3tui training run {run_dir.name}" in listed
    runs.stop_run(run_dir)
    runs.wait_for_run(run_dir, timeout=120)
    wait_until(lambda: f"run {run_dir.name}" not in subprocess.run(
        ["systemd-inhibit", "--list", "--no-pager"], capture_output=True, text=True).stdout, timeout=20,
        what="the lock let go")


def test_the_holder_ends_when_the_runner_ends(demo_workspace):
    """The run's own holder (what the supervisor started from keep_awake_plan: systemd-inhibit ... tail --pid,
    caffeinate -w) watches the supervisor's pid: a runner killed outright, which can let nothing go, still frees
    the machine. The supervisor and trainer are killed one by one, not by process group: the holder shares that
    group, and a group kill would end it without its watch being tested."""
    import psutil

    why = inhibitor_works() if sys.platform.startswith("linux") else None
    if why:
        pytest.skip(f"the run holds nothing here, so there is no holder to watch: {why}")
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=TINY, keep_awake="auto")
    wait_until(lambda: read_run_json(run_dir).get("awake") and read_run_json(run_dir).get("runner_pid"),
               what="the keep-awake record")
    info = read_run_json(run_dir)
    assert not info["awake"].startswith("nothing"), info["awake"]
    supervisor = psutil.Process(info["supervisor_pid"])
    trainer = psutil.Process(int(info["runner_pid"]))
    holders = [p for p in supervisor.children() if p.pid != trainer.pid]
    assert len(holders) == 1, holders
    holder = holders[0]
    assert holder.is_running() and holder.status() != psutil.STATUS_ZOMBIE  # held while the runner lives
    supervisor.kill()  # SIGKILL: its finally (holder.terminate) never runs
    trainer.kill()
    psutil.wait_procs([holder], timeout=20)
    assert not holder.is_running() or holder.status() == psutil.STATUS_ZOMBIE, "the holder outlived the runner"
    wait_until(lambda: runs.run_info(run_dir)["state"] != "running", timeout=60, what="the run to be settled")


def test_macos_system_tools_by_absolute_path():
    # A `caffeinate` earlier on PATH (a shim, a homebrew build) is never the one that holds the Mac awake.
    mac = keep_awake_plan(4242, platform="darwin", which=which_in({"caffeinate": "/opt/homebrew/bin/caffeinate"}))
    assert mac.command[0] == "/usr/bin/caffeinate"
    from phi3tui.core.machine import MAC_IOREG

    assert MAC_IOREG == "/usr/sbin/ioreg"


def test_checkpoint_writes_use_f_fullfsync_on_macos(tmp_path, monkeypatch):
    """Faked Mac: sys.platform darwin and fcntl's F_FULLFSYNC (51 on macOS). Linux refuses that command, so the
    write falls back to fsync and still lands whole; the recorder shows every flush asked for the full one."""
    import fcntl

    from phi3tui.core import files

    asked = []
    original = fcntl.fcntl

    def recorder(fd, command, *args):
        asked.append(command)
        return original(fd, command, *args)

    monkeypatch.setattr(files.sys, "platform", "darwin")
    monkeypatch.setattr(fcntl, "F_FULLFSYNC", 51, raising=False)
    monkeypatch.setattr(fcntl, "fcntl", recorder)
    files.atomic_write_text(tmp_path / "adapters.json", "{}\n")
    assert (tmp_path / "adapters.json").read_text() == "{}\n"
    assert asked.count(51) >= 2  # the file, then its folder
