"""mlx-lm's reporters (`report_to: wandb`, `swanlab`, or both, and `project_name`) around the runner's callback.

The names, the packages they need and phi3tui's extras are core/config's (its check refuses a missing package
before a run starts). The chain itself is built in the
runner from mlx-lm's `SUPPORT_CALLBACK`, the way `mlx_lm lora` builds it, with the runner's own callback
innermost: every report is logged by the reporters, then recorded by phi3tui.
"""

from __future__ import annotations

import os
from pathlib import Path

from phi3tui.core.config import REPORTERS, reporter_names

WANDB_RUN_KEY = "wandb_run_id"  # run.json: the wandb run a resumed run continues


def reporting_chain(args, log_dir, inner, run_info: dict):
    """mlx-lm's reporters for args.report_to wrapped around `inner` (returned as is when none is set).

    Returns (callback, changes for run.json). A wandb run is given an id phi3tui keeps in run.json,
    so a resumed run continues the same wandb run (WANDB_RUN_ID, WANDB_RESUME=allow: wandb's own switches,
    read by the wandb.init that mlx-lm's WandBCallback makes).
    """
    names = reporter_names(getattr(args, "report_to", None))
    if not names:
        return inner, {}
    from phi3tui.core.mlx_lm_private import reporting_callbacks

    SUPPORT_CALLBACK = reporting_callbacks([REPORTERS[name][0] for name in names if name in REPORTERS])
    changes = {}
    if "wandb" in names:
        # The phi3tui run id (unique: time and random digits) names its wandb run, unless the user chose one.
        run_id = run_info.get(WANDB_RUN_KEY) or os.environ.get("WANDB_RUN_ID") or Path(log_dir).name
        os.environ["WANDB_RUN_ID"] = run_id
        os.environ.setdefault("WANDB_RESUME", "allow")
        changes[WANDB_RUN_KEY] = run_id
    callback = inner
    for name in names:  # the order of mlx-lm's get_reporting_callbacks: the last named is outermost
        if name not in SUPPORT_CALLBACK:
            raise ValueError(f"report_to: {name} is not a reporter mlx-lm knows; use {', '.join(SUPPORT_CALLBACK)}")
        callback = SUPPORT_CALLBACK[name](project_name=args.project_name, log_dir=str(log_dir),
                                          config=vars(args), wrapped_callback=callback)
    return callback, changes


def finish_reporters(report_to, failed: bool) -> None:
    """End the reporters' runs, so an offline wandb run is complete on disk when the runner exits."""
    names = reporter_names(report_to)
    if "wandb" in names:
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)
    if "swanlab" in names:
        import swanlab

        swanlab.finish()
