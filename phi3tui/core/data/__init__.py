"""A data folder as mlx-lm reads it: folder (open, line index, page, search), checks (every line),
render (records through the model's tokenizer), importers (CSV/JSONL to splits).
This is the package's public face: other packages import from here, not from its modules."""

from phi3tui.core.data.checks import Report, check_folder, human_size, run_checks, token_statistics, validate_folder
from phi3tui.core.data.folder import (
    Cancelled,
    DataFolder,
    DataSettings,
    SPLITS,
    split_sizes,
    workspace_data,
)
from phi3tui.core.data.importers import (
    DataImportError,
    ImportOptions,
    existing_splits,
    import_any,
    options_from_values,
    read_rows,
    split_answers,
    tutorial_text,
)
from phi3tui.core.data.render import TokenizerError, load_tokenizer, preference_tokens, render_record

__all__ = [
    "Cancelled",
    "DataFolder",
    "DataImportError",
    "DataSettings",
    "ImportOptions",
    "Report",
    "SPLITS",
    "TokenizerError",
    "check_folder",
    "existing_splits",
    "human_size",
    "import_any",
    "load_tokenizer",
    "options_from_values",
    "preference_tokens",
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
