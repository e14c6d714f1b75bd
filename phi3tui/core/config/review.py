"""The LoRA config (lora_config.yaml): load, check, migrate, save.

Values load exactly as `mlx_lm lora --config` loads them (its float resolver: `1e-6` is a float).
The pieces, beside this module in core/config/: document.py (edits that keep comments and layout), schema.py
(the keys mlx-lm accepts), migrate.py (old keys made current), checks.py (checks against the model, the data and
this machine); core/models/ describes the model itself. `review_config` ties them together;
`prepare_run_config` is what a run uses: every migration applied, every check run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phi3tui.core.config.checks import Finding
from phi3tui.core.workspace import ConfigError, load_config_values


@dataclass
class ConfigReview:
    """One look at a config: the migrations it needs, and what the checks found on the migrated values."""

    values: dict  # the values after the accepted migrations
    changes: list = field(default_factory=list)  # every migration the file needs (config_migrate.Change)
    findings: list[Finding] = field(default_factory=list)
    model: Any = None  # config_checks.ModelContext
    data: Any = None  # config_checks.DataContext or None
    plan: Any = None  # models.LoraPlan or None
    memory: Any = None  # models.MemoryEstimate or None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]


def review_config(text: str, workspace_root: Path | str, rejected: frozenset[str] | set[str] = frozenset(),
                  in_use: int = 0) -> ConfigReview:
    """Migrate (all changes except the rejected ids) and check, against the model and data it names.
    `in_use`: bytes of MLX memory something else already holds here (the app's loaded chat model), counted
    in the memory check.

    Slow parts (mlx-lm import, tokenizer) make this a worker-thread call in the app.
    """
    from phi3tui.core.config import checks
    from phi3tui.core.config.document import DocumentEditError, load_values
    from phi3tui.core.config.migrate import migrated_text, plan_migration
    from phi3tui.core.config.schema import mlx_lm_defaults

    root = Path(workspace_root)
    defaults = mlx_lm_defaults()
    values = load_values(text)
    model_ctx = checks.model_context(values.get("model") or defaults["model"], root)
    blocks = model_ctx.info.num_blocks if model_ctx.info is not None else None
    changes = plan_migration(values, model_ctx.block_modules, model_ctx.top_modules, defaults, blocks)
    accepted = [c for c in changes if c.id not in rejected]
    try:
        values = load_values(migrated_text(text, accepted))
    except DocumentEditError as exc:
        raise ConfigError(f"cannot migrate: {exc}; edit the file by hand") from None
    findings = [
        Finding("warning", c.field, f"needs migration: {c.summary}", c.why) for c in accepted
    ]
    findings += checks.check_duplicate_keys(text)
    findings += checks.check_types(values)
    findings += checks.check_reporters(values)
    findings += checks.check_schedule(values, defaults)
    model_findings, plan = checks.check_model(values, defaults, model_ctx)
    findings += model_findings
    data_ctx = None
    try:
        data_ctx = checks.data_context(values, root, model_ctx.location.folder if model_ctx.location else None)
    except (OSError, ValueError) as exc:
        findings.append(Finding("warning", "data", f"cannot read the data folder: {exc}"))
    findings += checks.check_data(values, defaults, data_ctx, root)
    if data_ctx is not None and data_ctx.note and data_ctx.sizes:
        findings.append(Finding("info", "max_seq_length", f"not compared with the data: {data_ctx.note}"))
    findings += checks.check_adapters(values, defaults, root)
    findings += checks.check_probes(values, root)
    findings += checks.check_grpo(values, root)
    memory_findings, memory = checks.check_memory(values, defaults, model_ctx, plan, data_ctx, in_use)
    findings += memory_findings
    findings += checks.check_known_models(values, defaults, model_ctx)  # last: the file's own model comes first
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: order.get(f.level, 3))
    return ConfigReview(values, changes, findings, model_ctx, data_ctx, plan, memory)


def apply_field_edit(doc, path: tuple[str, ...], value: Any, train_size: int | None = None) -> None:
    """One edit from the form (or any caller) with the form's meanings: an empty field leaves an absent key
    absent; clearing lr_schedule's name removes the schedule; `epochs` sets iters from the train split."""
    from phi3tui.core.config.schema import iters_for_epochs, mlx_lm_defaults

    path = tuple(path)
    if path == ("epochs",):
        if value is None:
            return
        if not train_size:
            raise ValueError("the train split's size is not known (no data/train.jsonl?)")
        batch = doc.values.get("batch_size")
        batch = batch if isinstance(batch, int) and batch > 0 else mlx_lm_defaults()["batch_size"]
        doc.set(("iters",), iters_for_epochs(float(value), train_size, batch))
    elif path == ("lr_schedule", "name") and value is None:
        if doc.has(("lr_schedule",)):
            doc.set(("lr_schedule",), None)
    elif value is None and not doc.has(path):
        return
    else:
        doc.set(path, value)


def prepare_run_config(path: Path | str, workspace_root: Path | str, in_use: int = 0) -> tuple[dict, list[Finding]]:
    """The values a run should use (every migration applied) and what the checks found on them.

    A run must not start when any finding has level "error". Applied migrations come back as
    "info" findings, so the run's log can say what was changed.
    """
    load_config_values(path)  # readable errors for a missing file or bad YAML
    text = Path(path).read_text(encoding="utf-8")
    review = review_config(text, workspace_root, in_use=in_use)
    location = review.model.location if review.model is not None else None
    if location is not None and not location.available:
        # The run is about to download the model anyway: its config.json (a few KB) first lets the
        # checks and the LoRA key migration see the real blocks. Offline, the warning stays.
        from phi3tui.core.models import ModelNotFound, download_model

        try:
            download_model(location.value, config_only=True)
            review = review_config(text, workspace_root, in_use=in_use)
        except ModelNotFound:
            pass
    findings = [
        Finding("info", f.field, f.message.replace("needs migration: ", "migrated: "), f.hint)
        if f.message.startswith("needs migration: ") else f
        for f in review.findings
    ]
    return review.values, findings
