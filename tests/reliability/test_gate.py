"""The pre-run gate (core/runs/gate.py): what phi3tui could have known refuses the start — from the CLI, the
Train screen, the queue, a sweep and a resume — naming split:line, the key, the variable or the file; a run that
still fails ends `failed` with one line and no traceback outside log.txt; two starts at once give one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from phi3tui.core import runs
from phi3tui.core.workspace import Workspace
from tests.conftest import REPO, run_cli
from tests.reliability.conftest import refuse_cli, screen_text, snapshot, assert_unchanged

CUT_LINE = 201  # the line of data/train.jsonl cut short (as a full disk or a killed copy leaves it)


def cut_train_line(workspace: Path, line: int = CUT_LINE) -> None:
    path = workspace / "data" / "train.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = lines[line - 1][:40]  # inside the text: "Invalid control character" to json.loads
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def dpo_workspace(workspace: Path, drop_rejected_at: int | None = 7) -> None:
    """The workspace trains DPO on the demo's pairs (in data-dpo/); valid.jsonl's line 7 lacks `rejected`."""
    from phi3tui.core.demo import write_demo_preference_data

    folder = workspace / "data-dpo"
    write_demo_preference_data(folder)
    if drop_rejected_at:
        valid = folder / "valid.jsonl"
        lines = valid.read_text(encoding="utf-8").splitlines()
        record = json.loads(lines[drop_rejected_at - 1])
        del record["rejected"]
        lines[drop_rejected_at - 1] = json.dumps(record)
        valid.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = workspace / "lora_config.yaml"
    text = config.read_text(encoding="utf-8").replace('data: "data"', 'data: "data-dpo"')
    config.write_text(text + "train_mode: dpo\n", encoding="utf-8")


def add_config(workspace: Path, text: str) -> None:
    config = workspace / "lora_config.yaml"
    config.write_text(config.read_text(encoding="utf-8") + text, encoding="utf-8")


def no_runs(workspace: Path) -> bool:
    folder = workspace / "runs"
    return not folder.exists() or not any(folder.iterdir())


# -- 1. a cut-short data line: refused from every start, naming train:LINE --------------------------------------
def test_cut_short_line_refuses_train_config_check_and_sweep(bad_workspace):
    cut_train_line(bad_workspace)
    where = f"train:{CUT_LINE}"
    refuse_cli(bad_workspace, "train", "-w", str(bad_workspace), expected=[where, "invalid JSON", "fix the line"])
    assert no_runs(bad_workspace)
    refuse_cli(bad_workspace, "config", "check", str(bad_workspace / "lora_config.yaml"), expected=[where], codes=(1,))
    refuse_cli(bad_workspace, "train", "-w", str(bad_workspace), "--sweep", "learning_rate=1e-4,1e-3",
               expected=[where])
    refuse_cli(bad_workspace, "train", "-w", str(bad_workspace), "--queue", expected=[where])
    assert no_runs(bad_workspace)


def test_cut_short_line_fails_a_queued_run_as_it_starts_and_refuses_its_resume(bad_workspace):
    """Queued while the data was good, cut short before its turn: the queue ends it failed with the reason (it
    never starts), and `runs resume` is refused by the same gate."""
    ws = Workspace.open(bad_workspace)
    (run_dir,) = runs.queue_runs(ws, start=False)
    cut_train_line(bad_workspace)
    assert runs.start_next(ws) is None
    info = runs.read_run_json(run_dir)
    assert info["state"] == "failed" and f"train:{CUT_LINE}" in info["reason"], info
    assert "\n" not in info["reason"] and not info.get("pid"), info
    refusal = refuse_cli(bad_workspace, "runs", "resume", run_dir.name, "-w", str(bad_workspace),
                         expected=[f"train:{CUT_LINE}"])
    assert "resume" in refusal.output


async def test_cut_short_line_refuses_new_run_on_the_train_screen(bad_workspace):
    from phi3tui.app import Phi3App

    cut_train_line(bad_workspace)
    before = snapshot(bad_workspace)
    app = Phi3App(Workspace.open(bad_workspace), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("n")
        shown = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and f"train:{CUT_LINE}" not in shown:
            await pilot.pause(0.3)
            shown = "\n".join(str(n.message) for n in app._notifications) + screen_text(app)
        assert f"train:{CUT_LINE}" in shown, shown[-2000:]
        assert "Traceback" not in shown
        assert app.is_running
    assert_unchanged(before, snapshot(bad_workspace))


# -- 2. DPO data against train_mode --------------------------------------------------------------------------------
def test_dpo_pair_without_rejected_is_refused_with_split_and_line(bad_workspace):
    dpo_workspace(bad_workspace)
    refuse_cli(bad_workspace, "train", "-w", str(bad_workspace), expected=["valid:7", "'rejected'"])
    refuse_cli(bad_workspace, "config", "check", str(bad_workspace / "lora_config.yaml"), expected=["valid:7"],
               codes=(1,))


# -- 3. an empty probes file ----------------------------------------------------------------------------------------
def test_empty_probe_file_is_refused(bad_workspace):
    (bad_workspace / "probes.txt").write_text("")
    add_config(bad_workspace, "probe_prompts: probes.txt\n")
    refuse_cli(bad_workspace, "train", "-w", str(bad_workspace), expected=["probe_prompts", "probes.txt", "no prompts"])
    refuse_cli(bad_workspace, "config", "check", str(bad_workspace / "lora_config.yaml"),
               expected=["probe_prompts", "no prompts"], codes=(1,))


# -- 4. an environment variable phi3tui reads ------------------------------------------------------------------------
def test_memory_limit_variable_not_a_number_is_refused(bad_workspace):
    env = {"PHI3TUI_MEMORY_LIMIT_GB": "8GB"}
    refuse_cli(bad_workspace, "train", "-w", str(bad_workspace), env=env,
               expected=["PHI3TUI_MEMORY_LIMIT_GB", "'8GB'", "e.g. 16"])
    refuse_cli(bad_workspace, "config", "check", str(bad_workspace / "lora_config.yaml"), env=env,
               expected=["PHI3TUI_MEMORY_LIMIT_GB"], codes=(1,))


def test_memory_limit_variable_set_after_the_gate_fails_the_run_in_one_line(bad_workspace, monkeypatch):
    """The runner's backstop: the variable set between the gate and the runner (a queued run started later)
    ends the run failed with its reason, not "ended without recording a result"."""
    from phi3tui.core.runs.launcher import create_run, launch, wait_for_run

    ws = Workspace.open(bad_workspace)
    run_dir = create_run(ws)
    monkeypatch.setenv("PHI3TUI_MEMORY_LIMIT_GB", "8GB")
    launch(run_dir)
    info = wait_for_run(run_dir, timeout=120)
    assert info["state"] == "failed", info
    assert "PHI3TUI_MEMORY_LIMIT_GB" in info["reason"] and "\n" not in info["reason"], info
    assert "without recording" not in info["reason"]


# -- 5. a hostfile with a name where an address goes -----------------------------------------------------------------
def test_hostfile_with_a_name_under_ips_names_the_file_and_entry(bad_workspace, tmp_path):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps({"hosts": [{"ssh": "localhost", "ips": ["localhost"]}]}))
    refuse_cli(bad_workspace, "train", "-w", str(bad_workspace), "--hostfile", str(hostfile),
               expected=[str(hostfile), "host 1", "'localhost' is not an IP address"])
    assert no_runs(bad_workspace)


# -- 6. two starts at once ---------------------------------------------------------------------------------------------
def test_two_simultaneous_train_commands_start_one_run(bad_workspace):
    """Two `phi3tui train` typed at the same moment: one starts, the other is refused (the check that a run is
    live and the start hold one lock)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "phi3tui", "train", "--iters", "5000", "-w", str(bad_workspace)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
        started = [r for r in results if r[0] == 0]
        refused = [r for r in results if r[0] != 0]
        assert len(started) == 1 and len(refused) == 1, results
        assert "is running on this machine" in refused[0][2] and "Traceback" not in refused[0][2], refused
        made = runs.run_dirs(Workspace.open(bad_workspace))
        assert len(made) == 1, made
    finally:
        for run_dir in runs.run_dirs(Workspace.open(bad_workspace)):
            try:
                runs.kill_run(run_dir)
            except runs.RunError:
                pass


# -- a run that still fails says why in one line -----------------------------------------------------------------------
def test_data_broken_after_the_gate_fails_the_run_naming_split_and_line(bad_workspace):
    """mlx-lm's own JSONDecodeError (no file, the wrong line) is mapped back to train:LINE; the traceback stays in
    log.txt; `runs status` and `runs attach` show the one-line reason and no traceback."""
    from phi3tui.core.runs.launcher import create_run, launch, wait_for_run

    ws = Workspace.open(bad_workspace)
    run_dir = create_run(ws)
    cut_train_line(bad_workspace)
    launch(run_dir)
    info = wait_for_run(run_dir, timeout=120)
    assert info["state"] == "failed", info
    assert f"train:{CUT_LINE}" in info["reason"] and "\n" not in info["reason"], info["reason"]
    assert "Traceback" in (run_dir / "log.txt").read_text(errors="replace")
    assert not any("Traceback" in line or line.startswith("  File ") for line in info.get("log_tail") or [])
    for args in (("runs", "status", run_dir.name), ("runs", "attach", run_dir.name)):
        result = run_cli(*args, "-w", str(bad_workspace))
        output = result.stdout + result.stderr
        assert "Traceback" not in output and f"train:{CUT_LINE}" in output, output[-3000:]


# -- every command on the broken workspaces: never a traceback ---------------------------------------------------------
def _broken_workspaces(template: Path, root: Path) -> list[tuple[str, Path, dict]]:
    import shutil

    made = []
    for name in ("data", "yaml", "dpo"):
        target = root / name
        shutil.copytree(template, target, ignore=shutil.ignore_patterns("runs", "exports"))
        made.append((name, target))
    data, yaml_ws, dpo = (p for _, p in made)
    cut_train_line(data)
    (data / "probes.txt").write_text("")
    add_config(data, "probe_prompts: probes.txt\nreport_to: nosuch\n")
    cut = data / "runs" / "20260101-000000-dead"
    cut.mkdir(parents=True)
    (cut / "run.json").write_text('{"id": "20260101-000000-dead", "state": "runn')
    (data / "hosts.json").write_text(json.dumps({"hosts": [{"ssh": "localhost", "ips": ["localhost"]}]}))
    config = yaml_ws / "lora_config.yaml"
    config.write_text(config.read_text().replace("iters: 100", "iters: [1, 2"))
    dpo_workspace(dpo)
    return [("data", data, {"PHI3TUI_MEMORY_LIMIT_GB": "8GB"}), ("yaml", yaml_ws, {}), ("dpo", dpo, {})]


def _every_command(ws: Path) -> list[list[str]]:
    """One command line per subcommand of `phi3tui --help`; demo and serve aside (they open the app, and
    `demo --headless` is the whole pipeline)."""
    import argparse

    from phi3tui.cli import build_parser

    def subs(parser):
        return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})

    w = str(ws)
    args_for = {
        "data check": [str(ws / "data")], "data import": [str(ws / "data" / "train.jsonl"), str(ws / "imp")],
        "config check": [str(ws / "lora_config.yaml")], "config migrate": [str(ws / "lora_config.yaml")],
        "train": ["-w", w, "--hostfile", str(ws / "hosts.json")] if (ws / "hosts.json").exists() else ["-w", w],
        "chat compare": [w, "--prompt", "hi"], "eval": [w], "locate": ["settings"], "runs diff": ["latest", "latest", "-w", w],
        "runs probes": ["latest", "-w", w],
    }
    lines = []
    for name, parser in subs(build_parser()[0]).items():
        if name in ("serve", "demo"):
            continue
        inner = subs(parser)
        for action in inner or [None]:
            key = f"{name} {action}" if action else name
            default = (["latest", "-w", w] if name == "runs" and action not in ("list", "queue", "resume-queue")
                       else ["-w", w] if name in ("runs", "export") else [])
            lines.append([*key.split(), *args_for.get(key, default)])
    return lines


def test_no_command_prints_a_traceback_on_a_broken_workspace(demo_template, tmp_path):
    cases = []
    for name, ws, env in _broken_workspaces(demo_template, tmp_path):
        cases += [(name, cmd, env) for cmd in _every_command(ws)]

    def one(case):
        name, cmd, env = case
        try:
            result = run_cli(*cmd, env=env, timeout=300)
        except subprocess.TimeoutExpired:
            return name, cmd, None, "timed out"
        return name, cmd, result.returncode, result.stdout + result.stderr

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(one, cases))
    bad = [f"{name}: phi3tui {' '.join(cmd)} (exit {code}):\n{out[-1500:]}" for name, cmd, code, out in results
           if code is None or "Traceback" in out]
    assert not bad, "\n\n".join(bad)
    assert len(results) >= 30


# -- the data check is read once per version of the files ----------------------------------------------------------------
def test_data_check_is_cached_by_size_and_mtime_in_the_user_cache(bad_workspace, tmp_path, monkeypatch):
    """A second gate on unchanged files (same size, mtime, inode) does not read them again — also in a new
    process, through the cache file — and a changed mtime reads them again."""
    from phi3tui.core.runs import gate

    monkeypatch.setenv("PHI3TUI_CACHE_DIR", str(tmp_path / "cache"))
    values = {"data": "data"}
    train = bad_workspace / "data" / "train.jsonl"
    assert gate.data_errors(values, bad_workspace) == []
    assert (tmp_path / "cache" / gate.DATA_CACHE_FILE).is_file()
    # The same bytes count and times, a broken line: a re-read would find it, the cached verdict does not.
    stat = train.stat()
    raw = bytearray(train.read_bytes())
    raw[10:12] = b"\x00\x00"
    with open(train, "r+b") as handle:  # in place: the inode stays
        handle.write(raw)
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert gate.data_errors(values, bad_workspace) == []
    gate._DATA_CACHE.clear()  # as a new process: only the cache file is left
    assert gate.data_errors(values, bad_workspace) == []
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    found = gate.data_errors(values, bad_workspace)
    assert [f.field for f in found] == ["train:1"], found
