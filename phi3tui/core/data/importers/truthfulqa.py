"""The TruthfulQA CSV (Type, Category, Question, Best Answer, ...) as the Phi-3 tutorial used it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from phi3tui.core.data.importers.common import (
    PREFERENCE,
    PROMPT_ANSWER,
    DataImportError,
    ImportOptions,
    ImportResult,
    check_target,
    import_file,
    read_rows,
    split_answers,
    split_parts,
    write_splits,
)

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
    The Correct and Incorrect Answers go along as the record's "correct" and "incorrect" lists (multiple choice).
    prompt-answer (GRPO): {"prompt": Question, "answer": Best Answer, "correct_answers": Correct Answers}."""
    columns, rows = read_rows(source)
    rows.close()
    choices = (CORRECT_ANSWERS, INCORRECT_ANSWERS) if {CORRECT_ANSWERS, INCORRECT_ANSWERS} <= set(columns) else None
    if options is not None and options.fmt == PROMPT_ANSWER:
        choices = (CORRECT_ANSWERS, None) if CORRECT_ANSWERS in columns else None
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
    if options.fmt == PREFERENCE:
        return import_pairs(source, out_dir, options)
    return import_file(source, out_dir, options)


def import_pairs(source: Path | str, out_dir: Path | str, options: ImportOptions) -> ImportResult:
    """Preference pairs: each question's Best Answer is chosen, its first N Incorrect Answers rejected,
    one {"prompt", "chosen", "rejected"} record each. Split by question, so that no question has pairs
    in two splits (valid would measure memorisation); the split sizes count questions."""
    source, out_dir = Path(source), Path(out_dir)
    n = options.pairs_per_question
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataImportError(f"--pairs-per-question is {n!r}; it must be a whole number of at least 1")
    existing = check_target(source, out_dir, options)
    columns, rows = read_rows(source)
    if INCORRECT_ANSWERS not in columns:
        rows.close()
        raise DataImportError(
            f"{source}: no {INCORRECT_ANSWERS!r} column, so no rejected answers "
            f"(it has {', '.join(repr(c) for c in columns)}); use --format text, chat or completions"
        )
    groups: list[list[dict]] = []
    skipped: list[tuple[int, str]] = []
    for number, row in rows:
        question = (row.get(QUESTION) or "").strip()
        best = (row.get(BEST_ANSWER) or "").strip()
        if not question or not best:
            skipped.append((number, f"empty {QUESTION if not question else BEST_ANSWER!r}"))
            continue
        wrong = [a for a in split_answers(row.get(INCORRECT_ANSWERS)) if a != best][:n]
        if not wrong:
            skipped.append((number, f"no {INCORRECT_ANSWERS!r} that differs from the best answer"))
            continue
        groups.append([{"prompt": question, "chosen": best, "rejected": w} for w in wrong])
    if not groups:
        raise DataImportError(f"{source}: no usable rows" + (f" ({len(skipped)} skipped: {skipped[0][1]})" if skipped else ""))
    parts, unused = split_parts(groups, options)
    records = {split: [r for group in chunk for r in group] for split, chunk in parts.items()}
    counts = write_splits(out_dir, records, existing)
    return ImportResult(out_dir, counts, len(groups), skipped, unused)
