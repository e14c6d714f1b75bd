"""Keymap overrides from settings.yaml, addressed by binding id."""

from __future__ import annotations

from collections import Counter

from phi3tui.app import Phi3App
from phi3tui.core.settings import CONFIG_DIR_ENV
from phi3tui.core.workspace import Workspace
from phi3tui.appearance import binding_table, keymap_clashes
from tests.conftest import run_cli


def test_every_binding_has_a_unique_id():
    rows = binding_table(Phi3App)
    assert len(rows) > 20  # the app, the five screens, their modals and widgets
    missing = [f"{owner}: {keys}" for binding_id, keys, _, owner in rows if not binding_id]
    assert not missing, f"bindings without an id (the keymap cannot reach them): {missing}"
    # One id, one binding (a binding listing several keys is still one binding).
    owners = Counter(binding_id for binding_id, *_ in rows)
    assert not [i for i, n in owners.items() if n > 1], "ids used by more than one binding"


async def test_remapped_keys_work_and_old_ones_stop(config_dir, demo_workspace):
    (config_dir / "settings.yaml").write_text(
        "keymap:\n  app.mode.export: f9\n  data.split: w\n  app.help: ctrl+k\n"
    )
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        assert app.current_mode == "data"
        app.set_focus(None)
        split = screen.split
        await pilot.press("s")  # the old key no longer changes the split
        await pilot.pause()
        assert screen.split == split
        await pilot.press("w")
        await pilot.pause()
        assert screen.split != split
        app.set_focus(None)
        await pilot.press("5")  # app.mode.export was "f5,5": both replaced by f9
        await pilot.pause()
        assert app.current_mode == "data"
        await pilot.press("f9")
        await pilot.pause()
        assert app.current_mode == "export"
        # Help and the palette show the keys in force.
        app.set_focus(None)
        await pilot.press("ctrl+k")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        text = str(app.screen.query_one("#help-text").render())
        export_row = next(line for line in text.splitlines() if line.strip().endswith(" Export"))
        assert export_row.split()[:-1] == ["F9"]  # neither 5 nor F5 any more
        await pilot.press("escape")
        await pilot.pause()
        app.switch_mode("data")
        await pilot.pause()
        hints = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert hints["Data: Split"] == "key w"


async def test_unknown_binding_id_is_reported(config_dir, demo_workspace):
    (config_dir / "settings.yaml").write_text("keymap:\n  data.nonsense: f9\n")
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        messages = [n.message for n in app._notifications]
        assert any("data.nonsense" in m and "phi3tui keys" in m for m in messages)
    listed = run_cli("keys", env={CONFIG_DIR_ENV: str(config_dir)})
    assert listed.returncode == 2 and "data.nonsense" in listed.stderr
    assert "app.mode.data" in listed.stdout and "data.split" in listed.stdout


def test_keys_lists_overrides(config_dir):
    (config_dir / "settings.yaml").write_text("keymap:\n  app.quit: ctrl+q\n")
    listed = run_cli("keys", env={CONFIG_DIR_ENV: str(config_dir)})
    assert listed.returncode == 0
    line = next(l for l in listed.stdout.splitlines() if l.startswith("app.quit "))
    assert "ctrl+q (was q)" in line


async def test_a_key_taken_from_another_binding_is_reported(config_dir, demo_workspace):
    (config_dir / "settings.yaml").write_text("keymap:\n  data.split: j\n")  # j was data.next
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        split, line = screen.split, screen.line
        await pilot.press("j")
        await pilot.pause(0.5)
        assert screen.split != split and screen.line == 1  # the keymap's binding has the key
        clashes = [n.message for n in app._notifications if "data.next" in n.message]
        assert len(clashes) == 1 and "data.split takes j" in clashes[0]
        await pilot.press("right")  # data.next keeps its other key
        await pilot.pause(0.5)
        assert screen.line == 2
    listed = run_cli("keys", env={CONFIG_DIR_ENV: str(config_dir)})
    assert listed.returncode == 2 and "data.split takes j, which data.next" in listed.stderr


def test_an_app_key_that_a_screen_uses_is_reported():
    # f9 is the Config screen's Download: there the screen's binding wins over an app-wide f9.
    (clash,) = keymap_clashes({"app.mode.export": "f9"}, Phi3App)
    assert "app.mode.export takes f9" in clash and "config.download" in clash
    assert keymap_clashes({"app.mode.export": "f12"}, Phi3App) == []
