"""Terminal niceties: the title shows the live run, a desktop notification (OSC 9/777) when a run ends.
Real runs of the demo model through the detached runner."""

from __future__ import annotations

import asyncio
import time

import pytest

from phi3tui.app import Phi3App
from phi3tui.core import runs
from phi3tui.core.runs import RunWatcher
from phi3tui.core.terminal import (
    notification_kind,
    notification_sequence,
    title_sequence,
)
from phi3tui.core.workspace import Workspace

QUICK = dict(iters=6, steps_per_report=2, steps_per_eval=3, save_every=6, val_batches=2)


def test_escape_sequences():
    assert title_sequence("phi3tui — ws") == "\x1b]2;phi3tui — ws\x07"
    # Control characters (a BEL would end the sequence early) and ';' (a field separator) are neutralised.
    assert title_sequence("a\x07b;c") == "\x1b]2;a b,c\x07"
    assert notification_sequence("run x finished", "6/6", "osc9", environ={}) == "\x1b]9;run x finished: 6/6\x07"
    assert (
        notification_sequence("run x failed", "oom", "osc777", environ={})
        == "\x1b]777;notify;run x failed;oom\x07"
    )
    # tmux swallows OSC 9/777 unless passed through, with the inner escapes doubled.
    wrapped = notification_sequence("t", "b", "osc9", environ={"TMUX": "/tmp/tmux-0/default,1,0"})
    assert wrapped == "\x1bPtmux;\x1b\x1b]9;t: b\x07\x1b\\"


@pytest.mark.parametrize(
    "setting, env, kind",
    [
        ("off", {}, None),
        ("osc777", {}, "osc777"),
        ("auto", {"TERM_PROGRAM": "iTerm.app"}, "osc9"),
        ("auto", {"VTE_VERSION": "7600"}, "osc777"),
        ("auto", {"TERM": "foot"}, "osc777"),
        ("auto", {"TERM_PROGRAM": "textual"}, None),  # `phi3tui serve`: a browser tab
    ],
)
def test_notification_kind(setting, env, kind):
    assert notification_kind(setting, environ=env) == kind


def test_watcher_reports_a_killed_run_once_and_never_old_runs(demo_workspace):
    ws = Workspace.open(demo_workspace)
    watcher = RunWatcher(ws)
    run_dir = runs.start_run(ws, overrides=dict(QUICK, iters=100000))
    poll = watcher.poll()
    assert poll.title.startswith(f"run {run_dir.name} ") and "/100000 (" in poll.title and not poll.events
    runs.kill_run(run_dir)
    poll = watcher.poll()
    assert poll.title == ""
    assert [(e.run_id, e.state, e.severity) for e in poll.events] == [(run_dir.name, "failed", "error")]
    assert watcher.poll().events == []  # once
    assert RunWatcher(ws).poll().events == []  # a run that ended before the app started is not news


async def test_app_title_follows_a_run_and_notifies_when_it_finishes(config_dir, demo_workspace):
    (config_dir / "settings.yaml").write_text("notifications: osc9\n")
    ws = Workspace.open(demo_workspace)
    app = Phi3App(ws, start_mode="train")
    titles = set()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.terminal_title == f"phi3tui — {ws.name}"
        run_dir = runs.start_run(ws, overrides=QUICK)
        deadline = time.monotonic() + 180
        while not app.desktop_notifications and time.monotonic() < deadline:
            titles.add(app.terminal_title)
            await asyncio.sleep(0.2)
        assert runs.run_info(run_dir)["state"] == "finished"
        (note,) = app.desktop_notifications
        assert note.startswith(f"phi3tui: run {run_dir.name} finished: 6/6 iterations, best val loss ")
        assert any(f"run {run_dir.name}" in t for t in titles), titles
        await pilot.pause(2.5)
        assert app.terminal_title == f"phi3tui — {ws.name}"  # back to plain once nothing is live
        assert len(app.desktop_notifications) == 1
        assert any("finished" in (n.title or "") for n in app._notifications)  # and a toast in the app
