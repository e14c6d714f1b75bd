"""The modes table (phi3tui/modes.py) drives the app: every row is a `--screen` choice, has a key, is listed in
`?` help and in the command palette; a new row (a toy screen defined here) is reachable with no other edit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from textual.binding import Binding
from textual.widgets import Static

from phi3tui import modes
from phi3tui.app import Phi3App, opener_binding
from phi3tui.cli import plan
from phi3tui.core.workspace import Workspace
from phi3tui.modes import MODES, Mode, app_modes, find
from phi3tui.screens.base import ModeScreen
from tests.conftest import REPO, run_cli


class ToyScreen(ModeScreen):
    """The smallest screen a new row of the table could name."""

    TITLE = "Toy"
    BINDINGS = [Binding("t", "toot", "Toot the toy horn", id="toy.toot")]

    def compose_body(self):
        yield Static("a toy screen", id="toy-body")

    def action_toot(self) -> None:
        self.query_one("#toy-body", Static).update("toot")


TOY = Mode("toy", "Toy", "tests.test_modes", "ToyScreen", key="6")


async def wait_for(pilot, condition, what: str, timeout: float = 30.0) -> None:
    waited = 0.0
    while not condition():
        await pilot.pause(0.05)
        waited += 0.05
        assert waited < timeout, f"timed out waiting for {what}"


def help_text(app) -> str:
    return str(app.screen.query_one("#help-text").render())


def test_the_table_is_well_formed():
    ids = [row.id for row in MODES]
    assert len(set(ids)) == len(ids)
    keys = [row.key for row in app_modes()]
    assert keys == [str(n) for n in range(1, len(keys) + 1)]  # the footer's "12345 Screens", in order
    for row in MODES:
        if row.is_view:
            assert not find(row.over).is_view and opener_binding(row) is not None, row


@pytest.mark.parametrize("row", MODES, ids=lambda row: row.id)
async def test_every_row_opens_by_screen_option_key_help_and_palette(demo_workspace, row):
    _, args, workspace = plan(["--screen", row.id, str(demo_workspace)])
    assert (args.screen, workspace) == (row.id, str(demo_workspace))
    app = Phi3App(Workspace.open(workspace), start_mode=args.screen)
    other = next(m for m in app_modes() if m.id != (row.over or row.id))
    async with app.run_test(size=(80, 24)) as pilot:
        # --screen ROW opens it (a view over its mode's screen).
        await wait_for(pilot, lambda: type(app.screen).__name__ == row.cls, f"--screen {row.id}")
        if row.is_view:
            assert app.current_mode == row.over
            await pilot.press("escape")
            await wait_for(pilot, lambda: type(app.screen).__name__ == find(row.over).cls, "the view to close")

        # Its key reaches it from another mode: the plain key and the F-key, or the key of the screen it opens over.
        if row.is_view:
            app.switch_mode(row.over)
            await wait_for(pilot, lambda: app.current_mode == row.over, row.over)
            await pilot.press(opener_binding(row).key.split(",")[0])
            await wait_for(pilot, lambda: type(app.screen).__name__ == row.cls, f"{row.id} by its key")
            await pilot.press("escape")
            await wait_for(pilot, lambda: type(app.screen).__name__ != row.cls, "the view to close")
        else:
            for key in row.keys.split(","):
                app.switch_mode(other.id)
                await wait_for(pilot, lambda: app.current_mode == other.id, other.id)
                app.set_focus(None)
                await pilot.press(key)
                await wait_for(pilot, lambda: type(app.screen).__name__ == row.cls, f"{row.id} by {key}")

        # `?` lists it: a section with its keys, and for a mode its key among the keys that work everywhere.
        app.switch_mode(other.id)
        await wait_for(pilot, lambda: app.current_mode == other.id, other.id)
        app.set_focus(None)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HelpScreen", "help")
        sections = dict(app.key_sections())
        (title,) = [t for t in sections if t == row.title or t.startswith(f"{row.title} (")]
        assert title in help_text(app)
        if row.is_view:
            assert title == f"{row.title} ({find(row.over).title} ^o e)"  # where it opens from, and by which keys
        else:
            assert (f"{row.key} F{row.key}", row.title) in sections["Everywhere"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == other.cls, "help to close")

        # The palette lists it, and its command opens it.
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert f"Go to {row.title}" in titles
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: "CommandPalette" in type(app.screen).__name__, "the palette")
        await pilot.press(*f"go to {row.title.lower()}")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == row.cls, f"{row.id} from the palette")


def test_screen_option_takes_every_row_in_a_real_process(tmp_path):
    # eval was missing from the hand-kept choices: "invalid choice".
    done = run_cli("--screen", "eval", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert "invalid choice" not in done.stderr and "missing does not exist" in done.stderr


# The toy row, added to the table before the app is imported (as a new line in modes.py would be): the app's
# keys are made from the table when phi3tui.app is imported, so this runs in a process of its own.
TOY_APP = f"""
import asyncio, json, sys
from phi3tui import modes
from phi3tui.modes import Mode
modes.MODES = modes.MODES + ({TOY!r},)
from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace

async def settle(pilot, condition):
    for _ in range(200):
        if condition():
            return True
        await pilot.pause(0.05)
    return False

async def main(ws):
    seen = {{}}
    app = Phi3App(Workspace.open(ws))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: type(app.screen).__name__ == "DataScreen")
        for key in ("6", "f1", "f6"):
            app.set_focus(None)
            await pilot.press(key)
            await settle(pilot, lambda: type(app.screen).__name__ == ("DataScreen" if key == "f1" else "ToyScreen"))
            seen[key] = type(app.screen).__name__
        await pilot.press("t")
        await pilot.pause()
        seen["toot"] = str(app.screen.query_one("#toy-body").render())
        seen["footer"] = [k.key_display for k in app.screen.query("FooterKey")]
        await pilot.press("question_mark")
        await settle(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        seen["help"] = str(app.screen.query_one("#help-text").render())
        await pilot.press("escape")
        await settle(pilot, lambda: type(app.screen).__name__ == "ToyScreen")
        seen["palette"] = [c.title for c in app.get_system_commands(app.screen)]
    print("SEEN", json.dumps(seen))

asyncio.run(main(sys.argv[1]))
"""


def test_a_new_row_is_reachable_by_its_key_and_listed_in_help(demo_workspace, monkeypatch):
    monkeypatch.setattr(modes, "MODES", MODES + (TOY,))
    _, args, _ = plan(["--screen", "toy", "WS"])
    assert args.screen == "toy"
    assert modes.key_rule().startswith("1–6 and ? work") and "F1–F6 switch" in modes.key_rule()

    proc = subprocess.run([sys.executable, "-c", TOY_APP, str(demo_workspace)], capture_output=True, text=True,
                          cwd=REPO, timeout=180)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SEEN ")]
    assert lines, proc.stdout + proc.stderr
    seen = json.loads(lines[0][len("SEEN "):])
    assert (seen["6"], seen["f1"], seen["f6"]) == ("ToyScreen", "DataScreen", "ToyScreen")
    assert seen["toot"] == "toot"  # the toy screen's own key works there
    assert "6" in seen["footer"]
    assert "Toy" in seen["help"] and "Toot the toy horn" in seen["help"] and "6 F6" in seen["help"]
    assert "1–6 and ? work" in seen["help"]
    assert "Go to Toy" in seen["palette"] and "Toy: Toot the toy horn" in seen["palette"]
