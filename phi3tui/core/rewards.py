"""GRPO's reward functions: the built-in ones, a user's `file.py:function`, and how a config names them.

A leaf (stdlib only): the config check (core/config) reads the names before a run, the runner's GRPO task
(core/runs/grpo.py) calls the functions. Every reward function has mlx-lm-lora's batched signature:

    fn(prompts: list[str], completions: list[str], answer: list[str], **kwargs) -> list[float]

one reward per completion (completions[i] answers prompts[i], whose reference answer is answer[i]); kwargs
holds `records` (the data record of each completion, e.g. its "correct_answers") and `types` (None each, as
mlx-lm-lora passes it). A user function should accept **kwargs. Names in `reward_functions`:

    exact               1.0 when the completion, stripped, is the answer (case-insensitive), else 0.0
    contains            1.0 when the answer appears in the completion (case-insensitive), else 0.0
    any_correct         1.0 when any of the record's correct_answers (default [answer]) appears in it
    length:MIN-MAX      1.0 when the completion has MIN to MAX characters (either side may be empty)
    format:REGEX        1.0 when the regular expression matches the stripped completion from its start
    path/to/file.py:fn  a user function (path relative to the workspace)
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BUILT_IN_REWARDS = ("exact", "contains", "any_correct", "length", "format")
DEFAULT_REWARD_FUNCTIONS = ("any_correct",)


class RewardError(Exception):
    """A reward function that cannot be loaded or that failed: str() names it, and a user function's file and line."""


def _norm(text: str) -> str:
    return " ".join(str(text).split()).lower()


def exact(prompts, completions, answer, **kwargs) -> list[float]:
    return [1.0 if _norm(c) == _norm(a) else 0.0 for c, a in zip(completions, answer)]


def contains(prompts, completions, answer, **kwargs) -> list[float]:
    return [1.0 if _norm(a) and _norm(a) in _norm(c) else 0.0 for c, a in zip(completions, answer)]


def any_correct(prompts, completions, answer, **kwargs) -> list[float]:
    records = kwargs.get("records") or [{}] * len(completions)
    out = []
    for c, a, record in zip(completions, answer, records):
        correct = record.get("correct_answers") if isinstance(record, dict) else None
        accepted = [x for x in (correct if isinstance(correct, list) and correct else [a]) if _norm(x)]
        out.append(1.0 if any(_norm(x) in _norm(c) for x in accepted) else 0.0)
    return out


def length_reward(low: int | None, high: int | None) -> Callable:
    def length(prompts, completions, answer, **kwargs) -> list[float]:
        n = [len(c.strip()) for c in completions]
        return [1.0 if (low is None or k >= low) and (high is None or k <= high) else 0.0 for k in n]

    return length


def format_reward(pattern: re.Pattern) -> Callable:
    def format(prompts, completions, answer, **kwargs) -> list[float]:  # noqa: A001 (the reward's name)
        return [1.0 if pattern.match(c.strip()) else 0.0 for c in completions]

    return format


@dataclass(frozen=True)
class RewardSpec:
    """One entry of reward_functions, parsed: a built-in (with its parameter) or a user file and function."""

    name: str  # as written in the config (the metrics' name: reward/<name>)
    builtin: str = ""
    argument: str = ""
    path: str = ""
    function: str = ""


def parse_reward_spec(spec) -> RewardSpec:
    """One reward_functions entry. Raises ValueError saying what is wrong and how to write it."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{spec!r} is not a reward function name; write e.g. any_correct or rewards.py:my_reward")
    spec = spec.strip()
    head, sep, rest = spec.partition(":")
    if head in BUILT_IN_REWARDS:
        if head == "length":
            if not re.fullmatch(r"\d*-\d*", rest) or rest == "-":
                raise ValueError(f"{spec!r}: write length:MIN-MAX in characters, e.g. length:20-200 (or length:-200)")
            low, high = (int(x) if x else None for x in rest.split("-"))
            if low is not None and high is not None and low > high:
                raise ValueError(f"{spec!r}: the minimum {low} is above the maximum {high}")
        elif head == "format":
            if not rest:
                raise ValueError(f"{spec!r}: write format:REGEX, e.g. format:^<answer>.*</answer>$")
            try:
                re.compile(rest, re.DOTALL)
            except re.error as exc:
                raise ValueError(f"{spec!r}: the regular expression does not compile ({exc})") from None
        elif sep:
            raise ValueError(f"{spec!r}: the built-in {head} takes no parameter; write {head}")
        return RewardSpec(spec, builtin=head, argument=rest)
    path, _, function = spec.rpartition(":")
    if not path or not function or not path.endswith(".py") or not function.isidentifier():
        raise ValueError(f"{spec!r} is neither a built-in reward ({', '.join(BUILT_IN_REWARDS)}) nor "
                         "path/to/file.py:function_name")
    return RewardSpec(spec, path=path, function=function)


def _user_file(spec: RewardSpec, workspace_root: Path) -> Path:
    path = Path(spec.path).expanduser()
    return path if path.is_absolute() else Path(workspace_root) / path


def reward_problem(spec, workspace_root: Path | str) -> str | None:
    """Why this reward_functions entry cannot be used (None: it can), without running the user's code: the
    file must exist, parse, and define the function at its top level."""
    try:
        parsed = parse_reward_spec(spec)
    except ValueError as exc:
        return str(exc)
    if parsed.builtin:
        return None
    path = _user_file(parsed, Path(workspace_root))
    if not path.is_file():
        return f"{parsed.name!r}: {path} does not exist"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        return f"{parsed.name!r}: {path} is not valid Python ({exc})"
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    if parsed.function not in defined:
        return f"{parsed.name!r}: {path} defines no function {parsed.function}"
    return None


def load_reward(spec, workspace_root: Path | str) -> Callable:
    """The callable of one reward_functions entry (a user file is imported now). Raises RewardError."""
    problem = reward_problem(spec, workspace_root)
    if problem:
        raise RewardError(f"reward_functions: {problem}")
    parsed = parse_reward_spec(spec)
    if parsed.builtin == "length":
        low, high = (int(x) if x else None for x in parsed.argument.split("-"))
        return length_reward(low, high)
    if parsed.builtin == "format":
        return format_reward(re.compile(parsed.argument, re.DOTALL))
    if parsed.builtin:
        return {"exact": exact, "contains": contains, "any_correct": any_correct}[parsed.builtin]
    path = _user_file(parsed, Path(workspace_root)).resolve()
    module_name = f"phi3tui_user_rewards_{abs(hash(str(path)))}"
    try:
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module
        loader.loader.exec_module(module)
        fn = getattr(module, parsed.function)
    except Exception as exc:
        raise RewardError(f"reward_functions: {parsed.name!r} could not be loaded: {_user_frame(exc, path)}") from None
    if not callable(fn):
        raise RewardError(f"reward_functions: {parsed.name!r}: {parsed.function} in {path} is not a function")
    return fn


def _user_frame(exc: BaseException, path: Path) -> str:
    """`file:line: Error: words` at the deepest frame of the traceback inside the user's file (else the last)."""
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if Path(f.filename).resolve() == path] or frames[-1:]
    where = f"{inside[-1].filename}:{inside[-1].lineno}: " if inside else ""
    return f"{where}{type(exc).__name__}: {exc}"


@dataclass
class Reward:
    """One loaded reward function: its config name and the callable."""

    name: str
    fn: Callable
    path: Path | None = None  # a user function's file (for its errors)

    def __call__(self, prompts: list, completions: list, answer: list, records: list) -> list[float]:
        """The rewards of a batch of completions as floats. Raises RewardError naming the function (and the
        user's file and line) when it raises or returns something else than one number per completion."""
        try:
            values = self.fn(prompts=prompts, completions=completions, answer=answer, records=records,
                             types=[None] * len(completions))
        except Exception as exc:
            where = _user_frame(exc, self.path) if self.path else f"{type(exc).__name__}: {exc}"
            raise RewardError(f"reward function {self.name} raised {where}") from None
        try:
            out = [float(v) for v in values]
        except (TypeError, ValueError):
            raise RewardError(f"reward function {self.name} must return a list of numbers, one per completion; "
                              f"it returned {type(values).__name__}") from None
        if len(out) != len(completions):
            raise RewardError(f"reward function {self.name} returned {len(out)} rewards for {len(completions)} "
                              "completions; return one per completion")
        if not all(v == v and abs(v) != float("inf") for v in out):
            raise RewardError(f"reward function {self.name} returned NaN or an infinite reward")
        return out


def load_rewards(specs, workspace_root: Path | str) -> list[Reward]:
    """The loaded reward functions of reward_functions, in order. Raises RewardError."""
    out = []
    for spec in specs:
        parsed = parse_reward_spec(spec) if isinstance(spec, str) else None
        path = _user_file(parsed, Path(workspace_root)).resolve() if parsed and not parsed.builtin else None
        out.append(Reward(str(spec).strip(), load_reward(spec, workspace_root), path))
    return out
