"""YAML read at start-up without importing PyYAML: the values parsed from the same text before, kept on disk.

The app's first paint reads lora_config.yaml (the header's model, the Data screen's folder) and the built-in
themes; importing PyYAML for that is ~9 ms of a ~0.3 s start, and nothing else before the paint needs it. So a
process that has not imported PyYAML yet looks the text up here first: the key is the whole text and the loader's
name, so a copy is never stale (an edited file is a new text). The first time a text is seen it is parsed, which
imports PyYAML, and kept for the next start; from then on this process keeps what it parses (its other start-up
files too). A process that imported PyYAML before its first read (a command, the runner) just parses.
"""

from __future__ import annotations

import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any

from phi3tui.core.app_dirs import cache_dir
from phi3tui.core.files import atomic_write_bytes

KEPT_FILE = "start-yaml.pickle"
KEPT_ENTRIES = 16  # the newest texts kept: a workspace's config and the themes, with room for a few workspaces
_FORMAT = 1  # bump when what a loader returns for a text changes (a new resolver): old copies are then ignored

_kept: dict[tuple[str, str], bytes] | None = None  # (loader, text) -> pickled value, once read in this process
_lock = threading.Lock()  # the app's worker threads read configs too


def _read_kept() -> dict[tuple[str, str], bytes]:
    try:
        with open(cache_dir() / KEPT_FILE, "rb") as handle:
            version, entries = pickle.load(handle)
        return entries if version == _FORMAT and isinstance(entries, dict) else {}
    except Exception:  # none yet, cut short, from another version: start afresh
        return {}


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
            return pickle.loads(blob)  # a new copy each time: the caller may change what it gets
        except Exception:
            pass
    value = parse(text)
    with _lock:
        _kept.pop((loader, text), None)
        _kept[loader, text] = pickle.dumps(value)
        while len(_kept) > KEPT_ENTRIES:
            _kept.pop(next(iter(_kept)))
        try:
            folder = cache_dir()
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / KEPT_FILE, pickle.dumps((_FORMAT, _kept)))
        except OSError:  # a cache that cannot be written is skipped
            pass
    return value
