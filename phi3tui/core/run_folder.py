"""The run-folder contract: the files of one run folder, shared by the runner (writer), core/runs, core/adapters and
everything that reads a run. A leaf: it imports only core/files.py.

runs/<id>/config.yaml, run.json, metrics.jsonl, log.txt, adapters/ (DESIGN.md), plus two control
files of our own: `stop` (a stop request, checked by the runner every step) and `.lock` (serialises
read-modify-write of run.json between the runner and the app/CLI).
"""

from __future__ import annotations

import json
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path

from phi3tui.core.files import atomic_write_text

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"
ADAPTERS_DIR = "adapters"
STOP_FILE = "stop"
LOCK_FILE = ".lock"
QUEUE_FILE = "queue.txt"  # in runs/: the queue's order, one waiting run id a line (core/runs/queue.py)

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# GRPO: the latest sampled group of each train report (one JSON object per line; the Train screen shows the last).
GRPO_SAMPLES = "samples.jsonl"


def read_latest_samples(run_dir) -> dict | None:
    """The last complete line of the run's samples.jsonl as a dict, or None when there is none yet."""
    path = Path(run_dir) / GRPO_SAMPLES
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    for line in reversed(lines):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if isinstance(value, dict):
            return value
    return None


@contextmanager
def file_lock(path: Path):
    """An advisory exclusive lock held on `path` (POSIX flock; macOS and Linux); the kernel drops it if we die."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def run_lock(run_dir: Path):
    """An advisory lock on the run folder."""
    with file_lock(run_dir / LOCK_FILE):
        yield


class RunJsonUnreadable(ValueError):
    """run.json exists but is not a JSON object (cut short by a full disk, or edited by hand).
    str() names the file, what is wrong, and the run folder to look at."""


def read_run_json(run_dir: Path) -> dict:
    """run.json's content; {} when there is none yet. A damaged one raises RunJsonUnreadable:
    taking it for empty would show the run as a blank from 1970 and let the next write replace it."""
    path = run_dir / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunJsonUnreadable(
            f"{path.name} is cut short or not JSON: {exc}; the run folder is {run_dir}"
        ) from None
    if not isinstance(data, dict):
        raise RunJsonUnreadable(
            f"{path.name} is cut short or not JSON: it holds a {type(data).__name__}, not an object; "
            f"the run folder is {run_dir}"
        )
    return data


def _json_safe(value):
    # NaN and infinity are not JSON: a diverged loss is written as a string ("nan", "inf").
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_run_json(run_dir: Path, data: dict) -> None:
    """Replace run.json with `data` atomically; the caller holds the run lock."""
    atomic_write_text(run_dir / RUN_FILE, json.dumps(_json_safe(data), indent=2) + "\n")


def update_run_json(run_dir: Path, **changes) -> dict:
    """Merge `changes` (never `state`: that goes through core/runs/state.transition) into run.json atomically,
    under the run lock. Returns the new content. Raises ValueError for a `state` key, so no writer can skip the
    check of a state change."""
    if "state" in changes:
        raise ValueError("run.json's state is written by core/runs/state.transition, never by update_run_json")
    with run_lock(run_dir):
        data = read_run_json(run_dir)
        data.update(changes)
        write_run_json(run_dir, data)
        return data


def append_alarm(run_dir: Path, alarm: dict) -> None:
    with run_lock(run_dir):
        data = read_run_json(run_dir)
        data.setdefault("alarms", []).append(alarm)
        write_run_json(run_dir, data)


def metrics_line(record: dict) -> str:
    return json.dumps(_json_safe(record), separators=(",", ":")) + "\n"


def parse_float(value) -> float:
    """A loss as written in metrics.jsonl (a number, or "nan"/"inf" for a diverged one)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def log_tail(run_dir: Path, lines: int = 20) -> list[str]:
    """The last lines of log.txt (read from the end: logs of long runs are large)."""
    path = run_dir / LOG_FILE
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    # Progress bars redraw with carriage returns: keep what the terminal would show last.
    # The colours mlx-lm's console adds are dropped: the tail is shown as plain text.
    out = [ANSI_RE.sub("", line.rsplit("\r", 1)[-1]).rstrip() for line in text.split("\n")]
    return without_tracebacks([line for line in out if line.strip()])[-lines:]


TRACEBACK_NOTE = "(the Python call stack of this error is in log.txt)"
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


def without_tracebacks(lines: list[str]) -> list[str]:
    """`lines` with each Python traceback's call stack folded into one note: what the tail of a log shows a
    person (attach, runs status, the Train screen) says what went wrong, the stack stays in log.txt. The
    exception's own line is kept. A tail that starts inside a stack starts with the note."""
    out: list[str] = []
    inside = bool(lines) and lines[0].startswith("  File ")
    for line in lines:
        starts = line.startswith("Traceback (most recent call last):") or line.startswith(_CHAINED)
        if starts or (inside and line[:1] in (" ", "\t")):
            inside = True
            if not out or out[-1] != TRACEBACK_NOTE:
                out.append(TRACEBACK_NOTE)
            continue
        inside = False
        out.append(line)
    return out
