"""A data folder as mlx-lm reads it: folder (open, line index, page, search), checks (every line),
render (records through the model's tokenizer), turns (the loss mask of assistant_turns: all), importers (CSV/JSONL
to splits), tool_records (the functions of tool-calling records), preview (a tool-calling record, calls and results
marked).
This is the package's public face: other packages import from here, not from its modules."""

from phi3tui.core.lazy import lazy_attributes
from phi3tui.core.data.folder import (
    Cancelled,
    DataFolder,
    DataSettings,
    SPLITS,
    human_size,
    read_split_items,
    split_sizes,
    workspace_data,
)

# The rest is imported on first use (PEP 562): the Data screen's first paint needs only the folder; checks,
# importers and render follow with the first check or import, after the paint.
_LAZY = {
    "Report": "checks", "check_folder": "checks", "run_checks": "checks", "token_statistics": "checks",
    "validate_folder": "checks", "record_problems": "checks",
    "DataImportError": "importers", "ImportOptions": "importers", "existing_splits": "importers",
    "import_any": "importers", "options_from_values": "importers", "read_rows": "importers",
    "split_answers": "importers", "tutorial_text": "importers",
    "TokenizerError": "render", "load_tokenizer": "render", "preference_tokens": "render", "render_record": "render",
    "prompt_messages": "render", "processor": "render", "token_rows": "render", "dropped_tool_parts": "render",
    "TEMPLATE_TOOLS_HINT": "render", "tool_names": "tool_records", "assistant_turn_mask": "turns", "loss_flags": "turns",
    "PreviewLine": "preview", "tool_preview": "preview",
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "Cancelled",
    "DataFolder",
    "DataImportError",
    "DataSettings",
    "ImportOptions",
    "PreviewLine",
    "Report",
    "assistant_turn_mask",
    "SPLITS",
    "TEMPLATE_TOOLS_HINT",
    "TokenizerError",
    "check_folder",
    "dropped_tool_parts",
    "existing_splits",
    "human_size",
    "import_any",
    "load_tokenizer",
    "loss_flags",
    "options_from_values",
    "preference_tokens",
    "prompt_messages",
    "processor",
    "read_rows",
    "read_split_items",
    "record_problems",
    "render_record",
    "split_answers",
    "split_sizes",
    "token_rows",
    "run_checks",
    "token_statistics",
    "tool_names",
    "tool_preview",
    "tutorial_text",
    "validate_folder",
    "workspace_data",
]
