"""A run's state: the one enum, and the one way a state is written (`transition`).

run.json's `state` is written only here. `transition` moves a run from the state it is recorded in to another
under the run lock and refuses a move the life of a run does not allow (a finished run cannot start again, a
waiting run cannot end stopped), so no writer can leave a run in a state that no reader expects. Readers compare
against `RunState` members; as a `str` enum they also equal the strings run.json holds.
"""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path

from phi3tui.core.runs.folder import RUN_FILE, read_run_json, run_lock, write_run_json


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


def transition(run_dir: Path, to: RunState, *, expect: tuple | None = None, **why) -> dict:
    """Move the run in `run_dir` to state `to`, merging `why` (reason, error, times, …) into run.json atomically
    under the run lock. Refuses (IllegalTransition) a move LEGAL_MOVES does not list, and one whose recorded state
    is not among `expect` when given (so two writers racing for the same move do not both win). `ended` is stamped
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
        if not can_move(current, to):
            raise IllegalTransition(f"run {run_dir.name}: a {current or 'new'} run cannot become {to}")
        if to in END_STATES and "ended" not in why:
            why["ended"] = time.time()
        data.update(why)
        data["state"] = to.value
        write_run_json(run_dir, data)
        return data
