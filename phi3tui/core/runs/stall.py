"""A run whose process lives but has stopped stepping (a hung GPU, a ring whose peer slept, a stopped process):
"the pid is alive" says nothing of it. A running run with no metrics line for STALL_FACTOR times its slowest step
so far, and at least STALL_MIN_S, is stalled: the watcher (core/runs/watcher.py, the one poller) records it through
`transition` with an alarm, and, as the `stalled_run` setting says, waits (the queue waits with it; a line later
makes it running again) or kills the runner so the queue goes on. Nothing is judged before the first step."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from phi3tui.core.run_folder import LOCK_FILE, METRICS_FILE, append_alarm
from phi3tui.core.runs.state import IllegalTransition, RunState, as_state, on_this_host, process_alive, transition

STALL_FACTOR = 10  # times the slowest step so far
STALL_MIN_S = 300.0  # never sooner than this without a metrics line
STALL_MIN_ENV = "PHI3TUI_STALL_MIN_S"  # the minimum, in seconds, for another use (tests: a second)


def stall_min_s() -> float:
    raw = os.environ.get(STALL_MIN_ENV)
    try:
        return float(raw) if raw else STALL_MIN_S
    except ValueError:
        return STALL_MIN_S


def silence_s(run_dir: Path, now: float | None = None) -> float:
    """Seconds since the run's last metrics line (0 when it has none)."""
    try:
        return max(0.0, (now or time.time()) - (run_dir / METRICS_FILE).stat().st_mtime)
    except OSError:
        return 0.0


def stall_threshold_s(info: dict) -> float | None:
    """How long a silence means stalled for this run; None before its first step (nothing to scale from)."""
    slowest = info.get("slowest_step_s")
    if not isinstance(slowest, (int, float)) or slowest <= 0:
        return None
    return max(stall_min_s(), STALL_FACTOR * float(slowest))


def _lock_free(run_dir: Path) -> bool:
    """Whether the run folder's lock can be had now. A process stopped while holding it (SIGSTOP mid-write) would
    block every writer: the watcher must never wait on it."""
    import fcntl

    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def watch_stall(run_dir: Path, info: dict, mode: str = "wait") -> RunState | None:
    """One look at a run for the watcher: running and silent too long → stalled (an alarm; killed in mode
    "kill"); stalled and stepping again → running. Returns the state it moved the run to, None when none."""
    state = as_state(info.get("state"))
    if state not in (RunState.RUNNING, RunState.STALLED) or not on_this_host(info) or not process_alive(info):
        return None
    silence = silence_s(run_dir)
    if not _lock_free(run_dir):
        # Held by the run's own process, stopped mid-write: nothing can be recorded. Killing it (mode "kill",
        # silent too long) frees the lock; its supervisor then records how it ended and the queue goes on.
        threshold = stall_threshold_s(info)
        if mode == "kill" and state is RunState.RUNNING and threshold is not None and silence > threshold:
            _kill(info.get("runner_pid"))
        return None
    if state is RunState.STALLED:
        if silence < time.time() - float(info.get("stalled_at") or time.time()):  # a line since it stalled
            try:
                transition(run_dir, RunState.RUNNING, expect=(RunState.STALLED,), reason=None, stalled_at=None)
            except IllegalTransition:
                return None
            return RunState.RUNNING
        return None
    threshold = stall_threshold_s(info)
    if threshold is None or silence <= threshold:
        return None
    pid = info.get("runner_pid")
    kill = mode == "kill" and bool(pid)
    reason = (f"stalled: no metrics line for {silence:.0f} s at iteration {info.get('iteration', 0)} "
              f"({STALL_FACTOR}x its slowest step, {float(info['slowest_step_s']):.1f} s, is {threshold:.0f} s); "
              f"its process (pid {pid}) lives but does not step (a hung GPU, a peer asleep, a stopped process)")
    reason += ("; killed it so the queue goes on (stalled_run: kill): resume it from its last checkpoint" if kill
               else "; the queue waits for it (stalled_run: wait): stop it, or it runs again with its next step")
    try:
        transition(run_dir, RunState.STALLED, expect=(RunState.RUNNING,), reason=reason, stalled_at=time.time())
    except IllegalTransition:
        return None
    append_alarm(run_dir, {"kind": "stalled", "message": reason, "iteration": info.get("iteration", 0),
                           "time": time.time()})
    if kill:
        _kill(pid)
    return RunState.STALLED


def _kill(pid) -> None:
    if not pid:
        return
    try:
        os.kill(int(pid), signal.SIGKILL)  # a stopped or hung process takes no polite signal
    except OSError:
        pass


def holds_the_machine(info: dict) -> bool:
    """A stalled run whose process still lives keeps its memory: the queue waits for it."""
    return as_state(info.get("state")) is RunState.STALLED and on_this_host(info) and process_alive(info)

