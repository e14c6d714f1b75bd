"""The training process itself: `python -m phi3tui.core.runs.runner RUN_DIR` (the entry point).

Started detached by the launcher (core/runs/launcher.py: its own session, stdout/stderr into log.txt), directly or
through `mlx.launch` for data-parallel training on several machines. It forks (supervisor.py: the light parent
that outlives a trainer the OS kills) and trains in the child (trainer.py: mlx-lm's own load, load_dataset,
linear_to_lora_layers, build_schedule, trainer.train, trainer.evaluate, with the run's training mode from
tasks.py), recording through a TrainingCallback into the run folder (recorder.py), never by reading console
output. Only rank 0 writes the run folder; every state it records goes through state.transition.

Working directory: the workspace (RUN_DIR/../..), so the config's relative paths (model, data)
mean what they mean to `mlx_lm lora` run in the workspace.

Resume: every checkpoint NNNNNNN_adapters.safetensors has NNNNNNN_optimizer.safetensors (the
optimizer state, its step, which drives the LR schedule, and MLX's random key) and NNNNNNN_state.json
beside it. A resumed run restores them, replays the data order up to the checkpoint and numbers
its iterations, reports and checkpoints from there, so the curve continues where it stopped.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from phi3tui.core.run_folder import ADAPTERS_DIR, STOP_FILE, log_tail, read_run_json
from phi3tui.core.runs.failures import watchdog_hint
from phi3tui.core.runs.recorder import Diverged, RunRecorder
from phi3tui.core.runs.state import RunState
from phi3tui.core.runs.supervisor import died_of_memory, hand_on_queue, supervise
from phi3tui.core.runs.trainer import (
    MEMORY_LIMIT_ENV,
    DataError,
    Trainer,
    is_memory_failure,
    restore_last_good,
)

# What other modules and tests import from here (the runner's public names): they live in the modules above.
__all__ = ["DataError", "Diverged", "MEMORY_LIMIT_ENV", "failure_reason", "RunRecorder", "died_of_memory",
           "hand_on_queue", "is_memory_failure", "main", "train_main"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m phi3tui.core.runs.runner RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0]).resolve()
    os.chdir(run_dir.parent.parent)  # the workspace: the config's paths are relative to it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal never ends a run
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()  # before MLX: the parent stays light and outlives a trainer the OS kills
    if child:
        return supervise(run_dir, child)
    try:
        code = train_main(run_dir)
    except BaseException as exc:  # before train_main could record anything (MLX's distributed setup, …)
        traceback.print_exc()
        _record_early_failure(run_dir, exc)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def train_main(run_dir: Path) -> int:
    import mlx.core as mx
    from phi3tui.core.machine import host_name, machine_id

    world = mx.distributed.init()
    writer = world.rank() == 0
    if world.size() > 1 and not writer:
        from phi3tui.core.runs.hosts import write_rank_pid

        write_rank_pid(run_dir, world.rank())  # on this rank's machine: kill_run reaches it there over ssh
    recorder = RunRecorder(run_dir, writer)
    try:
        trainer = Trainer(run_dir, recorder, world)
    except Exception as exc:  # PHI3TUI_MEMORY_LIMIT_GB unreadable, …: ends failed with the reason, not unrecorded
        traceback.print_exc()
        reason = failure_reason(exc)
        recorder.move(RunState.FAILED, reason=reason, error=reason, log_tail=log_tail(run_dir))
        if writer:
            hand_on_queue(run_dir)
        return 1
    signal.signal(signal.SIGTERM, trainer.request_stop)  # a polite kill stops at the next step
    info = read_run_json(run_dir)
    recorder.move(
        RunState.RUNNING,
        runner_pid=os.getpid(),
        host=info.get("host") or host_name(),
        machine_id=info.get("machine_id") or machine_id(),
        world_size=world.size(),
        started=time.time(),
        ended=None,
        reason=None,
        error=None,
    )
    print(f"phi3tui runner: rank {world.rank()} of {world.size()}, run {run_dir.name}", flush=True)
    try:
        state = trainer.run(info)
        trainer.finish_reporters(failed=False)  # before the end state: a reader then finds the reporters' runs whole
        reason = {"finished": "all iterations done", "stopped": f"stopped at iteration {trainer.stopped_at}"}[state]
        recorder.move(RunState(state), reason=reason)
        (run_dir / STOP_FILE).unlink(missing_ok=True) if writer else None
        print(f"phi3tui runner: {state}: {reason}", flush=True)
        return 0
    except Diverged as exc:
        trainer.finish_reporters(failed=True)
        good = restore_last_good(run_dir / ADAPTERS_DIR) if writer else None
        keep = f"; kept the checkpoint of iteration {good}" if good else "; no checkpoint was saved before it"
        print(f"phi3tui runner: diverged: {exc}{keep}", flush=True)
        recorder.alarm("diverged", f"{exc}{keep}", recorder.last_iteration)
        recorder.move(RunState.DIVERGED, reason=f"{exc}{keep}", last_good_checkpoint=good)
        return 1
    except BaseException as exc:  # every failure ends the run as failed, with the error and the log's tail
        traceback.print_exc()
        trainer.finish_reporters(failed=True)
        sys.stdout.flush()
        sys.stderr.flush()
        error = failure_reason(exc)
        if is_memory_failure(exc):
            peak = mx.get_peak_memory() / 1e9
            reason = (f"out of memory at iteration {recorder.last_iteration}: peak {peak:.3f} GB "
                      f"(MLX can use {trainer.memory_limit_gb:.2f} GB here, {trainer.memory_source}); "
                      f"`phi3tui runs resume {run_dir.name} --smaller` halves the batch ({error})")
            recorder.move(RunState.OUT_OF_MEMORY, reason=reason, error=error, peak_memory_gb=peak,
                          log_tail=log_tail(run_dir))
            return 1
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            error = (f"the disk is full ({exc}); the last saved checkpoint is kept: free some space, "
                     "then resume the run")
        hint = watchdog_hint(error)
        reason = f"{error} ({hint})" if hint else error
        recorder.move(RunState.FAILED, reason=reason, error=error, log_tail=log_tail(run_dir))
        return 1
    finally:
        if writer:
            hand_on_queue(run_dir)


def _record_early_failure(run_dir: Path, exc: BaseException) -> None:
    """The run ends failed with its reason, not "ended without recording a result" (rank 0 only)."""
    from phi3tui.core.runs.state import IllegalTransition, transition

    if int(os.environ.get("MLX_RANK", "0") or 0) != 0:
        return
    reason = failure_reason(exc)
    try:
        transition(run_dir, RunState.FAILED, expect=(RunState.QUEUED, RunState.RUNNING), reason=reason, error=reason,
                   log_tail=log_tail(run_dir))
    except (IllegalTransition, OSError, ValueError):  # recorded already, or the folder is gone: nothing to add
        pass


def failure_reason(exc: BaseException) -> str:
    """A run's end in one line: the exception's own words (a DataError names split:line), never a traceback
    (that goes to log.txt, printed by the caller)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not text:
        text = "interrupted"
    name = type(exc).__name__
    return text if isinstance(exc, DataError) else f"{name}: {text}" if text else name


if __name__ == "__main__":
    sys.exit(main())
