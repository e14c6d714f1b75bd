"""The one watcher of a workspace's runs/ folder: what is live (for the header, the terminal title and
the Train screen) and which runs just ended (for notifications)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from phi3tui.core.runs.folder import END_STATES, LIVE_STATES
from phi3tui.core.runs.store import run_dirs, summarize


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
class RunWatcher:
    """Polls a workspace's run folders; reports the title text and runs that just ended.

    A run counts as just ended when it was seen live before, or when it was created after the watcher
    started (a short run can start and finish between two polls). Runs that had ended before the app
    started are never announced.
    """

    workspace: object
    started: float = field(default_factory=time.time)
    last_states: dict[str, str] = field(default_factory=dict)

    def poll(self, recent: int = 20) -> tuple[str, list[RunEvent]]:
        live_texts, events = [], []
        for run_dir in run_dirs(self.workspace)[:recent]:
            try:
                summary = summarize(run_dir)
            except Exception:  # a run folder half-written by another process: next poll
                continue
            before = self.last_states.get(summary.id)
            self.last_states[summary.id] = summary.state
            if summary.state in LIVE_STATES:
                live_texts.append(run_progress_text(summary))
            elif summary.state in END_STATES and before != summary.state:
                was_live = before in LIVE_STATES
                new = before is None and summary.created >= self.started
                if was_live or new:
                    events.append(run_event(summary))
        title = live_texts[0] if live_texts else ""
        if len(live_texts) > 1:
            title += f" (+{len(live_texts) - 1} more)"
        return title, events


def run_event(summary) -> RunEvent:
    state = summary.state
    body = f"{summary.iteration}/{summary.iters} iterations"
    if summary.best_val_loss is not None:
        body += f", best val loss {summary.best_val_loss:.3f}"
    if state == "finished":
        severity = "information"
    elif state == "stopped":
        severity = "warning"
    else:
        severity = "error"
        if summary.reason:
            body += f": {summary.reason.splitlines()[0][:120]}"
    return RunEvent(summary.id, state, f"phi3tui: run {summary.id} {state}", body, severity)
