"""Screens are styled once, as their widgets mount (issue 24's speed goals): a mode's new screen is not re-parsed or
restyled whole by Textual, yet it looks exactly as when the app starts on it, also after a theme change; the Config
form makes a key's "why refused" line only when one is needed; the Config screen's modules load after the first paint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace
from tests.test_config_screen import open_config, type_at_end

REPO = Path(__file__).resolve().parent.parent


async def settled_screenshot(pilot) -> str:
    """The screen as an SVG (text and colours) once its start-up work is over, cursor blink off."""
    app = pilot.app
    app.animation_level = "none"
    for _ in range(100):
        await pilot.pause(0.1)
        if not any(worker.is_running for worker in app.workers):
            break
    for widget in app.screen.query("Input"):
        widget.cursor_blink = False
    app.screen.set_focus(None)
    await pilot.pause(0.3)
    return app.export_screenshot()


async def config_reached_by_key(workspace: Path, theme_before_visit: str | None = None) -> tuple[str, int]:
    """The Config screen reached by pressing 2 on the Data screen (the theme changed just before, if given), and how
    many times the whole stylesheet was parsed again on the way."""
    app = Phi3App(Workspace.open(workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        reparses = []
        reparse = app.stylesheet.reparse
        app.stylesheet.reparse = lambda: (reparses.append(1), reparse())
        if theme_before_visit:
            app.theme = theme_before_visit
            await pilot.pause(0.2)
        await pilot.press("2")
        await open_config(pilot, app)
        return await settled_screenshot(pilot), len(reparses)


async def config_at_start(workspace: Path, theme: str | None = None) -> str:
    app = Phi3App(Workspace.open(workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        if theme:
            app.theme = theme
        await open_config(pilot, app)
        return await settled_screenshot(pilot)


async def test_a_new_mode_screen_is_styled_once_and_looks_as_at_start(demo_workspace, config_dir):
    # Textual would parse every CSS source again (twice) and restyle the screen whole on a mode's first visit.
    by_key, reparses = await config_reached_by_key(demo_workspace)
    assert reparses == 0
    assert by_key == await config_at_start(demo_workspace)


async def test_a_theme_change_before_the_first_visit_still_colours_the_new_screen(demo_workspace, config_dir):
    # The theme's refresh re-parses the stylesheet (once); the new screen then takes the new colours as it mounts.
    by_key, reparses = await config_reached_by_key(demo_workspace, theme_before_visit="phi3-light")
    assert reparses == 1
    assert by_key == await config_at_start(demo_workspace, theme="phi3-light")


async def test_a_screen_shown_again_after_a_theme_change_takes_the_new_colours(demo_workspace, config_dir):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        await pilot.press("2")
        await open_config(pilot, app)
        await pilot.press("1")
        await pilot.pause(0.2)
        app.theme = "phi3-light"
        await pilot.pause(0.2)
        await pilot.press("2")
        light = await settled_screenshot(pilot)
    assert light == await config_at_start(demo_workspace, theme="phi3-light")


async def test_a_refused_value_gets_its_line_under_its_key_when_first_needed(demo_workspace, config_dir):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_config(pilot, app)
        form = screen.query_one("#config-form")
        assert not form.query(".bad")  # none made with the form
        await type_at_end(pilot, screen, ("learning_rate",), "x")
        bad = form.query_one("#field-learning_rate-bad")
        row = form.query_one("#field-learning_rate-row")
        siblings = list(row.parent.children)
        assert siblings.index(bad) == siblings.index(row) + 1  # right under its key
        assert bad.display and "needs a number" in str(bad.render())
        await type_at_end(pilot, screen, ("learning_rate",), "backspace")
        assert not bad.display and len(form.query(".bad")) == 1  # hidden again, and reused


def test_the_config_screen_modules_load_after_the_first_paint(demo_template):
    code = f"""
import asyncio, sys
from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace

CONFIG = "phi3tui.screens.config.screen"
at_paint = []

class Probe(Phi3App):
    def _display(self, screen, renderable):
        if renderable is not None and not at_paint:
            at_paint.append(CONFIG in sys.modules)
        return super()._display(screen, renderable)

async def main():
    app = Probe(Workspace.open({str(demo_template)!r}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(1.0)
        print("CONFIG_LOADED", at_paint, CONFIG in sys.modules)
asyncio.run(main())
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "CONFIG_LOADED [False] True" in proc.stdout, proc.stdout + proc.stderr
