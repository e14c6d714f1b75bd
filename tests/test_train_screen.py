"""The Train screen at 80×24, driven by keys: start, outlive the app, attach, overlay, diff, delete."""

from __future__ import annotations

import time

from phi3tui.app import Phi3App
from phi3tui.core import runs
from phi3tui.core.workspace import Workspace
from phi3tui.widgets.loss_plot import Curve, LossPlot


def quick_config(ws_root, iters: int) -> None:
    path = ws_root / "lora_config.yaml"
    text = path.read_text().replace("iters: 100", f"iters: {iters}").replace("val_batches: -1", "val_batches: 4")
    path.write_text(text.replace("steps_per_eval: 25", "steps_per_eval: 5").replace("steps_per_report: 10", "steps_per_report: 5"))


async def wait_for(pilot, predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.2)
    raise AssertionError("timed out")


async def start_by_key(app, pilot):
    """Press n on the Train screen and wait until the screen follows the new run."""
    await pilot.pause()
    await pilot.press("n")
    await wait_for(pilot, lambda: app.screen.run_dir is not None)
    return app.screen.run_dir


async def test_run_started_in_app_outlives_it_and_new_app_shows_full_curve(demo_workspace):
    quick_config(demo_workspace, 30)
    app = Phi3App(Workspace.open(demo_workspace), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        run_dir = await start_by_key(app, pilot)
    # The app has exited; the run has not.
    info = runs.run_info(run_dir)
    assert info["state"] in ("queued", "running") and runs.process_alive(info)
    assert runs.wait_for_run(run_dir, timeout=180)["state"] == "finished"

    metrics = runs.read_metrics(run_dir)
    app = Phi3App(Workspace.open(demo_workspace), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        assert screen.run_dir == run_dir
        plot = screen.query_one(LossPlot)
        train, val = plot.curves
        assert train.xs == metrics.train_x and train.xs[-1] == 30
        assert val.xs == metrics.val_x and len(val.xs) == 7
        assert "finished" in str(screen.query_one("#run-title").render()) and "30/30" in str(screen.query_one("#run-title").render())
        assert "checkpoint" in str(screen.query_one("#run-checkpoints").render())
        await pilot.press("g")  # log scale
        assert plot.log_scale

        # A run started elsewhere (here through core, as `phi3tui train` does) is followed.
        other = runs.start_run(Workspace.open(demo_workspace), overrides={"iters": 5})
        await wait_for(pilot, lambda: screen.run_dir == other)
        assert runs.wait_for_run(other, timeout=120)["state"] == "finished"


async def test_plot_downsamples_a_long_run_to_its_width(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        plot = app.screen.query_one(LossPlot)
        xs = list(range(1, 100_001))
        ys = [5.0 / (1 + i / 1000) for i in xs]
        plot.show_curves([Curve("train", xs, ys, "train-loss")])
        await pilot.pause()
        assert plot.drawn_points <= 2 * plot.size.width + 1
        start = time.perf_counter()
        plot.render()
        assert time.perf_counter() - start < 0.5  # a 100,000-point run redraws like a small one


async def test_runs_list_overlay_diff_and_delete(demo_workspace):
    quick_config(demo_workspace, 5)
    ws = Workspace.open(demo_workspace)
    a = runs.start_run(ws)
    b = runs.start_run(ws, overrides={"learning_rate": 3e-3})
    for run_dir in (a, b):
        assert runs.wait_for_run(run_dir, timeout=120)["state"] == "finished"
    app = Phi3App(ws, start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("l")
        await pilot.pause()
        assert type(app.screen).__name__ == "RunsListScreen"
        await pilot.press("space", "down", "space", "o")
        await pilot.pause()
        assert type(app.screen).__name__ == "TrainScreen"
        assert len(app.screen.query_one(LossPlot).curves) == 2

        await pilot.press("l")
        await pilot.pause()
        await pilot.press("space", "down", "space", "d")
        await pilot.pause()
        diff = str(app.screen.query_one("#run-text").render())
        assert "learning_rate" in diff and "0.003" in diff
        await pilot.press("escape")
        await pilot.pause()
        doomed, kept = runs.run_dirs(ws)[1], runs.run_dirs(ws)[0]  # the cursor is on the second row
        await pilot.press("x")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmDialog"
        await pilot.press("n")  # asked, declined: nothing deleted
        await pilot.pause()
        assert doomed.exists()
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert not doomed.exists() and kept.exists()


async def test_bad_config_shows_errors_and_starts_nothing(demo_workspace):
    (demo_workspace / "lora_config.yaml").write_text("model: model\niters: [10\n")
    app = Phi3App(Workspace.open(demo_workspace), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("n")
        await wait_for(pilot, lambda: any("YAML" in str(n.message) for n in app._notifications))
        assert app.screen.run_dir is None
    assert not (demo_workspace / "runs").exists() or not any((demo_workspace / "runs").iterdir())


async def test_stop_resume_kill_by_keys_and_header_shows_live_run(demo_workspace):
    quick_config(demo_workspace, 2000)
    app = Phi3App(Workspace.open(demo_workspace), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        run_dir = await start_by_key(app, pilot)
        header = app.screen.query_one("WorkspaceHeader")
        await wait_for(pilot, lambda: f"run {run_dir.name} running" in str(header.render()))
        await wait_for(pilot, lambda: runs.run_info(run_dir).get("iteration", 0) >= 5)
        await pilot.press("s")
        await wait_for(pilot, lambda: runs.run_info(run_dir)["state"] == "stopped")
        stopped_at = runs.run_info(run_dir)["iteration"]
        # r is offered (footer and key) once the screen shows the run stopped, as a user sees it.
        await wait_for(pilot, lambda: "stopped" in str(app.screen.query_one("#run-title").render()))
        await pilot.press("r")
        await wait_for(pilot, lambda: runs.run_info(run_dir)["state"] == "running")
        assert runs.run_info(run_dir)["resume_from"] >= stopped_at - 5
        await pilot.press("k")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmDialog"
        await pilot.press("y")
        await wait_for(pilot, lambda: runs.run_info(run_dir)["state"] == "failed")
        assert not runs.process_alive(runs.run_info(run_dir))
        await wait_for(pilot, lambda: "failed" in str(app.screen.query_one("#run-alarm").render()))


async def test_alarm_of_a_diverging_run_shows_in_the_app(demo_workspace):
    quick_config(demo_workspace, 30)
    path = demo_workspace / "lora_config.yaml"
    path.write_text(path.read_text().replace("learning_rate: 1e-3", "learning_rate: 1e30"))
    app = Phi3App(Workspace.open(demo_workspace), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("n")
        await wait_for(pilot, lambda: any(n.title == "run alarm" and "diverged" in n.message for n in app._notifications))
        assert runs.run_info(app.screen.run_dir)["state"] == "diverged"
        assert "diverged" in str(app.screen.query_one("#run-alarm").render())


async def test_one_watcher_feeds_the_header_the_terminal_title_and_the_train_screen(demo_workspace, monkeypatch):
    """runs/ is read by the app's one RunWatcher; a run started elsewhere (the CLI, here core) reaches the
    header of every screen, the terminal title and the Train screen from the same poll."""
    import gc
    import sys

    from phi3tui.core.runs import store, watcher

    calls = []

    def spy(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            caller = sys._getframe(1).f_code
            calls.append((name, caller.co_name, caller.co_filename.rsplit("/", 1)[-1]))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    # Who reads runs/ and run.json: every reader is recorded with its caller (the real functions run).
    for module, name in [(store, "run_dirs"), (runs, "run_dirs"), (watcher, "run_dirs"), (store, "run_info"), (runs, "run_info")]:
        spy(module, name)

    ws = Workspace.open(demo_workspace)
    app = Phi3App(ws, start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        run_dir = runs.start_run(ws, overrides=dict(iters=100000, steps_per_report=2, steps_per_eval=1000))
        await wait_for(pilot, lambda: app.run_poll.live and app.run_poll.live[0].state == "running")
        screen = app.screen
        header = screen.query_one("WorkspaceHeader")
        # The header redraws from the poll once the poll's message is handled: wait for that, not for a time.
        await wait_for(pilot, lambda: f"run {run_dir.name} running" in str(header.render())
                       and app.run_poll.header in str(header.render()))
        poll = app.run_poll
        assert app.terminal_title == f"phi3tui — {ws.name} — {poll.title}" and run_dir.name in poll.title
        assert screen.run_dir == run_dir  # the Train screen followed the new run from the poll
        assert f"run {run_dir.name}" in str(screen.query_one("#run-title").render())
        # Another screen's header shows the same poll's line.
        calls.clear()
        await pilot.press("f1")
        # One whole poll after the switch (runs/ listed, then run.json summarized), whatever its period on a busy box.
        await wait_for(pilot, lambda: {("run_dirs", "poll", "watcher.py"), ("run_info", "summarize", "store.py")} <= set(calls)
                       and f"run {run_dir.name} running" in str(app.screen.query_one("WorkspaceHeader").render()))
        seen = set(calls)
        runs.kill_run(run_dir)
    # One poller: runs/ was listed only by RunWatcher.poll, run.json read only through its summaries.
    assert seen and seen <= {("run_dirs", "poll", "watcher.py"), ("run_info", "summarize", "store.py")}, seen
    mine = [o for o in gc.get_objects() if isinstance(o, runs.RunWatcher) and o.workspace.root == ws.root]
    assert mine == [app.run_watcher]
