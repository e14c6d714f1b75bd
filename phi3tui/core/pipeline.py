"""The whole job, headless: what `phi3tui demo --headless` runs, step by step.

Each step lives in the core module that owns it, as a function ``demo_step(workspace, state) -> str``
that returns a one-line result or raises. ``state`` carries results between steps (run id, paths).
"""

from __future__ import annotations

import time
import traceback
from importlib import import_module
from typing import TextIO

from phi3tui.core.workspace import Workspace

# (step title, module that owns it and its demo_step). Imported when the step runs: training and export
# pull in MLX and gguf.
STEPS = (
    ("check the data", "phi3tui.core.data.checks"),
    ("train", "phi3tui.core.runs.launcher"),
    ("compare base and adapted answers", "phi3tui.core.chat.session"),
    ("fuse", "phi3tui.core.export.fuse"),
    ("write the GGUF", "phi3tui.core.export.gguf"),
    ("write the Modelfile", "phi3tui.core.export.ollama"),
)


def run_pipeline(ws: Workspace, out: TextIO) -> int:
    state: dict = {}
    failed = 0
    for number, (title, module_name) in enumerate(STEPS, 1):
        step = import_module(module_name).demo_step
        label = f"[{number}/{len(STEPS)}] {title}"
        start = time.perf_counter()
        try:
            result = step(ws, state)
        except Exception as exc:  # a step's failure is reported, and the job goes on where it can
            failed += 1
            print(f"{label}: FAILED: {exc}", file=out, flush=True)
            tail = traceback.format_exc().strip().splitlines()[-3:]
            for line in tail:
                print(f"    {line}", file=out)
            continue
        print(f"{label}: ok ({time.perf_counter() - start:.1f} s) {result}", file=out, flush=True)
    print(f"{len(STEPS) - failed}/{len(STEPS)} steps succeeded", file=out, flush=True)
    return 1 if failed else 0
