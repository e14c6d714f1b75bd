"""Tool-calling records (`{"messages": [...], "tools": [...]}`, OpenAI's shape): the functions their tools
define and their calls ask for. The data check (checks.py) and the record preview (preview.py) read them here.
"""

from __future__ import annotations


def named_function(entry) -> dict | None:
    """The function a `tools` entry defines or an assistant's tool call asks for: both are OpenAI's
    {"type": "function", "function": {"name", ...}} or a bare {"name", ...}; None when it names none."""
    if type(entry) is not dict:
        return None
    function = entry.get("function", entry)
    return function if type(function) is dict and isinstance(function.get("name"), str) else None


def tool_names(tools: list) -> set[str]:
    """The function names a record's `tools` defines."""
    return {f["name"] for f in map(named_function, tools) if f is not None}


def uses_tools(record: dict, settings) -> bool:
    """Whether a chat record has tool definitions, tool calls or tool results."""
    messages = record.get(settings.chat_feature)
    return bool(record.get("tools")) or (type(messages) is list and any(
        type(m) is dict and (m.get("tool_calls") or m.get("role") == "tool") for m in messages))
