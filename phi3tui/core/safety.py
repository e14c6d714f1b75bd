"""Checks that keep bad input from doing harm: export names are checked against what `ollama create` accepts.
(Model folders are checked by core.models.model_folder_problem; failed writes are said by
core.files.disk_error_message.)
"""

from __future__ import annotations

import re

# An Ollama model name: [namespace/]name[:tag] of letters, digits, '.', '_' and '-'.
_OLLAMA_NAME = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,63}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,127}(?::[A-Za-z0-9._-]{1,127})?$")


def ollama_name_problem(name: str) -> str | None:
    """Why `name` is not a model name `ollama create` takes ([namespace/]name[:tag]), or None."""
    if not _OLLAMA_NAME.match(name or ""):
        return (f"Ollama model name {name!r} is not valid: use [namespace/]name[:tag] of letters, digits, "
                "'.', '_' and '-'")
    return None
