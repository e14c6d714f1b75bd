"""The TruthfulQA CSV (Type, Category, Question, Best Answer, ...) as the Phi-3 tutorial used it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from phi3tui.core.data.importers.common import DataImportError, ImportOptions, ImportResult, import_file, read_rows

QUESTION = "Question"
BEST_ANSWER = "Best Answer"
CORRECT_ANSWERS, INCORRECT_ANSWERS = "Correct Answers", "Incorrect Answers"
COLUMNS = ("Type", "Category", QUESTION, BEST_ANSWER, CORRECT_ANSWERS, INCORRECT_ANSWERS, "Source")


def looks_like_truthfulqa(path: Path | str) -> bool:
    """True when a CSV's header has the question and best-answer columns."""
    try:
        columns, rows = read_rows(path)
    except DataImportError:
        return False
    rows.close()
    return QUESTION in columns and BEST_ANSWER in columns


def import_truthfulqa(source: Path | str, out_dir: Path | str, options: ImportOptions | None = None) -> ImportResult:
    """Each row's Question and Best Answer become one record: the tutorial text format, chat or completions.
    The Correct and Incorrect Answers go along as the record's "correct" and "incorrect" lists (multiple choice)."""
    columns, rows = read_rows(source)
    rows.close()
    choices = (CORRECT_ANSWERS, INCORRECT_ANSWERS) if {CORRECT_ANSWERS, INCORRECT_ANSWERS} <= set(columns) else None
    options = replace(
        options or ImportOptions(), prompt_column=QUESTION, completion_column=BEST_ANSWER, text_column=None,
        choice_columns=choices,
    )
    missing = [c for c in (QUESTION, BEST_ANSWER) if c not in columns]
    if missing:
        raise DataImportError(
            f"{source} is not a TruthfulQA CSV: no {' or '.join(repr(c) for c in missing)} column "
            f"(it has {', '.join(repr(c) for c in columns)}); use the generic import with a column mapping"
        )
    return import_file(source, out_dir, options)
