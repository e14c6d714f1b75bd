"""Whole conversations into `{"messages": [...]}` records (chat format, every turn kept, `tools` carried along).

Two shapes of conversation are read, turn by turn, whichever a file holds:
- OpenAI chat: `{"messages": [{"role", "content", "tool_calls"?, "tool_call_id"?}], "tools"?}`;
- ShareGPT: `{"conversations": [{"from", "value"}], "system"?, "tools"?}` with from = human/gpt/system/tool (and
  the usual aliases: user, assistant, observation; function_call turns become an assistant's tool_calls).
The conversation is a JSONL key or a CSV column (JSON text there). Anything that cannot be mapped (an unknown role,
a turn without its text, JSON that does not parse) stops the import with `file:line` and what to do: a record
mapped by guesswork would train the model on the wrong speaker.
"""

from __future__ import annotations

import json
from pathlib import Path

from phi3tui.core.data.importers.common import (
    DataImportError,
    ImportOptions,
    ImportResult,
    check_target,
    read_rows,
    split_parts,
    write_splits,
)

# The keys a conversation is found under when no column is named (OpenAI's, then ShareGPT's).
CONVERSATION_KEYS = ("messages", "conversations")
ROLES = ("system", "user", "assistant", "tool")
# ShareGPT speakers -> chat roles; "function_call" is an assistant turn whose value is the call (see _sharegpt_turn).
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "function_call": "assistant",
    "tool": "tool", "observation": "tool", "function_response": "tool",
}


def conversation_key(columns: list[str], options: ImportOptions) -> str | None:
    """The column holding conversations: the one named, else the first of CONVERSATION_KEYS the file has."""
    if options.conversation_column:
        return options.conversation_column
    return next((key for key in CONVERSATION_KEYS if key in columns), None)


def _json_value(value, where: str, what: str):
    """A CSV cell holds JSON text; a JSONL value is already parsed."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise DataImportError(f"{where}: {what} is not JSON text ({exc}); write it as a JSON list") from None


def _text(content, where: str) -> str:
    """A message's content: a string, or OpenAI's list of parts (their text joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise DataImportError(f"{where}: content is {type(content).__name__}, not text (images and other parts cannot "
                          "be trained on here); keep only the text parts")


def _openai_turn(turn: dict, where: str) -> dict:
    role = turn.get("role")
    if role not in ROLES:
        raise DataImportError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}; rename it in the file")
    content = turn.get("content")
    if content is None and not (role == "assistant" and turn.get("tool_calls")):
        raise DataImportError(f"{where}: a {role} message without content; give it a \"content\"")
    message = {"role": role, "content": "" if content is None else _text(content, where)}
    for key in ("tool_calls", "tool_call_id", "name"):
        if turn.get(key) is not None:
            message[key] = turn[key]
    return message


def _sharegpt_turn(turn: dict, where: str) -> dict:
    speaker = turn.get("from")
    role = SHAREGPT_ROLES.get(str(speaker).lower()) if isinstance(speaker, str) else None
    if role is None:
        raise DataImportError(f"{where}: speaker {speaker!r} is not one of {', '.join(SHAREGPT_ROLES)}; "
                              "rename it in the file")
    if "value" not in turn or not isinstance(turn["value"], str):
        raise DataImportError(f"{where}: a {speaker!r} turn without a text \"value\"; give it one")
    if speaker.lower() != "function_call":
        return {"role": role, "content": turn["value"]}
    # The call as JSON text: {"name", "arguments"} or a list of them.
    calls = _json_value(turn["value"], where, "the function_call value")
    calls = calls if isinstance(calls, list) else [calls]
    if not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
        raise DataImportError(f"{where}: a function_call value must be {{\"name\", \"arguments\"}} (or a list of "
                              "them); fix the turn")
    return {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments", {})}} for c in calls]}


def conversation_record(row: dict, key: str, where: str) -> dict:
    """One row as {"messages": [...]} (with "tools" when it has them); DataImportError names `where` and the turn."""
    if key not in row:
        raise DataImportError(f"{where}: no {key!r}; every row needs its conversation there")
    turns = _json_value(row[key], where, repr(key))
    if not isinstance(turns, list) or not turns:
        raise DataImportError(f"{where}: {key!r} is {'empty' if turns in ([], None, '') else type(turns).__name__}, "
                              "not a list of messages; give every row its conversation")
    messages = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():  # ShareGPT's record-level system prompt
        messages.append({"role": "system", "content": system})
    for n, turn in enumerate(turns, 1):
        at = f"{where}: message {n}"
        if not isinstance(turn, dict):
            raise DataImportError(f"{at} is {type(turn).__name__}, not an object")
        if "role" in turn:
            messages.append(_openai_turn(turn, at))
        elif "from" in turn:
            messages.append(_sharegpt_turn(turn, at))
        else:
            raise DataImportError(f"{at} has neither \"role\" (OpenAI) nor \"from\" (ShareGPT); "
                                  f"it has {', '.join(map(repr, turn)) or 'no keys'}")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataImportError(f"{where}: no assistant message: nothing to learn from; drop the row or add the answer")
    record = {"messages": messages}
    tools = row.get("tools")
    if tools not in (None, "", []):
        tools = _json_value(tools, where, "'tools'")
        if not isinstance(tools, list):
            raise DataImportError(f"{where}: 'tools' is {type(tools).__name__}, not a list of tool definitions")
        record["tools"] = tools
    return record


def import_conversations(source: Path | str, out_dir: Path | str, options: ImportOptions) -> ImportResult:
    """Every row's conversation as a chat record, split and written like any import; nothing is written when a
    row cannot be mapped."""
    source, out_dir = Path(source), Path(out_dir)
    existing = check_target(source, out_dir, options)
    columns, rows = read_rows(source, file_lines=True)
    key = conversation_key(columns, options)
    if options.fmt != "chat":
        rows.close()
        raise DataImportError(f"{source}: conversations import into the chat format only (use --format chat)")
    if key is None or (columns and key not in columns):
        rows.close()
        raise DataImportError(
            f"{source}: no conversation column {key or ' or '.join(map(repr, CONVERSATION_KEYS))}; the file has "
            f"{', '.join(repr(c) for c in columns) or 'no columns'} (name it with --conversation-column)"
        )
    records = [conversation_record(row, key, f"{source}:{number}") for number, row in rows]
    if not records:
        raise DataImportError(f"{source}: no rows")
    parts, unused = split_parts(records, options)
    counts = write_splits(out_dir, parts, existing)
    return ImportResult(out_dir, counts, len(records), [], unused)
