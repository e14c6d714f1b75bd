"""Layouts that fit and follow the terminal at 80×24: batch compare shows both answers, the Export log wraps again
after a resize, and progress bars show only while something runs."""

from __future__ import annotations

import shutil

import pytest
from textual.widgets import DataTable, ProgressBar

from phi3tui.app import Phi3App
from phi3tui.core.chat import GenerationSettings
from phi3tui.core.workspace import Workspace
from tests.test_chat_screen import open_chat, wait_for


@pytest.fixture(scope="module")
def trained(trained_r1_template, tmp_path_factory):
    ws = tmp_path_factory.mktemp("layout") / "ws"
    shutil.copytree(trained_r1_template, ws)
    return ws


async def test_batch_compare_at_80_columns_shows_both_answers(trained, tmp_path):
    prompts = tmp_path / "two.txt"
    prompts.write_text("Is the sun a star?\nWhy is the sky blue?\n")
    app = Phi3App(Workspace.open(trained), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        screen.session.settings = GenerationSettings(max_tokens=12)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareScreen")
        modal = app.screen
        modal.query_one("#compare-file").value = str(prompts)
        await pilot.press("enter")
        await wait_for(pilot, lambda: not modal.running and len(modal.records) == 2)
        await pilot.press("home")
        await pilot.pause(0.2)
        table = modal.query_one(DataTable)
        # Every column, the right answer's last, fits inside the table: nothing to scroll sideways to.
        assert table.virtual_size.width <= table.scrollable_content_region.width
        right = modal.query_one("#compare-right")
        answer = modal.records[0]["right"]["answer"]
        assert right.region.right <= 80 and right.region.height >= 2 and right.region.bottom <= 24
        assert " ".join(answer.split())[:20] in " ".join(str(right.render()).split())
        assert str(right.render()).startswith("right (")


async def test_export_log_wraps_again_after_widening(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="export")
    path = "/Users/someone/projects/phi3tui-demo/exports/phi3-20261206-160815-f95f/phi3-20261206-160815-f95f-f16.gguf"
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        screen = app.screen
        screen.log_line(f"wrote {path}")
        await pilot.pause(0.2)
        log = screen.query_one("#export-log")
        narrow = [strip.text.rstrip() for strip in log.lines]
        assert len(narrow) > 1 and not any(path in line for line in narrow)  # split at ~55 columns
        await pilot.resize_terminal(200, 40)
        await pilot.pause(0.3)
        wide = [strip.text.rstrip() for strip in log.lines]
        assert wide == [f"wrote {path}"]  # one line again, the path whole
        assert screen.log_lines == [f"wrote {path}"]


async def test_progress_bars_show_only_while_something_runs(trained, demo_workspace):
    app = Phi3App(Workspace.open(trained), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await open_chat(app, pilot)
        chat.session.settings = GenerationSettings(max_tokens=4)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "EvaluateScreen")
        view = app.screen
        bar = view.query_one(ProgressBar)
        await pilot.pause(0.2)
        assert not bar.display and bar.region.height == 0  # no animated --% before anything runs
        view.query_one("#eval-limit").value = "1"
        await pilot.press("enter")
        assert view.running
        await pilot.pause(0)
        assert bar.display
        await wait_for(pilot, lambda: not view.running, timeout=120)
        await pilot.pause(0.2)
        assert not bar.display
    export_app = Phi3App(Workspace.open(demo_workspace), start_mode="export")
    async with export_app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        screen = export_app.screen
        assert not screen.busy and not screen.query_one("#export-progress").display
        screen.busy = True
        assert screen.query_one("#export-progress").display
