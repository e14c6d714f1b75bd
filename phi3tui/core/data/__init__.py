"""A data folder as mlx-lm reads it: folder (open, line index, page, search), checks (every line),
render (records through the model's tokenizer), turns (the loss mask of assistant_turns: all), importers (CSV/JSONL to splits).
This is the package's public face: other packages import from here, not from its modules."""

from phi3tui.core.lazy import lazy_attributes
from phi3tui.core.data.folder import (
    Cancelled,
    DataFolder,
    DataSettings,
    SPLITS,
    human_size,
    split_sizes,
    workspace_data,
)

# The rest is imported on first use (PEP 562): the Data screen's first paint needs only the folder; checks,
# importers and render follow with the first check or import, after the paint.
_LAZY = {
    "Report": "checks", "check_folder": "checks", "run_checks": "checks", "token_statistics": "checks",
    "validate_folder": "checks",
    "DataImportError": "importers", "ImportOptions": "importers", "existing_splits": "importers",
    "import_any": "importers", "options_from_values": "importers", "read_rows": "importers",
    "split_answers": "importers", "tutorial_text": "importers",
    "TokenizerError": "render", "load_tokenizer": "render", "preference_tokens": "render", "render_record": "render",
    "processor": "render", "assistant_turn_mask": "turns", "loss_flags": "turns",
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "Cancelled",
    "DataFolder",
    "DataImportError",
    "DataSettings",
    "ImportOptions",
    "Report",
    "assistant_turn_mask",
    "SPLITS",
    "TokenizerError",
    "check_folder",
    "existing_splits",
    "human_size",
    "import_any",
    "load_tokenizer",
    "loss_flags",
    "options_from_values",
    "preference_tokens",
    "processor",
    "read_rows",
    "render_record",
    "split_answers",
    "split_sizes",
    "run_checks",
    "token_statistics",
    "tutorial_text",
    "validate_folder",
    "workspace_data",
]
