"""Run folders: start, status, metrics, stop, kill, resume, promote, list, delete.

A run is a folder (runs/<id>/, see DESIGN.md and core/run_folder.py) and a detached process
(core/runs/runner.py). Everything here reads and writes files and starts or signals processes; it never
imports MLX, so the app and the CLI stay quick. The runner runs with the workspace as its working
directory, so the frozen config keeps the workspace-relative paths the user wrote (model, data);
only adapter_path is set, to runs/<id>/adapters.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path


from phi3tui.core.run_folder import (
    ADAPTERS_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    RUN_FILE,
    STOP_FILE,
    RunJsonUnreadable,
    parse_float,
    read_run_json,
)
from phi3tui.core.runs.state import (
    END_UNRECORDED,
    LIVE_STATES,
    UNREADABLE,
    RunState,
    dead_run_end,
    process_alive,
)
from phi3tui.core.runs.tasks import plotted_series
from phi3tui.core.workspace import ConfigError, Workspace, load_config_values


class RunError(Exception):
    """A run cannot be started or changed. str() says why and what to do."""


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
        raise RunError(f"no run {ref!r} in {workspace.runs_dir}; run `phi3tui runs list` to see the ids")
    raise RunError(f"{ref!r} matches {len(matches)} runs ({', '.join(d.name for d in matches[:4])}); give more of the id")


# -- status -----------------------------------------------------------------------------------------
def run_info(run_dir: Path) -> dict:
    """run.json as it truly stands, read and never written: a live state whose runner is gone reads as failed
    with why (state.dead_run_end; `END_UNRECORDED` says it is not in run.json yet: state.settle_dead_run records
    it). A damaged run.json reads as state `unreadable` with the reason."""
    try:
        info = read_run_json(run_dir)
        if dead_run_end(run_dir, info) is not None:
            info = read_run_json(run_dir)  # again: the runner may have recorded its own end just before it died
            end = dead_run_end(run_dir, info)
            if end is not None:
                info = {**info, **end, END_UNRECORDED: True}
    except RunJsonUnreadable as exc:
        return {"id": run_dir.name, "state": UNREADABLE, "reason": str(exc), "error": str(exc)}
    if info.get("state") == RunState.RUNNING and (run_dir / STOP_FILE).exists():
        info["state"] = RunState.STOPPING
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
    created: float | None  # None: not known (a damaged run.json)
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
        if self.created is None:
            return "-"
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
        created=_created(info),
        reason=info.get("reason") or "",
        alarms=info.get("alarms") or [],
        info=info,
    )


def _created(info: dict) -> float | None:
    try:
        created = float(info["created"])
    except (KeyError, TypeError, ValueError):
        return None
    return created if created > 0 else None


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
    return live_text([s for s in map(summarize, run_dirs(workspace)[:20]) if s.live])


def short_run_id(run_id: str) -> str:
    """A run id without its date (20261206-160815-f95f -> 160815-f95f), for narrow places; other ids as they are."""
    match = re.fullmatch(r"\d{8}-(\d{6}-\w+)", run_id)
    return match.group(1) if match else run_id


def live_text(live: list[RunSummary], detail: int = 2) -> str:
    """The header's line for these live runs (newest first): the first one, and how many more.
    detail 2: all of it; 1: the short id, state, progress and val loss; 0: the short id, state and progress."""
    if not live:
        return ""
    s = live[0]
    more = f" (+{len(live) - 1} more)" if len(live) > 1 else ""
    if detail < 2:
        text = f"run {short_run_id(s.id)} {s.state} {s.iteration}/{s.iters}"
        if detail == 1 and s.best_val_loss is not None:
            text += f" val {s.best_val_loss:.3f}"
        return text + (f" +{len(live) - 1}" if len(live) > 1 else "")
    text = f"run {s.id} {s.state} {s.iteration}/{s.iters}"
    if s.best_val_loss is not None:
        text += f" val {s.best_val_loss:.3f}"
    text += hosts_text(s.info)
    if s.alarms:
        text += f" ⚠ {s.alarms[-1].get('kind')}"
    return text + more


def status_oneline(workspace: Workspace) -> str:
    """One line for a tmux status bar: the live run, else the newest run's end."""
    text = live_run_summary(workspace)
    if text:
        return text
    dirs = run_dirs(workspace)
    if not dirs:
        return "no runs"
    s = summarize(dirs[0])
    if s.state == UNREADABLE:  # no progress to show: say so, and where to read why
        return f"run {s.id} unreadable (`phi3tui runs list` says why)"
    text = f"run {s.id} {s.state} {s.iteration}/{s.iters}"
    if s.best_val_loss is not None:
        text += f" best val {s.best_val_loss:.3f}"
    return text + hosts_text(s.info)


def hosts_text(info: dict) -> str:
    """The machines of a run on several hosts (empty for a run on this machine alone)."""
    hosts = info.get("hosts") or []
    return f" on {','.join(hosts)}" if len(hosts) > 1 else ""


def awake_word(info: dict) -> str | None:
    """The Train screen's last word on keeping a live run's machine awake (None: nothing to say): `i` (Run
    details) says how, why not, or what the MacBook's power puts at risk."""
    awake = str(info.get("awake") or "")
    if info.get("state") not in (RunState.RUNNING, RunState.STOPPING) or not awake or "keep_awake is off" in awake:
        return None
    if awake.startswith("nothing"):
        return "not kept awake (i)"
    risk = info.get("awake_risk")
    return f"kept awake, but {risk} (i)" if risk else "kept awake"


def run_details(info: dict) -> list[tuple[str, str]]:
    """(label, text) rows about one run for `runs status ID` and the Train screen: where it runs, what keeps
    the machine awake, the memory MLX can use, and any resume with a smaller batch."""
    rows = [("run", str(info.get("id", "?"))), ("state", str(info.get("state", "?"))),
            ("progress", f"{info.get('iteration') or 0}/{info.get('iters') or 0}")]
    if info.get("reason"):
        rows.append(("reason", str(info["reason"])))
    machine = info.get("machine_id")
    rows.append(("host", f"{info.get('host') or '?'}" + (f" (machine {str(machine)[:12]})" if machine else "")))
    awake = info.get("awake")
    if awake is None:
        awake = "not yet known (the runner has not started)" if info.get("state") == RunState.QUEUED else "not recorded"
    rows.append(("kept awake", str(awake)))
    for limit in info.get("awake_limits") or []:  # what caffeinate cannot hold on this MacBook (core/awake.py)
        rows.append(("awake limit", str(limit)))
    if info.get("memory_budget_gb"):
        memory = f"MLX can use {info['memory_budget_gb']:.2f} GB ({info.get('memory_budget_source')})"
        if info.get("peak_memory_gb") is not None:
            memory += f"; reached {info['peak_memory_gb']:.3f} GB"
        rows.append(("memory", memory))
    for resume in info.get("resumes") or []:
        change = resume.get("smaller")
        if change:
            rows.append(("smaller", "from iteration {}: batch_size {} → {}, grad_accumulation_steps {} → {} "
                         "(effective batch {})".format(change["from"], *change["batch_size"],
                                                       *change["grad_accumulation_steps"], change["effective_batch"])))
    return rows


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
    # What the run's task plots instead of the loss (tasks.plotted_series: record key → label, and its title),
    # e.g. a DPO/ORPO run's rewards; and those series: (kind, key) -> (iterations, values), as metrics.jsonl holds them.
    plotted: dict = field(default_factory=dict)
    plotted_title: str = ""
    series: dict = field(default_factory=dict)

    @classmethod
    def for_run(cls, run_dir: Path) -> RunMetrics:
        """Empty metrics that will keep the series the run's task (its config's train_mode) plots."""
        try:
            train_mode = load_config_values(run_dir / CONFIG_FILE).get("train_mode")
        except (ConfigError, OSError):
            train_mode = None  # no readable config: an SFT run's curves (the loss) are what can be shown
        plotted, title = plotted_series(train_mode)
        return cls(plotted=plotted, plotted_title=title)

    def add(self, records: list[dict]) -> None:
        for r in records:
            kind = r.get("kind")
            if kind in ("train", "val"):
                for key in self.plotted:
                    if key in r:
                        xs, ys = self.series.setdefault((kind, key), ([], []))
                        xs.append(r["iteration"])
                        ys.append(parse_float(r[key]))
            if kind == "train":
                self.train_x.append(r["iteration"])
                self.train_y.append(parse_float(r.get("loss")))
                self.last_train = r
            elif kind == "val":
                self.val_x.append(r["iteration"])
                self.val_y.append(parse_float(r.get("loss")))
            elif kind == "test":
                self.test = r

    def plotted_curves(self) -> list[tuple[str, list, list]]:
        """(label, iterations, values) of each series the task plots: validation's where the run has them (over
        its batches, steadier), else training's (the report's last batch). Empty for an SFT run."""
        kind = "val" if any(k == "val" for k, _ in self.series) else "train"
        return [(label, *self.series[(kind, key)]) for key, label in self.plotted.items() if (kind, key) in self.series]

    def nearest_val(self, iteration: int) -> float | None:
        if not self.val_x:
            return None
        i = bisect.bisect_left(self.val_x, iteration)  # validations come in iteration order
        near = [k for k in (i - 1, i) if 0 <= k < len(self.val_x)]
        return self.val_y[min(near, key=lambda k: abs(self.val_x[k] - iteration))]


def read_metrics(run_dir: Path) -> RunMetrics:
    metrics = RunMetrics.for_run(run_dir)
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
    from phi3tui.core.adapters import checkpoints_in  # here: the app's first paint imports this module, not adapters

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
    a = _flatten(load_config_values(run_a / CONFIG_FILE))
    b = _flatten(load_config_values(run_b / CONFIG_FILE))
    missing = "(not set)"
    return [
        (key, a.get(key, missing), b.get(key, missing))
        for key in sorted(set(a) | set(b))
        if key != "adapter_path" and a.get(key, missing) != b.get(key, missing)
    ]
