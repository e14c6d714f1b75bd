"""Reading rows, mapping them to records, splitting and writing: shared by every importer."""

from __future__ import annotations

import csv
import json
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from phi3tui.core.files import atomic_write_text

SPLIT_NAMES = ("train", "valid", "test")
PROMPT_ANSWER = "prompt-answer"  # {"prompt", "answer"} for GRPO (+ "system", "correct_answers" from TruthfulQA)
FORMATS = ("text", "chat", "completions", PROMPT_ANSWER)
PREFERENCE = "preference"  # {"prompt", "chosen", "rejected"}: made from TruthfulQA's answers (truthfulqa.py)


class DataImportError(Exception):
    """Bad input or a refused write. str() names the file (row, column) and says what to do."""


def tutorial_text(question: str, answer: str) -> str:
    """The Phi-3 MLX tutorial's record text, byte for byte."""
    return f"<|user|>\n{question} <|end|>\n<|assistant|> \n{answer} <|end|>"


@dataclass
class ImportOptions:
    fmt: str = "text"  # text (tutorial Phi-3 markers) | chat | completions | prompt-answer | preference
    prompt_column: str | None = None
    completion_column: str | None = None
    text_column: str | None = None  # copy a ready-made text column as is (text format only)
    system_column: str | None = None  # chat and prompt-answer formats: an optional system message
    train: str | int | float | None = None  # None: the rows left after valid and test
    valid: str | int | float | None = "10%"
    test: str | int | float | None = "10%"
    shuffle: bool = False
    seed: int = 0
    force: bool = False
    # (correct column, incorrect column): answers separated by ';', kept in each record as "correct" and
    # "incorrect" lists so the split can be scored as multiple choice (mlx-lm ignores the extra keys); the
    # prompt-answer format keeps the correct ones as "correct_answers" (GRPO's any_correct reward reads them).
    choice_columns: tuple[str, str] | None = None
    pairs_per_question: int = 1  # preference format: (best, incorrect) pairs made per question
    # chat format: the JSONL key or CSV column holding a whole conversation (OpenAI messages or ShareGPT turns,
    # JSON text in a CSV); found by itself ("messages", "conversations") when no column is named (conversations.py)
    conversation_column: str | None = None


@dataclass
class ImportResult:
    out_dir: Path
    counts: dict[str, int]
    rows: int  # usable rows read
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row number, why)
    unused: int = 0  # usable rows left out because the sizes asked for fewer

    def summary(self) -> str:
        parts = ", ".join(f"{s} {n}" for s, n in self.counts.items())
        text = f"wrote {parts} records to {self.out_dir}"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} rows (first: row {self.skipped[0][0]}: {self.skipped[0][1]})"
        if self.unused:
            text += f"; {self.unused} rows left unused by the split sizes"
        return text


def parse_size(value) -> int | float | None:
    """'100' -> 100 records; '0.1' or '10%' -> a fraction of the rows; '' / None -> unset."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else (int(text) if text.isdigit() else float(text))
        except ValueError:
            raise DataImportError(f"split size {value!r} is not a count (100), a fraction (0.1) or a percentage (10%)") from None
    if number < 0:
        raise DataImportError(f"split size {value!r} is negative")
    if isinstance(number, float) and number >= 1 and number.is_integer() and not str(value).strip().endswith("%"):
        return int(number)
    if isinstance(number, float) and number > 1:
        raise DataImportError(f"split size {value!r}: a fraction must be at most 1 (or 100%)")
    return number


def _count(size, n: int) -> int:
    return round(size * n) if isinstance(size, float) else int(size)


def resolve_sizes(n: int, train, valid, test) -> tuple[int, int, int]:
    """Record counts for train/valid/test out of n rows; an unset train takes the rest."""
    v = _count(parse_size(valid) or 0, n)
    t = _count(parse_size(test) or 0, n)
    tr_size = parse_size(train)
    tr = n - v - t if tr_size is None else _count(tr_size, n)
    if tr < 0 or tr + v + t > n:
        raise DataImportError(
            f"the split sizes ask for {max(tr, 0) + v + t} records (train {max(tr, 0)}, valid {v}, test {t}) "
            f"but the file has {n} usable rows; lower them"
        )
    return tr, v, t


def read_rows(path: Path | str, file_lines: bool = False) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    """(column names, iterator of (row number, row)) of a CSV (RFC 4180, optional BOM) or JSONL file.
    A JSONL row's number is its line; a CSV row's is its count after the header, or with file_lines the line
    of the file it starts on (a quoted cell may span lines), for messages that say `file:line`."""
    path = Path(path)
    if not path.is_file():
        raise DataImportError(f"{path} does not exist or is not a file")
    try:
        if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            return _read_jsonl(path)
        return _read_csv(path, file_lines)
    except UnicodeDecodeError as exc:
        raise DataImportError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def _read_csv(path: Path, file_lines: bool = False):
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, encoding="utf-8-sig", newline="") as handle:
        try:
            columns = list(csv.DictReader(handle, strict=True).fieldnames or [])
        except csv.Error as exc:
            raise DataImportError(f"{path}:1: CSV header cannot be read: {exc}") from None
    if not columns:
        raise DataImportError(f"{path} is empty: it needs a header row with column names")

    def rows():
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, strict=True)
            number = 0
            while True:
                starts_on = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise DataImportError(f"{path}:{reader.line_num}: CSV error: {exc}; fix the quoting on that line") from None
                except UnicodeDecodeError as exc:
                    raise DataImportError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
                number += 1
                yield (starts_on if file_lines else number), row

    return columns, rows()


def _read_jsonl(path: Path):
    columns: list[str] = []
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            if line.strip():
                try:
                    first = json.loads(line)
                except ValueError:
                    first = None
                if isinstance(first, dict):
                    columns = list(first)
                break

    def rows():
        with open(path, encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError as exc:  # noqa: PERF203 - one bad line ends the import with its number
                    raise DataImportError(f"{path}:{number}: invalid JSON: {exc}; fix the line") from None
                if not isinstance(value, dict):
                    raise DataImportError(f"{path}:{number}: not a JSON object; each line must be one {{...}} object")
                yield number, value

    return columns, rows()


def _cell(row: dict, column: str | None) -> str:
    value = row.get(column) if column else None
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def split_answers(cell) -> list[str]:
    """A TruthfulQA answers cell ("a; b; c") or a JSON list, as a list of non-empty answers."""
    if isinstance(cell, list):
        return [str(a).strip() for a in cell if str(a).strip()]
    return [a.strip() for a in str(cell or "").split(";") if a.strip()]


def make_record(row: dict, options: ImportOptions) -> tuple[dict | None, str]:
    """(record, "") or (None, why the row is skipped)."""
    record, why = _make_record(row, options)
    if record is not None and options.choice_columns:
        correct, incorrect = (split_answers(row.get(c)) if c else [] for c in options.choice_columns)
        if options.fmt == PROMPT_ANSWER:
            if correct:  # none: the any_correct reward accepts the answer alone
                record["correct_answers"] = correct
        elif incorrect:  # a row without incorrect answers is still a training record, just not a question
            record.update(correct=correct, incorrect=incorrect)
    return record, why


def _make_record(row: dict, options: ImportOptions) -> tuple[dict | None, str]:
    if options.text_column:
        text = _cell(row, options.text_column)
        if not text.strip():
            return None, f"empty {options.text_column!r}"
        return {"text": text}, ""
    prompt = _cell(row, options.prompt_column).strip()
    answer = _cell(row, options.completion_column).strip()
    if not prompt:
        return None, f"empty {options.prompt_column!r}"
    if not answer:
        return None, f"empty {options.completion_column!r}"
    if options.fmt == "text":
        return {"text": tutorial_text(prompt, answer)}, ""
    if options.fmt == "completions":
        return {"prompt": prompt, "completion": answer}, ""
    system = _cell(row, options.system_column).strip()
    if options.fmt == PROMPT_ANSWER:
        return ({"system": system} if system else {}) | {"prompt": prompt, "answer": answer}, ""
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return {"messages": messages}, ""


def existing_splits(out_dir: Path | str) -> list[Path]:
    return [p for p in (Path(out_dir) / f"{s}.jsonl" for s in SPLIT_NAMES) if p.exists()]


def check_columns(source: Path, columns: list[str], options: ImportOptions) -> None:
    if options.fmt == PREFERENCE:
        raise DataImportError(
            f"{source}: the preference format is made from a TruthfulQA CSV (Question, Best Answer, Incorrect "
            "Answers columns); for other data write {\"prompt\", \"chosen\", \"rejected\"} JSONL lines directly"
        )
    if options.fmt not in FORMATS:
        raise DataImportError(f"format {options.fmt!r} is not one of {', '.join(FORMATS)}")
    if options.text_column:
        needed = [options.text_column]
        if options.fmt != "text":
            raise DataImportError("a text column can only be imported in the text format (use --format text)")
    else:
        if not options.prompt_column or not options.completion_column:
            raise DataImportError(
                "say which columns hold the prompt and the answer (--prompt-column, --completion-column), "
                + ("or which holds whole conversations (--conversation-column)" if options.fmt == "chat" else
                   "or which holds ready-made text (--text-column)")
            )
        needed = [options.prompt_column, options.completion_column] + ([options.system_column] if options.system_column else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataImportError(
            f"{source}: no column {', '.join(repr(c) for c in missing)}; "
            f"the file has {', '.join(repr(c) for c in columns) or 'no columns'}"
        )


def check_target(source: Path, out_dir: Path, options: ImportOptions) -> list[Path]:
    """Refuse before reading when the import would write over its source or, unasked, over splits;
    returns the split files that exist (replaced, or removed when the new import lacks them)."""
    existing = existing_splits(out_dir)
    # On a case-insensitive disk (macOS) data/Valid.jsonl *is* data/valid.jsonl: the import would write over,
    # or delete as a stale split, its own source. Only samefile sees it: the names differ.
    own = [p for p in existing if source.is_file() and os.path.samefile(source, p)]
    if own:
        raise DataImportError(
            f"{source} is the same file as {own[0]}, which this import writes or removes; nothing was written "
            f"(move or copy {source.name} out of {out_dir} first, or import into another folder)"
        )
    if existing and not options.force:
        raise DataImportError(
            f"{', '.join(str(p) for p in existing)} already exist{'s' if len(existing) == 1 else ''}; "
            "nothing was written (confirm overwriting, or pass --force)"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise DataImportError(f"{out_dir} is a file; choose a folder for train/valid/test.jsonl")
    return existing


def write_splits(out_dir: Path, parts: dict[str, list[dict]], existing: list[Path]) -> dict[str, int]:
    """Each non-empty split written atomically; a stale split the import lacks removed. Records per split."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, chunk in parts.items():
        if not chunk:
            continue  # mlx-lm treats an absent split as absent; an empty file would be a problem
        atomic_write_text(out_dir / f"{split}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chunk))
        counts[split] = len(chunk)
    for stale in existing:  # overwriting was confirmed: a split the new import lacks must not linger
        if stale.stem not in counts:
            stale.unlink()
    return counts


def split_parts(items: list, options: ImportOptions) -> tuple[dict[str, list], int]:
    """items cut into train/valid/test by the options' sizes (after the optional shuffle); items left over."""
    n_train, n_valid, n_test = resolve_sizes(len(items), options.train, options.valid, options.test)
    if options.shuffle:
        random.Random(options.seed).shuffle(items)
    parts = {
        "train": items[:n_train],
        "valid": items[n_train : n_train + n_valid],
        "test": items[n_train + n_valid : n_train + n_valid + n_test],
    }
    return parts, len(items) - n_train - n_valid - n_test


def import_file(source: Path | str, out_dir: Path | str, options: ImportOptions) -> ImportResult:
    """Read, map, split and write. Raises DataImportError before writing anything when input is bad."""
    source, out_dir = Path(source), Path(out_dir)
    existing = check_target(source, out_dir, options)
    columns, rows = read_rows(source)
    check_columns(source, columns, options)
    records: list[dict] = []
    skipped: list[tuple[int, str]] = []
    for number, row in rows:
        record, why = make_record(row, options)
        if record is None:
            skipped.append((number, why))
        else:
            records.append(record)
    if not records:
        raise DataImportError(f"{source}: no usable rows" + (f" ({len(skipped)} skipped: {skipped[0][1]})" if skipped else ""))
    parts, unused = split_parts(records, options)
    counts = write_splits(out_dir, parts, existing)
    return ImportResult(out_dir, counts, len(records), skipped, unused)


def options_from_values(values: dict, force: bool = False) -> ImportOptions:
    """ImportOptions from plain strings (the Data screen's form); empty strings mean "not set"."""
    seed_text = str(values.get("seed") or "0").strip()
    try:
        seed = int(seed_text)
    except ValueError:
        raise DataImportError(f"seed {seed_text!r} is not a whole number") from None
    for name in ("train", "valid", "test"):
        parse_size(values.get(name))  # fail early, with the field's value in the message
    pairs_text = str(values.get("pairs_per_question") or "1").strip()
    try:
        pairs = int(pairs_text)  # below 1 is refused with the other preference checks (truthfulqa.py)
    except ValueError:
        raise DataImportError(f"pairs per question {pairs_text!r} is not a whole number") from None
    return ImportOptions(
        fmt=values.get("fmt") or "text",
        prompt_column=values.get("prompt_column") or None,
        completion_column=values.get("completion_column") or None,
        text_column=values.get("text_column") or None,
        system_column=values.get("system_column") or None,
        conversation_column=values.get("conversation_column") or None,
        train=values.get("train") or None,
        valid=values.get("valid") or None,
        test=values.get("test") or None,
        shuffle=bool(values.get("shuffle")),
        seed=seed,
        pairs_per_question=pairs,
        force=force,
    )
