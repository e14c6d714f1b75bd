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


def rows(result: dict) -> list[tuple[str, str, str, str, str]]:
    """Per metric: (title, left, right, difference right − left, "better" / "worse" / "same" / "")."""
    left, right = result["left"], result["right"]
    out = []
    for key, title, higher_is_better in METRICS:
        a, b = left.get(key), right.get(key)
        if a is None or b is None:
            out.append((title, _cell(a), _cell(b), "—", ""))
            continue
        diff = b - a
        shown = f"{diff:+.4f}"
        # "same" for what the table cannot tell apart, so a 1e-7 change is not called better.
        same = shown in ("+0.0000", "-0.0000")
        verdict = "same" if same else ("better" if (diff > 0) == higher_is_better else "worse")
        out.append((title, _cell(a), _cell(b), shown, verdict))
    return out


def counts(result: dict) -> str:
    left = result["left"]
    parts = []
    if left.get("n_mc"):
        parts.append(f"{left['n_mc']} multiple-choice questions")
    if left.get("n_answers"):
        parts.append(f"{left['n_answers']} answers scored")
    return ", ".join(parts)


def table(result: dict) -> str:
    """Left vs right per metric with the difference (right − left) and whether the right side is better."""
    lines = [("", result["left"]["label"], result["right"]["label"], "difference", "right is")] + rows(result)
    widths = [max(len(r[i]) for r in lines) for i in range(5)]
    text = ["  ".join(cell.ljust(w) if i in (0, 4) else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
            for r in lines]
    if counts(result):
        text.append(counts(result))
    return "\n".join(text)


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
