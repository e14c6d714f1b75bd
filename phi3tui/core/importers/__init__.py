"""Turn a CSV or JSONL file into train/valid/test.jsonl that mlx-lm reads.

`import_file` does the work for every source; `truthfulqa` fixes the column mapping for the
TruthfulQA CSV of the classic Phi-3 tutorial, `generic` lets the user map columns.
Nothing is written when anything is wrong, and existing split files are kept unless `force`.
"""

from phi3tui.core.importers.common import (
    FORMATS,
    DataImportError,
    ImportOptions,
    ImportResult,
    existing_splits,
    import_file,
    parse_size,
    read_rows,
    tutorial_text,
)

__all__ = [
    "FORMATS",
    "DataImportError",
    "ImportOptions",
    "ImportResult",
    "existing_splits",
    "import_file",
    "parse_size",
    "read_rows",
    "tutorial_text",
]
