"""The LoRA config (lora_config.yaml): document (round-trip edits), schema (mlx-lm's keys), migrate (old
keys made current), checks (against the model, the data and this machine), review (all of it at once), sweep (a grid of configs).
This is the package's public face: other packages import from here, not from its modules."""

from phi3tui.core.config.probes import PROBE_HELP, PROBE_KEYS, probe_problem, probe_prompts_path
from phi3tui.core.config.checks import (
    REPORTERS,
    DataContext,
    Finding,
    check_adapters,
    check_data,
    check_reporters,
    reporter_names,
)
from phi3tui.core.workspace import ConfigError, load_config_values
from phi3tui.core.config.document import ConfigDocument, DocumentEditError, _flow_text, load_values, read_config_text
from phi3tui.core.config.migrate import apply_changes
from phi3tui.core.config.review import ConfigReview, apply_field_edit, prepare_run_config, review_config
from phi3tui.core.config.sweep import SweepError, parse_sweep_spec, point_label, set_dotted, sweep_block, sweep_grid
from phi3tui.core.config.schema import (
    PRESETS,
    TRAIN_MODES,
    config_fields,
    epochs_for_iters,
    build_args,
    mlx_lm_defaults,
    grpo_settings,
    preference_settings,
    save_config_fields,
    saved_config_fields,
)

__all__ = [
    "PROBE_HELP",
    "PROBE_KEYS",
    "build_args",
    "probe_problem",
    "probe_prompts_path",
    "SweepError",
    "parse_sweep_spec",
    "point_label",
    "set_dotted",
    "sweep_block",
    "sweep_grid",
    "ConfigError",
    "load_config_values",
    "ConfigDocument",
    "ConfigReview",
    "DocumentEditError",
    "DataContext",
    "Finding",
    "REPORTERS",
    "check_adapters",
    "check_data",
    "check_reporters",
    "PRESETS",
    "TRAIN_MODES",
    "_flow_text",
    "apply_changes",
    "apply_field_edit",
    "config_fields",
    "epochs_for_iters",
    "load_values",
    "read_config_text",
    "mlx_lm_defaults",
    "grpo_settings",
    "preference_settings",
    "prepare_run_config",
    "reporter_names",
    "review_config",
    "save_config_fields",
    "saved_config_fields",
]
