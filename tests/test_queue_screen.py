"""The Train screen's queue and the runs list's sweep comparison at 80×24, driven by keys."""

from __future__ import annotations

from phi3tui.app import Phi3App
from phi3tui.core import runs
from phi3tui.core.workspace import Workspace
from phi3tui.widgets.loss_plot import LossPlot
from tests.conftest import run_cli
from tests.test_train_screen import quick_config, start_by_key, wait_for


def footer_text(app) -> str:
    return " ".join(str(getattr(w, "description", "")) for w in app.screen.query("FooterKey"))


def palette_titles(app) -> list[str]:
    return [c.title for c in app.get_system_commands(app.screen)]


async def test_new_run_while_one_runs_is_queued_and_the_queue_reorders_and_drops_by_keys(demo_workspace):
    quick_config(demo_workspace, 3000)
    ws = Workspace.open(demo_workspace)
    app = Phi3App(ws, start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        running = await start_by_key(app, pilot)
        try:
            screen = app.screen
            # The footer follows the run's state: it composes its keys again once the screen follows the run.
            await wait_for(pilot, lambda: "Queue" in footer_text(app))
            assert any("Queue" in t for t in palette_titles(app))
            for n in (1, 2):  # a run is live: n queues instead of starting a second runner
                await pilot.press("n")
                await wait_for(pilot, lambda: len(app.run_poll.queue) == n)
            await wait_for(pilot, lambda: "queue: 2 waiting" in str(screen.query_one("#run-queue").render()))
            first, second = runs.queued_runs(ws)
            assert screen.run_dir == running and runs.live_here(ws) == [running]

            await pilot.press("u")
            await pilot.pause()
            assert type(app.screen).__name__ == "QueueScreen"
            assert any("Move up" in t for t in palette_titles(app)) and any("Drop" in t for t in palette_titles(app))
            await pilot.press("J")  # the first one goes later
            await pilot.pause()
            assert runs.queued_runs(ws) == [second, first]
            await pilot.press("K")  # and back, the cursor following it
            await pilot.pause()
            assert runs.queued_runs(ws) == [first, second]
            await pilot.press("x")
            await pilot.pause()
            assert type(app.screen).__name__ == "ConfirmDialog"
            await pilot.press("n")  # asked, declined: nothing dropped
            await pilot.pause()
            assert runs.queued_runs(ws) == [first, second]
            await pilot.press("x")
            await pilot.pause()
            await pilot.press("y")
            await pilot.pause()
            assert runs.queued_runs(ws) == [second] and not first.exists()
            table = app.screen.query_one("#queue-table")
            assert table.row_count == 1
            await pilot.press("escape")
            await wait_for(pilot, lambda: "queue: 1 waiting" in str(screen.query_one("#run-queue").render()))
        finally:
            runs.kill_run(running)
    assert runs.queued_runs(ws) == [second]  # the queue stays, files only, for the next phi3tui


async def test_runs_list_compares_a_sweep_and_overlays_its_curves(demo_workspace):
    quick_config(demo_workspace, 4)
    ws = Workspace.open(demo_workspace)
    a, b = runs.queue_runs(ws, sweep={"lora_parameters.rank": [4, 8]})
    for run_dir in (a, b):
        assert runs.wait_for_run(run_dir, timeout=240)["state"] == "finished"
    # A real evaluation of one of them: its scores join the comparison, the other shows none.
    done = run_cli("eval", str(demo_workspace), "--run", b.name, "--limit", "1", "--max-tokens", "4")
    assert done.returncode == 0, done.stderr
    app = Phi3App(ws, start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("l")
        await pilot.pause()
        assert type(app.screen).__name__ == "RunsListScreen"
        await pilot.press("w")
        await pilot.pause()
        text = str(app.screen.query_one("#run-text").render())
        lines = [line for line in text.splitlines() if line.strip()]
        assert "lora_parameters.rank" in lines[0] and "best val" in lines[0] and "ROUGE-L" in lines[0]
        row_a, row_b = [line for line in lines if a.name in line], [line for line in lines if b.name in line]
        assert row_a and row_b and "finished" in row_a[0] and "finished" in row_b[0]
        assert row_a[0].rstrip().endswith("-") and not row_b[0].rstrip().endswith("-")
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("m", "o")
        await pilot.pause()
        assert type(app.screen).__name__ == "TrainScreen"
        curves = app.screen.query_one(LossPlot).curves
        assert len(curves) == 2 and {c.label.split()[0] for c in curves} == {a.name, b.name}


async def test_the_app_starts_a_stalled_queue_after_its_first_paint_and_says_so(demo_workspace):
    """What a reboot leaves: waiting runs and no runner. Opening phi3tui starts the next one (the backstop)."""
    quick_config(demo_workspace, 2)
    ws = Workspace.open(demo_workspace)
    made = runs.queue_runs(ws, sweep={"iters": [2, 3]}, start=False)
    assert [runs.read_run_json(d)["state"] for d in made] == [runs.WAITING] * 2
    app = Phi3App(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: any(made[0].name in n.message for n in app._notifications), timeout=60)
        message = next(n.message for n in app._notifications if made[0].name in n.message)
        assert "the queue had stalled" in message
        # The notification comes once start_next has launched the runner: the run left the queue with a pid.
        # Whether that runner has reached "running" yet is its own business (a loaded box: still "queued").
        started = runs.read_run_json(made[0])
        assert started["state"] in ("queued", "running", "finished") and started.get("pid"), started
        assert made[0].name not in [d.name for d in runs.queued_runs(ws)]
    # The first run hands on to the second by itself, with the app closed.
    assert runs.wait_for_run(made[1], timeout=240)["state"] == "finished"
    assert runs.run_info(made[0])["state"] == "finished"
    assert runs.run_info(made[0])["ended"] <= runs.run_info(made[1])["started"]
    assert runs.queued_runs(ws) == []
