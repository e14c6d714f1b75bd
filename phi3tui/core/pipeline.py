"""The whole job, headless: what `phi3tui demo --headless` runs, step by step.

Each step lives in the core module that owns it, as a function ``demo_step(workspace, state) -> str``
that returns a one-line result or raises; the export steps are those of core.export.steps.EXPORT_STEPS that have a
demo_title (their ``demo(workspace, state)``). ``state`` carries this job's results between steps (run id,
paths); a step takes its input only from there, never from what an earlier attempt left on disk.
"""

from __future__ import annotations

import time
import traceback
from importlib import import_module
from typing import TextIO

from phi3tui.core.export.steps import EXPORT_STEPS
from phi3tui.core.workspace import Workspace


def export_demo_steps(needs: str = "train") -> tuple:
    """The export registry's demo steps, each needing the one before it (the first needs `needs`)."""
    chain = []
    for step in EXPORT_STEPS:
        if step.demo_title:
            chain.append((step.demo_title, step, needs))
            needs = step.demo_title
    return tuple(chain)


# (step title, owner, the step whose output it needs). The owner is the module that has its demo_step, imported
# when the step runs (training and export pull in MLX and gguf), or an export step of the registry.
STEPS = (
    ("check the data", "phi3tui.core.data.checks", None),
    ("train", "phi3tui.core.runs.launcher", None),
    ("compare base and adapted answers", "phi3tui.core.chat.session", "train"),
    ("score base and adapted (MC1/MC2, test loss)", "phi3tui.core.eval.scoring", "train"),
) + export_demo_steps()


# `phi3tui demo --headless --preference`: a DPO pass right after the SFT run; the steps after it use its adapter.
PREFERENCE_STEP = ("preference-tune (DPO)", "phi3tui.core.runs.preference_demo", "train")


# `phi3tui demo --headless --grpo`: a GRPO pass after the last training step (SFT's, or DPO's with --preference).
GRPO_STEP = ("reinforce (GRPO)", "phi3tui.core.runs.grpo_demo", "train")


def steps_with_pass(step: tuple, steps=STEPS, after: str = "train") -> tuple:
    """`steps` with a training pass right after the step `after`: the steps that needed `after` need it instead."""
    at = [title for title, _m, _n in steps].index(after) + 1
    later = tuple((title, module, step[0] if needs == after else needs) for title, module, needs in steps[at:])
    return steps[:at] + ((step[0], step[1], after),) + later


def steps_with_preference(steps=STEPS) -> tuple:
    return steps_with_pass(PREFERENCE_STEP, steps)


def steps_with_grpo(steps=STEPS) -> tuple:
    """After DPO's pass when `steps` has one, else after SFT's."""
    titles = [title for title, _m, _n in steps]
    return steps_with_pass(GRPO_STEP, steps, PREFERENCE_STEP[0] if PREFERENCE_STEP[0] in titles else "train")


def run_pipeline(ws: Workspace, out: TextIO, replace_ollama: bool = False, steps=STEPS, state: dict | None = None) -> int:
    """Run `steps` in order; a step whose input step did not succeed is skipped and says which one.

    replace_ollama: replace an Ollama model of the same name (`--yes`); without it an existing one stops
    the Modelfile step. `steps` and `state` let a caller start the job part-way, with that state."""
    state = dict(state or {})
    state["replace_ollama"] = replace_ollama
    not_done: dict[str, str] = {}  # step title -> why it produced nothing ("failed" or "skipped: ...")
    failed = 0
    for number, (title, owner, needs) in enumerate(steps, 1):
        label = f"[{number}/{len(steps)}] {title}"
        if needs in not_done:
            failed += 1
            cause = not_done[needs]
            not_done[title] = f"skipped: {needs} failed" if cause == "failed" else cause
            print(f"{label}: {not_done[title]}", file=out, flush=True)
            continue
        step = import_module(owner).demo_step if isinstance(owner, str) else owner.demo
        start = time.perf_counter()
        try:
            result = step(ws, state)
        except Exception as exc:  # a step's failure is reported, and the job goes on where it can
            failed += 1
            not_done[title] = "failed"
            print(f"{label}: FAILED: {exc}", file=out, flush=True)
            tail = traceback.format_exc().strip().splitlines()[-3:]
            for line in tail:
                print(f"    {line}", file=out)
            continue
        print(f"{label}: ok ({time.perf_counter() - start:.1f} s) {result}", file=out, flush=True)
    print(f"{len(steps) - failed}/{len(steps)} steps succeeded", file=out, flush=True)
    return 1 if failed else 0
