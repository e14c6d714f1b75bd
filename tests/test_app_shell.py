"""The five-screen shell, driven by keys at 80×24 with Pilot."""

from __future__ import annotations

import subprocess
import sys

import pytest

from phi3tui.app import SCREENS, Phi3App
from phi3tui.core.workspace import Workspace
from tests.conftest import REPO

MODE_KEYS = [("1", "data"), ("2", "config"), ("3", "train"), ("4", "chat"), ("5", "export")]
FKEYS = [("f1", "data"), ("f2", "config"), ("f3", "train"), ("f4", "chat"), ("f5", "export")]


async def _visit(app, pilot, key, mode):
    # Leave any focused input so digit keys reach the app.
    app.set_focus(None)
    await pilot.press(key)
    await pilot.pause()
    assert app.current_mode == mode
    module, cls, title = SCREENS[mode]
    assert type(app.screen).__name__ == cls
    header = app.screen.query_one("WorkspaceHeader")
    assert title in str(header.render())
    assert app.workspace.name in str(header.render())


@pytest.mark.parametrize("keys", [MODE_KEYS, FKEYS], ids=["digits", "function-keys"])
async def test_every_mode_by_key_at_80x24(demo_workspace, keys):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for key, mode in reversed(keys):
            await _visit(app, pilot, key, mode)
        for key, mode in keys:
            await _visit(app, pilot, key, mode)


async def test_help_lists_keys_of_every_screen(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.set_focus(None)
        await pilot.press("question_mark")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        text = str(app.screen.query_one("#help-text").render())
        for _, _, title in SCREENS.values():
            assert title in text
        assert "Quit" in text and "F3" in text
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ != "HelpScreen"


async def test_palette_lists_mode_switches(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for _, _, title in SCREENS.values():
            assert f"Go to {title}" in titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert "CommandPalette" in type(app.screen).__name__
        await pilot.press(*"go to export")
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.current_mode == "export"


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_quit_key_exits(demo_workspace, key):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.set_focus(None)
        assert app.return_code is None  # nothing has asked the app to exit yet
        await pilot.press(key)
        await pilot.pause()
        # Checked inside run_test (which always stops the app on leaving): the key itself asked for a clean exit,
        # with no confirm dialog in the way.
        assert app.return_code == 0, f"{key} did not exit the app (screen {type(app.screen).__name__})"
        assert type(app.screen).__name__ != "ConfirmDialog"


def test_no_heavy_import_before_first_paint(demo_template):
    """mlx, mlx_lm and transformers are not imported when the first screen is painted."""
    code = f"""
import asyncio, sys
from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace

HEAVY = ("mlx", "mlx.core", "mlx_lm", "transformers")
first_paint = []

class Probe(Phi3App):
    def _display(self, screen, renderable):
        if renderable is not None and not first_paint and type(screen).__name__ == "DataScreen":
            first_paint.append(sorted(m for m in HEAVY if m in sys.modules))
        return super()._display(screen, renderable)

async def main():
    app = Probe(Workspace.open({str(demo_template)!r}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
    print("FIRST_PAINT", first_paint[0] if first_paint else "never")
asyncio.run(main())
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "FIRST_PAINT []" in proc.stdout, proc.stdout + proc.stderr
