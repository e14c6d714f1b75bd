"""Keys that always work (issue 12, defects 4 and 7): `--screen NAME WS`, the screen keys and `?` from
inside text boxes, footers that fit 80 columns, and the Mac realities (tmux's ctrl+b, Fn for F-keys,
where ctrl+y's copy went)."""

from __future__ import annotations

import os
import stat
import sys

import pytest
from textual.widgets import Footer

from phi3tui.app import Phi3App
from phi3tui.cli import plan
from phi3tui.core.terminal import OSC52_NOTE, copy_with_program, local_clipboard_program
from phi3tui.core.workspace import Workspace
from phi3tui.modes import MODES, app_modes, find
from phi3tui.appearance import binding_table
from tests.conftest import run_cli


# -- defect 4: --screen NAME WORKSPACE -----------------------------------------------------
@pytest.mark.parametrize("screen", [row.id for row in MODES])
def test_screen_option_takes_a_screen_name_that_is_also_a_command(screen):
    _, args, workspace = plan(["--screen", screen, "WS"])
    assert (workspace, args.screen) == ("WS", screen)
    _, args, workspace = plan([f"--screen={screen}", "WS"])
    assert (workspace, args.screen) == ("WS", screen)


def test_commands_still_parse_as_commands():
    _, args, workspace = plan(["runs", "list"])
    assert workspace is None and args.func.__module__ == "phi3tui.commands.runs"
    _, args, workspace = plan(["train", "-w", "WS"])
    assert workspace is None and args.func.__module__ == "phi3tui.commands.train"


def test_screen_option_in_a_real_process(tmp_path):
    # Before the fix argparse took `train` for the command and refused WS: "invalid choice".
    done = run_cli("--screen", "train", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert "invalid choice" not in done.stderr
    assert "missing does not exist" in done.stderr


async def test_screen_option_opens_the_app_on_that_screen(demo_workspace):
    _, args, workspace = plan(["--screen", "train", str(demo_workspace)])
    app = Phi3App(Workspace.open(workspace), start_mode=args.screen)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        assert app.current_mode == "train" and type(app.screen).__name__ == "TrainScreen"


# -- defect 7: screen keys and ? from inside text boxes ---------------------------------------
async def _wait_screen(pilot, app, name: str) -> None:
    for _ in range(100):
        if type(app.screen).__name__ == name:
            return
        await pilot.pause(0.05)
    raise AssertionError(f"{name} never showed; the screen is {type(app.screen).__name__}")


async def _help_opens_and_closes(pilot, app) -> None:
    await pilot.press("question_mark")
    await _wait_screen(pilot, app, "HelpScreen")
    await pilot.press("escape")
    await pilot.pause()


async def test_chat_prompt_passes_screen_keys_and_help_until_you_type(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        await _wait_screen(pilot, app, "ChatScreen")
        await pilot.pause(0.3)
        box = app.screen.query_one("#chat-input")
        assert app.focused is box and box.value == ""
        await _help_opens_and_closes(pilot, app)
        assert app.focused is box
        await pilot.press("3")
        await _wait_screen(pilot, app, "TrainScreen")
        await pilot.press("4")
        await _wait_screen(pilot, app, "ChatScreen")
        assert app.focused is box
        # Once the box holds text, 1–5 and ? are typed; F-keys still switch.
        await pilot.press("a", "1", "question_mark", "5")
        await pilot.pause()
        assert box.value == "a1?5" and app.current_mode == "chat"
        await pilot.press("f2")
        await _wait_screen(pilot, app, "ConfigScreen")


async def test_data_search_box_passes_screen_keys_and_help(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await _wait_screen(pilot, app, "DataScreen")
        screen = app.screen
        await pilot.press("slash")
        await pilot.pause()
        box = screen.query_one("#data-prompt")
        assert app.focused is box
        await _help_opens_and_closes(pilot, app)
        assert app.focused is box
        await pilot.press("5")
        await _wait_screen(pilot, app, "ExportScreen")
        await pilot.press("1")
        await _wait_screen(pilot, app, "DataScreen")
        assert app.focused is box  # the search box is still open
        # The go-to box is a number box: its digits are typed, never screen switches.
        await pilot.press("escape", "g", "2", "3")
        await pilot.pause()
        assert app.current_mode == "data" and screen.query_one("#data-prompt").value == "23"
        await pilot.press("f3")
        await _wait_screen(pilot, app, "TrainScreen")


async def test_config_number_box_keeps_digits_and_passes_help(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        await _wait_screen(pilot, app, "ConfigScreen")
        screen = app.screen
        for _ in range(150):
            if getattr(screen, "review", None) is not None and not screen.query("#loading"):
                break
            await pilot.pause(0.1)
        field = screen.query_one("#config-form").widget_for(("iters",))
        field.focus()
        field.value = ""
        await pilot.pause()
        await pilot.press("4")  # typed: a Config number box never jumps screens
        await pilot.pause()
        assert field.value == "4" and app.current_mode == "config"
        await _help_opens_and_closes(pilot, app)
        assert app.focused is field
        await pilot.press("ctrl+t")  # Presets (F7) has a key a Mac reaches without Fn
        await _wait_screen(pilot, app, "Picker")
        await pilot.press("escape")
        await _wait_screen(pilot, app, "ConfigScreen")
        field.focus()
        await pilot.press("f4")
        await _wait_screen(pilot, app, "ChatScreen")


async def test_screen_keys_stay_out_of_dialogs(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await _wait_screen(pilot, app, "DataScreen")
        app.set_focus(None)
        await pilot.press("question_mark")
        await _wait_screen(pilot, app, "HelpScreen")
        text = str(app.screen.query_one("#help-text").render())
        assert "1 F1" in text and "a text box that holds text" in text
        await pilot.press("3")  # a dialog keeps its own keys: no screen switch under it
        await pilot.pause()
        assert app.current_mode == "data" and type(app.screen).__name__ == "HelpScreen"
        await pilot.press("question_mark")  # ? closes help, it does not open a second one
        await pilot.pause()
        assert type(app.screen).__name__ == "DataScreen"


# -- footers fit 80 columns ------------------------------------------------------------------
@pytest.mark.parametrize("mode", [row.id for row in app_modes()])
async def test_footer_fits_80_columns(demo_workspace, mode):
    app = Phi3App(Workspace.open(demo_workspace), start_mode=mode)
    async with app.run_test(size=(80, 24)) as pilot:
        await _wait_screen(pilot, app, find(mode).cls)
        await pilot.pause(1.0)
        footer = app.screen.query_one(Footer)
        items = [w for w in footer.walk_children() if type(w).__name__ in ("FooterKey", "FooterLabel")]
        palette = [w for w in items if w.has_class("-command-palette")]
        shown = [w for w in items if w not in palette]
        assert palette and len(shown) >= 4
        # Nothing is scrolled out of sight or hidden under the palette key docked on the right.
        assert footer.virtual_size.width <= 80
        assert max(w.region.right for w in shown) <= palette[0].region.x
        # A group's label ("12345 Screens") does not run into the next key.
        for before, after in zip(shown, shown[1:]):
            if type(before).__name__ == "FooterLabel":
                assert before.region.right < after.region.x
        described = [w.description for w in shown if getattr(w, "description", "")]
        assert "Help" in described  # the last binding shown is whole
        # With nothing focused (a click elsewhere, a dialog just closed) the screen's own keys show too: still 80.
        app.set_focus(None)
        await pilot.pause(0.3)
        assert app.screen.query_one(Footer).virtual_size.width <= 80, mode


# -- Mac realities -----------------------------------------------------------------------------
def _keys(keys: str) -> list[str]:
    return [k.strip() for k in keys.split(",")]


def test_no_binding_uses_tmux_prefix_key():
    # Inside tmux, ctrl+b never reaches the app.
    rows = binding_table(Phi3App)
    assert not [row for row in rows if "ctrl+b" in _keys(row[1])]
    (compare,) = [row for row in rows if row[0] == "chat.compare"]
    assert "ctrl+g" in _keys(compare[1]) and "b" in _keys(compare[1])


def test_every_function_key_action_has_a_plain_key():
    # F6–F9 need Fn on a Mac keyboard: each action bound to an F-key needs another key too.
    def is_fkey(key: str) -> bool:
        return key.startswith("f") and key[1:].isdigit()

    rows = binding_table(Phi3App)
    with_fkeys = [row for row in rows if any(is_fkey(k) for k in _keys(row[1]))]
    assert len(with_fkeys) >= 9  # F1–F5 screens, F6–F9 Config
    alone = [row for row in with_fkeys if all(is_fkey(k) for k in _keys(row[1]))]
    assert not alone, f"actions with only an F-key: {alone}"


def _stand_in_pbcopy(folder, out):
    """An executable named pbcopy that writes its stdin to `out`: it stands for the macOS tool."""
    folder.mkdir()
    program = folder / "pbcopy"
    program.write_text(f"#!{sys.executable}\nimport sys\nopen({str(out)!r}, 'wb').write(sys.stdin.buffer.read())\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    return program


def test_clipboard_uses_pbcopy_on_a_local_mac_only(tmp_path):
    out = tmp_path / "clipboard.txt"
    program = _stand_in_pbcopy(tmp_path / "bin", out)
    path = f"{program.parent}{os.pathsep}/usr/bin"
    assert local_clipboard_program("darwin", {"PATH": path}) == str(program)
    # Over SSH the Mac's clipboard is the terminal's: OSC 52, even if the remote is a Mac too.
    assert local_clipboard_program("darwin", {"PATH": path, "SSH_CONNECTION": "1.2.3.4 5 6.7.8.9 22"}) is None
    assert local_clipboard_program("darwin", {"PATH": path, "SSH_TTY": "/dev/ttys001"}) is None
    assert local_clipboard_program("linux", {"PATH": path}) is None
    assert local_clipboard_program("darwin", {"PATH": str(tmp_path)}) is None  # no pbcopy
    assert copy_with_program(str(program), "héllo <|end|>") is None
    assert out.read_text(encoding="utf-8") == "héllo <|end|>"


def test_a_failing_clipboard_program_says_why(tmp_path):
    program = tmp_path / "pbcopy"
    program.write_text("#!/bin/sh\necho 'no pasteboard' >&2\nexit 3\n")
    program.chmod(0o755)
    problem = copy_with_program(str(program), "x")
    assert problem and "exit 3" in problem and "no pasteboard" in problem


async def test_copy_says_where_it_went(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        await _wait_screen(pilot, app, "ChatScreen")
        screen = app.screen
        screen.pane(1).answer_text = "Yes, the sun is a star."
        await pilot.press("ctrl+y")
        await pilot.pause()
        assert app.clipboard == "Yes, the sun is a star."
        messages = [n.message for n in app._notifications]
        # On Linux (or over SSH) only the terminal can take it: the message says so, not just "Copied".
        assert any(OSC52_NOTE in m for m in messages), messages
