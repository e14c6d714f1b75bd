"""A data folder (train/valid/test.jsonl) read the way mlx-lm reads it: open, index, page, search.

Validation and token statistics live in checks.py, rendering through the model's tokenizer in
render.py.
Nothing here imports textual, mlx or mlx_lm at module level.

Big files: opening reads only the first page. A background scan (LineIndex.build) records the byte
offset of every STRIDE-th line, 8 bytes per STRIDE lines, so any line is one seek and a short read away.
"""

from __future__ import annotations

import json
import threading
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from phi3tui.core import models
from phi3tui.core.workspace import ConfigError, load_config_values

SPLITS = ("train", "valid", "test")
STRIDE = 64  # lines between two remembered offsets
CHUNK = 1 << 20  # bytes read at a time when scanning

# mlx-lm's defaults (mlx_lm/lora.py CONFIG_DEFAULTS and tuner/datasets.py create_dataset), read once
# from the sources; copied so that this module stays importable without mlx-lm.
DEFAULT_BATCH_SIZE = 4
DEFAULT_MAX_SEQ_LENGTH = 2048

PHI3_MARKERS = ("<|user|>", "<|assistant|>", "<|end|>")


@dataclass(frozen=True)
class DataSettings:
    """The config values that decide how mlx-lm reads and batches the data."""

    batch_size: int = DEFAULT_BATCH_SIZE
    max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH
    mask_prompt: bool = False
    test: bool = False
    text_feature: str = "text"
    chat_feature: str = "messages"
    prompt_feature: str = "prompt"
    completion_feature: str = "completion"
    # mlx-lm-lora's preference records: {"prompt", "chosen", "rejected"} (keys fixed, as it reads them)
    chosen_feature: str = "chosen"
    rejected_feature: str = "rejected"
    # GRPO's records: {"prompt", "answer"}, optional "system" and "correct_answers" (keys fixed, as the GRPO
    # task reads them); the answer and its list are what the reward functions compare completions with.
    answer_feature: str = "answer"
    correct_answers_feature: str = "correct_answers"
    # phi3tui's assistant_turns (core/data/turns.py): "last" = mlx-lm's mask, "all" = every assistant turn
    assistant_turns: str = "last"

    @classmethod
    def from_config(cls, values: dict) -> "DataSettings":
        def pick(key, default, kind):
            value = values.get(key, default)
            if value is None:
                return default
            try:
                return kind(value)
            except (TypeError, ValueError):
                return default

        return cls(
            batch_size=max(1, pick("batch_size", DEFAULT_BATCH_SIZE, int)),
            max_seq_length=max(1, pick("max_seq_length", DEFAULT_MAX_SEQ_LENGTH, int)),
            mask_prompt=bool(values.get("mask_prompt", False)),
            test=bool(values.get("test", False)),
            text_feature=pick("text_feature", "text", str),
            chat_feature=pick("chat_feature", "messages", str),
            prompt_feature=pick("prompt_feature", "prompt", str),
            completion_feature=pick("completion_feature", "completion", str),
            assistant_turns="all" if values.get("assistant_turns") == "all" else "last",
        )

    def detect_format(self, record: dict) -> str | None:
        """mlx-lm's create_dataset order: completions, then chat, then text; preference pairs
        (mlx-lm-lora's DPO/ORPO records, which mlx-lm itself does not read) before them all, and GRPO's
        prompt-answer records right after completions (a record with a completion is what mlx-lm reads it as)."""
        if self.chosen_feature in record and self.rejected_feature in record:
            return "preference"
        if self.prompt_feature in record and self.completion_feature in record:
            return "completions"
        if self.prompt_feature in record and self.answer_feature in record:
            return "prompt-answer"
        if self.chat_feature in record:
            return "chat"
        if self.text_feature in record:
            return "text"
        return None

    def fields_of(self, fmt: str) -> tuple[str, ...]:
        return {
            "completions": (self.prompt_feature, self.completion_feature),
            "chat": (self.chat_feature,),
            "text": (self.text_feature,),
            "preference": (self.prompt_feature, self.chosen_feature, self.rejected_feature),
            "prompt-answer": (self.prompt_feature, self.answer_feature),
        }[fmt]


@dataclass
class WorkspaceData:
    """What a workspace's config says about its data: where it is, which model reads it, how."""

    data_dir: Path
    model: str | None  # a local folder (resolved) or a Hugging Face repo id
    settings: DataSettings
    config_error: str = ""


def workspace_data(workspace, config_path: Path | None = None) -> WorkspaceData:
    """The data folder, model and settings of a workspace, from lora_config.yaml (or another config file of it;
    defaults if unreadable)."""
    error = ""
    values: dict = {}
    config_path = config_path or workspace.config_path
    if config_path.exists():
        try:
            values = load_config_values(config_path)
        except ConfigError as exc:
            error = str(exc)
    data = values.get("data") or "data"
    model = values.get("model")
    if model:
        try:
            model = models.model_to_load(str(model), workspace.root)
        except models.ModelNotFound:
            model = str(model)  # the check that loads its tokenizer says what is wrong with it
    return WorkspaceData(workspace.resolve(str(data)), model, DataSettings.from_config(values), error)


# -- files and line counts ------------------------------------------------------------------


def split_path(data_dir: Path | str, split: str) -> Path:
    return Path(data_dir) / f"{split}.jsonl"


def count_lines(path: Path | str, cancel: threading.Event | None = None) -> int:
    """Lines as `for line in file` sees them (a last line without a newline counts)."""
    return LineIndex(path).build(cancel=cancel)


def split_sizes(data_dir: Path | str) -> dict[str, int]:
    """Records (lines) in each split file that exists: a fast newline count, no parsing."""
    return {s: count_lines(split_path(data_dir, s)) for s in SPLITS if split_path(data_dir, s).is_file()}


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class Cancelled(Exception):
    """A scan stopped because its cancel event was set."""


# -- the line index -------------------------------------------------------------------------


class LineIndex:
    """Offsets of every STRIDE-th line of one file; built in the background, usable while it grows."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self.checkpoints = array("Q", [0])  # checkpoints[k] = offset of line k*STRIDE (0-based)
        self.lines = 0  # lines indexed so far (all of them once complete)
        self.complete = self.size == 0
        self._lock = threading.Lock()

    @property
    def scanned_fraction(self) -> float:
        if self.complete or not self.size:
            return 1.0
        return min(1.0, self.checkpoints[-1] / self.size)

    def nbytes(self) -> int:
        return self.checkpoints.itemsize * len(self.checkpoints)

    def build(self, progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None) -> int:
        """Scan the whole file once; returns the number of lines."""
        if self.complete:
            return self.lines
        line = 0
        offset = 0
        next_mark = STRIDE
        marks = array("Q", [0])
        last = b"\n"
        # One reused buffer: reading a fresh chunk each time leaves freed megabytes in the
        # worker thread's malloc arena, which shows as resident memory that never goes back.
        buffer = bytearray(CHUNK)
        with open(self.path, "rb", buffering=0) as handle:
            while True:
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                size = handle.readinto(buffer)
                if not size:
                    break
                newlines = buffer.count(b"\n", 0, size)
                if line + newlines >= next_mark:
                    # Walk this chunk's newlines to the ones that end a STRIDE-th line.
                    find = buffer.find
                    pos = -1
                    for _ in range(newlines):
                        pos = find(b"\n", pos + 1, size)
                        line += 1
                        if line == next_mark:
                            marks.append(offset + pos + 1)
                            next_mark += STRIDE
                else:
                    line += newlines
                offset += size
                last = buffer[size - 1 : size]
                with self._lock:
                    self.checkpoints = marks
                    self.lines = line
                if progress is not None:
                    progress(offset, self.size)
        total = line + (0 if last == b"\n" else 1)
        if marks and marks[-1] >= self.size and len(marks) > 1:
            marks.pop()  # a checkpoint at end of file points at no line
        with self._lock:
            self.checkpoints = marks
            self.lines = total
            self.complete = True
        return total

    def read_lines(self, start: int, count: int) -> list[tuple[int, bytes]]:
        """(1-based line number, raw bytes without the newline) for lines start.. (0-based start)."""
        if start < 0 or count <= 0:
            return []
        with self._lock:
            marks = self.checkpoints
        k = min(start // STRIDE, len(marks) - 1)
        line = k * STRIDE
        out: list[tuple[int, bytes]] = []
        with open(self.path, "rb") as handle:
            handle.seek(marks[k])
            for raw in handle:
                if line >= start:
                    out.append((line + 1, raw.rstrip(b"\r\n") if raw.endswith(b"\n") else raw))
                    if len(out) >= count:
                        break
                line += 1
        return out


# -- one record -----------------------------------------------------------------------------


@dataclass
class Record:
    split: str
    line: int  # 1-based
    raw: bytes
    value: object = None  # the parsed JSON, None if it did not parse
    error: str = ""
    fmt: str | None = None

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    def pretty(self) -> str:
        if self.error:
            return self.text
        return json.dumps(self.value, indent=2, ensure_ascii=False)


def unreadable_line(line: int, raw: bytes) -> tuple[str, str, str]:
    """(rule, message, hint) for a line that json.loads refused: THE wording of the checker's Problems and of the record
    view, so one line reads the same in both, with or without its newline. Here, not in checks.py, because the record
    view reads records without loading the checker (first paint), and checks.py imports this module."""
    raw = raw.rstrip(b"\r\n")  # the checker reads lines with their newline, the record view without
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "not-utf8", f"bytes that are not UTF-8 at byte {exc.start} of the line", "save the file as UTF-8"
    if not text.strip():
        return "blank-line", "blank line (mlx-lm's json.loads fails on it)", "delete the line"
    if line == 1 and text.startswith("\ufeff"):
        return "bom", "the file starts with a byte-order mark (BOM)", "save the file as UTF-8 without BOM"
    try:
        json.loads(text)
        detail = "not readable"  # only called for lines json.loads refused
    except json.JSONDecodeError as exc:
        # Some of json's messages end in "at" ("Invalid control character at"): add the column, not a second "at".
        detail = f"{exc.msg} column {exc.colno}" if exc.msg.endswith(" at") else f"{exc.msg} at column {exc.colno}"
    except ValueError as exc:
        detail = str(exc)
    return "invalid-json", f"invalid JSON: {detail}", "fix the line so it is one JSON object"


def not_an_object(value: object) -> tuple[str, str, str]:
    """(rule, message, hint) for a line that is JSON but not one object (shared like unreadable_line)."""
    return "not-object", f"not a JSON object but {type(value).__name__}", "each line must be one {...} object"


def parse_record(split: str, line: int, raw: bytes, settings: DataSettings) -> Record:
    rec = Record(split, line, raw)
    try:
        rec.value = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
        rec.value, rec.error = None, unreadable_line(line, raw)[1]
        return rec
    if isinstance(rec.value, dict):
        rec.fmt = settings.detect_format(rec.value)
    else:
        rec.error = not_an_object(rec.value)[1]
    return rec


def read_split_items(data_dir: Path | str, kind: str, take: Callable[[dict], object]) -> tuple[list, list, list]:
    """train/valid/test.jsonl read for a runner's own task (DPO's pairs, GRPO's prompts): each line must be one
    JSON object, which `take` turns into an item or refuses with ValueError; an absent split is empty. The first
    bad line raises ValueError naming the file and line, in the checker's words (`phi3tui data check` lists all)."""
    splits = []
    for split in SPLITS:
        path = split_path(data_dir, split)
        items: list = []
        if path.is_file():
            with open(path, "rb") as handle:
                for line, raw in enumerate(handle, 1):
                    try:
                        value = json.loads(raw.decode("utf-8"))
                    except ValueError:  # UnicodeDecodeError and JSONDecodeError alike; a blank line too
                        problem = unreadable_line(line, raw)[1]
                    else:
                        if not isinstance(value, dict):
                            problem = not_an_object(value)[1]
                        else:
                            try:
                                items.append(take(value))
                                continue
                            except ValueError as exc:
                                problem = f"not {kind} ({exc})"
                    raise ValueError(f"{path}:{line}: {problem}; run `phi3tui data check` to list every problem")
        splits.append(items)
    return tuple(splits)


# -- a data folder --------------------------------------------------------------------------


@dataclass
class SplitInfo:
    name: str
    path: Path
    size: int
    index: LineIndex
    first: Record | None = None  # line 1, parsed: it decides the split's format, as in mlx-lm

    @property
    def format(self) -> str | None:
        return self.first.fmt if self.first else None

    @property
    def records(self) -> int | None:
        """Number of lines, once the index is complete."""
        return self.index.lines if self.index.complete else None


@dataclass
class DataFolder:
    """An opened data folder: cheap to create (reads one line per split); indexes build on demand."""

    path: Path
    settings: DataSettings = field(default_factory=DataSettings)
    splits: dict[str, SplitInfo] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path | str, settings: DataSettings | None = None) -> "DataFolder":
        path = Path(path)
        settings = settings or DataSettings()
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder; point to the folder with train.jsonl")
        folder = cls(path, settings)
        for split in SPLITS:
            p = split_path(path, split)
            if p.is_file():
                index = LineIndex(p)
                info = SplitInfo(split, p, index.size, index)
                first = index.read_lines(0, 1)
                if first:
                    info.first = parse_record(split, 1, first[0][1], settings)
                folder.splits[split] = info
        return folder

    def build_indexes(self, progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None) -> None:
        total = sum(s.size for s in self.splits.values()) or 1
        done = 0
        for info in self.splits.values():
            base = done
            info.index.build(None if progress is None else (lambda d, _t, b=base: progress(b + d, total)), cancel)
            done += info.size

    def page(self, split: str, start: int, count: int) -> list[Record]:
        """Records start+1 .. start+count of a split (0-based start), parsed."""
        info = self.splits[split]
        return [parse_record(split, n, raw, self.settings) for n, raw in info.index.read_lines(start, count)]

    def record(self, split: str, line: int) -> Record | None:
        got = self.page(split, line - 1, 1)
        return got[0] if got else None

    def line_record(self, split: str, line: int) -> Record:
        """Line `line` (1-based) of a split, parsed; LookupError naming the split or line when there is none."""
        if split not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise LookupError(f"{self.path} has no {split}.jsonl (splits here: {have}); choose one of them with --split")
        record = self.record(split, line) if line >= 1 else None
        if record is None:
            lines = count_lines(self.splits[split].path)
            raise LookupError(f"{split}:{line}: no such line; {split}.jsonl has {lines} line{'' if lines == 1 else 's'}"
                              + (f" (1 to {lines})" if lines > 1 else ""))
        return record

    def search(self, split: str, needle: str, after_line: int = 0, cancel: threading.Event | None = None) -> int | None:
        """The first line after `after_line` (1-based) whose raw JSON contains needle (any case); wraps once."""
        if not needle:
            return None
        forms = {needle.lower().encode("utf-8"), json.dumps(needle)[1:-1].lower().encode("utf-8")}
        info = self.splits[split]

        def scan(first: int, last: int | None) -> int | None:
            line = 0
            with open(info.path, "rb") as handle:
                for raw in handle:
                    line += 1
                    if line % 65536 == 0 and cancel is not None and cancel.is_set():
                        raise Cancelled()
                    if line < first:
                        continue
                    if last is not None and line > last:
                        return None
                    low = raw.lower()
                    if any(f in low for f in forms):
                        return line
            return None

        found = scan(after_line + 1, None)
        if found is None and after_line > 0:
            found = scan(1, after_line)
        return found
