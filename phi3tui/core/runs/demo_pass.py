"""One training pass of the headless demo after SFT (`--preference`'s DPO, `--grpo`'s GRPO): its data written
when absent, started from the adapter of the step before, waited for, and its metrics read. Each mode's demo
step (preference_demo.py, grpo_demo.py) judges the figures and words the outcome."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from phi3tui.core.adapters import LATEST_WEIGHTS
from phi3tui.core.run_folder import ADAPTERS_DIR, METRICS_FILE
from phi3tui.core.runs.launcher import start_run, wait_for_run
from phi3tui.core.runs.state import RunState
from phi3tui.core.runs.store import RunError


def run_demo_pass(workspace, state: dict, data_name: str, write_data: Callable[[Path], None], overrides: dict,
                  label: str) -> tuple[Path, dict, str | None, list[dict]]:
    """Run the pass; the pipeline's `state` then points at its run and adapter. Returns (run folder, run.json,
    the adapter folder it started from or None, metrics.jsonl's records). A run that does not finish raises."""
    data = workspace.root / data_name
    if not (data / "train.jsonl").is_file():
        write_data(data)
    overrides = dict(overrides, data=data_name)
    before = state.get("adapter_dir")
    if before:
        overrides["resume_adapter_file"] = str(Path(before) / LATEST_WEIGHTS)
    run_dir = start_run(workspace, overrides=overrides)
    info = wait_for_run(run_dir)
    if info.get("state") != RunState.FINISHED:
        raise RunError(f"{label} run {run_dir.name} ended {info.get('state')}: {info.get('reason')} "
                       f"(log: {run_dir / 'log.txt'})")
    state["run_dir"] = run_dir
    state["adapter_dir"] = run_dir / ADAPTERS_DIR
    records = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines()]
    return run_dir, info, before, records
