"""Run folders: start, status, metrics, stop, kill, resume, promote, list, delete.

A run is a folder (runs/<id>/, see DESIGN.md and run_files.py) and a detached process
(core/runner.py). Everything here reads and writes files and starts or signals processes; it never
imports MLX, so the app and the CLI stay quick. The runner runs with the workspace as its working
directory, so the frozen config keeps the workspace-relative paths the user wrote (model, data);
only adapter_path is set, to runs/<id>/adapters.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from phi3tui.core.adapters import checkpoints_in
from phi3tui.core.atomic import atomic_write_text
from phi3tui.core.run_files import (
    ADAPTERS_DIR,
    CONFIG_FILE,
    END_STATES,
    LIVE_STATES,
    LOG_FILE,
    METRICS_FILE,
    RUN_FILE,
    STOP_FILE,
    log_tail,
    metrics_line,
    parse_float,
    read_run_json,
    run_lock,
    update_run_json,
)
from phi3tui.core.workspace import Workspace

QUEUED_GRACE_S = 60  # a queued run without a pid yet is being started, not dead


class RunError(Exception):
    """A run cannot be started or changed. str() says why and what to do."""


class ConfigRefused(RunError):
    def __init__(self, config_path: Path, findings: list):
        self.findings = findings
        lines = "\n".join(f"  {f}" for f in findings if f.level == "error")
        super().__init__(f"{config_path} has errors; fix them on the Config screen, then start again:\n{lines}")


# -- identity and lookup ---------------------------------------------------------------
def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def run_dirs(workspace: Workspace) -> list[Path]:
    """Run folders, newest first (ids start with the time)."""
    if not workspace.runs_dir.is_dir():
        return []
    dirs = [p for p in workspace.runs_dir.iterdir() if p.is_dir() and (p / RUN_FILE).is_file()]
    return sorted(dirs, key=lambda p: p.name, reverse=True)


def find_run(workspace: Workspace, ref: str) -> Path:
    """A run by id, unique id prefix, or `latest`."""
    dirs = run_dirs(workspace)
    if ref == "latest":
        if not dirs:
            raise RunError(f"{workspace.root} has no runs yet; start one with `phi3tui train`")
        return dirs[0]
    exact = [d for d in dirs if d.name == ref]
    matches = exact or [d for d in dirs if d.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunError(f"no run {ref!r} in {workspace.runs_dir}; `phi3tui runs list` shows the ids")
    raise RunError(f"{ref!r} matches {len(matches)} runs ({', '.join(d.name for d in matches[:4])}); give more of the id")


# -- starting ------------------------------------------------------------------------------
def freeze_config(
    workspace: Workspace, config_path: Path | None, run_id: str, overrides: dict | None
) -> tuple[dict, list]:
    """The checked, migrated config with the run's own adapter folder, and the checks' findings.

    Raises ConfigRefused when a finding is an error.
    """
    from phi3tui.core.config import prepare_run_config

    config_path = Path(config_path) if config_path else workspace.config_path
    values, findings = prepare_run_config(config_path, workspace.root)
    if any(f.level == "error" for f in findings):
        raise ConfigRefused(config_path, findings)
    values = dict(values)
    values.update(overrides or {})
    values["train"] = True
    values["adapter_path"] = f"runs/{run_id}/{ADAPTERS_DIR}"
    return values, findings


def create_run(
    workspace: Workspace,
    config_path: Path | str | None = None,
    overrides: dict | None = None,
    hosts: list[str] | None = None,
    hostfile: str | None = None,
) -> Path:
    """A new run folder with its frozen config.yaml and a queued run.json (nothing started yet)."""
    if not workspace.writable:
        raise RunError(f"{workspace.root} is read-only; runs are written into runs/ inside it")
    run_id = new_run_id()
    values, findings = freeze_config(workspace, config_path, run_id, overrides)
    run_dir = workspace.runs_dir / run_id
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
    # What the checks changed or noticed goes into the run's log, where the run's story is told.
    notes = [str(f) for f in findings]
    if overrides:
        notes.append(f"overridden for this run: {', '.join(f'{k}={v}' for k, v in overrides.items())}")
    atomic_write_text(run_dir / LOG_FILE, "".join(f"phi3tui: config {note}\n" for note in notes))
    update_run_json(
        run_dir,
        id=run_id,
        state="queued",
        created=time.time(),
        host=socket.gethostname(),
        hosts=hosts,
        hostfile=str(hostfile) if hostfile else None,
        config_source=str(Path(config_path).resolve() if config_path else workspace.config_path),
        iters=values.get("iters"),
        iteration=0,
        config_notes=notes,
        alarms=[],
        resumes=[],
    )
    return run_dir


def mlx_launch_path() -> str:
    beside = Path(sys.executable).parent / "mlx.launch"
    found = str(beside) if beside.is_file() else shutil.which("mlx.launch")
    if not found:
        raise RunError("mlx.launch is not installed (it comes with the mlx package); install mlx to train on several machines")
    return found


def runner_command(run_dir: Path, workspace_root: Path, info: dict) -> list[str]:
    cmd = [sys.executable, "-m", "phi3tui.core.runner", str(run_dir)]
    hosts, hostfile = info.get("hosts"), info.get("hostfile")
    if not hosts and not hostfile:
        return cmd
    launch = [mlx_launch_path(), "--backend", "ring", "--cwd", str(workspace_root)]
    launch += ["--hostfile", hostfile] if hostfile else ["--hosts", ",".join(hosts)]
    return launch + ["--", *cmd]


def launch(run_dir: Path) -> int:
    """Start the runner detached: its own session, output into log.txt. Returns its pid."""
    run_dir = run_dir.resolve()
    workspace_root = run_dir.parent.parent
    info = read_run_json(run_dir)
    cmd = runner_command(run_dir, workspace_root, info)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The runner must import this same phi3tui, even when it is not installed (a source checkout).
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    with open(run_dir / LOG_FILE, "ab") as log:
        log.write(f"phi3tui: starting {' '.join(cmd)}\n".encode())
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


def start_run(workspace: Workspace, config_path=None, overrides=None, hosts=None, hostfile=None) -> Path:
    run_dir = create_run(workspace, config_path, overrides, hosts, hostfile)
    launch(run_dir)
    return run_dir


# -- liveness and status -----------------------------------------------------------------------
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
        created = info.get("created") or 0
        return time.time() - created < QUEUED_GRACE_S
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = info.get("pid_started")
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.Error:
        return False


def _on_this_host(info: dict) -> bool:
    return info.get("host") in (None, socket.gethostname())


def run_info(run_dir: Path) -> dict:
    """run.json as it truly stands: a live state whose process is gone becomes failed (and is saved so)."""
    info = read_run_json(run_dir)
    if info.get("state") in LIVE_STATES and _on_this_host(info) and not process_alive(info):
        reason = (
            f"the runner (pid {info.get('pid')}) ended without recording a result "
            "(killed, or crashed hard); resume it from its last checkpoint"
        )
        dead = dict(state="failed", ended=time.time(), reason=reason, error=reason, log_tail=log_tail(run_dir))
        try:
            with run_lock(run_dir):  # re-read: the runner may have written its end just now
                info = read_run_json(run_dir)
                is_dead = info.get("state") in LIVE_STATES and not process_alive(info)
            if is_dead:
                info = update_run_json(run_dir, **dead)
        except OSError:  # a read-only workspace: show it as failed without recording it
            info = {**info, **dead}
    if info.get("state") == "running" and (run_dir / STOP_FILE).exists():
        info["state"] = "stopping"
    return info


@dataclass
class RunSummary:
    id: str
    run_dir: Path
    state: str
    iteration: int
    iters: int
    best_val_loss: float | None
    best_val_iteration: int | None
    created: float
    reason: str
    alarms: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def progress(self) -> float:
        return min(1.0, self.iteration / self.iters) if self.iters else 0.0

    def age_text(self, now: float | None = None) -> str:
        return format_duration((now or time.time()) - self.created) + " ago"


def summarize(run_dir: Path) -> RunSummary:
    info = run_info(run_dir)
    return RunSummary(
        id=info.get("id", run_dir.name),
        run_dir=run_dir,
        state=info.get("state", "unknown"),
        iteration=int(info.get("iteration") or 0),
        iters=int(info.get("iters") or 0),
        best_val_loss=info.get("best_val_loss"),
        best_val_iteration=info.get("best_val_iteration"),
        created=float(info.get("created") or 0),
        reason=info.get("reason") or "",
        alarms=info.get("alarms") or [],
        info=info,
    )


def list_runs(workspace: Workspace) -> list[RunSummary]:
    return [summarize(d) for d in run_dirs(workspace)]


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def live_run_summary(workspace: Workspace) -> str:
    """One short line about the live run(s), for the app's header (cheap: run.json files only)."""
    live = []
    for run_dir in run_dirs(workspace)[:20]:
        summary = summarize(run_dir)
        if summary.live:
            live.append(summary)
    if not live:
        return ""
    s = live[0]
    text = f"run {s.id} {s.state} {s.iteration}/{s.iters}"
    if s.best_val_loss is not None:
        text += f" val {s.best_val_loss:.3f}"
    if s.alarms:
        text += f" ⚠ {s.alarms[-1].get('kind')}"
    return text + (f" (+{len(live) - 1} more)" if len(live) > 1 else "")


def status_oneline(workspace: Workspace) -> str:
    """One line for a tmux status bar: the live run, else the newest run's end."""
    text = live_run_summary(workspace)
    if text:
        return text
    dirs = run_dirs(workspace)
    if not dirs:
        return "no runs"
    s = summarize(dirs[0])
    text = f"run {s.id} {s.state} {s.iteration}/{s.iters}"
    if s.best_val_loss is not None:
        text += f" best val {s.best_val_loss:.3f}"
    return text


# -- metrics ------------------------------------------------------------------------------------
class MetricsTail:
    """Reads metrics.jsonl incrementally: each poll returns only the records added since the last."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / METRICS_FILE
        self.offset = 0
        self.inode: int | None = None
        self.partial = b""

    def poll(self) -> tuple[list[dict], bool]:
        """(new records, reset). reset: the file was rewritten (a resume trimmed it): start over."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return [], False
        reset = self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset)
        if reset:
            self.offset, self.partial = 0, b""
        self.inode = st.st_ino
        if st.st_size == self.offset:
            return [], reset
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()  # a line still being written
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a torn line from a killed writer
        return records, reset


@dataclass
class RunMetrics:
    """The curves and latest figures of one run, grown from MetricsTail records."""

    train_x: list = field(default_factory=list)
    train_y: list = field(default_factory=list)
    val_x: list = field(default_factory=list)
    val_y: list = field(default_factory=list)
    last_train: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)

    def add(self, records: list[dict]) -> None:
        for r in records:
            kind = r.get("kind")
            if kind == "train":
                self.train_x.append(r["iteration"])
                self.train_y.append(parse_float(r.get("loss")))
                self.last_train = r
            elif kind == "val":
                self.val_x.append(r["iteration"])
                self.val_y.append(parse_float(r.get("loss")))
            elif kind == "test":
                self.test = r

    def nearest_val(self, iteration: int) -> float | None:
        if not self.val_x:
            return None
        i = bisect.bisect_left(self.val_x, iteration)  # validations come in iteration order
        near = [k for k in (i - 1, i) if 0 <= k < len(self.val_x)]
        return self.val_y[min(near, key=lambda k: abs(self.val_x[k] - iteration))]


def read_metrics(run_dir: Path) -> RunMetrics:
    metrics = RunMetrics()
    metrics.add(MetricsTail(run_dir).poll()[0])
    return metrics


def downsample(xs: list, ys: list, points: int) -> tuple[list, list]:
    """At most about `points` points, evenly strided, always keeping the last one."""
    n = len(xs)
    if n <= points or points < 2:
        return list(xs), list(ys)
    step = math.ceil(n / points)
    sx, sy = xs[::step], ys[::step]
    if (n - 1) % step:
        sx.append(xs[-1])
        sy.append(ys[-1])
    return sx, sy


def checkpoint_table(
    run_dir: Path, metrics: RunMetrics | None = None, last: int | None = None
) -> list[tuple[int, Path, float | None]]:
    """(iteration, file, nearest validation loss) for each numbered checkpoint (or the `last` few), oldest first."""
    metrics = metrics or read_metrics(run_dir)
    numbered = [c for c in checkpoints_in(run_dir / ADAPTERS_DIR) if c.iteration is not None]
    if last is not None:
        numbered = numbered[-last:]
    return [(c.iteration, c.path, metrics.nearest_val(c.iteration)) for c in numbered]


def eta_seconds(info: dict, now: float | None = None) -> float | None:
    """Remaining time, from this attempt's pace so far (validation time included)."""
    started = info.get("started")
    done = int(info.get("iteration") or 0) - int(info.get("resume_from") or 0)
    total = int(info.get("iters") or 0)
    if not started or done <= 0 or not total:
        return None
    elapsed = (now or time.time()) - started
    return elapsed / done * (total - int(info.get("iteration") or 0))


# -- control ------------------------------------------------------------------------------------
def stop_run(run_dir: Path) -> None:
    """Ask the runner to save at the next step and end as stopped."""
    info = run_info(run_dir)
    if info.get("state") not in LIVE_STATES:
        raise RunError(f"run {run_dir.name} is {info.get('state')}, not running; nothing to stop")
    (run_dir / STOP_FILE).touch()
    update_run_json(run_dir, stop_requested=time.time())


def kill_run(run_dir: Path) -> None:
    """End a runner that does not answer (SIGKILL to its whole process group) and record it as failed."""
    info = run_info(run_dir)
    if info.get("state") not in LIVE_STATES:
        raise RunError(f"run {run_dir.name} is {info.get('state')}, not running; nothing to kill")
    pid = info.get("pid")
    if not _on_this_host(info):
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
    update_run_json(run_dir, state="failed", ended=time.time(), reason=reason, error=reason, log_tail=log_tail(run_dir))
    (run_dir / STOP_FILE).unlink(missing_ok=True)


def resumable_checkpoint(run_dir: Path) -> int:
    """The newest checkpoint with its optimizer state beside it (0: none, the run starts over)."""
    from phi3tui.core.runner import checkpoint_names  # light: no MLX at module level

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


def resume_run(run_dir: Path) -> int:
    """Start a stopped, failed or diverged run again from its last checkpoint. Returns that iteration."""
    info = run_info(run_dir)
    state = info.get("state")
    if state not in ("stopped", "failed", "diverged"):
        raise RunError(f"run {run_dir.name} is {state}; only a stopped, failed or diverged run can be resumed")
    start = resumable_checkpoint(run_dir)
    if info.get("iters") and start >= int(info["iters"]):
        raise RunError(f"run {run_dir.name} already saved its last iteration ({start}); nothing to resume")
    tokens, (best_loss, best_it) = _trim_metrics(run_dir, start)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    resumes = list(info.get("resumes") or []) + [{"from": start, "time": time.time(), "after": state}]
    update_run_json(
        run_dir,
        state="queued",
        resume_from=start,
        trained_tokens_at_resume=tokens,
        best_val_loss=best_loss,
        best_val_iteration=best_it,
        iteration=start,
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
    with open(run_dir / LOG_FILE, "ab") as log:
        log.write(f"\nphi3tui: resuming from iteration {start}\n".encode())
    launch(run_dir)
    return start


def promote_best(run_dir: Path) -> tuple[int, float]:
    """Copy the checkpoint with the best (nearest) validation loss to adapters.safetensors."""
    info = run_info(run_dir)
    if info.get("state") in LIVE_STATES:
        raise RunError(f"run {run_dir.name} is still {info.get('state')}; stop it first (it rewrites adapters.safetensors)")
    table = [(it, path, loss) for it, path, loss in checkpoint_table(run_dir) if loss is not None and math.isfinite(loss)]
    if not table:
        raise RunError(f"run {run_dir.name} has no checkpoint with a validation loss to promote")
    iteration, path, loss = min(table, key=lambda row: row[2])
    target = path.parent / "adapters.safetensors"
    tmp = path.parent / ".tmp-promote.safetensors"
    shutil.copyfile(path, tmp)
    os.replace(tmp, target)
    update_run_json(run_dir, promoted={"iteration": iteration, "val_loss": loss, "time": time.time()})
    return iteration, loss


def delete_run(run_dir: Path) -> None:
    info = run_info(run_dir)
    if info.get("state") in LIVE_STATES:
        raise RunError(f"run {run_dir.name} is {info.get('state')}; stop or kill it before deleting")
    shutil.rmtree(run_dir)


# -- configs ------------------------------------------------------------------------------------
def run_config_text(run_dir: Path) -> str:
    return (run_dir / CONFIG_FILE).read_text(encoding="utf-8")


def _flatten(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_diff(run_a: Path, run_b: Path) -> list[tuple[str, object, object]]:
    """(key, value in a, value in b) for every setting that differs (adapter_path always does: left out)."""
    from phi3tui.core.config import load_config_values

    a = _flatten(load_config_values(run_a / CONFIG_FILE))
    b = _flatten(load_config_values(run_b / CONFIG_FILE))
    missing = "(not set)"
    return [
        (key, a.get(key, missing), b.get(key, missing))
        for key in sorted(set(a) | set(b))
        if key != "adapter_path" and a.get(key, missing) != b.get(key, missing)
    ]


# -- waiting ------------------------------------------------------------------------------------
def wait_for_run(run_dir: Path, timeout: float = 3600, poll: float = 0.5) -> dict:
    """Block until the run is in an end state; returns its run.json. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        info = run_info(run_dir)
        if info.get("state") in END_STATES:
            return info
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
    if info.get("state") != "finished":
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
