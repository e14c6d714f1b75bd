"""The LM Studio export step: the fused GGUF copied where LM Studio finds it.

LM Studio lists a GGUF only inside its models folder's `<publisher>/<model>/` layout (lmstudio.ai/docs/advanced/sideload:
`~/.lmstudio/models/publisher/model/model-file.gguf`). The folder is `~/.lmstudio/models` unless LMSTUDIO_MODELS_DIR
or `--models-dir` says where LM Studio's "models folder" setting points. LM Studio cannot load a GGUF LoRA on its
own, so the adapter-only export is refused with that reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from phi3tui.core.export import ExportError, Progress, StepOutcome, no_progress

MODELS_DIR_ENV = "LMSTUDIO_MODELS_DIR"
DEFAULT_PUBLISHER = "phi3tui"
ADAPTER_ONLY_REFUSED = (
    "LM Studio loads a whole GGUF model, not a base GGUF plus a GGUF LoRA: export the fused GGUF "
    "(without --adapter) for LM Studio"
)


def models_dir(override: Path | str | None = None) -> Path:
    """LM Studio's models folder: the override, else $LMSTUDIO_MODELS_DIR, else ~/.lmstudio/models."""
    chosen = override or os.environ.get(MODELS_DIR_ENV) or Path.home() / ".lmstudio" / "models"
    return Path(chosen).expanduser().resolve()


def destination(job) -> Path:
    """Where the job's GGUF goes: MODELS/<publisher>/<export name>/<the GGUF's file name>."""
    return models_dir(job.lmstudio_dir) / job.lmstudio_publisher / job.name / job.gguf_path.name


class LmStudioStep:
    id, label, demo_title = "lmstudio", "LM Studio", None
    help = "copy the fused GGUF into LM Studio's models folder (~/.lmstudio/models/PUBLISHER/NAME/)"

    def describe(self, job) -> list[str]:
        if job.use_adapter_in_ollama:
            return [f"refused: {ADAPTER_ONLY_REFUSED}"]
        return [
            f"copy {job.gguf_path.name} to {destination(job)} (written beside it, then renamed: never half a file)",
            f"LM Studio lists it under {job.lmstudio_publisher}/{job.name} (My Models), ready to load",
        ]

    def outputs(self, job) -> list[Path]:
        return [] if job.use_adapter_in_ollama else [destination(job)]

    def in_run_all(self, job) -> bool:
        return False  # it writes outside the workspace: only when asked for

    def run(self, job, progress: Progress = no_progress) -> StepOutcome:
        from phi3tui.core.files import atomic_output_file

        if job.use_adapter_in_ollama:
            raise ExportError(ADAPTER_ONLY_REFUSED)
        source = job.gguf_path
        if not source.is_file():
            raise ExportError(f"{source} is missing: run `phi3tui export gguf` first")
        target = destination(job)
        progress(0, 1, f"copying to {target}")
        with atomic_output_file(target, force=job.force, error=ExportError) as tmp:
            shutil.copyfile(source, tmp)
        progress(1, 1, "copied")
        job.results[self.id] = target
        lines = (
            f"copied {source.name} to {target}",
            f"in LM Studio: My Models lists {job.lmstudio_publisher}/{job.name}; load it from there "
            "(restart LM Studio if it was open and does not show it yet)",
        )
        return StepOutcome(self.id, lines, result=target)
