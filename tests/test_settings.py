"""Settings in the user's config folder: reading, bad input, saving, `locate`, `settings`, `serve`."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phi3tui.app import Phi3App
from phi3tui.core.settings import (
    CONFIG_DIR_ENV,
    SettingsError,
    load_settings,
    save_setting,
    startup_workspace,
)
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]


def test_defaults_without_a_file(config_dir):
    loaded = load_settings()
    assert loaded.path == config_dir / "settings.yaml"
    assert loaded.problems == [] and loaded.writable
    assert loaded.settings.theme == "phi3-dark" and loaded.settings.keymap == {}
    assert loaded.settings.plot_refresh_s == 0.5 and loaded.settings.terminal_title


def test_every_setting_is_read(config_dir, tmp_path):
    (config_dir / "settings.yaml").write_text(
        "theme: phi3-light\n"
        "keymap:\n  app.mode.data: f9, ctrl+d\n  app.quit: [ctrl+q, q]\n"
        "plot_refresh_s: 2\n"
        f"default_workspace: {tmp_path}/ws\n"
        "notifications: osc777\n"
        "terminal_title: false\n"
    )
    loaded = load_settings()
    assert loaded.problems == []
    s = loaded.settings
    assert s.theme == "phi3-light"
    assert s.keymap == {"app.mode.data": "f9,ctrl+d", "app.quit": "ctrl+q,q"}
    assert s.plot_refresh_s == 2.0
    assert s.default_workspace_path() == tmp_path / "ws"
    assert s.notifications == "osc777" and s.terminal_title is False


def test_bad_fields_are_named_with_their_line_and_left_at_default(config_dir):
    (config_dir / "settings.yaml").write_text(
        "theme: phi3-light\nplot_refresh_s: fast\nnotifications: loud\ncolour: red\nkeymap:\n  app.quit: 3\n"
    )
    loaded = load_settings()
    s = loaded.settings
    assert s.theme == "phi3-light"  # the good field still counts
    assert s.plot_refresh_s == 0.5 and s.notifications == "auto" and s.keymap == {}
    text = "\n".join(loaded.problems)
    path = str(config_dir / "settings.yaml")
    assert f"{path}:2: plot_refresh_s" in text
    assert f"{path}:3: notifications" in text
    assert f"{path}:4: unknown setting 'colour'" in text
    assert f"{path}:6: keymap.app.quit" in text


def test_broken_yaml_gives_defaults_and_is_never_overwritten(config_dir):
    path = config_dir / "settings.yaml"
    broken = "theme: phi3-light\nkeymap: [unclosed\n"
    path.write_text(broken)
    loaded = load_settings()
    assert loaded.settings.theme == "phi3-dark" and not loaded.writable
    assert f"{path}:" in loaded.problems[0] and "not valid YAML" in loaded.problems[0]
    with pytest.raises(SettingsError):
        save_setting("theme", "phi3-16")
    assert path.read_text() == broken


def test_saving_one_setting_keeps_the_rest_and_comments(config_dir):
    path = config_dir / "settings.yaml"
    path.write_text("# mine\ntheme: phi3-dark  # the usual\nkeymap:\n  app.quit: ctrl+q\n")
    save_setting("theme", "phi3-light")
    text = path.read_text()
    assert "# mine" in text and "app.quit: ctrl+q" in text and "theme: phi3-light" in text
    assert load_settings().settings.theme == "phi3-light"


async def test_app_stays_up_and_reports_a_broken_settings_file_once(config_dir, demo_workspace):
    (config_dir / "settings.yaml").write_text("theme: [\n")
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(100):  # reported after the first paint, which a loaded machine delays
            await pilot.pause(0.1)
            if any("settings.yaml" in m for m in notifications(app)):
                break
        assert app.theme == "phi3-dark"
        reported = [m for m in notifications(app) if "settings.yaml" in m]
        assert len(reported) == 1 and "not valid YAML" in reported[0]
        app.switch_mode("train")
        await pilot.pause()
        assert len([m for m in notifications(app) if "settings.yaml" in m]) == 1


def test_default_workspace_opens_when_the_current_folder_is_not_one(config_dir, demo_workspace, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert startup_workspace(elsewhere) == str(elsewhere)  # no default set: the current folder
    save_setting("default_workspace", str(demo_workspace))
    assert startup_workspace(elsewhere) == str(demo_workspace)
    assert startup_workspace(demo_workspace) == str(demo_workspace)  # a workspace here wins


def test_locate_prints_where_things_live(config_dir):
    env = {CONFIG_DIR_ENV: str(config_dir)}
    result = run_cli("locate", env=env)
    assert result.returncode == 0, result.stderr
    assert "settings file" in result.stdout and str(config_dir / "settings.yaml") in result.stdout
    assert str(config_dir / "themes") in result.stdout
    assert "built-in themes" in result.stdout and "Hugging Face cache" in result.stdout
    one = run_cli("locate", "settings", env=env)
    assert one.stdout.strip() == str(config_dir / "settings.yaml")
    builtin = Path(run_cli("locate", "builtin-themes", env=env).stdout.strip())
    assert (builtin / "phi3-dark.yaml").is_file()


def test_settings_command_init_show_and_bad_input(config_dir):
    env = {CONFIG_DIR_ENV: str(config_dir)}
    path = config_dir / "settings.yaml"
    first = run_cli("settings", "--init", env=env)
    assert first.returncode == 0 and path.is_file()
    assert load_settings().problems == []  # the template is itself a valid settings file
    path.write_text(path.read_text().replace("plot_refresh_s: 0.5", "plot_refresh_s: 1.5"))
    before = path.read_text()
    again = run_cli("settings", "--init", env=env)
    assert again.returncode == 2 and "--force" in again.stderr and path.read_text() == before
    shown = run_cli("settings", env=env)
    assert shown.returncode == 0 and "plot_refresh_s: 1.5" in shown.stdout
    path.write_text("plot_refresh_s: -1\n")
    bad = run_cli("settings", env=env)
    assert bad.returncode == 2 and f"{path}:1: plot_refresh_s" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _read_served_app(port: int, want: list[str], timeout: float) -> str:
    import aiohttp

    seen = ""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/") as page:
            assert page.status == 200
            assert "phi3tui" in await page.text()
        async with session.ws_connect(f"http://127.0.0.1:{port}/ws?width=80&height=24") as ws:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not all(w in seen for w in want):
                try:
                    msg = await ws.receive(timeout=deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
                if msg.type == aiohttp.WSMsgType.BINARY:
                    seen += msg.data.decode("utf-8", "replace")
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    seen += msg.data
                else:
                    break
    return seen


async def test_serve_runs_the_app_in_a_browser_on_localhost(config_dir, demo_workspace):
    port = _free_port()
    env = dict(os.environ, **{CONFIG_DIR_ENV: str(config_dir)})
    server = subprocess.Popen(
        [sys.executable, "-m", "phi3tui", "serve", str(demo_workspace), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, server.stdout.read().decode()
            await asyncio.sleep(0.2)
        # Bound to the loopback address only.
        assert _listening_addresses(port) <= {"127.0.0.1"}
        # The page, then the app itself over the websocket: its header, and the terminal title it sets.
        title = f"\x1b]2;phi3tui — {demo_workspace.name}"
        seen = await _read_served_app(port, ["Data", demo_workspace.name, title], timeout=60)
        assert demo_workspace.name in seen and "Data" in seen
        assert title in seen
        # A second server on the same port is refused with a clear message.
        clash = run_cli("serve", str(demo_workspace), "--port", str(port), env={CONFIG_DIR_ENV: str(config_dir)})
        assert clash.returncode == 2 and "--port" in clash.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)


def _listening_addresses(port: int) -> set[str]:
    import psutil

    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # macOS without privileges: the bind above is the evidence
        return {"127.0.0.1"}
    return {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_serve_refuses_a_folder_that_is_not_a_workspace(config_dir, tmp_path):
    result = run_cli("serve", str(tmp_path), "--port", str(_free_port()), env={CONFIG_DIR_ENV: str(config_dir)})
    assert result.returncode == 2 and "not a phi3tui workspace" in result.stderr


@pytest.mark.parametrize("refresh_s", [60.0, 0.1])
async def test_plot_refresh_rate_limits_loss_plot_redraws(refresh_s, config_dir, demo_workspace):
    """A run that goes on until the test ends it: the test waits on what the screen has read and drawn, not on time."""
    from phi3tui.core import runs
    from phi3tui.widgets.loss_plot import LossPlot

    (config_dir / "settings.yaml").write_text(f"plot_refresh_s: {refresh_s}\n")
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(iters=100000, steps_per_report=2, steps_per_eval=100000, val_batches=2))
    app = Phi3App(ws, start_mode="train")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            attached = time.monotonic()
            screen, deadline = app.screen, time.monotonic() + 240
            plot = screen.query_one(LossPlot)
            if refresh_s == 60.0:
                # The screen has read 8 reports: at most the first picture (and one per full minute since) is drawn.
                while len(screen.metrics.train_x) < 8 and time.monotonic() < deadline:
                    await pilot.pause(0.2)
                assert len(screen.metrics.train_x) >= 8
                assert plot.draws <= 2 + int((time.monotonic() - attached) // 60), plot.draws
            else:
                # New reports are drawn as they come (a draw needs new data): 4 pictures while the run goes on.
                while plot.draws < 4 and time.monotonic() < deadline:
                    await pilot.pause(0.2)
                assert plot.draws >= 4 and plot.drawn_points > 0, plot.draws
    finally:
        if runs.run_info(run_dir)["state"] in runs.LIVE_STATES:  # a run that ended already keeps its own story
            runs.kill_run(run_dir)


async def test_reload_from_the_palette_applies_new_settings_and_themes(config_dir, demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == "phi3-dark"
        (config_dir / "themes").mkdir()
        (config_dir / "themes" / "mine.yaml").write_text(
            'name: mine\nprimary: "#112233"\nroles:\n  train-loss: "#FF00AA"\n'
        )
        (config_dir / "settings.yaml").write_text("theme: mine\nkeymap:\n  app.mode.export: f12\n")
        app.set_focus(None)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"settings: reload")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.theme == "mine" and app.colour("train-loss") == "#FF00AA"
        # Colours of a theme whose file changed are picked up too, under the same name.
        (config_dir / "themes" / "mine.yaml").write_text(
            'name: mine\nprimary: "#112233"\nroles:\n  train-loss: "#00AAFF"\n'
        )
        app.reload_user_settings()
        await pilot.pause()
        assert app.colour("train-loss") == "#00AAFF"
        app.set_focus(None)
        await pilot.press("f12")
        await pilot.pause()
        assert app.current_mode == "export"
