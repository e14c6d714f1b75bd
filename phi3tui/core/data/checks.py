"""Validation of every line of every split, and token statistics with the model's tokenizer.

Both passes stream: a file is read line by line and nothing is kept per record except what the
report needs (problems, capped per rule; a length histogram; a few worst offenders). Both take a
progress callback (bytes done, bytes total, phase) and a cancel event.
"""

from __future__ import annotations

import heapq
import json
import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from phi3tui.core.data.folder import (
    PHI3_MARKERS,
    SPLITS,
    Cancelled,
    DataFolder,
    DataSettings,
    human_size,
    not_an_object,
    unreadable_line,
    workspace_data,
)
from phi3tui.core.data.tool_records import named_function, tool_names, uses_tools

MAX_LISTED_PER_RULE = 100  # problems listed per (split, rule); all are counted
WORST_LISTED = 5  # longest records listed per split
KNOWN_ROLES = frozenset({"system", "user", "assistant", "tool"})
PROGRESS_EVERY = 1 << 14  # lines between progress reports and cancel checks

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Problem:
    level: str  # "error" (mlx-lm fails or trains on the wrong thing) | "warning"
    split: str
    line: int  # 1-based; 0 when the problem is about the whole split
    rule: str
    message: str
    hint: str = ""

    @property
    def location(self) -> str:
        return f"{self.split}:{self.line}" if self.line else self.split

    def __str__(self) -> str:
        return f"{self.level}: {self.location}: {self.message}" + (f" ({self.hint})" if self.hint else "")


@dataclass
class SplitStats:
    records: int = 0  # records measured (valid ones)
    tokens: int = 0  # all tokens, before truncation
    trained_tokens: int = 0  # tokens the loss counts (after masking and truncation)
    histogram: Counter = field(default_factory=Counter)  # token count -> records
    over_max: int = 0
    worst: list = field(default_factory=list)  # min-heap of (tokens, line), the longest records

    def add(self, length: int, line: int, trained: int, max_len: int) -> None:
        self.records += 1
        self.tokens += length
        self.trained_tokens += trained
        self.histogram[length] += 1
        if length > max_len:
            self.over_max += 1
        if len(self.worst) < WORST_LISTED:
            heapq.heappush(self.worst, (length, -line))
        elif length > self.worst[0][0]:
            heapq.heapreplace(self.worst, (length, -line))

    def percentile(self, q: float) -> int:
        if not self.records:
            return 0
        rank = max(1, math.ceil(q * self.records))  # nearest-rank percentile
        seen = 0
        for length in sorted(self.histogram):
            seen += self.histogram[length]
            if seen >= rank:
                return length
        return max(self.histogram)

    @property
    def min(self) -> int:
        return min(self.histogram) if self.histogram else 0

    @property
    def max(self) -> int:
        return max(self.histogram) if self.histogram else 0

    @property
    def median(self) -> int:
        return self.percentile(0.5)

    @property
    def p95(self) -> int:
        return self.percentile(0.95)

    def longest(self) -> list[tuple[int, int]]:
        """(tokens, line) of the longest records, longest first."""
        return [(t, -neg) for t, neg in sorted(self.worst, reverse=True)]


@dataclass
class Report:
    data_dir: Path
    settings: DataSettings
    model: str | None = None
    problems: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # (level, split, rule) -> all occurrences
    records: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    formats: dict[str, str | None] = field(default_factory=dict)
    stats: dict[str, SplitStats] = field(default_factory=dict)
    validated: bool = False
    measured: bool = False
    tokenizer_note: str = ""  # why token statistics are missing, if they are

    def add(self, level: str, split: str, line: int, rule: str, message: str, hint: str = "") -> None:
        key = (level, split, rule)
        self.counts[key] += 1
        if self.counts[key] <= MAX_LISTED_PER_RULE:
            self.problems.append(Problem(level, split, line, rule, message, hint))

    def total(self, level: str) -> int:
        return sum(n for (lvl, _s, _r), n in self.counts.items() if lvl == level)

    @property
    def errors(self) -> int:
        return self.total("error")

    @property
    def warnings(self) -> int:
        return self.total("warning")

    @property
    def unlisted(self) -> int:
        return sum(max(0, n - MAX_LISTED_PER_RULE) for n in self.counts.values())

    def clean_splits(self) -> list[str]:
        """The splits checked so far that have no problem at all, in SPLITS order."""
        with_problems = {split for (_level, split, _rule) in self.counts}
        return [s for s in SPLITS if s in self.records and s not in with_problems]

    def sorted_problems(self) -> list[Problem]:
        order = {s: i for i, s in enumerate(SPLITS)}
        return sorted(self.problems, key=lambda p: (p.level != "error", order.get(p.split, 9), p.line))

    @property
    def iterations_per_epoch(self) -> int:
        # mlx-lm's iterate_batches makes len // batch_size full batches per pass.
        return self.records.get("train", 0) // self.settings.batch_size

    def summary(self) -> str:
        parts = [f"{s} {self.records[s]:,}" for s in SPLITS if s in self.records]
        text = "records: " + (", ".join(parts) or "none")
        if self.measured and "train" in self.stats:
            text += f"; train tokens {self.stats['train'].tokens:,}"
            text += f" (max {self.stats['train'].max:,})"
        text += f"; {self.iterations_per_epoch:,} iterations per epoch at batch size {self.settings.batch_size}"
        text += f"; {self.errors} errors, {self.warnings} warnings"
        return text

    def lines(self) -> list[str]:
        """The full report as text (what `phi3tui data check` prints)."""
        s = self.settings
        out = [f"data {self.data_dir}"]
        out.append(
            f"model {self.model or '(none)'}; batch_size {s.batch_size}, max_seq_length {s.max_seq_length}, "
            f"mask_prompt {str(s.mask_prompt).lower()}"
        )
        for split in SPLITS:
            if split not in self.records:
                out.append(f"  {split:<5}  absent")
                continue
            out.append(
                f"  {split:<5}  {self.records[split]:>9,} records  {human_size(self.sizes.get(split, 0)):>9}  "
                f"{self.formats.get(split) or 'unknown format'}"
            )
        if self.measured:
            out.append("tokens per record (min / median / p95 / max), total, counted by the loss:")
            for split, st in self.stats.items():
                out.append(
                    f"  {split:<5}  {st.min:,} / {st.median:,} / {st.p95:,} / {st.max:,}  "
                    f"total {st.tokens:,}  trained {st.trained_tokens:,}"
                    + (f"  {st.over_max:,} over max_seq_length" if st.over_max else "")
                )
        elif self.tokenizer_note:
            out.append(f"token statistics skipped: {self.tokenizer_note}")
        out.append(f"iterations per epoch: {self.iterations_per_epoch:,} (train records // batch_size)")
        for p in self.sorted_problems():
            out.append(str(p))
        if self.unlisted:
            out.append(f"... and {self.unlisted:,} more of the same kinds (only {MAX_LISTED_PER_RULE} listed per kind)")
        out.append(f"{self.errors} errors, {self.warnings} warnings")
        return out


# -- pass 1: structure ----------------------------------------------------------------------


class _SplitChecker:
    """Checks one record at a time against the split's format (decided by the first record)."""

    def __init__(self, report: Report, split: str, phi3: bool):
        self.report = report
        self.split = split
        self.phi3 = phi3
        self.s = report.settings
        self.fmt: str | None = None

    def problem(self, level, line, rule, message, hint=""):
        self.report.add(level, self.split, line, rule, message, hint)

    def check(self, value: dict, line: int) -> None:
        s = self.s
        fmt = self.fmt
        if fmt is None:
            fmt = self.fmt = s.detect_format(value)
            if fmt is None:
                self.missing_fields(value, line)
                return
            if line == 1:
                self.report.formats[self.split] = fmt
        if fmt == "text":
            text = value.get(s.text_feature)
            if text is None:
                return self.wrong_format(value, line)
            if type(text) is not str:
                return self.problem("error", line, "field-type", f"'{s.text_feature}' must be a string, not {type(text).__name__}")
            if not text:
                return self.problem("error", line, "empty-field", f"'{s.text_feature}' is empty: nothing to train on", "delete the line or fill it in")
            if self.phi3 and not (PHI3_MARKERS[0] in text and PHI3_MARKERS[1] in text):
                self.problem(
                    "warning", line, "phi3-markers",
                    "text lacks the Phi-3 markers <|user|> / <|assistant|>",
                    "write <|user|>\\n… <|end|>\\n<|assistant|> \\n… <|end|>, or use the chat format",
                )
        elif fmt == "preference":
            self.check_preference(value, line)
        elif fmt == "prompt-answer":
            self.check_prompt_answer(value, line)
        elif fmt == "chat":
            messages = value.get(s.chat_feature)
            if messages is None:
                return self.wrong_format(value, line)
            self.check_messages(value, messages, line)
        else:
            prompt = value.get(s.prompt_feature)
            completion = value.get(s.completion_feature)
            if prompt is None or completion is None:
                return self.wrong_format(value, line)
            for name, v, level in ((s.prompt_feature, prompt, "warning"), (s.completion_feature, completion, "error")):
                if type(v) is not str:
                    self.problem("error", line, "field-type", f"'{name}' must be a string, not {type(v).__name__}")
                elif not v.strip():
                    self.problem(level, line, "empty-field", f"'{name}' is empty", "fill it in or delete the line")
            self.check_tools(value, line)

    def check_preference(self, value: dict, line: int) -> None:
        """A DPO/ORPO pair: a prompt and two different answers, all non-empty strings."""
        s = self.s
        names = (s.prompt_feature, s.chosen_feature, s.rejected_feature)
        if s.chosen_feature not in value or s.rejected_feature not in value:
            return self.wrong_format(value, line)
        if s.prompt_feature not in value:
            return self.problem("error", line, "missing-field", f"no '{s.prompt_feature}' field: a preference pair "
                                "needs the prompt both answers reply to", f'add "{s.prompt_feature}": "…"')
        texts = {}
        for name in names:
            v = value[name]
            if type(v) is not str:
                self.problem("error", line, "field-type", f"'{name}' must be a string, not {type(v).__name__}")
            elif not v.strip():
                self.problem("error", line, "empty-field", f"'{name}' is empty", "fill it in or delete the line")
            else:
                texts[name] = v
        chosen, rejected = texts.get(s.chosen_feature), texts.get(s.rejected_feature)
        if chosen is not None and chosen.strip() == (rejected or "").strip():
            # The two answers give the same log-probabilities: the pair's DPO loss is constant, nothing is learnt.
            self.problem("warning", line, "equal-answers", f"'{s.chosen_feature}' and '{s.rejected_feature}' are the "
                         "same text: the pair teaches nothing", "give a worse answer as rejected, or delete the line")

    def check_prompt_answer(self, value: dict, line: int) -> None:
        """A GRPO record: a prompt to sample completions for and the answer the rewards compare them with (both
        non-empty strings), an optional system message, an optional list of the answers that count as correct."""
        s = self.s
        if s.prompt_feature not in value or s.answer_feature not in value:
            return self.wrong_format(value, line)
        for name in (s.prompt_feature, s.answer_feature):
            v = value[name]
            if type(v) is not str:
                self.problem("error", line, "field-type", f"'{name}' must be a string, not {type(v).__name__}",
                             f'write it as text: "{name}": "…"')
            elif not v.strip():
                self.problem("error", line, "empty-field", f"'{name}' is empty", "fill it in or delete the line")
        system = value.get("system")
        if system is not None and type(system) is not str:
            self.problem("error", line, "field-type", f"'system' must be a string, not {type(system).__name__}",
                         'write it as text ("system": "…"), or delete the key')
        name = s.correct_answers_feature
        correct = value.get(name)
        if correct is None:
            return  # any_correct then accepts the answer alone
        hint = f'write "{name}": ["…", "…"], or delete the key (the answer alone then counts)'
        if type(correct) is not list:
            return self.problem("error", line, "field-type",
                                f"'{name}' must be a list of strings, not {type(correct).__name__}", hint)
        wrong = next((i for i, a in enumerate(correct, 1) if type(a) is not str), None)
        if wrong is not None:
            return self.problem("error", line, "field-type", f"{name}[{wrong}] is {type(correct[wrong - 1]).__name__}: "
                                f"'{name}' must be a list of strings", hint)
        if not correct or not all(a.strip() for a in correct):
            self.problem("error", line, "empty-field", f"'{name}' is empty or holds an empty answer: no completion "
                         "could match it", f"fill in the answers, or delete the key (the answer alone then counts)")

    def check_messages(self, value: dict, messages, line: int) -> None:
        name = self.s.chat_feature
        if type(messages) is not list or not messages:
            return self.problem("error", line, "empty-field", f"'{name}' must be a non-empty list of messages")
        has_assistant = False
        for i, m in enumerate(messages, 1):
            if type(m) is not dict:
                self.problem("error", line, "field-type", f"{name}[{i}] is not an object with role and content")
                continue
            role = m.get("role")
            if role is None:
                self.problem("error", line, "missing-field", f"{name}[{i}] has no 'role'", "add \"role\": \"user\" or \"assistant\"")
            elif role not in KNOWN_ROLES:
                self.problem(
                    "error", line, "unknown-role", f"{name}[{i}] has unknown role {role!r}",
                    "use system, user, assistant or tool (chat templates drop or reject other roles)",
                )
            elif role == "assistant":
                has_assistant = True
            content = m.get("content")
            if content is None:
                if not m.get("tool_calls"):
                    self.problem("error", line, "missing-field", f"{name}[{i}] has no 'content'",
                                 'add "content": "…" to the message')
            elif isinstance(content, str):
                if not content.strip() and not m.get("tool_calls"):  # a tool call's content is often empty
                    self.problem("warning", line, "empty-field", f"{name}[{i}] ({role}) has empty content")
            elif not isinstance(content, list):
                self.problem("error", line, "field-type", f"{name}[{i}] content must be a string, not {type(content).__name__}")
        if not has_assistant:
            self.problem("warning", line, "no-assistant", "no assistant message: nothing for the model to learn to answer")
        elif self.s.mask_prompt and type(messages[-1]) is dict and messages[-1].get("role") != "assistant":
            self.problem(
                "warning", line, "mask-last-message",
                "with mask_prompt only the last message is trained, and it is not the assistant's",
            )
        self.check_tools(value, line)
        self.check_tool_calls(value, messages, line)

    def check_tools(self, value: dict, line: int) -> None:
        tools = value.get("tools")
        if tools is not None and type(tools) is not list:
            self.problem("error", line, "field-type", f"'tools' must be a list, not {type(tools).__name__}")

    def check_tool_calls(self, value: dict, messages: list, line: int) -> None:
        """Tool-calling records ({"messages", "tools"}, OpenAI's shape): each call names a function of `tools`
        with JSON arguments, and each `tool` message answers a call made before it."""
        name = self.s.chat_feature
        tools = value.get("tools")
        defined = tool_names(tools) if type(tools) is list else None
        call_ids: set | None = None  # the ids of the calls waiting for results; None: no call yet this turn
        for i, m in enumerate(messages, 1):
            if type(m) is not dict:
                continue
            role = m.get("role")
            if role == "user":
                call_ids = None
            calls = m.get("tool_calls")
            if role == "assistant" and calls:
                if type(calls) is not list:
                    self.problem("error", line, "field-type", f"{name}[{i}] tool_calls must be a list of calls")
                    continue
                call_ids = set()
                for call in calls:
                    self.check_call(call, i, defined, line)
                    if type(call) is dict and call.get("id") is not None:
                        call_ids.add(call["id"])
            elif role == "tool":
                if call_ids is None:
                    self.problem("error", line, "tool-without-call", f"{name}[{i}] is a tool result with no "
                                 "assistant tool call before it", "put the assistant message whose tool_calls "
                                 "asked for it before it, or delete the tool message")
                elif call_ids and m.get("tool_call_id") is not None and m["tool_call_id"] not in call_ids:
                    self.problem("error", line, "tool-without-call", f"{name}[{i}] answers tool_call_id "
                                 f"{m['tool_call_id']!r}, which no call before it has", "use the id of the call it answers")

    def check_call(self, call, i: int, defined: set | None, line: int) -> None:
        where = f"{self.s.chat_feature}[{i}]"
        function = named_function(call)
        if function is None:
            return self.problem("error", line, "field-type", f"{where} has a tool call without a function name",
                                'write {"type": "function", "function": {"name": "…", "arguments": "{…}"}}')
        fname = function["name"]
        if defined is None:
            self.problem("warning", line, "tool-undefined", f"{where} calls {fname!r} but the record has no 'tools': "
                         "the model learns the call without its definition", 'add "tools": [{"type": "function", '
                         f'"function": {{"name": "{fname}", "parameters": {{…}}}}}}] to the record')
        elif fname not in defined:
            known = ", ".join(sorted(defined)) or "none"
            self.problem("error", line, "tool-undefined", f"{where} calls {fname!r}, which 'tools' does not define "
                         f"(defined: {known})", f"fix the name, or add {fname!r}'s definition to 'tools'")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                json.loads(arguments)
            except ValueError as exc:
                self.problem("error", line, "tool-arguments", f"{where}: the arguments of {fname!r} are not JSON "
                             f"({exc})", 'write them as a JSON object in a string, e.g. "{\"city\": \"Paris\"}"')
        elif arguments is not None and not isinstance(arguments, dict):
            self.problem("error", line, "tool-arguments", f"{where}: the arguments of {fname!r} are a "
                         f"{type(arguments).__name__}", "write them as a JSON object (or a string holding one)")

    def missing_fields(self, value: dict, line: int) -> None:
        s = self.s
        keys = ", ".join(repr(k) for k in list(value)[:6]) or "none"
        if s.chosen_feature in value or s.rejected_feature in value:  # half a preference pair
            missing = s.rejected_feature if s.chosen_feature in value else s.chosen_feature
            return self.problem("error", line, "missing-field", f"no '{missing}' field: a preference pair needs "
                                f"'{s.prompt_feature}', '{s.chosen_feature}' and '{s.rejected_feature}' (keys: {keys})",
                                f'add "{missing}": "…", or delete the line')
        if s.answer_feature in value and s.prompt_feature not in value:  # half a prompt-answer record
            return self.problem("error", line, "missing-field", f"no '{s.prompt_feature}' field: a prompt-answer "
                                f"record needs '{s.prompt_feature}' and '{s.answer_feature}' (keys: {keys})",
                                f'rename the field that holds the question to "{s.prompt_feature}" (or add '
                                f'"{s.prompt_feature}": "…"), or delete the line')
        self.problem(
            "error", line, "missing-field",
            f"no '{s.text_feature}', '{s.chat_feature}' or '{s.prompt_feature}'+'{s.completion_feature}' field (keys: {keys})",
            "rename the field, or set text_feature / chat_feature / prompt_feature / completion_feature in the config",
        )

    def wrong_format(self, value: dict, line: int) -> None:
        own = self.s.detect_format(value)
        if own is None:
            return self.missing_fields(value, line)
        self.problem(
            "error", line, "mixed-formats",
            f"a {own} record in a {self.fmt} split (mlx-lm takes the format from the first record)",
            f"write every record of {self.split}.jsonl in one format",
        )


def record_problems(value: dict, split: str, line: int, settings: DataSettings) -> list[Problem]:
    """What the check says about one record (a parsed line) on its own, its format taken from itself: the
    messages check_folder gives that line, bar those that need the other lines (mixed formats, duplicates)."""
    report = Report(Path(), settings)
    _SplitChecker(report, split, phi3=False).check(value, line)
    return report.sorted_problems()


def _check_split(report: Report, split: str, path: Path, phi3: bool, seen: dict, progress, cancel, done0: int, total: int) -> int:
    """Stream one split file; returns the number of lines."""
    checker = _SplitChecker(report, split, phi3)
    add = report.add
    check = checker.check
    loads = json.loads
    is_train = split == "train"
    line = 0
    done = done0
    with open(path, "rb") as handle:
        for raw in handle:
            line += 1
            done += len(raw)
            if not line % PROGRESS_EVERY:
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                if progress is not None:
                    progress(done, total, "validate")
            try:
                value = loads(raw.decode())
            except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
                add("error", split, line, *unreadable_line(line, raw))
                continue
            if type(value) is not dict:
                add("error", split, line, *not_an_object(value))
                continue
            check(value, line)
            key = hash(raw.rstrip())
            if is_train:
                other = seen.get(key)
                if other is not None:
                    add(
                        "warning", split, line, "leakage", f"exact duplicate of {other[0]}:{other[1]}",
                        "remove it from one of the splits, or validation measures memorisation",
                    )
            elif key not in seen:
                seen[key] = (split, line)
    if line and checker.fmt is not None and split not in report.formats:
        report.formats[split] = checker.fmt
    return line


def validate_folder(
    folder: DataFolder,
    report: Report | None = None,
    phi3: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Report:
    """Check every line of every split; the report lists each problem with split:line and a hint."""
    s = folder.settings
    report = report or Report(folder.path, s)
    total = sum(i.size for i in folder.splits.values()) or 1
    seen: dict = {}
    done = 0
    # valid and test first: their record hashes find train records leaking into them.
    for split in ("valid", "test", "train"):
        info = folder.splits.get(split)
        if info is None:
            continue
        report.sizes[split] = info.size
        try:
            report.records[split] = _check_split(report, split, info.path, phi3, seen, progress, cancel, done, total)
        except OSError as exc:  # deleted, moved or unreadable since the folder was listed
            report.add("error", split, 0, "unreadable", f"{info.path.name} could not be read: {exc.strerror or exc}",
                       "check that the file is still there, then check again")
        done += info.size
    report.records = {k: report.records[k] for k in SPLITS if k in report.records}
    _check_split_sizes(report)
    report.validated = True
    if progress is not None:
        progress(total, total, "validate")
    return report


def _check_split_sizes(report: Report) -> None:
    s = report.settings
    if "train" not in report.records and (Path(report.data_dir) / "train.jsonl").is_dir():
        report.add("error", "train", 0, "missing-split", "train.jsonl is a folder, not a file",
                   "move the folder away and put the training records in a train.jsonl file")
    elif "train" not in report.records and not report.counts.get(("error", "train", "unreadable")):
        report.add("error", "train", 0, "missing-split", "train.jsonl is missing", "put the training records in train.jsonl")
    for split in SPLITS:
        n = report.records.get(split)
        if n is None:
            if split == "valid":
                report.add("warning", "valid", 0, "missing-split", "valid.jsonl is missing: training runs without validation loss")
            continue
        if n == 0:
            level = "error" if split == "train" or (split == "test" and s.test) else "warning"
            report.add(level, split, 0, "empty-split", f"{split}.jsonl is empty",
                       "add records to it, one JSON object a line")
            continue
        if n < s.batch_size:
            level = "error" if split in ("train", "valid") or s.test else "warning"
            report.add(
                level, split, 0, "smaller-than-batch",
                f"{n} records, fewer than batch_size {s.batch_size}: mlx-lm refuses "
                f"(\"Dataset must have at least batch_size examples\")",
                f"add records or lower batch_size to {n}",
            )
        if s.assistant_turns == "all" and report.formats.get(split) == "text":
            report.add(
                "warning", split, 0, "turns-text",
                "assistant_turns is all but the records are text: there are no turns to find, every token trains",
                "use the chat or completions format to learn only the assistant's turns, or set assistant_turns: last",
            )
        if s.mask_prompt and report.formats.get(split) == "text":
            report.add(
                "error", split, 0, "mask-text",
                "mask_prompt is on but the records are text: mlx-lm refuses (prompt masking needs chat or completions)",
                "turn mask_prompt off, or use the chat or completions format",
            )


# -- pass 2: tokens -------------------------------------------------------------------------


def _trained(length: int, offset: int, max_len: int) -> int:
    from phi3tui.core.data.turns import loss_flags

    return sum(loss_flags(length, offset, max_len))


def token_statistics(
    folder: DataFolder,
    tokenizer,
    report: Report | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, SplitStats]:
    """Tokens per record for every split, through mlx-lm's dataset classes and the model's tokenizer."""
    from phi3tui.core.data.render import TEMPLATE_TOOLS_HINT, dropped_tool_parts, preference_tokens, processor

    s = folder.settings
    report = report or Report(folder.path, s)
    total = sum(i.size for i in folder.splits.values()) or 1
    done = 0
    max_len = s.max_seq_length
    for split, info in folder.splits.items():
        stats = report.stats[split] = SplitStats()
        fmt = info.format
        fields = s.fields_of(fmt) if fmt else ()
        process = processor(fmt, tokenizer, s) if fmt and fmt != "preference" else None
        tools_told = False  # a template that drops tools is named once per split
        line = 0
        with open(info.path, "rb") as handle:
            for raw in handle:
                line += 1
                done += len(raw)
                if not line % 1024:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
                    if progress is not None:
                        progress(done, total, "measure")
                try:
                    value = json.loads(raw.decode())
                except ValueError:
                    continue  # reported by validation
                if type(value) is not dict or not fields or not all(f in value for f in fields):
                    continue  # reported by validation (mixed formats, missing fields)
                if fmt == "text" and not (isinstance(value[s.text_feature], str) and value[s.text_feature]):
                    continue  # reported by validation (mlx-lm would fail on it)
                if fmt in ("preference", "prompt-answer") and not all(
                        isinstance(value[f], str) and value[f].strip() for f in fields):
                    continue  # reported by validation
                try:
                    if fmt == "preference":
                        # Both answers are trained on: the longer sets the length, both count as trained.
                        chosen, rejected, offset = preference_tokens(value, tokenizer, s)
                        stats.add(max(len(chosen), len(rejected)), line,
                                  _trained(len(chosen), offset, max_len) + _trained(len(rejected), offset, max_len),
                                  max_len)
                        continue
                    ids, offset = process(value)
                    if fmt == "chat" and not tools_told and uses_tools(value, s):
                        dropped = dropped_tool_parts(value[s.chat_feature], value.get("tools"), tokenizer)
                        if dropped:
                            tools_told = True
                            report.add("error", split, line, "template-tools",
                                       f"the model's chat template leaves out the {', '.join(dropped)} of this "
                                       "record (and of any like it in this split): the model would never see them",
                                       TEMPLATE_TOOLS_HINT)
                except Exception as exc:  # the template rejects the record: mlx-lm would fail the same way
                    report.add(
                        "error", split, line, "template",
                        f"the tokenizer or chat template fails on this record: {type(exc).__name__}: {exc}",
                        "fix the record (roles, order, content types) so the model's chat template accepts it",
                    )
                    continue
                stats.add(len(ids), line, _trained(len(ids), offset, max_len), max_len)
        if stats.over_max:
            report.add(
                "warning", split, 0, "too-long",
                f"{stats.over_max:,} records longer than max_seq_length {max_len} will be truncated "
                f"(longest {stats.max:,} tokens)",
                "raise max_seq_length or shorten/split those records",
            )
            for length, ln in stats.longest():
                if length > max_len:
                    report.add("info", split, ln, "too-long-record", f"{length:,} tokens: truncated to {max_len}")
    report.measured = True
    if progress is not None:
        progress(total, total, "measure")
    return report.stats


# -- everything at once ---------------------------------------------------------------------


def check_folder(
    data_dir: Path | str,
    settings: DataSettings | None = None,
    model: str | None = None,
    tokenizer=None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Report:
    """Validation, then token statistics when a model (or tokenizer) is given."""
    settings = settings or DataSettings()
    report = Report(Path(data_dir), settings, model=model)
    try:
        folder = DataFolder.open(data_dir, settings)
    except OSError as exc:
        report.add("error", "train", 0, "missing-split", str(exc))
        return report
    return run_checks(folder, report, tokenizer=tokenizer, progress=progress, cancel=cancel)


def run_checks(
    folder: DataFolder,
    report: Report,
    tokenizer=None,
    get_tokenizer: Callable[[], object] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    on_validated: Callable[[Report], None] | None = None,
) -> Report:
    """The whole check of an open folder, for the CLI and the Data screen alike: every line validated
    (then on_validated(report), so a screen can show the problems before the slower token count), then
    token statistics with `tokenizer`, or the one get_tokenizer() returns, or report.model's. A data file
    that vanishes meanwhile is an error in the report ("could not be read … check again"), not a crash.
    Raises Cancelled when `cancel` is set."""
    from phi3tui.core.data.render import TokenizerError, load_tokenizer
    from phi3tui.core.models import is_phi3_model

    for split, info in folder.splits.items():
        report.formats[split] = info.format
    validate_folder(folder, report, phi3=is_phi3_model(report.model), progress=progress, cancel=cancel)
    if on_validated is not None:
        on_validated(report)
    if tokenizer is None and (get_tokenizer is not None or report.model):
        try:
            tokenizer = get_tokenizer() if get_tokenizer is not None else load_tokenizer(report.model)
        except TokenizerError as exc:
            report.tokenizer_note = str(exc)
            report.add("warning", "train", 0, "tokenizer", str(exc))
    elif tokenizer is None:
        report.tokenizer_note = "no model given (pass --model, or set model: in lora_config.yaml)"
    if tokenizer is not None and folder.splits and not report.counts.get(("error", "train", "unreadable")):
        try:
            token_statistics(folder, tokenizer, report, progress=progress, cancel=cancel)
        except OSError as exc:  # a split vanished between the two passes
            report.add("error", "train", 0, "unreadable", f"a data file could not be read: {exc}",
                       "check that the files are still there, then check again")
            report.tokenizer_note = "a data file could not be read"
    elif tokenizer is not None:  # say why, so nobody waits for statistics that will not come
        report.tokenizer_note = "a data file could not be read" if folder.splits else "no data files"
    return report


def check_workspace(workspace, progress: Progress | None = None, cancel: threading.Event | None = None, tokenizer=None) -> Report:
    """check_folder on the workspace's data folder with its config's model and settings."""
    wd = workspace_data(workspace)
    report = check_folder(wd.data_dir, wd.settings, wd.model, tokenizer=tokenizer, progress=progress, cancel=cancel)
    if wd.config_error:
        report.add("warning", "train", 0, "config", f"config not read, defaults used: {wd.config_error}")
    return report


def longest_record_tokens(data_dir: Path | str, model: str | None = None, settings: DataSettings | None = None, tokenizer=None) -> int:
    """The token count of the longest record over all splits (0 when there is none)."""
    from phi3tui.core.data.render import load_tokenizer

    settings = settings or DataSettings()
    folder = DataFolder.open(data_dir, settings)
    tokenizer = tokenizer or load_tokenizer(model)
    stats = token_statistics(folder, tokenizer)
    return max((st.max for st in stats.values()), default=0)


def demo_step(workspace, state: dict) -> str:
    """Pipeline step: full validation and statistics of the workspace's data; raises on errors."""
    report = check_workspace(workspace)
    state["data_report"] = report.summary()
    if report.errors:
        first = [str(p) for p in report.sorted_problems() if p.level == "error"][:3]
        raise ValueError(f"{report.errors} data errors in {report.data_dir}: " + "; ".join(first))
    if not report.measured:
        raise ValueError(f"token statistics failed: {report.tokenizer_note}")
    return report.summary()


__all__ = [
    "Problem",
    "Report",
    "SplitStats",
    "check_folder",
    "check_workspace",
    "demo_step",
    "longest_record_tokens",
    "run_checks",
    "token_statistics",
    "validate_folder",
]
