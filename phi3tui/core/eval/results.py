"""What an evaluation reports per side, the table it prints, and where it is saved. Light: no mlx."""

from __future__ import annotations

import json
import time
from pathlib import Path

from phi3tui.core.files import atomic_write_text

SIDE_KEYS = ("label", "test_loss", "test_ppl", "mc1", "mc2", "n_mc", "exact_match", "rouge_l", "n_answers")

# (key, row title, better when higher) for the table and the Evaluate view.
METRICS = (
    ("test_loss", "test loss", False),
    ("test_ppl", "test perplexity", False),
    ("mc1", "MC1", True),
    ("mc2", "MC2", True),
    ("exact_match", "exact match", True),
    ("rouge_l", "ROUGE-L F1", True),
)


def summary(result: dict) -> dict:
    """Only the per-side keys: what `--json` prints."""
    return {name: {key: result[name].get(key) for key in SIDE_KEYS} for name in ("left", "right") if name in result}


def _cell(value) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table(result: dict) -> str:
    """Left vs right per metric with the difference (right − left)."""
    left, right = result["left"], result["right"]
    rows = [("", left["label"], right["label"], "difference")]
    for key, title, _ in METRICS:
        a, b = left.get(key), right.get(key)
        diff = b - a if a is not None and b is not None else None
        rows.append((title, _cell(a), _cell(b), "—" if diff is None else f"{diff:+.4f}"))
    counts = []
    if left.get("n_mc"):
        counts.append(f"{left['n_mc']} multiple-choice questions")
    if left.get("n_answers"):
        counts.append(f"{left['n_answers']} answers scored")
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))) for r in rows]
    if counts:
        lines.append(", ".join(counts))
    return "\n".join(lines)


def output_path(side) -> Path:
    """eval-<time>.json beside the (right side's) adapter: its run folder, else the adapter folder;
    never over an earlier one."""
    folder = side.run_dir or side.adapter_dir
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"eval-{stamp}.json", 1
    while path.exists():
        n += 1
        path = folder / f"eval-{stamp}-{n}.json"
    return path


def save(result: dict, path: Path) -> None:
    atomic_write_text(path, json.dumps(result, ensure_ascii=False, indent=1) + "\n")
