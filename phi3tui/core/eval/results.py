"""What an evaluation reports per side, the table it prints, and where it is saved. Light: no mlx."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from phi3tui.core.adapters import LATEST_WEIGHTS, iteration_of
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


# -- scores per checkpoint, read back from the saved evaluations ---------------------------------
SCORE_KEYS = ("mc1", "mc2", "test_loss")  # what the runs list, the checkpoint table and promote use
HIGHER_IS_BETTER = {"mc1": True, "mc2": True, "test_loss": False}


def side_record(side) -> dict:
    """Where a side's weights came from, saved with its scores so they can be found by checkpoint."""
    if side.is_base:
        return {"adapter_dir": None, "iteration": None}
    return {"adapter_dir": str(side.adapter_dir.resolve()), "iteration": iteration_of(side.weights_path)}


def eval_files(adapter_dir: Path) -> list[Path]:
    """The eval-*.json beside an adapter folder (in its run folder and in the folder itself), oldest first."""
    adapter_dir = Path(adapter_dir)
    found = set(adapter_dir.glob("eval-*.json")) | set(adapter_dir.parent.glob("eval-*.json"))
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def _same_folder(saved, adapter_dir: Path, eval_file: Path) -> bool:
    """The saved side's adapter folder is this one: the same path, or (a workspace moved or copied since)
    the same run's adapters/ folder name beside the evaluation file."""
    if not isinstance(saved, str):
        return False
    if saved == str(adapter_dir):
        return True
    saved_path = Path(saved)
    home = eval_file.parent
    here = adapter_dir if home == adapter_dir else (adapter_dir.parent if home == adapter_dir.parent else None)
    there = saved_path if home == adapter_dir else saved_path.parent
    return here is not None and there.name == here.name and saved_path.name == adapter_dir.name


def checkpoint_scores(adapter_dir: Path) -> dict[int, dict]:
    """{iteration: {"mc1", "mc2", "test_loss", "file"}} from the newest evaluation of each checkpoint of this
    adapter folder (a score an evaluation did not measure is None; a damaged file is skipped)."""
    adapter_dir = Path(adapter_dir).resolve()
    scores: dict[int, dict] = {}
    for path in eval_files(adapter_dir):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(result, dict):
            continue
        for name in ("left", "right"):
            side = result.get(name)
            if not isinstance(side, dict) or not _same_folder(side.get("adapter_dir"), adapter_dir, path):
                continue
            iteration = side.get("iteration")
            if not isinstance(iteration, int):
                continue
            measured = {k: side.get(k) for k in SCORE_KEYS if isinstance(side.get(k), (int, float))}
            if measured:
                scores[iteration] = {**{k: None for k in SCORE_KEYS}, **scores.get(iteration, {}), **measured,
                                     "file": str(path)}
    return dict(sorted(scores.items()))


def number_text(value, digits: int = 2) -> str:
    """A score or loss for a table cell: '-' when not measured (or not finite)."""
    return "-" if not isinstance(value, (int, float)) or not math.isfinite(value) else f"{value:.{digits}f}"


def score_text(scores: dict | None) -> str:
    """'mc1 0.50 mc2 0.61 test 2.134' for what was measured; '' for nothing."""
    if not scores:
        return ""
    parts = [f"{key.replace('_loss', '')} {scores[key]:.{3 if key == 'test_loss' else 2}f}"
             for key in SCORE_KEYS if scores.get(key) is not None]
    return " ".join(parts)


def best_by(scores: dict[int, dict], key: str) -> tuple[int, float] | None:
    """(iteration, score) of the best checkpoint by `key` (mc1, mc2: highest; test_loss: lowest); the
    earliest one wins a tie."""
    measured = [(it, s[key]) for it, s in scores.items() if s.get(key) is not None]
    if not measured:
        return None
    sign = -1 if HIGHER_IS_BETTER[key] else 1
    return min(measured, key=lambda row: (sign * row[1], row[0]))


def current_scores(adapter_dir: Path) -> tuple[int, dict] | None:
    """(iteration, scores) of the checkpoint adapters.safetensors holds now when it was evaluated, else of
    the newest checkpoint evaluated; None when none was. What the runs list shows for a run."""
    scores = checkpoint_scores(adapter_dir)
    if not scores:
        return None
    now = iteration_of(Path(adapter_dir) / LATEST_WEIGHTS)
    iteration = now if now in scores else max(scores)
    return iteration, scores[iteration]


def labels_with_scores(sides) -> list[str]:
    """Each side's label, with its checkpoint's saved scores after it when it was evaluated: what the
    checkpoint pickers (Chat, Evaluate) list."""
    by_folder: dict[Path, dict[int, dict]] = {}
    out = []
    for side in sides:
        text = ""
        if not side.is_base:
            scores = by_folder.setdefault(side.adapter_dir, checkpoint_scores(side.adapter_dir))
            if scores:
                text = score_text(scores.get(iteration_of(side.weights_path)))
        out.append(f"{side.label}  ({text})" if text else side.label)
    return out
