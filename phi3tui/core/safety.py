"""Checks that keep bad input from doing harm: export names, failed writes (model folders: core.models).

Export names are checked against what `ollama create` accepts, and failed writes are said plainly
(disk full, read-only).
"""

from __future__ import annotations

import re
from pathlib import Path

# An Ollama model name: [namespace/]name[:tag] of letters, digits, '.', '_' and '-'.
_OLLAMA_NAME = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,63}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}(?::[A-Za-z0-9._-]{1,127})?$")


def ollama_name_problem(name: str) -> str | None:
    """Why `name` is not a model name `ollama create` takes ([namespace/]name[:tag]), or None."""
    if not _OLLAMA_NAME.match(name or ""):
        return (f"Ollama model name {name!r} is not valid: use [namespace/]name[:tag] of letters, digits, "
                "'.', '_' and '-'")
    return None


def disk_error_message(exc: OSError, path: Path | str) -> str:
    """A write that failed, said the way a person can act on: disk full, read-only, no permission."""
    import errno

    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"cannot write {path}: the disk is full; free some space or choose another output folder, then try again"
    if code == errno.EROFS:
        return f"cannot write {path}: the file system is read-only; choose another output folder"
    if code in (errno.EACCES, errno.EPERM):
        return f"cannot write {path}: permission denied; choose a folder you can write to"
    return f"cannot write {path}: {exc.strerror or exc}; check the folder and try again"
