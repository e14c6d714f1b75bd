"""The Data screen's preview of a tool-calling record: its tools named, each message by role, each assistant
tool call and each tool result marked, and what the data check says about the line.

Light on purpose (json only): the Data screen's first paint asks it about the first record. The data check's
messages come from checks.py (their one owner), imported only when a record uses tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from phi3tui.core.data.tool_records import named_function, uses_tools


@dataclass(frozen=True)
class PreviewLine:
    kind: str  # "tools" | "message" | "call" | "result" | "error" | "warning" | "info" (a data check's problem)
    label: str  # what the line is, e.g. "assistant → call"; "" for a problem (its text says it)
    text: str


def _signature(function: dict) -> str:
    parameters = function.get("parameters")
    properties = parameters.get("properties") if type(parameters) is dict else None
    names = ", ".join(properties) if type(properties) is dict else ""
    return f"{function['name']}({names})"


def _arguments_text(arguments) -> str:
    """A call's arguments on one line: JSON written compactly, anything else as it is (the check names it)."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return arguments
    return json.dumps(arguments, ensure_ascii=False) if arguments is not None else "{}"


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: their text
        return " ".join(str(p.get("text", "")) if type(p) is dict else str(p) for p in content)
    return "" if content is None else json.dumps(content, ensure_ascii=False)


def tool_preview(record, settings) -> list[PreviewLine]:
    """The preview of a tool-calling chat record (a core Record of a DataFolder): its tools by name and
    parameters, each message by role with the assistant's calls ("→ call NAME ARGUMENTS") and the tool results
    ("← result of NAME") marked, then what the data check says about this line. [] for any other record."""
    value = record.value
    chat = settings.chat_feature
    if record.fmt != "chat" or type(value) is not dict or not uses_tools(value, settings):
        return []
    messages = value.get(chat)
    tools = value.get("tools")
    lines = []
    if type(tools) is list:
        functions = [f for f in map(named_function, tools) if f is not None]
        lines.append(PreviewLine("tools", "tools:", ", ".join(map(_signature, functions)) or "none defined"))
    elif tools is None:
        lines.append(PreviewLine("tools", "tools:", "none defined"))
    called: dict = {}  # call id -> function name, for naming the results
    waiting: list[str] = []  # names of this turn's calls not yet answered, for results without an id
    for m in messages if type(messages) is list else []:
        if type(m) is not dict:
            continue
        role = str(m.get("role"))
        content = _content_text(m.get("content"))
        calls = m.get("tool_calls")
        if role == "tool":
            name = called.get(str(m.get("tool_call_id"))) or (waiting[0] if waiting else "")
            if name in waiting:
                waiting.remove(name)
            lines.append(PreviewLine("result", f"tool ← result of {name}:" if name else "tool ← result:", content))
            continue
        if content or not calls:
            lines.append(PreviewLine("message", f"{role}:", content))
        if role == "assistant" and type(calls) is list:
            waiting = []
            for call in calls:
                function = named_function(call)
                if function is None:
                    continue  # the check names it
                if type(call) is dict and call.get("id") is not None:
                    called[str(call["id"])] = function["name"]
                waiting.append(function["name"])
                lines.append(PreviewLine("call", "assistant → call",
                                         f"{function['name']} {_arguments_text(function.get('arguments'))}"))
    from phi3tui.core.data.checks import record_problems

    lines += [PreviewLine(p.level, "", str(p)) for p in record_problems(value, record.split, record.line, settings)]
    return lines
