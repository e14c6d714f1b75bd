"""The one watcher of a workspace's runs/ folder. The app owns one and polls it on one timer; each poll
(a RunPoll) feeds the header, the terminal title, the Train screen and the run-end notifications, so
runs/ is listed once per interval however many things show it. It is also the owner that records the failed end
of a run whose runner is gone (state.settle_dead_run): readers only show it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from phi3tui.core.runs.stall import watch_stall
from phi3tui.core.runs.state import END_STATES, END_UNRECORDED, LIVE_STATES, WAITING, RunState, settle_dead_run
from phi3tui.core.runs.queue import in_queue_order, queue_order
from phi3tui.core.runs.store import RunSummary, live_text, run_dirs, summarize


def run_progress_text(summary) -> str:
    """'run 20261128-0212-ab12 running 40/100 (40%)' for a RunSummary."""
    text = f"run {summary.id} {summary.state} {summary.iteration}/{summary.iters}"
    if summary.iters:
        text += f" ({100 * summary.iteration // summary.iters}%)"
    return text


@dataclass
class RunEvent:
    run_id: str
    state: str
    title: str
    body: str
    severity: str  # information | warning | error (as Textual's notify takes it)


@dataclass
class RunPoll:
    """What one poll saw: the newest runs (newest first), the live ones among them, and runs that just ended."""

    runs: list[RunSummary] = field(default_factory=list)
    events: list[RunEvent] = field(default_factory=list)
    queue: list[RunSummary] = field(default_factory=list)  # the waiting runs, next first (not in `runs`)

    @property
    def live(self) -> list[RunSummary]:
        return [s for s in self.runs if s.live]

    @property
    def title(self) -> str:
        """The terminal title's run part: the first live run's progress, and how many more."""
        live = self.live
        if not live:
            return ""
        return run_progress_text(live[0]) + (f" (+{len(live) - 1} more)" if len(live) > 1 else "")

    @property
    def header(self) -> str:
        """The header's run part (store.live_text)."""
        return live_text(self.live)

    @property
    def newest(self) -> Path | None:
        return self.runs[0].run_dir if self.runs else None

    def summary(self, run_dir: Path) -> RunSummary | None:
        """This run as the poll saw it; None when it is older than the runs polled."""
        return next((s for s in self.runs if s.run_dir == run_dir), None)


@dataclass
class RunWatcher:
    """Polls a workspace's run folders; reports what it saw and the runs that just ended.

    A run counts as just ended when it was seen live before, or when it was created after the watcher
    started (a short run can start and finish between two polls). Runs that had ended before the app
    started are never announced.
    """

    workspace: object
    started: float = field(default_factory=time.time)
    last_states: dict[str, str] = field(default_factory=dict)
    stalled_run: str = field(default_factory=lambda: _stalled_run_setting())  # wait | kill (core/runs/stall.py)

    def poll(self, recent: int = 20) -> RunPoll:
        result = RunPoll()
        for run_dir in run_dirs(self.workspace):
            if len(result.runs) >= recent:
                break
            try:
                summary = summarize(run_dir)
            except Exception:  # a run folder half-written by another process: next poll
                continue
            if summary.info.get(END_UNRECORDED):  # its runner is gone: the one poller records the failed end
                settle_dead_run(run_dir)
            elif summary.state in (RunState.RUNNING, RunState.STALLED):  # alive, but stepping? (the one poller)
                try:
                    moved = watch_stall(run_dir, summary.info, self.stalled_run)
                except OSError:  # a read-only workspace: readers still see it running
                    moved = None
                if moved is not None:
                    summary = summarize(run_dir)
            if summary.state == WAITING:  # the queue is newer than every run it waits behind
                result.queue.append(summary)
                continue
            result.runs.append(summary)
            before = self.last_states.get(summary.id)
            self.last_states[summary.id] = summary.state
            if summary.state in END_STATES and before != summary.state:
                was_live = before in LIVE_STATES
                new = before is None and summary.created is not None and summary.created >= self.started
                if was_live or new:
                    result.events.append(run_event(summary))
        if result.queue:
            result.queue = in_queue_order(result.queue, queue_order(self.workspace), name=lambda s: s.id)
        return result


def _stalled_run_setting() -> str:
    from phi3tui.core.settings import load_settings

    try:
        return load_settings().settings.stalled_run
    except Exception:  # an unreadable settings file: its problems are said at start-up; the default here
        return "wait"


def run_event(summary) -> RunEvent:
    state = summary.state
    body = f"{summary.iteration}/{summary.iters} iterations"
    if summary.best_val_loss is not None:
        body += f", best val loss {summary.best_val_loss:.3f}"
    if state == RunState.FINISHED:
        severity = "information"
    elif state == RunState.STOPPED:
        severity = "warning"
    else:
        severity = "error"
        if summary.reason:
            body += f": {summary.reason.splitlines()[0][:120]}"
    return RunEvent(summary.id, state, f"phi3tui: run {summary.id} {state}", body, severity)
