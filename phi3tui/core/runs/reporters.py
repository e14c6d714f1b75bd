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
# reporter -> (run.json key of its run id, the reporter's own switches: run id, resume), read by the init
# that mlx-lm's callback makes: a resumed run continues the same wandb / swanlab run.
RUN_IDS = {"wandb": (WANDB_RUN_KEY, "WANDB_RUN_ID", "WANDB_RESUME"),
           "swanlab": ("swanlab_run_id", "SWANLAB_RUN_ID", "SWANLAB_RESUME")}


def reporting_chain(args, log_dir, inner, run_info: dict):
    """mlx-lm's reporters for args.report_to wrapped around `inner` (returned as is when none is set).

    Returns (callback, changes for run.json). A wandb or swanlab run is given an id phi3tui keeps in
    run.json, so a resumed run continues the same one (RUN_IDS: WANDB_RUN_ID, WANDB_RESUME=allow and
    swanlab's like-named switches). Offline, each part is its own folder holding that id, which the
    reporter's sync joins into one run.
    """
    names = reporter_names(getattr(args, "report_to", None))
    if not names:
        return inner, {}
    from phi3tui.core.mlx_lm_private import reporting_callbacks

    SUPPORT_CALLBACK = reporting_callbacks([REPORTERS[name][0] for name in names if name in REPORTERS])
    changes = {}
    for name in names:
        if name not in RUN_IDS:
            continue
        key, id_var, resume_var = RUN_IDS[name]
        # The phi3tui run id (unique: time and random digits) names the reporter's run, unless the user chose one.
        run_id = run_info.get(key) or os.environ.get(id_var) or Path(log_dir).name
        os.environ[id_var] = run_id
        os.environ.setdefault(resume_var, "allow")
        changes[key] = run_id
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
