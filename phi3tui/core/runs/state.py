"""A run's state: the one enum, and the one way a state is written (`transition`).

run.json's `state` is written only here. `transition` moves a run from the state it is recorded in to another
under the run lock and refuses a move the life of a run does not allow (a finished run cannot start again, a
waiting run cannot end stopped), so no writer can leave a run in a state that no reader expects. Readers compare
against `RunState` members; as a `str` enum they also equal the strings run.json holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from phi3tui.core.machine import same_machine
from phi3tui.core.run_folder import LOG_FILE, METRICS_FILE, RUN_FILE, log_tail, read_run_json, run_lock, write_run_json


class RunState(str, Enum):
    WAITING = "waiting"  # in the queue (runs/queue.txt): not started yet, neither live nor ended
    QUEUED = "queued"  # its runner process is being started
    RUNNING = "running"
    STOPPING = "stopping"  # read-only view: running with a stop request on disk (never written)
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    DIVERGED = "diverged"
    OUT_OF_MEMORY = "out of memory"  # `runs resume ID --smaller` halves the batch
    STALLED = "stalled"  # no step for far longer than the run's steps take: a hung GPU or a hung process
    UNREADABLE = "unreadable"  # read-only view: run.json is damaged (never written)

    def __str__(self) -> str:  # f-strings and messages show the word run.json holds
        return self.value

    @property
    def live(self) -> bool:
        return self in LIVE_STATES

    @property
    def ended(self) -> bool:
        return self in END_STATES


LIVE_STATES = (RunState.QUEUED, RunState.RUNNING, RunState.STOPPING)
END_STATES = (RunState.FINISHED, RunState.STOPPED, RunState.FAILED, RunState.DIVERGED, RunState.OUT_OF_MEMORY,
              RunState.STALLED)
RESUMABLE_STATES = (RunState.STOPPED, RunState.FAILED, RunState.DIVERGED, RunState.OUT_OF_MEMORY, RunState.STALLED)
# The names other modules have long used for single states.
WAITING = RunState.WAITING
OUT_OF_MEMORY = RunState.OUT_OF_MEMORY
UNREADABLE = RunState.UNREADABLE

# Where a run may go from each recorded state. None: a run folder with no run.json yet (being created).
_ENDINGS = (RunState.FINISHED, RunState.STOPPED, RunState.FAILED, RunState.DIVERGED, RunState.OUT_OF_MEMORY,
            RunState.STALLED)
LEGAL_MOVES: dict[RunState | None, tuple[RunState, ...]] = {
    None: (RunState.WAITING, RunState.QUEUED),
    RunState.WAITING: (RunState.QUEUED, RunState.FAILED),
    RunState.QUEUED: (RunState.RUNNING, *_ENDINGS),
    RunState.RUNNING: _ENDINGS,
    RunState.STALLED: (RunState.RUNNING, *_ENDINGS[:-1], RunState.QUEUED, RunState.WAITING),
    **{end: (RunState.QUEUED, RunState.WAITING) for end in RESUMABLE_STATES if end is not RunState.STALLED},
    RunState.FINISHED: (),
}


class IllegalTransition(ValueError):
    """A state change the life of a run does not allow; str() names the run and both states."""


def as_state(value) -> RunState | None:
    """The RunState a run.json value names; None for a missing or unknown one."""
    if isinstance(value, RunState):
        return value
    try:
        return RunState(value)
    except ValueError:
        return None


def can_move(current, to: RunState) -> bool:
    return to in LEGAL_MOVES.get(as_state(current), ())


def transition(run_dir: Path, to: RunState, *, expect: tuple | None = None,
               only_if: Callable[[dict], bool] | None = None, **why) -> dict:
    """Move the run in `run_dir` to state `to`, merging `why` (reason, error, times, …) into run.json atomically
    under the run lock. Refuses (IllegalTransition) a move LEGAL_MOVES does not list, one whose recorded state
    is not among `expect` when given (so two writers racing for the same move do not both win), and one whose
    recorded run.json fails `only_if` (a condition that must still hold under the lock). `ended` is stamped
    for an end state unless given. Returns the new run.json content."""
    to = RunState(to)
    if to in (RunState.STOPPING, RunState.UNREADABLE):
        raise IllegalTransition(f"run {run_dir.name}: {to} is shown, never written")
    with run_lock(run_dir):
        data = read_run_json(run_dir) if (run_dir / RUN_FILE).exists() else {}
        current = as_state(data.get("state")) if data else None
        if expect is not None and current not in tuple(as_state(e) for e in expect):
            raise IllegalTransition(f"run {run_dir.name} is {current or 'new'}, not "
                                    f"{' or '.join(str(as_state(e) or 'new') for e in expect)}; it was not moved to {to}")
        if only_if is not None and not only_if(data):
            raise IllegalTransition(f"run {run_dir.name} changed before it could become {to}")
        if not can_move(current, to):
            raise IllegalTransition(f"run {run_dir.name}: a {current or 'new'} run cannot become {to}")
        if to in END_STATES and "ended" not in why:
            why["ended"] = time.time()
        data.update(why)
        data["state"] = to.value
        write_run_json(run_dir, data)
        return data


# -- a live state whose process is gone ---------------------------------------------------------------
QUEUED_GRACE_S = 60  # a queued run without a pid yet is being started, not dead
END_UNRECORDED = "end_unrecorded"  # in a reader's view only: its failed end is derived, not yet in run.json


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def process_alive(info: dict) -> bool:
    """Whether the run's process still lives (the same process: pids are reused)."""
    import psutil

    pid = info.get("pid")
    if not pid:
        # A resume keeps `created` and stamps `created_attempt`: the grace runs from the newer of the two.
        since = max(float(info.get("created") or 0), float(info.get("created_attempt") or 0))
        return time.time() - since < QUEUED_GRACE_S
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = info.get("pid_started")
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.Error:
        return False


def on_this_host(info: dict) -> bool:
    # By machine id: a Mac's host name changes with the network, and a run must not look dead (or alive) for it.
    return same_machine(info)


def runner_gone(info: dict) -> bool:
    """Whether run.json `info` records a live state on this machine whose process is gone."""
    return as_state(info.get("state")) in LIVE_STATES and on_this_host(info) and not process_alive(info)


def _last_sign_of_life(run_dir: Path) -> float:
    times = []
    for name in (LOG_FILE, METRICS_FILE, RUN_FILE):
        try:
            times.append((run_dir / name).stat().st_mtime)
        except OSError:
            continue
    return max(times, default=time.time())


def dead_run_end(run_dir: Path, info: dict) -> dict | None:
    """The end a run recorded in `info` has really had when its runner is gone without recording one: state
    failed, why, and when (its last sign of life, so every read says the same). None when it is not so.
    Only reads: `settle_dead_run` records it."""
    if not runner_gone(info):
        return None
    reason = (
        f"the runner (pid {info.get('pid')}) ended without recording a result "
        "(killed, or crashed hard); resume it from its last checkpoint"
    )
    return dict(state=RunState.FAILED, ended=_last_sign_of_life(run_dir), reason=reason, error=reason,
                log_tail=log_tail(run_dir))


def settle_dead_run(run_dir: Path) -> dict | None:
    """Record the failed end of a run whose runner is gone (dead_run_end) in run.json. Returns the new run.json,
    or None when there was nothing to record: the run is alive, ended, elsewhere, or changed meanwhile (the
    runner wrote its own end just before it died), or the workspace is read-only (readers still show it failed)."""
    try:
        info = read_run_json(run_dir)
        end = dead_run_end(run_dir, info)
        if end is None:
            return None
        end.pop("state")
        return transition(run_dir, RunState.FAILED, expect=LIVE_STATES, only_if=runner_gone, **end)
    except (IllegalTransition, OSError, ValueError):  # ValueError: run.json damaged (RunJsonUnreadable)
        return None
