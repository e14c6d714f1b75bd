"""YAML read at start-up without importing PyYAML: the values parsed from the same text before, kept on disk.

The app's first paint reads lora_config.yaml (the header's model, the Data screen's folder) and the built-in
themes; importing PyYAML for that is ~9 ms of a ~0.3 s start, and nothing else before the paint needs it. So a
process that has not imported PyYAML yet looks the text up here first: the key is the whole text and the loader's
name, so a copy is never stale (an edited file is a new text). The first time a text is seen it is parsed, which
imports PyYAML, and kept for the next start; from then on this process keeps what it parses (its other start-up
files too). A process that imported PyYAML before its first read (a command, the runner) just parses.
The copies are JSON, never pickle (reading one runs no code), and only values that come back from JSON equal to
what PyYAML gave are kept (not dates, nor keys that are not strings).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import Any

from phi3tui.core.app_dirs import cache_dir
from phi3tui.core.files import atomic_write_text

KEPT_FILE = "start-yaml.json"
KEPT_ENTRIES = 16  # the newest texts kept: a workspace's config and the themes, with room for a few workspaces
_FORMAT = 1  # bump when what a loader returns for a text changes (a new resolver): old copies are then ignored

_kept: dict[tuple[str, str], str] | None = None  # (loader, text) -> the value as JSON, once read in this process
_lock = threading.Lock()  # the app's worker threads read configs too


def _read_kept() -> dict[tuple[str, str], str]:
    try:
        with open(cache_dir() / KEPT_FILE, encoding="utf-8") as handle:
            saved = json.load(handle)
        if saved.get("format") != _FORMAT:
            return {}
        return {(loader, text): value for loader, text, value in saved["entries"]
                if isinstance(loader, str) and isinstance(text, str) and isinstance(value, str)}
    except Exception:  # none yet, cut short, from another version: start afresh
        return {}


def _as_json(value: Any) -> str | None:
    """The value as JSON, or None when JSON would not give it back equal (a date, a key that is not a string)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return None
    return text if json.loads(text) == value else None


def kept_parse(text: str, loader: str, parse: Callable[[str], Any]) -> Any:
    """parse(text), or, while this process has not imported PyYAML for anything else, the value parse gave for the
    same text and `loader` (a name for what parse does) in an earlier process. An error of parse is raised, not kept."""
    global _kept
    with _lock:
        if _kept is None:
            if "yaml" in sys.modules:
                return parse(text)
            _kept = _read_kept()
        blob = _kept.get((loader, text))
    if blob is not None:
        try:
            return json.loads(blob)  # a new copy each time: the caller may change what it gets
        except ValueError:
            pass
    value = parse(text)
    kept = _as_json(value)
    if kept is None:
        return value
    with _lock:
        _kept.pop((loader, text), None)
        _kept[loader, text] = kept
        while len(_kept) > KEPT_ENTRIES:
            _kept.pop(next(iter(_kept)))
        try:
            folder = cache_dir()
            folder.mkdir(parents=True, exist_ok=True)
            entries = [[loader, text, value] for (loader, text), value in _kept.items()]
            atomic_write_text(folder / KEPT_FILE, json.dumps({"format": _FORMAT, "entries": entries}))
        except OSError:  # a cache that cannot be written is skipped
            pass
    return value
