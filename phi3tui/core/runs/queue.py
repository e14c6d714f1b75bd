"""The run queue: runs that start one after the other, on this machine, with nobody attached.

A queued run is a run folder like any other (its config frozen when it was queued, so editing
lora_config.yaml later changes nothing already queued) whose run.json says state `waiting`; the order
is runs/queue.txt, one run id a line (a waiting run missing from it goes last, an id without a waiting
run is ignored). All of it is files, so the queue survives the app, the terminal and a reboot.

Who starts the next run: the runner, as it ends (runner.hand_on_queue runs this module's
main in a process of its own), and as a backstop the next `phi3tui` (the app, the run commands)
and `phi3tui runs resume-queue`. They all go through start_next, which holds runs/.queue.lock (flock:
released by the kernel when its holder dies, so a crash never leaves the queue locked) while it checks
that nothing runs on this machine and launches the head: exactly one of several racing starters starts it.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


from phi3tui.core.files import atomic_write_text
from phi3tui.core.run_folder import (
    QUEUE_FILE,
    file_lock,
    RunJsonUnreadable,
    log_tail,
    read_run_json,
    update_run_json,
)
from phi3tui.core.runs.state import (
    END_UNRECORDED,
    LIVE_STATES,
    WAITING,
    IllegalTransition,
    RunState,
    on_this_host,
    settle_dead_run,
    transition,
)
from phi3tui.core.runs.stall import holds_the_machine
from phi3tui.core.runs.store import RunError, find_run, run_dirs, run_info
from phi3tui.core.workspace import Workspace

# The launcher is imported by the functions that start or delete runs: the app's watcher, before the first
# paint, needs only the queue's order.

QUEUE_LOCK = ".queue.lock"


@contextmanager
def queue_lock(workspace: Workspace):
    workspace.runs_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(workspace.runs_dir / QUEUE_LOCK):
        yield


# -- reading ------------------------------------------------------------------------------------
def queue_order(workspace: Workspace) -> list[str]:
    try:
        text = (workspace.runs_dir / QUEUE_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def in_queue_order(items: list, order: list[str], name=lambda item: item.name) -> list:
    """`items` (waiting runs) in the queue's order; those the order file lacks go last, oldest first."""
    rank = {run_id: i for i, run_id in enumerate(order)}
    return sorted(items, key=lambda item: (rank.get(name(item), len(rank)), name(item)))


def queued_runs(workspace: Workspace) -> list[Path]:
    """The waiting run folders, next first."""
    waiting = []
    for run_dir in run_dirs(workspace):
        try:
            if read_run_json(run_dir).get("state") == WAITING:
                waiting.append(run_dir)
        except RunJsonUnreadable:
            continue
    return in_queue_order(waiting, queue_order(workspace))


def _write_order(workspace: Workspace, ids: list[str]) -> None:
    atomic_write_text(workspace.runs_dir / QUEUE_FILE, "".join(f"{i}\n" for i in ids))


def live_here(workspace: Workspace) -> list[Path]:
    """Runs of this workspace live on this machine (a run whose process is gone is recorded failed on the way)."""
    out = []
    for run_dir in run_dirs(workspace):
        info = run_info(run_dir)
        if info.get(END_UNRECORDED):
            settle_dead_run(run_dir)
        if (info.get("state") in LIVE_STATES and on_this_host(info)) or holds_the_machine(info):
            out.append(run_dir)
    return out


# -- adding ----------------------------------------------------------------------------------------
def new_sweep_id() -> str:
    import secrets  # here: it imports hmac and hashlib, which the first paint does not need

    return "sweep-" + time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def plan_points(workspace: Workspace, config_path=None, overrides: dict | None = None,
                sweep: dict[str, list] | None = None) -> tuple[dict, list[dict]]:
    """The base config's values and the grid points to queue ([{}] for one plain run), each point checked
    as a whole config before anything is written. Raises ConfigRefused (the base) or SweepError (a point)."""
    from phi3tui.core.runs.launcher import ConfigRefused
    from phi3tui.core.runs.gate import check_before_run
    from phi3tui.core.config import prepare_run_config, review_config
    from phi3tui.core.config import SweepError, point_label, set_dotted, sweep_block, sweep_grid

    config_path = Path(config_path) if config_path else workspace.config_path
    values, findings = prepare_run_config(config_path, workspace.root)
    findings = check_before_run(workspace.root, values, findings)
    if any(f.level == "error" for f in findings):
        raise ConfigRefused(config_path, findings)
    if sweep is None:
        sweep = sweep_block(values, str(config_path))
    base = {k: v for k, v in values.items() if k != "sweep"}
    if not sweep:
        return base, [{}]
    points = sweep_grid(sweep)
    import yaml  # here, not at the top: the app's first paint imports this module (the run watcher), not PyYAML

    for point in points:
        review = review_config(yaml.safe_dump(set_dotted({**base, **(overrides or {})}, point), sort_keys=False),
                               workspace.root)
        # The gate on every point before any is queued (a point's batch_size may be more than a split holds).
        errors = [f for f in check_before_run(workspace.root, review.values, review.findings) if f.level == "error"]
        if errors:
            raise SweepError(f"sweep run {point_label(point)}: " + "; ".join(str(f) for f in errors))
    return base, points


def queue_runs(workspace: Workspace, config_path=None, overrides: dict | None = None,
               sweep: dict[str, list] | None = None, hosts=None, hostfile=None, start: bool = True,
               backend=None) -> list[Path]:
    """Add one run (or a sweep's grid: `sweep`, else the config's `sweep:` block) to the end of the queue,
    then start the head if nothing runs here. Returns the new run folders in queue order."""
    from phi3tui.core.runs.launcher import create_run
    from phi3tui.core.config import set_dotted

    base, points = plan_points(workspace, config_path, overrides, sweep)
    sweep_id = new_sweep_id() if points != [{}] else None
    made = []
    for i, point in enumerate(points):
        # A dotted key overrides its whole top-level value (create_run sets top-level keys).
        full = set_dotted(base, point)
        run_overrides = {key.split(".")[0]: full[key.split(".")[0]] for key in point}
        run_overrides.update(overrides or {})
        extra = {"sweep_id": sweep_id, "sweep_point": point, "sweep_index": i, "sweep_size": len(points)} if sweep_id else {}
        run_dir = create_run(workspace, config_path, run_overrides or None, hosts, hostfile, backend,
                             waiting=dict(queued_at=time.time(), **extra))
        made.append(run_dir)
    with queue_lock(workspace):
        order = [d.name for d in queued_runs(workspace) if d not in made]
        _write_order(workspace, order + [d.name for d in made])
    if start:
        start_next(workspace)
    return made


class RunBusy(RunError):
    """A start refused because a run of this workspace is live on this machine."""

    def __init__(self, live: Path):
        self.live = live
        super().__init__(f"run {live.name} is running on this machine; add --queue to start this run when it ends, "
                         "or --now to run both at once")


def start_alone(workspace: Workspace, config_path=None, overrides: dict | None = None, hosts=None, hostfile=None,
                backend=None, keep_awake: str | None = None) -> Path:
    """Start a run now unless a run of this workspace is live on this machine (RunBusy). The check and the
    start hold the queue's lock (the one start_next holds), so of two starts at once one starts and the other
    is refused. The gate runs first, outside the lock: a refused start writes nothing, not even runs/."""
    from phi3tui.core.runs.launcher import create_run, launch, prepare_run

    prepared = prepare_run(workspace, config_path, overrides, hosts, hostfile, backend, keep_awake)
    with queue_lock(workspace):
        live = live_here(workspace)
        if live:
            raise RunBusy(live[0])
        run_dir = create_run(workspace, prepared=prepared)
        launch(run_dir)
    return run_dir


@dataclass(frozen=True)
class HeldMemory:
    """What a run live on this machine holds of the memory MLX can use."""
    run_id: str
    bytes: int
    source: str  # which figure: "its recorded MLX peak" or "its estimate"

    def __str__(self) -> str:
        from phi3tui.core.models import human_bytes

        return f"run {self.run_id} {human_bytes(self.bytes)} ({self.source})"


def memory_held_here(workspace: Workspace) -> list[HeldMemory]:
    """Each run of this workspace live on this machine, with the memory it holds: the highest MLX peak it has
    recorded (metrics.jsonl's peak_mem), else, before its first report, the memory estimate of its frozen config."""
    from phi3tui.core.config import review_config
    from phi3tui.core.run_folder import CONFIG_FILE
    from phi3tui.core.runs.supervisor import recorded_peak_bytes

    held = []
    for run_dir in live_here(workspace):
        peak = recorded_peak_bytes(run_dir)
        if peak:
            held.append(HeldMemory(run_dir.name, peak, "its recorded MLX peak"))
            continue
        try:
            estimate = review_config((run_dir / CONFIG_FILE).read_text(encoding="utf-8"), workspace.root).memory
        except OSError:
            estimate = None
        if estimate is not None:
            held.append(HeldMemory(run_dir.name, estimate.total, "its estimate"))
    return held


def start_beside(workspace: Workspace, config_path=None, overrides: dict | None = None, hosts=None, hostfile=None,
                 backend=None, keep_awake: str | None = None) -> Path:
    """`train --now`: start a run even while others run here, but only if all fit: the memory the live runs hold
    (memory_held_here) is counted as in use by the memory check, which refuses (ConfigRefused) naming both the new
    run's estimate and each running run's figure. The start holds the queue's lock (the one start_alone and the
    queue's starter hold), and a run started here since the check (another `train --now` typed at once) is counted
    by a second check under it: two runs that fit only one at a time never both start. The first check runs
    outside the lock, so a refused start writes nothing, not even runs/."""
    from phi3tui.core.runs.launcher import create_run, launch

    held = memory_held_here(workspace)
    prepared = _prepare_beside(workspace, held, config_path, overrides, hosts, hostfile, backend, keep_awake)
    with queue_lock(workspace):
        now_held = memory_held_here(workspace)
        if {h.run_id for h in now_held} - {h.run_id for h in held}:
            prepared = _prepare_beside(workspace, now_held, config_path, overrides, hosts, hostfile, backend,
                                       keep_awake)
        run_dir = create_run(workspace, prepared=prepared)
        launch(run_dir)
    return run_dir


def _prepare_beside(workspace: Workspace, held: list[HeldMemory], config_path, overrides, hosts, hostfile, backend,
                    keep_awake):
    """The gate of a run started beside the `held` ones; a memory refusal names each of them and its figure."""
    from phi3tui.core.runs.launcher import ConfigRefused, prepare_run

    in_use = sum(h.bytes for h in held)
    try:
        return prepare_run(workspace, config_path, overrides, hosts, hostfile, backend, keep_awake, in_use=in_use)
    except ConfigRefused as exc:
        if not held or not any(f.field == "memory" for f in exc.findings):
            raise
        import dataclasses

        beside = "; running here: " + ", ".join(str(h) for h in held)
        findings = [dataclasses.replace(f, message=f.message + beside) if f.field == "memory" else f
                    for f in exc.findings]
        raise ConfigRefused(Path(config_path) if config_path else workspace.config_path, findings) from None


def start_or_queue(workspace: Workspace, config_path=None) -> list[Path]:
    """What the Train screen's New run does: start now when nothing runs here and the config holds no
    sweep: block, else queue it (a sweep: the whole grid). Returns the new run folders, first first."""
    from phi3tui.core.config import load_config_values
    from phi3tui.core.config import sweep_block

    config_path = Path(config_path) if config_path else workspace.config_path
    if not live_here(workspace) and not sweep_block(load_config_values(config_path), str(config_path)):
        try:
            return [start_alone(workspace, config_path)]
        except RunBusy:  # another start won the race: this one waits behind it
            pass
    return queue_runs(workspace, config_path)


# -- changing ---------------------------------------------------------------------------------------
def _waiting(workspace: Workspace, ref: str) -> Path:
    run_dir = find_run(workspace, ref)
    state = run_info(run_dir).get("state")
    if state != WAITING:
        raise RunError(f"run {run_dir.name} is {state}, not waiting in the queue; `phi3tui runs queue` lists the queue")
    return run_dir


def drop_queued(workspace: Workspace, ref: str) -> Path:
    """Take a waiting run out of the queue (its folder, holding only its config, is deleted)."""
    from phi3tui.core.runs.launcher import delete_run
    with queue_lock(workspace):
        run_dir = _waiting(workspace, ref)
        delete_run(run_dir)
        _write_order(workspace, [d.name for d in queued_runs(workspace)])
    return run_dir


def move_queued(workspace: Workspace, ref: str, delta: int) -> int:
    """Move a waiting run `delta` places (negative: sooner). Returns its new position, 1 = next."""
    with queue_lock(workspace):
        run_dir = _waiting(workspace, ref)
        ids = [d.name for d in queued_runs(workspace)]
        i = ids.index(run_dir.name)
        j = max(0, min(len(ids) - 1, i + delta))
        ids.insert(j, ids.pop(i))
        _write_order(workspace, ids)
    return j + 1


# -- starting ------------------------------------------------------------------------------------
def start_next(workspace: Workspace) -> Path | None:
    """Launch the head of the queue when no run of this workspace is live on this machine.
    Returns the run started, or None (something runs, or nothing waits)."""
    from phi3tui.core.runs.launcher import launch
    with queue_lock(workspace):
        if live_here(workspace):
            return None
        for run_dir in queued_runs(workspace):
            refused = _refusal(workspace, run_dir)
            if refused:  # the gate, as for every start: it ends failed with the reason, the next one goes
                try:
                    transition(run_dir, RunState.FAILED, expect=(WAITING,), reason=refused, error=refused)
                except IllegalTransition:  # moved meanwhile (dropped, started): leave it as it is now
                    pass
                continue
            # `created` restarts the grace a starting run has before it must show a live pid.
            transition(run_dir, RunState.QUEUED, expect=(WAITING,), created=time.time(), dequeued=time.time())
            try:
                launch(run_dir)
            except (RunError, OSError) as exc:  # this one cannot start (mlx.launch gone): say so, try the next
                reason = f"the queue could not start it: {exc}"
                why = dict(reason=reason, error=reason, log_tail=log_tail(run_dir))
                try:
                    transition(run_dir, RunState.FAILED, expect=(RunState.QUEUED,), **why)
                except IllegalTransition:  # launch recorded the failure already: the queue's words say more
                    update_run_json(run_dir, **why)
                continue
            _write_order(workspace, [d.name for d in queued_runs(workspace)])
            return run_dir
        return None


def _refusal(workspace: Workspace, run_dir: Path) -> str:
    """The gate's refusal of a queued run as it is about to start, in one line ("" when it may start). Its
    frozen config.yaml was reviewed when it was queued; the data, probes and environment may have changed since."""
    from phi3tui.core.config import ConfigError, load_config_values
    from phi3tui.core.run_folder import CONFIG_FILE
    from phi3tui.core.runs.gate import check_before_run, refusal_line

    try:
        values = load_config_values(run_dir / CONFIG_FILE)
    except ConfigError as exc:
        return f"the queue did not start it: {exc}"
    found = check_before_run(workspace.root, values)
    line = refusal_line(found)
    return (f"the queue did not start it: {line}; fix that, then `phi3tui runs resume {run_dir.name}`"
            if line else "")


def resume_queue_quietly(workspace: Workspace) -> Path | None:
    """The backstop of every `phi3tui` start: start a stalled queue; never fail the command for it."""
    if not (workspace.runs_dir / QUEUE_FILE).is_file() or not workspace.writable:
        return None
    try:
        return start_next(workspace)
    except (RunError, OSError, ValueError):
        return None


HAND_ON_WAIT_S = 60  # how long the queue's starter waits for the process that handed on to end


def wait_for_process_end(pid: int, timeout: float = HAND_ON_WAIT_S) -> bool:
    """Whether process `pid` ended (gone, or a zombie nobody has reaped yet) within `timeout` seconds."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            return True
        time.sleep(0.05)
    return False


def main(argv: list[str] | None = None) -> int:
    """main([WORKSPACE, HANDED_ON_BY_PID]): what a runner starts as it ends (supervisor.hand_on_queue). It first
    waits for that process to end: a run killed as stalled stays `stalled` and counts as live while its supervisor
    lives, so judging before it is gone would leave the queue stuck (and a trainer ending holds its memory until
    then)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2) or (len(argv) == 2 and not argv[1].isdigit()):
        print("usage: main([WORKSPACE, HANDED_ON_BY_PID])", file=sys.stderr)
        return 2
    if len(argv) == 2:
        wait_for_process_end(int(argv[1]))
    started = start_next(Workspace(Path(argv[0]).resolve()))
    if started is not None:
        print(f"phi3tui: queue: started run {started.name}", flush=True)
    return 0

