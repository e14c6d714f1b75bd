"""The five-screen shell, driven by keys at 80×24 with Pilot."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys

import pytest

from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace
from phi3tui.modes import app_modes, find
from tests.conftest import REPO

MODE_KEYS = [("1", "data"), ("2", "config"), ("3", "train"), ("4", "chat"), ("5", "export")]
FKEYS = [("f1", "data"), ("f2", "config"), ("f3", "train"), ("f4", "chat"), ("f5", "export")]


async def _visit(app, pilot, key, mode):
    # Leave any focused input so digit keys reach the app.
    app.set_focus(None)
    await pilot.press(key)
    await pilot.pause()
    assert app.current_mode == mode
    row = find(mode)
    assert type(app.screen).__name__ == row.cls
    header = app.screen.query_one("WorkspaceHeader")
    assert row.title in str(header.render())
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
        for row in app_modes():
            assert row.title in text
        assert "Quit" in text and "F3" in text
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ != "HelpScreen"


async def test_palette_lists_mode_switches(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for row in app_modes():
            assert f"Go to {row.title}" in titles
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
    """mlx, mlx_lm and transformers are not imported when the first screen is painted, nor phi3tui's own modules
    that only a check, an import or a run needs; each CSS source is parsed once before it, with the theme's
    variables (nothing is parsed with the default theme's and again for the user's)."""
    code = f"""
import asyncio, sys
from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace
from phi3tui.modes import app_modes, find

HEAVY = ("mlx", "mlx.core", "mlx_lm", "transformers", "phi3tui.core.data.checks", "phi3tui.core.data.importers",
         "phi3tui.core.data.render", "phi3tui.core.runs.launcher", "phi3tui.core.runs.compare")
from collections import Counter
from textual.css import stylesheet as css_stylesheet
first_paint = []
parsed = Counter()  # CSS source (as Textual keys its parse cache) -> times parsed
variables = []  # the app's variable for $primary each time a source was parsed
parse_css = css_stylesheet.parse

def counted_parse(scope, css, read_from, *args, **kwargs):
    parsed[read_from, kwargs["tie_breaker"], scope] += 1
    variables.append(kwargs["variable_tokens"]["primary"][0].value)
    return parse_css(scope, css, read_from, *args, **kwargs)

css_stylesheet.parse = counted_parse

class Probe(Phi3App):
    def _display(self, screen, renderable):
        if renderable is not None and not first_paint and type(screen).__name__ == "DataScreen":
            first_paint.append(sorted(m for m in HEAVY if m in sys.modules))
            first_paint.append(sorted(str(source) for source, times in parsed.items() if times > 1))
            first_paint.append(sorted(set(variables)) == [self.get_css_variables()["primary"]])
        return super()._display(screen, renderable)

async def main():
    app = Probe(Workspace.open({str(demo_template)!r}))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
    print("FIRST_PAINT", *first_paint if first_paint else ["never"])
asyncio.run(main())
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    # [] no heavy module; [] no CSS source parsed twice; True: all parsed with the theme's own $primary.
    assert "FIRST_PAINT [] [] True" in proc.stdout, proc.stdout + proc.stderr


class FirstFrames(Phi3App):
    """Records what Textual hands to the terminal: (kind of update, text on it, whether updates were held back)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frames: list[tuple[str, str, bool]] = []

    def _display(self, screen, renderable):
        if renderable is not None and type(screen).__name__ == "DataScreen":
            text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", renderable.render_segments(self.console))
            self.frames.append((type(renderable).__name__, text, bool(self._batch_count)))
        return super()._display(screen, renderable)


async def test_the_first_frame_is_the_whole_data_screen(demo_workspace):
    """Issue 16: the first frame drawn holds the header, the records and the footer with its final keys; no frame
    is rendered only to be dropped (Textual holds start-up updates back); garbage collection is on again after it."""
    gc.disable()  # as cli.main leaves it for the app
    try:
        app = FirstFrames(Workspace.open(demo_workspace))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert gc.isenabled()
            kind, text, held = app.frames[0]
            assert kind == "LayoutUpdate" and not held
            assert "phi3tui · Data" in text and "Records" in text and "train:1" in text
            # The footer as it stays: the record has the focus, so → and ← are the record keys (the tab bar's
            # focus would have shown j and k first).
            assert "→←Record" in text.replace(" ", "") and "Check" in text
            assert not [frame for frame in app.frames if frame[2]]
    finally:
        gc.unfreeze()  # first_paint froze this process's objects, as at a real start: give them back to the GC
        gc.enable()


async def test_the_footer_composes_again_only_when_its_keys_change(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        footer = app.screen.query_one("KeyFooter")
        keys = list(footer.query("FooterKey"))
        app.screen.query_one("#record-view").focus()  # the focus where it was: same keys, same widgets
        await pilot.pause()
        assert list(footer.query("FooterKey")) == keys
        await pilot.press("slash")  # the search box takes the focus; it types s and v, so they leave the footer
        await pilot.pause()
        shown = [k.key_display for k in footer.query("FooterKey")]
        assert "s" not in shown and "v" not in shown and "1" in shown
        await pilot.press("escape")
        await pilot.pause()
        assert [k.key_display for k in footer.query("FooterKey")] == [k.key_display for k in keys]


def test_commands_run_with_garbage_collection_on(tmp_path):
    """cli.main keeps GC off only until the app's first paint: a command (hours of training) has it on."""
    code = (
        "import gc, sys\nfrom phi3tui import cli\nfrom phi3tui.commands import settings\n"
        "seen = []\norig = cli.build_parser\n"
        "def build_parser(*a, **k):\n    parser, names = orig(*a, **k)\n"
        "    for action in parser._subparsers._group_actions:\n"
        "        for name, sub in action.choices.items():\n"
        "            func = sub.get_default('func')\n"
        "            if func: sub.set_defaults(func=lambda args, f=func: seen.append(gc.isenabled()) or f(args))\n"
        "    return parser, names\n"
        "cli.build_parser = build_parser\n"
        "cli.main(['keys'])\nprint('ENABLED', seen)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "PHI3TUI_CONFIG_DIR": str(tmp_path)})
    assert "ENABLED [True]" in proc.stdout, proc.stdout + proc.stderr
