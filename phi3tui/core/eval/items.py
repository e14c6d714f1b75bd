"""Multiple-choice items, TruthfulQA style, read from a CSV with TruthfulQA's columns or a JSONL file.
Light: no mlx."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phi3tui.core.chat import prompt_from_record
from phi3tui.core.data import DataImportError, read_rows, split_answers

# TruthfulQA's CSV columns; answers in a cell are separated by ';'.
QUESTION, BEST, CORRECT, INCORRECT = "Question", "Best Answer", "Correct Answers", "Incorrect Answers"


class EvalError(Exception):
    """Something the user can fix (a bad --mc file, no test split, no adapter); str() says what to do."""


@dataclass(frozen=True)
class McItem:
    """One question: the best answer, the other correct ones, and the incorrect ones."""

    question: str
    best: str
    correct: tuple[str, ...]  # the best answer is among them (lm-evaluation-harness's mc2 targets)
    incorrect: tuple[str, ...]
    source: str = ""  # file:line

    @property
    def reference(self) -> str:
        return self.best


def item_from_row(row: dict, source: str) -> McItem:
    """An McItem from a CSV row (TruthfulQA's columns) or a JSONL object (question/correct/incorrect,
    optional best: the first correct answer when absent). EvalError names `source` and the field."""
    if QUESTION in row:
        question, best, correct, incorrect = row.get(QUESTION), row.get(BEST), row.get(CORRECT), row.get(INCORRECT)
        names = (QUESTION, BEST, INCORRECT)
    else:
        question, correct, incorrect = row.get("question"), row.get("correct"), row.get("incorrect")
        best = row.get("best")
        names = ("question", "correct", "incorrect")
    question = str(question or "").strip()
    correct_list = split_answers(correct)
    best = str(best or "").strip()
    incorrect_list = split_answers(incorrect)
    # A TruthfulQA row must name its Best Answer; a JSONL item's best is its first correct one by default.
    for name, value in zip(names, (question, best if QUESTION in row else correct_list, incorrect_list)):
        if not value:
            raise EvalError(f"{source}: {name!r} is empty or missing; every item needs a question, a correct and an incorrect answer")
    best = best or correct_list[0]
    if best not in correct_list:
        correct_list.insert(0, best)
    return McItem(question, best, tuple(correct_list), tuple(incorrect_list), source)


def read_mc(path: Path, limit: int | None = None) -> list[McItem]:
    """The items of a TruthfulQA CSV or a JSONL file; EvalError names the file and line of a bad one."""
    path = Path(path)
    try:
        columns, rows = read_rows(path)
    except DataImportError as exc:
        raise EvalError(str(exc)) from None
    is_csv = path.suffix.lower() not in (".jsonl", ".json", ".ndjson")
    if is_csv and not {QUESTION, INCORRECT} <= set(columns):
        rows.close()
        raise EvalError(
            f"{path}:1: the header needs TruthfulQA's columns {QUESTION!r}, {BEST!r}, {CORRECT!r}, {INCORRECT!r} "
            f"(it has {', '.join(repr(c) for c in columns)})"
        )
    items = []
    try:
        for number, row in rows:
            # A CSV row number counts the header as line 1 (a quoted answer spanning lines shifts it).
            where = f"{path}:{number + 1}" if is_csv else f"{path}:{number}"
            items.append(item_from_row(row, where))
            if limit and len(items) >= limit:
                break
    except DataImportError as exc:
        raise EvalError(str(exc)) from None
    finally:
        rows.close()
    if not items:
        raise EvalError(f"{path} has no items: it needs a header row and at least one question")
    return items


def split_items(path: Path, limit: int | None = None) -> list[McItem]:
    """Multiple-choice items from a data split whose records carry "incorrect" answers (the demo's test
    split, a TruthfulQA import): the prompt is the question, the record's answer the best one. Records
    without "incorrect" are not items; [] when there are none (or no file)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        columns, rows = read_rows(path)
        items = []
        for number, row in rows:
            if "incorrect" not in row:
                continue
            parsed = prompt_from_record(row)
            where = f"{path}:{number}"
            if parsed is None or not parsed[1]:
                raise EvalError(f"{where}: a record with \"incorrect\" needs a question and its answer")
            extra = split_answers(row.get("correct", []))
            items.append(item_from_row({"question": parsed[0], "best": parsed[1], "correct": [parsed[1], *extra],
                                        "incorrect": row["incorrect"]}, where))
            if limit and len(items) >= limit:
                break
        rows.close()
    except DataImportError as exc:
        raise EvalError(str(exc)) from None
    return items
