"""Every action findable (issue 24): from every screen the command palette finds every screen's actions
(Evaluate, Export all, Stop, Resume), running one switches to its screen, help is listed once; the Train footer
follows the run's state; `?` and `phi3tui keys` show `[` for the probe keys."""

from __future__ import annotations

import pytest
from textual.command import CommandList, CommandPalette

from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace
from phi3tui.modes import app_modes
from tests.conftest import run_cli
from tests.test_keys import _wait_screen

WANTED = {"Evaluate": "Evaluate", "Export all": "Export: Run all", "Stop": "Train: Stop", "Resume": "Train: Resume"}


async def palette_hits(pilot, app, query: str, wanted: str) -> list[str]:
    """The palette's results for `query`, typed into it as a user would (palette left open): read until `wanted`
    is among them (or 5 s pass), then once more after a pause so late results are in too."""
    await pilot.press("ctrl+p")
    await _wait_screen(pilot, app, "CommandPalette")
    await pilot.press(*query)
    results = app.screen.query_one(CommandList)

    def read() -> list[str]:
        return [str(results.get_option_at_index(i).prompt) for i in range(results.option_count)]

    for _ in range(100):
        await pilot.pause(0.05)
        # The palette's LoadingIndicator is always mounted; it is shown (class --visible) while it searches.
        if any(wanted in hit for hit in read()) and not app.screen.query("LoadingIndicator.--visible"):
            break
    await pilot.pause(0.1)
    return read()


@pytest.mark.parametrize("mode", [row.id for row in app_modes()])
async def test_the_palette_finds_every_screens_actions(demo_workspace, mode):
    app = Phi3App(Workspace.open(demo_workspace), start_mode=mode)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)
        for query, wanted in WANTED.items():
            hits = await palette_hits(pilot, app, query, wanted)
            assert any(wanted in hit for hit in hits), (mode, query, hits)
            await pilot.press("escape")
            await pilot.pause()
        hits = await palette_hits(pilot, app, "keys", "Help: keys")
        assert not any(hit.split("\n")[0].strip() == "Keys" for hit in hits), hits  # Textual's own, beside ours
        assert any("Help: keys" in hit for hit in hits), hits


async def test_a_palette_action_of_another_screen_goes_there(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="data")
    async with app.run_test(size=(100, 30)) as pilot:
        await _wait_screen(pilot, app, "DataScreen")
        hits = await palette_hits(pilot, app, "Train: Resume", "Train: Resume")
        assert any("Train: Resume" in hit for hit in hits), hits
        await pilot.press("enter")  # the first hit
        await _wait_screen(pilot, app, "TrainScreen")
        assert app.current_mode == "train"
        # No run here to resume: the palette says so rather than doing nothing.
        for _ in range(50):
            if any("does not apply now" in str(n.message) for n in app._notifications):
                break
            await pilot.pause(0.05)
        assert any("resume run does not apply now" in str(n.message) for n in app._notifications)


async def test_help_shows_the_bracket_keys_as_characters(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(100, 30)) as pilot:
        await _wait_screen(pilot, app, "DataScreen")
        app.set_focus(None)
        await pilot.press("question_mark")
        await _wait_screen(pilot, app, "HelpScreen")
        text = str(app.screen.query_one("#help-text").render())
        assert "Probe: earlier checkpoint" in text and "square_bracket" not in text


def test_keys_command_prints_brackets():
    done = run_cli("keys")
    assert "square_bracket" not in done.stdout
    earlier = next(line for line in done.stdout.splitlines() if line.startswith("train.probe_earlier"))
    assert earlier.split()[1] == "["


def footer_actions(screen) -> set[str]:
    return {active.binding.action for active in screen.active_bindings.values() if active.binding.show}


async def test_the_train_footer_follows_the_run(demo_workspace):
    from phi3tui.core import runs
    from tests.test_train_screen import wait_for

    ws = Workspace.open(demo_workspace)
    app = Phi3App(ws, start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await _wait_screen(pilot, app, "TrainScreen")
        screen = app.screen
        assert not {"stop_run", "resume_run"} & footer_actions(screen)  # no run: neither
        run_dir = runs.start_run(ws, overrides=dict(iters=100000, steps_per_report=2, steps_per_eval=1000))
        try:
            await wait_for(pilot, lambda: screen.info.get("state") == "running", timeout=120)
            await pilot.pause(0.3)
            assert "stop_run" in footer_actions(screen) and "resume_run" not in footer_actions(screen)
            await pilot.press("s")
            await wait_for(pilot, lambda: screen.info.get("state") == "stopped", timeout=120)
            await pilot.pause(0.3)
            assert "resume_run" in footer_actions(screen) and "stop_run" not in footer_actions(screen)
            # One toast for the stop (the app's run watcher), not one from the Train screen as well.
            ended = lambda: [n for n in app._notifications if f"run {run_dir.name} stopped" in f"{n.title} {n.message}"]
            await wait_for(pilot, lambda: ended(), timeout=30)
            await pilot.pause(1.2)  # two more polls
            assert len(ended()) == 1, [(n.title, n.message) for n in ended()]
        finally:
            if runs.run_info(run_dir)["state"] in runs.LIVE_STATES:
                runs.kill_run(run_dir)
