"""A sweep's runs side by side: what each set, its best validation loss, tokens/s, time, and the
scores of its newest evaluation (eval-*.json in the run folder, written by `phi3tui eval`)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from phi3tui.core.run_folder import RunJsonUnreadable, read_run_json
from phi3tui.core.runs.store import MetricsTail, format_duration, run_dirs, run_info
from phi3tui.core.workspace import Workspace

# The adapted side's scores of an eval-*.json (core/eval/results.py's keys), as the table heads them.
EVAL_SCORES = (("test_loss", "test"), ("mc1", "MC1"), ("mc2", "MC2"), ("exact_match", "EM"), ("rouge_l", "ROUGE-L"))


@dataclass
class SweepRow:
    run_dir: Path
    point: dict
    state: str
    best_val_loss: float | None
    tokens_per_s: float | None
    seconds: float | None
    evals: dict = field(default_factory=dict)


def sweep_runs(workspace: Workspace, sweep_id: str) -> list[Path]:
    """The runs of one sweep, in grid order."""
    found = []
    for run_dir in run_dirs(workspace):
        try:
            info = read_run_json(run_dir)
        except RunJsonUnreadable:
            continue
        if info.get("sweep_id") == sweep_id:
            found.append((info.get("sweep_index", 0), run_dir))
    return [d for _, d in sorted(found, key=lambda pair: (pair[0], pair[1].name))]


def newest_eval(run_dir: Path) -> dict:
    """The adapted side of the run's newest evaluation ({} when it has none, or it cannot be read)."""
    for path in sorted(run_dir.glob("eval-*.json"), reverse=True):
        try:
            right = json.loads(path.read_text(encoding="utf-8")).get("right") or {}
        except (OSError, ValueError, AttributeError):
            continue
        return {key: right[key] for key, _ in EVAL_SCORES if isinstance(right.get(key), (int, float))}
    return {}


def sweep_rows(workspace: Workspace, sweep_id: str, now: float | None = None) -> list[SweepRow]:
    rows = []
    for run_dir in sweep_runs(workspace, sweep_id):
        info = run_info(run_dir)
        train_tps = [t for t in _train_tokens_per_s(run_dir) if isinstance(t, (int, float)) and math.isfinite(t)]
        started, ended = info.get("started"), info.get("ended")
        seconds = ((ended or now or time.time()) - started) if started else None
        best = info.get("best_val_loss")
        rows.append(SweepRow(
            run_dir=run_dir,
            point=info.get("sweep_point") or {},
            state=info.get("state", "?"),
            best_val_loss=float(best) if isinstance(best, (int, float)) else None,
            tokens_per_s=sum(train_tps) / len(train_tps) if train_tps else None,
            seconds=seconds,
            evals=newest_eval(run_dir),
        ))
    return rows


def _train_tokens_per_s(run_dir: Path) -> list[float]:
    records, _ = MetricsTail(run_dir).poll()
    return [r.get("tokens_per_s") for r in records if r.get("kind") == "train"]


def sweep_table(rows: list[SweepRow]) -> str:
    """The rows as aligned text, best validation loss marked ★."""
    if not rows:
        return "no runs in this sweep"
    keys = list(rows[0].point)
    evals = [(k, title) for k, title in EVAL_SCORES if any(k in r.evals for r in rows)]
    best = min((r.best_val_loss for r in rows if r.best_val_loss is not None), default=None)
    head = ["run", *keys, "state", "best val", "tok/s", "time", *(title for _, title in evals)]
    lines = [head]
    for r in rows:
        val = "-" if r.best_val_loss is None else f"{r.best_val_loss:.4f}" + (" ★" if r.best_val_loss == best else "")
        lines.append([
            r.run_dir.name,
            *(str(r.point.get(k, "-")) for k in keys),
            r.state,
            val,
            "-" if r.tokens_per_s is None else f"{r.tokens_per_s:,.0f}",
            "-" if r.seconds is None else format_duration(r.seconds),
            *("-" if k not in r.evals else f"{r.evals[k]:.4f}" for k, _ in evals),
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
