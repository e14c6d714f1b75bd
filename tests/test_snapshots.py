"""Snapshots of every screen at 80×24 and 120×40, in a dark and a light theme, on the demo workspace
with one finished run (trained here through the real runner, then frozen: fixed id, times and speeds).

Update after an intended change of looks:  pytest tests/test_snapshots.py --snapshot-update
and look at the report (snapshot_report.html) before committing tests/__snapshots__/.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from phi3tui.app import Phi3App
from phi3tui.core import runs
from phi3tui.core.run_folder import ADAPTERS_DIR, CONFIG_FILE, LOG_FILE, METRICS_FILE, RUN_FILE
from phi3tui.core.workspace import Workspace
from phi3tui.modes import app_modes

FROZEN_RUN_ID = "20260101-120000-demo"
T0 = 1767268800.0  # 2026-01-01 12:00 UTC: every time in the frozen run counts from here
TRAIN = dict(iters=20, steps_per_report=5, steps_per_eval=10, save_every=10, val_batches=2)
SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
THEMES = ("phi3-dark", "phi3-light")
SETTLE_S = 20.0
MIN_SETTLE_S = 1.0


def freeze_run(run_dir: Path, run_id: str) -> Path:
    """Make a finished run look the same in every session: fixed id, times, speeds; no host details.
    The losses are the run's own (the demo model trains deterministically from its seed)."""
    old_id = run_dir.name
    frozen = run_dir.with_name(run_id)
    run_dir.rename(frozen)
    for path in (frozen / CONFIG_FILE, frozen / ADAPTERS_DIR / "adapter_config.json"):
        path.write_text(path.read_text().replace(old_id, run_id))
    info = json.loads((frozen / RUN_FILE).read_text())
    duration = 60.0
    info.update(
        id=run_id, created=T0, launched=T0, pid_started=T0, started=T0 + 1, ended=T0 + 1 + duration,
        pid=None, runner_pid=None, host="demo", alarms=[], config_source="lora_config.yaml",
    )
    (frozen / RUN_FILE).write_text(json.dumps(info, indent=2))
    records = []
    for line in (frozen / METRICS_FILE).read_text().splitlines():
        record = json.loads(line)
        it = record.get("iteration", 0)
        record["time"] = T0 + 1 + duration * it / max(info["iters"], 1)
        for key, value in (("tokens_per_s", 1500.0), ("it_per_s", 6.0), ("peak_mem", 0.05), ("val_time", 1.0)):
            if key in record:
                record[key] = value
        records.append(json.dumps(record))
    (frozen / METRICS_FILE).write_text("\n".join(records) + "\n")
    # The log's speeds and paths change between sessions: keep the runner's own milestone lines.
    keep = re.compile(r"^phi3tui runner: (loading model|saved checkpoint|finished)")
    lines = [f"phi3tui runner: rank 0 of 1, run {run_id}"]
    lines += [l for l in (frozen / LOG_FILE).read_text().splitlines() if keep.match(l)]
    (frozen / LOG_FILE).write_text("\n".join(lines) + "\n")
    return frozen


@pytest.fixture(scope="session")
def snapshot_workspace(demo_template, tmp_path_factory) -> Path:
    """The demo workspace plus one finished 20-iteration run, frozen. Read-only by convention."""
    root = tmp_path_factory.mktemp("snapshots") / "ws"
    shutil.copytree(demo_template, root)
    ws = Workspace.open(root)
    run_dir = runs.start_run(ws, overrides=TRAIN)
    info = runs.wait_for_run(run_dir, timeout=300)
    assert info["state"] == "finished", info
    freeze_run(run_dir, FROZEN_RUN_ID)
    return root


async def settle(pilot) -> None:
    """Wait until the screen has finished its background work and its picture stops changing,
    with cursor blink and animations off."""
    app = pilot.app
    app.animation_level = "none"
    await pilot.pause(MIN_SETTLE_S)
    deadline = time.monotonic() + SETTLE_S
    before = None
    while time.monotonic() < deadline:
        for widget in app.screen.query("Input, TextArea"):
            widget.cursor_blink = False
        await pilot.pause(0.3)
        busy = any(worker.is_running for worker in app.workers)
        now = app.export_screenshot()
        if not busy and now == before:
            return
        before = now
    raise AssertionError(f"{type(app.screen).__name__} kept changing for {SETTLE_S} s")


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("mode", [row.id for row in app_modes()])
def test_screen_snapshot(mode, size, theme, snapshot_workspace, config_dir, snap_compare, monkeypatch):
    # The Config screen's memory estimate names this machine's memory: show the same everywhere.
    import psutil

    memory = psutil.virtual_memory()._replace(total=16 * 2**30)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory)
    (config_dir / "settings.yaml").write_text(f"theme: {theme}\nterminal_title: false\n")
    app = Phi3App(Workspace.open(snapshot_workspace), start_mode=mode)
    assert snap_compare(app, terminal_size=SIZES[size], run_before=settle)


def test_sixteen_colour_theme_snapshot(snapshot_workspace, config_dir, snap_compare):
    """The Train screen (plot, roles, footer) in the theme made of the terminal's own 16 colours."""
    (config_dir / "settings.yaml").write_text("theme: phi3-16\nterminal_title: false\n")
    app = Phi3App(Workspace.open(snapshot_workspace), start_mode="train")
    assert snap_compare(app, terminal_size=SIZES["80x24"], run_before=settle)
