"""Terminal niceties that work over SSH: the window title shows the live run, and a desktop
notification (OSC 9 or OSC 777) says when a run finishes or fails.

Plain strings and run-folder reads only (no Textual): the app writes what this module returns.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from phi3tui.core.run_files import END_STATES, LIVE_STATES

ESC, BEL = "\x1b", "\x07"
# XTWINOPS: push the terminal's title on start, pop it on exit, so the user's title comes back.
TITLE_PUSH = f"{ESC}[22;0t"
TITLE_POP = f"{ESC}[23;0t"


def _clean(text: str) -> str:
    # Control characters inside an OSC string would end it early or be run by the terminal.
    return "".join(ch if ch.isprintable() else " " for ch in text).replace(";", ",") if text else ""


def title_sequence(title: str) -> str:
    """OSC 2: set the window (and tab) title."""
    return f"{ESC}]2;{_clean(title)}{BEL}"


def notification_kind(setting: str = "auto", environ: dict | None = None) -> str | None:
    """Which escape to use for desktop notifications: 'osc9', 'osc777' or None (off).

    OSC 9 is understood by iTerm2, Ghostty, WezTerm and kitty; OSC 777 by
    VTE-based terminals (GNOME Terminal, Tilix), foot and urxvt. Terminals ignore ones they do not know.
    """
    if setting == "off":
        return None
    if setting in ("osc9", "osc777"):
        return setting
    env = os.environ if environ is None else environ
    if env.get("TERM_PROGRAM") == "textual":  # `phi3tui serve`: a browser page, not a terminal
        return None
    term = env.get("TERM", "")
    if env.get("VTE_VERSION") or term.startswith(("foot", "rxvt")):
        return "osc777"
    return "osc9"


def notification_sequence(title: str, body: str, kind: str, environ: dict | None = None) -> str:
    """The escape for one desktop notification; wrapped for tmux, which swallows OSC 9/777 otherwise
    (it needs `set -g allow-passthrough on`)."""
    if kind == "osc777":
        seq = f"{ESC}]777;notify;{_clean(title)};{_clean(body)}{BEL}"
    else:
        seq = f"{ESC}]9;{_clean(title)}: {_clean(body)}{BEL}"
    env = os.environ if environ is None else environ
    if env.get("TMUX"):
        seq = f"{ESC}Ptmux;{seq.replace(ESC, ESC + ESC)}{ESC}\\"
    return seq


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
        from phi3tui.core.runs import run_dirs, summarize

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
