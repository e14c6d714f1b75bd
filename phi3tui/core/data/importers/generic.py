"""Any CSV or JSONL file, with a column mapping chosen by the user."""

from __future__ import annotations

from pathlib import Path

from phi3tui.core.data.importers.common import ImportOptions, ImportResult, import_file, read_rows


def columns_of(path: Path | str) -> list[str]:
    """The column names (CSV header, or the first JSONL record's keys) to offer for mapping."""
    columns, rows = read_rows(path)
    rows.close()
    return columns


def import_generic(source: Path | str, out_dir: Path | str, options: ImportOptions) -> ImportResult:
    """Rows mapped through options.prompt_column / completion_column (or text_column) into records."""
    return import_file(source, out_dir, options)
