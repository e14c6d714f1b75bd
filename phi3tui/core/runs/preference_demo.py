"""The headless demo's DPO step (`phi3tui demo --headless --preference`), apart from preference.py, which
only the runner process imports (the launcher it needs here imports the runner)."""

from __future__ import annotations

import time
from pathlib import Path

from phi3tui.core.runs.demo_pass import run_demo_pass
from phi3tui.core.runs.store import RunError, read_metrics


DEMO_PREFERENCE_DATA = "data-preference"
DEMO_DPO = dict(train_mode="dpo", iters=40, steps_per_report=10, steps_per_eval=10, save_every=40, learning_rate=1e-3,
                test=False)


def demo_step(workspace, state: dict) -> str:
    """`phi3tui demo --headless --preference`: a short DPO pass on the demo's pairs, starting from the SFT
    run's adapter, which is also DPO's reference (kept aside in the same model). Later steps (compare, score
    — base, SFT and SFT+DPO side by side —, fuse, GGUF) then use the DPO adapter."""
    from phi3tui.core.demo import write_demo_preference_data

    started = time.monotonic()
    run_dir, info, sft, records = run_demo_pass(workspace, state, DEMO_PREFERENCE_DATA, write_demo_preference_data,
                                                DEMO_DPO, "DPO")
    state["sft_adapter_dir"] = sft
    val = [r for r in records if r.get("kind") == "val"]
    if len(val) < 2 or len(read_metrics(run_dir).val_y) < 2:
        raise RunError(f"DPO run {run_dir.name} recorded {len(val)} validation(s); need two to compare")
    first, last = val[0], val[-1]
    if not last["reward_margin"] > first["reward_margin"]:
        raise RunError(f"DPO run {run_dir.name}: the validation reward margin did not grow "
                       f"({first['reward_margin']:.3f} → {last['reward_margin']:.3f})")
    return (f"DPO run {run_dir.name}{' from ' + Path(sft).parent.name if sft else ''}: {info.get('iteration')} "
            f"iterations, val loss {first['loss']:.3f} → {last['loss']:.3f}, reward margin "
            f"{first['reward_margin']:.3f} → {last['reward_margin']:.3f}, accuracy {first['accuracy']:.2f} → "
            f"{last['accuracy']:.2f}, {time.monotonic() - started:.0f} s")
