"""Training runs: folder (the run-folder contract), store (reading runs: status, metrics, lists), launcher
(start, stop, kill, resume, promote, delete), queue (runs started one after another, sweeps), compare
(a sweep's runs side by side), watcher (the one poller of runs/), runner (the training
process, `python -m phi3tui.core.runs.runner RUN_DIR`; heavy, never imported from here), state (the run
states, and `transition`, the one writer of a run's state).
This is the package's public face: other packages import from here, not from its modules."""

from phi3tui.core.lazy import lazy_attributes
from phi3tui.core.run_folder import RunJsonUnreadable, log_tail, parse_float, read_run_json
from phi3tui.core.runs.state import (
    END_STATES,
    LIVE_STATES,
    OUT_OF_MEMORY,
    RESUMABLE_STATES,
    UNREADABLE,
    WAITING,
    IllegalTransition,
    RunState,
    process_alive,
    settle_dead_run,
    transition,
)
from phi3tui.core.runs.store import (
    MetricsTail,
    RunError,
    RunMetrics,
    RunSummary,
    checkpoint_table,
    config_diff,
    downsample,
    eta_seconds,
    find_run,
    format_duration,
    list_runs,
    live_run_summary,
    live_text,
    read_metrics,
    run_config_text,
    run_details,
    run_dirs,
    run_info,
    short_run_id,
    status_oneline,
    summarize,
)
from phi3tui.core.runs.queue import (
    drop_queued,
    live_here,
    move_queued,
    queue_runs,
    queued_runs,
    resume_queue_quietly,
    start_next,
    start_or_queue,
)
from phi3tui.core.runs.watcher import RunEvent, RunPoll, RunWatcher

# Imported on first use (PEP 562): the app's first paint needs only the watcher (and what it reads with).
_LAZY = {
    **dict.fromkeys(("delete_run", "kill_run", "PROMOTE_BY", "promote_best", "promote_choices", "resumable_checkpoint",
                     "resume_run", "start_run", "stop_run", "wait_for_run"), "launcher"),
    **dict.fromkeys(("SweepRow", "sweep_runs", "sweep_rows", "sweep_table"), "compare"),
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "WAITING",
    "SweepRow",
    "drop_queued",
    "live_here",
    "move_queued",
    "queue_runs",
    "queued_runs",
    "resume_queue_quietly",
    "start_next",
    "start_or_queue",
    "sweep_runs",
    "sweep_rows",
    "sweep_table",
    "RunEvent",
    "RunPoll",
    "RunJsonUnreadable",
    "UNREADABLE",
    "RunWatcher",
    "END_STATES",
    "IllegalTransition",
    "LIVE_STATES",
    "OUT_OF_MEMORY",
    "RESUMABLE_STATES",
    "RunState",
    "settle_dead_run",
    "transition",
    "MetricsTail",
    "RunError",
    "RunMetrics",
    "RunSummary",
    "checkpoint_table",
    "config_diff",
    "delete_run",
    "downsample",
    "eta_seconds",
    "find_run",
    "format_duration",
    "kill_run",
    "list_runs",
    "live_run_summary",
    "live_text",
    "log_tail",
    "parse_float",
    "process_alive",
    "PROMOTE_BY",
    "promote_best",
    "promote_choices",
    "read_metrics",
    "read_run_json",
    "resumable_checkpoint",
    "resume_run",
    "run_config_text",
    "run_details",
    "run_dirs",
    "run_info",
    "start_run",
    "short_run_id",
    "status_oneline",
    "stop_run",
    "summarize",
    "wait_for_run",
]
