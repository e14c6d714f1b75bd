"""A GRPO run's latest sampled group as the Train screen shows it: the prompt, then each completion with its
reward per function, its total and its advantage. The group itself is read by core/run_folder.py's
read_latest_samples (samples.jsonl, written by the GRPO task); this module only turns one into lines.
"""

from __future__ import annotations

import math


def _number(value, signed: bool = False) -> str:
    """A reward or advantage as 2 decimals ("-" for what is no number; nan and inf as they are)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # metrics write a diverged value as "nan" / "inf"
        except (TypeError, ValueError):
            return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _indented(text, prefix: str = "    ") -> list[str]:
    lines = str(text if text is not None else "").splitlines() or [""]
    return [prefix + line for line in lines]


def sample_group_lines(group: dict | None, hint: str = "") -> list[str]:
    """One samples.jsonl line (a dict: iteration, prompt, answer, completions) as plain text lines: a heading
    (with `hint`, e.g. the key that hides it), the prompt and the answer, then per completion a line
    "#n  total … · advantage … · <function> … …" and its text, indented. Fields missing or of the wrong type
    show as "-" or are left out: the file is read while the run writes it."""
    tail = f" · {hint}" if hint else ""
    if not group:
        return [f"no sampled group yet: the run writes one each report{tail}"]
    completions = [c for c in group.get("completions") or [] if isinstance(c, dict)]
    lines = [f"sampled group @ iteration {group.get('iteration', '?')} · {len(completions)} completions{tail}",
             "prompt:", *_indented(group.get("prompt"))]
    if group.get("answer") is not None:
        lines += ["answer:", *_indented(group.get("answer"))]
    for n, completion in enumerate(completions, 1):
        rewards = completion.get("rewards") if isinstance(completion.get("rewards"), dict) else {}
        parts = [f"total {_number(completion.get('total'))}", f"advantage {_number(completion.get('advantage'), True)}"]
        parts += [f"{name} {_number(value)}" for name, value in rewards.items()]
        lines.append(f"#{n}  " + " · ".join(parts))
        text = completion.get("text")
        lines += _indented(text) if text else ["    (empty completion)"]
    return lines
