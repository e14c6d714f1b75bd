"""The headless demo's GRPO step (`phi3tui demo --headless --grpo`), apart from grpo.py, which only the runner
process imports (the launcher it needs here imports the runner)."""

from __future__ import annotations

import time
from pathlib import Path

from phi3tui.core.run_folder import read_latest_samples
from phi3tui.core.runs.demo_pass import run_demo_pass
from phi3tui.core.runs.store import RunError

DEMO_GRPO_DATA = "data-grpo"
# Short: a few groups of 4 completions of 16 tokens each; rewarded for a correct first word ("No", "Yes", …, the
# demo records' correct_answers) and for stopping within 80 characters.
DEMO_GRPO = dict(train_mode="grpo", iters=12, batch_size=2, group_size=4, max_completion_length=16, temperature=1.0,
                 reward_functions=["any_correct", "length:1-80"], steps_per_report=4, steps_per_eval=6,
                 save_every=12, val_batches=2, learning_rate=1e-3, test=False)


def demo_step(workspace, state: dict) -> str:
    """`phi3tui demo --headless --grpo`: a short GRPO pass on the demo's prompt-answer records, starting from the
    adapter of the step before (SFT's, or DPO's), which is also its reference (kept aside in the same model).
    Later steps (compare, score, fuse, GGUF) then use the GRPO adapter."""
    from phi3tui.core.demo import write_demo_grpo_data

    started = time.monotonic()
    run_dir, info, before, records = run_demo_pass(workspace, state, DEMO_GRPO_DATA, write_demo_grpo_data,
                                                   DEMO_GRPO, "GRPO")
    train = [r for r in records if r.get("kind") == "train"]
    if not train or "reward_mean" not in train[-1]:
        raise RunError(f"GRPO run {run_dir.name} recorded no rewards (metrics.jsonl)")
    if not train[-1]["kl"] > 0:
        raise RunError(f"GRPO run {run_dir.name}: the policy did not move from its reference (KL 0)")
    sample = read_latest_samples(run_dir) or {}
    best = max(sample.get("completions") or [{}], key=lambda c: c.get("total", 0.0))
    return (f"GRPO run {run_dir.name}{' from ' + Path(before).parent.name if before else ''}: "
            f"{info.get('iteration')} iterations, reward {train[0]['reward_mean']:.3f} → {train[-1]['reward_mean']:.3f}"
            f" (any_correct {train[-1]['reward/any_correct']:.2f}), KL {train[-1]['kl']:.4f}; best of the last group: "
            f"{best.get('text', '')[:40]!r} ({best.get('total', 0.0):.2f}), {time.monotonic() - started:.0f} s")
