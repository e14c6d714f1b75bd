"""The run queue and sweeps, as a user drives them from the CLI, on the demo model with real runners."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from phi3tui.core import runs
from phi3tui.core.config import SweepError, parse_sweep_spec, review_config
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli
from tests.test_train_screen import quick_config


def wait_until(predicate, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def assert_one_after_another(run_dirs):
    infos = [runs.wait_for_run(d, timeout=240) for d in run_dirs]
    assert [i["state"] for i in infos] == ["finished"] * len(infos), [i.get("reason") for i in infos]
    for before, after in zip(infos, infos[1:]):
        assert before["ended"] <= after["started"], "two queued runs overlapped"
    return infos


def test_a_sweep_runs_one_after_another_with_nobody_attached_after_the_terminal_is_killed(demo_workspace):
    quick_config(demo_workspace, 6)
    # The "terminal": a shell in its own session that runs the command, then lingers, as a login shell does.
    command = (f"{sys.executable} -m phi3tui train -w {demo_workspace} "
               f"--sweep 'learning_rate=1e-4,2e-3'; sleep 600")
    terminal = subprocess.Popen(["sh", "-c", command], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ws = Workspace.open(demo_workspace)
    try:
        wait_until(lambda: any(runs.run_info(d).get("state") == "running" for d in runs.run_dirs(ws)),
                   what="the sweep's first run to run")
    finally:
        os.killpg(terminal.pid, signal.SIGKILL)  # the app, the terminal, the SSH session: all gone at once
        terminal.wait()
        killed_at = time.time()
    # Queue order from run.json, not from the states now: the first run may already have finished and handed on.
    first, second = sorted(runs.run_dirs(ws), key=lambda d: runs.read_run_json(d)["sweep_index"])
    infos = assert_one_after_another([first, second])
    # One run was running when the terminal died, so the second started after it: nobody attached handed on.
    assert infos[1]["started"] >= killed_at - 1.0, (infos[1]["started"], killed_at)
    assert infos[0]["sweep_id"] == infos[1]["sweep_id"] and infos[0]["sweep_id"].startswith("sweep-")
    configs = [yaml.safe_load((d / "config.yaml").read_text()) for d in (first, second)]
    assert [c["learning_rate"] for c in configs] == [1e-4, 2e-3]
    assert all("sweep" not in c and c["iters"] == 6 for c in configs)
    assert "queue: started run " + second.name in (first / "log.txt").read_text()

    compared = run_cli("runs", "sweep", second.name, "-w", str(demo_workspace))
    assert compared.returncode == 0, compared.stderr
    lines = compared.stdout.splitlines()
    assert "learning_rate" in lines[1] and "best val" in lines[1] and "tok/s" in lines[1]
    assert first.name in lines[2] and "0.0001" in lines[2] and second.name in lines[3] and "finished" in lines[3]
    assert lines[2].count("★") + lines[3].count("★") == 1


def test_a_stalled_queue_is_started_by_the_next_phi3tui_and_by_resume_queue(demo_workspace):
    quick_config(demo_workspace, 6)
    ws = Workspace.open(demo_workspace)
    ws_arg = str(demo_workspace)
    # Queued with nobody to start it: files only (what a reboot leaves behind).
    made = runs.queue_runs(ws, sweep={"iters": [3000, 2]}, start=False)
    assert [runs.read_run_json(d)["state"] for d in made] == [runs.WAITING] * 2
    listed = run_cli("runs", "queue", "-w", ws_arg)
    assert listed.returncode == 0 and listed.stdout.index(made[0].name) < listed.stdout.index(made[1].name)

    resumed = run_cli("runs", "resume-queue", "-w", ws_arg)
    assert resumed.returncode == 0 and f"started queued run {made[0].name}" in resumed.stdout, resumed.stderr
    wait_until(lambda: runs.run_info(made[0]).get("state") == "running", what="the first run to run")
    assert runs.read_run_json(made[1])["state"] == runs.WAITING
    again = run_cli("runs", "resume-queue", "-w", ws_arg)
    assert again.returncode == 0 and "is running" in again.stdout  # never a second runner

    # A plain `train` while a run runs is refused and writes nothing; --queue is how to add it.
    before = sorted(p.name for p in ws.runs_dir.iterdir())
    refused = run_cli("train", "--iters", "2", "-w", ws_arg)
    assert refused.returncode == 2 and "--queue" in refused.stderr and "--now" in refused.stderr
    assert sorted(p.name for p in ws.runs_dir.iterdir()) == before

    # The runner dies hard (the OS kills it for memory, a power cut): it cannot hand on, the next phi3tui does.
    info = runs.run_info(made[0])
    os.killpg(info["pid"], signal.SIGKILL)
    wait_until(lambda: not runs.process_alive(info), what="the runner to die")
    backstop = run_cli("runs", "list", "-w", ws_arg)
    assert backstop.returncode == 0 and f"started its next run {made[1].name}" in backstop.stderr
    assert runs.run_info(made[0])["state"] == "failed"
    assert runs.wait_for_run(made[1], timeout=240)["state"] == "finished"
    assert runs.run_info(made[0])["ended"] <= runs.run_info(made[1])["started"]
    assert runs.queued_runs(ws) == []


def test_train_queue_waits_for_the_running_run_and_train_now_runs_beside_it(demo_workspace):
    """`train --queue` while a run runs: it waits in the queue until that run ends, then starts by itself.
    `train --now`: it starts at once and runs beside it."""
    quick_config(demo_workspace, 2)
    ws, ws_arg = Workspace.open(demo_workspace), str(demo_workspace)
    first = runs.start_run(ws, overrides={"iters": 100000, "steps_per_eval": 100000})  # runs until stopped
    wait_until(lambda: runs.run_info(first).get("state") == "running", what="the first run to run")

    queued = run_cli("train", "--queue", "-w", ws_arg)
    assert queued.returncode == 0 and "queued #1" in queued.stdout, queued.stdout + queued.stderr
    (waiting,) = runs.queued_runs(ws)
    assert waiting.name in queued.stdout and runs.read_run_json(waiting)["state"] == runs.WAITING

    now = run_cli("train", "--now", "-w", ws_arg)
    assert now.returncode == 0 and now.stdout.startswith("started run "), now.stdout + now.stderr
    beside = ws.runs_dir / now.stdout.split()[2]
    assert runs.wait_for_run(beside, timeout=240)["state"] == "finished"
    # It ran while the first one ran, and the queued run still waits for the first.
    assert runs.run_info(first)["state"] == "running"
    assert runs.read_run_json(waiting)["state"] == runs.WAITING and runs.queued_runs(ws) == [waiting]

    runs.stop_run(first)
    ended = runs.wait_for_run(first, timeout=120)
    assert ended["state"] == "stopped"
    info = runs.wait_for_run(waiting, timeout=240)  # started by the first runner as it ended
    assert info["state"] == "finished" and info["started"] >= ended["ended"]
    assert runs.queued_runs(ws) == []


def test_exactly_one_of_several_queue_starters_wins(demo_workspace):
    """Four processes try to start a stalled queue at the same moment (after one barrier file): one run starts."""
    quick_config(demo_workspace, 2)
    ws = Workspace.open(demo_workspace)
    made = runs.queue_runs(ws, sweep={"iters": [100000, 2]}, start=False)
    go = demo_workspace / "go"
    code = f"""
import os, time
from pathlib import Path
from phi3tui.core.runs.queue import start_next
from phi3tui.core.workspace import Workspace
ws = Workspace.open({str(demo_workspace)!r})
Path({str(demo_workspace)!r}, f"ready-{{os.getpid()}}").touch()
while not Path({str(go)!r}).exists():
    time.sleep(0.005)
started = start_next(ws)
print("STARTED", started.name if started else None)
"""
    starters = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(4)]
    # Every starter has imported everything and waits at the barrier before it falls.
    wait_until(lambda: len(list(demo_workspace.glob("ready-*"))) == 4 or any(p.poll() is not None for p in starters),
               what="the starters to wait at the barrier")
    go.touch()
    outputs = [p.communicate(timeout=120) for p in starters]
    assert all(p.returncode == 0 for p in starters), [err[-1000:] for _, err in outputs]
    said = sorted(out.strip() for out, _ in outputs)
    assert said == sorted(["STARTED None"] * 3 + [f"STARTED {made[0].name}"]), said
    assert runs.read_run_json(made[1])["state"] == runs.WAITING and runs.queued_runs(ws) == [made[1]]
    runs.stop_run(made[0])
    assert runs.wait_for_run(made[0], timeout=120)["state"] == "stopped"
    assert runs.wait_for_run(made[1], timeout=240)["state"] == "finished"


def test_bad_sweeps_are_refused_by_name_and_nothing_is_written(demo_workspace):
    ws = str(demo_workspace)
    cases = {
        "lora_parameters.rnk=8,16": "lora_parameters.rnk",
        "learning_rat=1e-5": "'learning_rat'",
        "learning_rate": "'learning_rate' has no '='",
        "lora_parameters.rank=8,,16": "empty value",
        "adapter_path=a,b": "adapter_path cannot be swept",
        "iters=5 iters=6": "given twice",
    }
    for spec, named in cases.items():  # the parser alone (fast); the CLI below for the whole path
        with pytest.raises(SweepError, match=re.escape(named)):
            parse_sweep_spec(spec)
    # Each point of the grid is checked as a whole config before anything is written.
    cases["lora_parameters.rank=8,16 learning_rate=1e-5,abc"] = "sweep run lora_parameters.rank=8 learning_rate=abc"
    for spec in ("lora_parameters.rank=8,16 learning_rate=1e-5,abc", "lora_parameters.rnk=8,16"):
        result = run_cli("train", "--sweep", spec, "-w", ws)
        assert result.returncode == 2 and cases[spec] in result.stderr, (spec, result.stderr)
    # The same in a sweep: block: a config error naming it, no run written.
    path = demo_workspace / "lora_config.yaml"
    good = path.read_text()
    path.write_text(good + "\nsweep:\n  lora_parameters.rnk: [4, 8]\n")
    result = run_cli("train", "-w", ws)
    assert result.returncode == 2 and "sweep.lora_parameters.rnk" in result.stderr
    assert not (demo_workspace / "runs").exists() or not any(p.is_dir() for p in (demo_workspace / "runs").iterdir())
    # The config check knows the block: no "unknown to mlx-lm" for it, an error for a bad one.
    findings = review_config(path.read_text(), demo_workspace).findings
    assert [f.field for f in findings if f.level == "error"] == ["sweep"]
    assert not any(f.field == "sweep" and "unknown" in f.message for f in findings)
    ok = review_config(good + "\nsweep:\n  lora_parameters.rank: [4, 8]\n", demo_workspace).findings
    assert not any(f.field.startswith("sweep") for f in ok)


def test_queue_reorder_and_drop_from_the_cli(demo_workspace):
    ws = Workspace.open(demo_workspace)
    ws_arg = str(demo_workspace)
    path = demo_workspace / "lora_config.yaml"
    path.write_text(path.read_text() + "\nsweep:\n  lora_parameters.rank: [4, 8, 12]\n")
    a, b, c = runs.queue_runs(ws, start=False)  # the config's sweep: block, as `phi3tui train` reads it
    assert [runs.read_run_json(d)["sweep_point"] for d in (a, b, c)] == [{"lora_parameters.rank": r} for r in (4, 8, 12)]
    assert all(yaml.safe_load((d / "config.yaml").read_text()).get("sweep") is None for d in (a, b, c))

    down = run_cli("runs", "queue", "--down", a.name, "-w", ws_arg)
    assert down.returncode == 0 and f"run {a.name} is now #2" in down.stdout
    assert runs.queued_runs(ws) == [b, a, c]
    up = run_cli("runs", "queue", "--up", c.name, "-w", ws_arg)
    assert up.returncode == 0 and runs.queued_runs(ws) == [b, c, a]
    assert (ws.runs_dir / "queue.txt").read_text().split() == [b.name, c.name, a.name]
    dropped = run_cli("runs", "queue", "--drop", c.name, "-w", ws_arg)
    assert dropped.returncode == 0 and not c.exists() and runs.queued_runs(ws) == [b, a]
    rows = [line.split() for line in dropped.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r[:2] for r in rows] == [["1", b.name], ["2", a.name]] and rows[0][3] == "lora_parameters.rank=8"
    missing = run_cli("runs", "queue", "--drop", c.name, "-w", ws_arg)
    assert missing.returncode == 2 and "no run" in missing.stderr and runs.queued_runs(ws) == [b, a]
