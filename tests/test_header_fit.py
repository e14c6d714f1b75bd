"""A header that fits (issue 24): at 80 columns the live run's id (short form), state and progress show on
every screen, whatever the workspace and model are called; the Train stats line keeps lr, tok/s, it/s,
memory and elapsed in 80 columns when keeping the machine awake was refused."""

from __future__ import annotations

import shutil
import sys

from phi3tui.app import Phi3App
from phi3tui.core import runs
from phi3tui.core.runs import short_run_id
from phi3tui.core.workspace import Workspace
from phi3tui.modes import app_modes
from phi3tui.widgets.workspace_header import fit_header
from tests.test_train_screen import wait_for

RUN_ID = "20261206-160815-f95f"


def test_short_run_id():
    assert short_run_id(RUN_ID) == "160815-f95f"
    assert short_run_id("sweep-a") == "sweep-a"


def test_the_run_keeps_its_place_as_the_rest_shortens():
    runs_text = [f"run {RUN_ID} running 20/200 val 6.351 ⚠ stalled (+1 more)", "run 160815-f95f running 20/200 val 6.351 +1",
                 "run 160815-f95f running 20/200 +1"]
    wide = fit_header("Chat", "ws", "model", [], runs_text, 200)
    assert wide == f"phi3tui · Chat │ workspace ws │ model model │ {runs_text[0]}"
    for width in (78, 60, 40):
        text = fit_header("Configuration", "a-very-long-workspace-name-indeed", "microsoft/Phi-3-mini-4k-instruct",
                          ["READ-ONLY"], runs_text, width)
        assert len(text) <= width and "160815-f95f running 20/200" in text and "READ-ONLY" in text, (width, text)
    assert fit_header("Chat", "ws", "model", [], [], 78) == "phi3tui · Chat │ workspace ws │ model model"


def refusing_keep_awake(folder) -> str:
    """A PATH whose keep-awake programs (systemd-inhibit, caffeinate) refuse at once, as systemd-inhibit does
    over SSH without a session bus; the rest of PATH as it is."""
    folder.mkdir()
    for name in ("systemd-inhibit", "caffeinate"):
        program = folder / name
        program.write_text("#!/bin/sh\necho 'Failed to connect to bus: No such file or directory' >&2\nexit 1\n")
        program.chmod(0o755)
    import os

    return f"{folder}{os.pathsep}{os.environ['PATH']}"


async def test_80_columns_show_the_live_run_on_every_screen(demo_template, tmp_path, monkeypatch):
    root = tmp_path / "my-phi3-fine-tuning-workspace"
    shutil.copytree(demo_template, root)
    if sys.platform.startswith("linux") or sys.platform == "darwin":
        monkeypatch.setenv("PATH", refusing_keep_awake(tmp_path / "bin"))
    ws = Workspace.open(root)
    app = Phi3App(ws, start_mode="data")
    async with app.run_test(size=(80, 24)) as pilot:
        run_dir = runs.start_run(ws, overrides=dict(iters=100000, steps_per_report=2, steps_per_eval=1000))
        try:
            await wait_for(pilot, lambda: app.run_poll.live and app.run_poll.live[0].iteration >= 2, timeout=120)
            short = short_run_id(run_dir.name)
            for row in app_modes():
                await pilot.press(f"f{row.key}")
                await wait_for(pilot, lambda: app.current_mode == row.id and app.screen.is_current)
                await pilot.pause(0.6)  # a poll after the switch
                header = app.screen.query_one("WorkspaceHeader")
                text = str(header.render())
                assert len(text) <= header.content_size.width, text
                assert f"{short} running " in text and "/100000" in text, (row.id, text)
            await pilot.press("f3")
            screen = app.screen
            stats = screen.query_one("#run-stats")
            await wait_for(pilot, lambda: "tok/s" in str(stats.render()) and "not kept awake" in str(stats.render()))
            text = str(stats.render())
            assert "refused" in runs.run_info(run_dir)["awake"]
            # Everything up to elapsed is inside the line's width (the rest may be cut by its ellipsis).
            assert text.index("elapsed") + len("elapsed") <= stats.content_size.width, text
            for part in ("lr ", "tok/s", "it/s", "peak ", "GB"):
                assert part in text
        finally:
            runs.kill_run(run_dir)
