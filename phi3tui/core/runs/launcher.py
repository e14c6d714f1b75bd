"""Starting and controlling runs: create a run folder, launch its detached runner, stop, kill,
resume, promote, delete. Reading run folders (status, metrics, lists) is store.py's job."""


from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from phi3tui.core.adapters import LATEST_WEIGHTS, checkpoint_names, checkpoints_in
from phi3tui.core.files import atomic_copy, atomic_write_text, shell_command
from phi3tui.core.run_folder import (
    ADAPTERS_DIR,
    CONFIG_FILE,
    GRPO_SAMPLES,
    LOG_FILE,
    METRICS_FILE,
    RUN_FILE,
    STOP_FILE,
    log_tail,
    metrics_line,
    parse_float,
    read_run_json,
    update_run_json,
)
from phi3tui.core.machine import host_name, machine_id
from phi3tui.core.runs.hosts import (
    LAUNCH_HOSTFILE,
    HostsError,
    check_batch,
    launch_command,
    load_plan,
    plan_hosts,
    send_run_files,
    signal_remote_ranks,
    starting_port,
    write_plan,
)
from phi3tui.core.workspace import Workspace, load_config_values

from phi3tui.core.runs.state import (
    END_STATES,
    LIVE_STATES,
    RESUMABLE_STATES,
    UNREADABLE,
    IllegalTransition,
    RunState,
    _create_time,
    as_state,
    on_this_host,
    process_alive,
    settle_dead_run,
    transition,
)
from phi3tui.core.runs.gate import RunRefused, require_ready
from phi3tui.core.runs.store import RunError, checkpoint_table, read_metrics, run_info


class ConfigRefused(RunRefused):
    """The gate refused a new run (the config review's errors, or the gate's own: data lines, probes, …)."""

    def __init__(self, config_path: Path, findings: list):
        super().__init__(findings, config_path)


# -- identity and lookup ---------------------------------------------------------------
def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


# -- starting ------------------------------------------------------------------------------
def freeze_config(
    workspace: Workspace, config_path: Path | None, run_id: str, overrides: dict | None, in_use: int = 0
) -> tuple[dict, list]:
    """The migrated config with the run's own adapter folder, and the config review's findings (the gate,
    prepare_run, refuses on their errors). in_use: bytes of MLX memory other runs here hold already."""
    from phi3tui.core.config import prepare_run_config

    config_path = Path(config_path) if config_path else workspace.config_path
    values, findings = prepare_run_config(config_path, workspace.root, in_use=in_use)
    values = dict(values)
    values.pop("sweep", None)  # phi3tui's sweep block (core/runs/queue.py) is never passed on to mlx-lm
    values.update(overrides or {})
    values["train"] = True
    values["adapter_path"] = f"runs/{run_id}/{ADAPTERS_DIR}"
    return values, findings


@dataclass
class PreparedRun:
    """A new run checked by the gate and ready to be written: nothing of it is on disk yet."""

    run_id: str
    values: dict
    findings: list
    plan: object  # hosts.HostPlan or None
    awake: str
    config_path: Path | str | None
    overrides: dict | None
    hostfile: str | None


def prepare_run(
    workspace: Workspace,
    config_path: Path | str | None = None,
    overrides: dict | None = None,
    hosts: list[str] | None = None,
    hostfile: str | None = None,
    backend: str | None = None,
    keep_awake: str | None = None,
    in_use: int = 0,
) -> PreparedRun:
    """Every check a new run passes before anything is written (the gate: core/runs/gate.py). Raises
    ConfigRefused (the gate's findings, each with its place and what to do) or RunError. in_use: bytes of MLX
    memory already held here (runs beside which this one starts), counted by the memory check."""
    if not workspace.writable:
        raise RunError(
            f"{workspace.root} is read-only; runs are written into runs/ inside it: copy the workspace to a writable folder"
        )
    awake = keep_awake_mode(keep_awake)
    run_id = new_run_id()
    source = Path(config_path) if config_path else workspace.config_path
    values, findings = freeze_config(workspace, config_path, run_id, overrides, in_use)
    try:
        findings = require_ready(workspace.root, values, findings, hostfile=hostfile)
    except RunRefused as exc:
        raise ConfigRefused(source, exc.findings) from None
    plan = plan_hosts(hosts, hostfile, backend)
    if plan is not None:
        from phi3tui.core.config import mlx_lm_defaults

        check_batch(int(values.get("batch_size") or mlx_lm_defaults()["batch_size"]), plan.ranks)
    return PreparedRun(run_id, values, findings, plan, awake, config_path, overrides, hostfile)


def create_run(
    workspace: Workspace,
    config_path: Path | str | None = None,
    overrides: dict | None = None,
    hosts: list[str] | None = None,
    hostfile: str | None = None,
    backend: str | None = None,
    keep_awake: str | None = None,
    waiting: dict | None = None,
    prepared: PreparedRun | None = None,
) -> Path:
    """A new run folder with its frozen config.yaml and a queued run.json (nothing started yet), after the
    gate (prepare_run, or `prepared`: its result). With hosts or a hostfile, they are checked first (names
    resolved, rank 0 here, the batch split evenly). keep_awake: auto | off for this run (None: the
    `keep_awake` setting). waiting: the run waits in the queue (state waiting, not queued), with these fields
    added to its run.json (queued_at, its sweep point …)."""
    p = prepared or prepare_run(workspace, config_path, overrides, hosts, hostfile, backend, keep_awake)
    run_id, values, findings, plan, config_path, overrides, hostfile = (
        p.run_id, p.values, p.findings, p.plan, p.config_path, p.overrides, p.hostfile)
    run_dir = workspace.runs_dir / run_id
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
    if plan is not None:
        write_plan(run_dir, plan)
    # What the checks changed or noticed goes into the run's log, where the run's story is told.
    notes = [str(f) for f in findings]
    if overrides:
        notes.append(f"overridden for this run: {', '.join(f'{k}={v}' for k, v in overrides.items())}")
    atomic_write_text(run_dir / LOG_FILE, "".join(f"phi3tui: config {note}\n" for note in notes))
    transition(
        run_dir,
        RunState.WAITING if waiting is not None else RunState.QUEUED,
        expect=(None,),
        id=run_id,
        created=time.time(),
        host=host_name(),
        machine_id=machine_id(),
        keep_awake=p.awake,
        hosts=plan.names if plan else None,
        backend=plan.backend if plan else None,
        hostfile=str(hostfile) if hostfile else None,
        config_source=str(Path(config_path).resolve() if config_path else workspace.config_path),
        iters=values.get("iters"),
        iteration=0,
        config_notes=notes,
        alarms=[],
        resumes=[],
        **(waiting or {}),
    )
    return run_dir


def mlx_launch_path() -> str:
    beside = Path(sys.executable).parent / "mlx.launch"
    found = str(beside) if beside.is_file() else shutil.which("mlx.launch")
    if not found:
        raise RunError("mlx.launch is not installed (it comes with the mlx package); install mlx to train on several machines")
    return found


def runner_command(run_dir: Path, workspace_root: Path, env: dict) -> list[str]:
    cmd = [sys.executable, "-m", "phi3tui.core.runs.runner", str(run_dir)]
    plan = load_plan(run_dir)
    if plan is None:
        return cmd
    return launch_command(mlx_launch_path(), plan, run_dir / LAUNCH_HOSTFILE, workspace_root, env, cmd,
                          starting_port(plan, run_dir.name))


def _remote_files(run_dir: Path, info: dict) -> tuple[list[str], list[str]]:
    """What every rank reads in the run folder (the config, run.json, the checkpoint a resume starts from), and
    the workspace paths the config names that must be on every host too (a local model folder, the data)."""
    files = [CONFIG_FILE, RUN_FILE]
    if info.get("resume_from"):
        files += [f"{ADAPTERS_DIR}/{name}" for name in checkpoint_names(int(info["resume_from"]))]
    values = load_config_values(run_dir / CONFIG_FILE)
    needed = []
    for key in ("model", "data"):
        value = values.get(key)
        if isinstance(value, str) and value and (run_dir.parent.parent / value).exists():
            needed.append(value)
    return files, needed


def launch(run_dir: Path) -> int:
    """Start the runner detached: its own session, output into log.txt. Returns its pid."""
    run_dir = run_dir.resolve()
    workspace_root = run_dir.parent.parent
    info = read_run_json(run_dir)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The runner must import this same phi3tui, even when it is not installed (a source checkout).
    package_parent = str(Path(__file__).resolve().parents[3])  # phi3tui/core/runs/launcher.py
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    plan = load_plan(run_dir)
    notes = []
    if plan is not None and plan.remote():
        try:
            notes = send_run_files(plan, run_dir, *_remote_files(run_dir, info))
        except HostsError as exc:
            transition(run_dir, RunState.FAILED, expect=(RunState.QUEUED,), reason=str(exc), error=str(exc))
            raise
    cmd = runner_command(run_dir, workspace_root, env)
    with open(run_dir / LOG_FILE, "ab") as log:
        log.write("".join(f"phi3tui: host {note}\n" for note in notes).encode())
        log.write(f"phi3tui: starting {shell_command(*cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=workspace_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # closing the app, the terminal or the SSH session does not end it
        )
    # Reap it when it ends, so a long-lived app does not collect zombies (which look alive).
    threading.Thread(target=proc.wait, daemon=True).start()
    update_run_json(run_dir, pid=proc.pid, pid_started=_create_time(proc.pid), launched=time.time())
    return proc.pid


def keep_awake_mode(asked: str | None) -> str:
    from phi3tui.core.awake import KEEP_AWAKE_MODES
    from phi3tui.core.settings import load_settings

    mode = asked or load_settings().settings.keep_awake
    if mode not in KEEP_AWAKE_MODES:
        raise RunError(f"keep_awake {mode!r}: use one of {', '.join(KEEP_AWAKE_MODES)}")
    return mode


def start_run(workspace: Workspace, config_path=None, overrides=None, hosts=None, hostfile=None, backend=None,
              keep_awake: str | None = None) -> Path:
    run_dir = create_run(workspace, config_path, overrides, hosts, hostfile, backend, keep_awake)
    launch(run_dir)
    return run_dir


# -- control ------------------------------------------------------------------------------------
def stop_run(run_dir: Path) -> str:
    """Ask the runner to save at the next step and end as stopped. A stalled run whose process still lives makes
    no next step, so it takes no polite stop: it is recorded stopped and its trainer killed (its supervisor then
    hands on the queue); it resumes from its last checkpoint. Returns what was done, for the user."""
    from phi3tui.core.runs.stall import holds_the_machine

    info = run_info(run_dir)
    if as_state(info.get("state")) is RunState.STALLED and holds_the_machine(info):
        return _stop_stalled(run_dir, info)
    if info.get("state") not in LIVE_STATES:
        raise RunError(f"run {run_dir.name} is {info.get('state')}, not running; nothing to stop")
    (run_dir / STOP_FILE).touch()
    update_run_json(run_dir, stop_requested=time.time())
    return f"asked run {run_dir.name} to stop at its next step (it saves its adapter first)"


def _stop_stalled(run_dir: Path, info: dict) -> str:
    trainer = info.get("runner_pid")
    at = info.get("iteration", 0)
    reason = (f"stopped by the user while stalled at iteration {at}: a stalled process takes no polite stop, so its "
              f"trainer (pid {trainer or info.get('pid')}) was killed; resume it from its last checkpoint")
    try:
        transition(run_dir, RunState.STOPPED, expect=(RunState.STALLED,), reason=reason, stop_requested=time.time())
    except IllegalTransition:  # it stepped again meanwhile (running): the polite stop reaches it now
        return stop_run(run_dir)
    try:
        if trainer:
            os.kill(int(trainer), signal.SIGKILL)  # a hung or stopped process takes no polite signal
        else:  # no trainer recorded: the runner's whole group (it leads its own session)
            os.killpg(int(info["pid"]), signal.SIGKILL)
    except (OSError, KeyError, ValueError):
        pass
    return (f"stopped run {run_dir.name}: it was stalled, so its trainer was killed; "
            f"`phi3tui runs resume {run_dir.name}` continues it from its last checkpoint")


def kill_run(run_dir: Path) -> None:
    """End a runner that does not answer (SIGKILL to its whole process group) and record it as failed."""
    info = run_info(run_dir)
    if info.get("state") not in LIVE_STATES:
        raise RunError(f"run {run_dir.name} is {info.get('state')}, not running; nothing to kill")
    pid = info.get("pid")
    if not on_this_host(info):
        raise RunError(f"run {run_dir.name} runs on {info.get('host')}; kill it there")
    if pid and process_alive(info):
        try:
            os.killpg(pid, signal.SIGKILL)  # the runner leads its own session: its group is its pid
        except ProcessLookupError:
            pass
        for _ in range(50):
            if not process_alive(info):
                break
            time.sleep(0.1)
    reason = f"killed by the user at iteration {info.get('iteration', 0)}; resume it from its last checkpoint"
    plan = load_plan(run_dir)
    if plan is not None and plan.remote():  # mlx.launch's end leaves them running: they ignore SIGHUP
        problems = signal_remote_ranks(plan, run_dir, "KILL")
        if problems:
            reason += "; not reached (end them there): " + "; ".join(problems)
    try:
        transition(run_dir, RunState.FAILED, expect=LIVE_STATES, reason=reason, error=reason, log_tail=log_tail(run_dir))
    except IllegalTransition:  # the runner recorded its own end before it was killed: that end stands
        pass
    (run_dir / STOP_FILE).unlink(missing_ok=True)


def resumable_checkpoint(run_dir: Path) -> int:
    """The newest checkpoint with its optimizer state beside it (0: none, the run starts over)."""
    best = 0
    for c in checkpoints_in(run_dir / ADAPTERS_DIR):
        if c.iteration is None:
            continue
        _, optimizer, state = checkpoint_names(c.iteration)
        if (run_dir / ADAPTERS_DIR / optimizer).is_file() and (run_dir / ADAPTERS_DIR / state).is_file():
            best = max(best, c.iteration)
    return best


def _trim_metrics(run_dir: Path, iteration: int) -> tuple[int, tuple]:
    """Keep the curve up to the checkpoint (a resumed run writes what came after again).

    Returns the tokens trained so far and the best (validation loss, iteration) kept.
    """
    path = run_dir / METRICS_FILE
    if not path.exists():
        return 0, (None, None)
    kept, tokens, best = [], 0, (None, None)
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        it = r.get("iteration", 0)
        keep = (r.get("kind") == "train" and it <= iteration) or (r.get("kind") == "val" and it < iteration)
        if keep:
            kept.append(metrics_line(r))
            if r.get("kind") == "train":
                tokens = r.get("trained_tokens", tokens)
            loss = parse_float(r.get("loss"))
            if r.get("kind") == "val" and math.isfinite(loss) and (best[0] is None or loss < best[0]):
                best = (loss, it)
    atomic_write_text(path, "".join(kept))
    return tokens, best


def _trim_samples(run_dir: Path, iteration: int) -> None:
    """A GRPO run's sampled groups up to the checkpoint: the resumed run samples the groups after it again."""
    path = run_dir / GRPO_SAMPLES
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            group = json.loads(line)
        except ValueError:
            continue  # a line cut by the stop
        if isinstance(group, dict) and int(group.get("iteration", 0)) <= iteration:
            kept.append(line + "\n")
    atomic_write_text(path, "".join(kept))


def smaller_batch(run_dir: Path, start: int) -> dict:
    """For `resume --smaller`: half the batch, twice grad_accumulation_steps (the same examples per update),
    and twice the iterations left (the same updates, so the schedule ends where it would). Rewrites config.yaml."""
    from phi3tui.core.workspace import load_config_values

    path = run_dir / CONFIG_FILE
    values = load_config_values(path)
    batch = int(values.get("batch_size") or 4)
    accum = int(values.get("grad_accumulation_steps") or 1)
    iters = int(values.get("iters") or 0)
    if batch < 2 or batch % 2:
        raise RunError(f"run {run_dir.name}: batch_size is {batch}; only an even batch_size can be halved with "
                       "the same effective batch: lower max_seq_length or turn on grad_checkpoint in a new run")
    change = {"from": start, "batch_size": [batch, batch // 2], "grad_accumulation_steps": [accum, accum * 2],
              "iters": [iters, start + 2 * (iters - start)], "effective_batch": batch * accum}
    values.update(batch_size=batch // 2, grad_accumulation_steps=accum * 2, iters=change["iters"][1])
    atomic_write_text(path, yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
    return change


def resume_run(run_dir: Path, smaller: bool = False) -> int:
    """Start a stopped, failed, diverged or out-of-memory run again from its last checkpoint. Returns that
    iteration. smaller: with half the batch and twice grad_accumulation_steps (see smaller_batch)."""
    settle_dead_run(run_dir)  # a killed runner's run is recorded failed before it moves on from there
    info = run_info(run_dir)
    state = info.get("state")
    if state not in RESUMABLE_STATES:
        raise RunError(f"run {run_dir.name} is {state}; only a {', '.join(RESUMABLE_STATES[:-1])} or "
                       f"{RESUMABLE_STATES[-1]} run can be resumed; start a new one with `phi3tui train`")
    start = resumable_checkpoint(run_dir)
    if info.get("iters") and start >= int(info["iters"]):
        raise RunError(f"run {run_dir.name} already saved its last iteration ({start}); nothing to resume")
    # The gate, as for a new run: the data, probes or environment may have changed since it last started.
    require_ready(run_dir.parent.parent, load_config_values(run_dir / CONFIG_FILE), config_path=run_dir / CONFIG_FILE,
                  what=f"the resume of run {run_dir.name}", run_dir=run_dir, resume_from=start)
    shrunk = smaller_batch(run_dir, start) if smaller else None
    tokens, (best_loss, best_it) = _trim_metrics(run_dir, start)
    _trim_samples(run_dir, start)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    resumes = list(info.get("resumes") or []) + [{"from": start, "time": time.time(), "after": state,
                                                   **({"smaller": shrunk} if shrunk else {})}]
    try:
        transition(
            run_dir,
            RunState.QUEUED,
            expect=(state,),  # two resumes at once: one starts a runner, the other is refused
            resume_from=start,
            trained_tokens_at_resume=tokens,
            best_val_loss=best_loss,
            best_val_iteration=best_it,
            iteration=start,
            iters=shrunk["iters"][1] if shrunk else info.get("iters"),
            resumes=resumes,
            pid=None,
            pid_started=None,
            created_attempt=time.time(),
            created=info.get("created"),
            ended=None,
            reason=None,
            error=None,
            log_tail=None,
        )
    except IllegalTransition as exc:
        raise RunError(f"{exc}; something else moved it meanwhile (`phi3tui runs status {run_dir.name}`)") from None
    with open(run_dir / LOG_FILE, "ab") as log:
        log.write(f"\nphi3tui: resuming from iteration {start}\n".encode())
        if shrunk:
            log.write(("phi3tui: smaller: batch_size {} → {}, grad_accumulation_steps {} → {}, iters {} → {} "
                       "(effective batch {} unchanged)\n").format(*shrunk["batch_size"], *shrunk["grad_accumulation_steps"],
                                                                *shrunk["iters"], shrunk["effective_batch"]).encode())
    launch(run_dir)
    return start


PROMOTE_BY = ("val_loss", "mc2", "mc1", "test_loss")  # val_loss: the runner's; the rest: saved evaluations


def promote_best(run_dir: Path, by: str = "val_loss") -> tuple[int, float]:
    """Copy the best checkpoint to adapters.safetensors: by the nearest validation loss (lowest), or by a
    score of the checkpoints' saved evaluations (eval-*.json): mc2 or mc1 (highest) or test_loss (lowest)."""
    from phi3tui.core.eval import best_by, checkpoint_scores

    if by not in PROMOTE_BY:
        raise RunError(f"cannot promote by {by!r}: use one of {', '.join(PROMOTE_BY)}")
    settle_dead_run(run_dir)
    info = run_info(run_dir)
    if info.get("state") in LIVE_STATES:
        raise RunError(f"run {run_dir.name} is still {info.get('state')}; stop it first (it rewrites {LATEST_WEIGHTS})")
    table = {it: (path, loss) for it, path, loss in checkpoint_table(run_dir)}
    if by == "val_loss":
        valid = [(it, loss) for it, (_, loss) in table.items() if loss is not None and math.isfinite(loss)]
        if not valid:
            raise RunError(f"run {run_dir.name} has no checkpoint with a validation loss to promote")
        iteration, score = min(valid, key=lambda row: row[1])
    else:
        scores = {it: s for it, s in checkpoint_scores(run_dir / ADAPTERS_DIR).items() if it in table}
        best = best_by(scores, by)
        if best is None:
            raise RunError(f"run {run_dir.name} has no evaluated checkpoint with {by}: evaluate its checkpoints "
                           "first (`phi3tui eval --run ID --checkpoint N`, or Evaluate in Chat)")
        iteration, score = best
    path = table[iteration][0]
    atomic_copy(path, path.parent / LATEST_WEIGHTS)
    update_run_json(run_dir, promoted={"iteration": iteration, "by": by, by: score, "time": time.time()})
    return iteration, score


def promote_choices(run_dir: Path) -> list[tuple[str, int, float]]:
    """(criterion, best iteration, its score) for each criterion this run has data for: what promote offers."""
    from phi3tui.core.eval import best_by, checkpoint_scores

    table = checkpoint_table(run_dir)
    out = []
    valid = [(it, loss) for it, _, loss in table if loss is not None and math.isfinite(loss)]
    if valid:
        out.append(("val_loss", *min(valid, key=lambda row: row[1])))
    have = {it for it, _, _ in table}
    scores = {it: s for it, s in checkpoint_scores(run_dir / ADAPTERS_DIR).items() if it in have}
    for key in PROMOTE_BY[1:]:
        best = best_by(scores, key)
        if best is not None:
            out.append((key, *best))
    return out


def delete_run(run_dir: Path) -> None:
    settle_dead_run(run_dir)
    info = run_info(run_dir)
    if info.get("state") in LIVE_STATES:
        raise RunError(f"run {run_dir.name} is {info.get('state')}; stop or kill it before deleting")
    shutil.rmtree(run_dir)


# -- waiting ------------------------------------------------------------------------------------
def wait_for_run(run_dir: Path, timeout: float = 3600, poll: float = 0.5) -> dict:
    """Block until the run is in an end state; returns its run.json. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        info = run_info(run_dir)
        if info.get("state") in END_STATES:
            return info
        if info.get("state") == UNREADABLE:  # it will not get better by waiting
            raise RunError(info["reason"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_dir.name} still {info.get('state')} after {timeout:.0f} s")
        time.sleep(poll)


def demo_step(workspace: Workspace, state: dict) -> str:
    """The headless demo's train step: a run of the workspace config, to the end."""
    started = time.monotonic()
    run_dir = start_run(workspace)
    info = wait_for_run(run_dir)
    state["run_dir"] = run_dir
    state["adapter_dir"] = run_dir / ADAPTERS_DIR
    if info.get("state") != RunState.FINISHED:
        raise RunError(f"run {run_dir.name} ended {info.get('state')}: {info.get('reason')} (log: {run_dir / LOG_FILE})")
    metrics = read_metrics(run_dir)
    if len(metrics.val_y) < 2:
        raise RunError(f"run {run_dir.name} recorded {len(metrics.val_y)} validation(s); need two to compare")
    first, last = metrics.val_y[0], metrics.val_y[-1]
    if not last < first:
        raise RunError(f"run {run_dir.name}: validation loss did not go down ({first:.3f} → {last:.3f})")
    return (
        f"run {run_dir.name}: {info.get('iteration')} iterations, "
        f"val loss {first:.3f} → {last:.3f}, {time.monotonic() - started:.0f} s"
    )
