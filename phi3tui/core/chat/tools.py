"""Tool definitions for Chat: a JSON file holding a list of OpenAI-style function specs, loaded and checked here
(the screen and `chat compare --tools` only name the file), then given to the chat template as `tools=` for
both sides, so a tool-calling adapter can be compared against the base with the definitions it was trained on.
Light: no mlx."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from phi3tui.core.chat.sides import ChatError

SHAPE = 'a JSON list of tool definitions, e.g. [{"type": "function", "function": {"name": "get_weather", ' \
        '"description": "...", "parameters": {"type": "object", "properties": {...}}}}]'


@dataclass(frozen=True)
class ChatTools:
    """A loaded tool definitions file: where it came from, the definitions as given, their function names."""

    path: Path
    definitions: tuple
    names: tuple[str, ...]

    def summary(self) -> str:
        """For the Chat bar and the CLI's header line: "tools: a, b (tools.json)"."""
        return f"tools: {', '.join(self.names)} ({self.path.name})"


def load_tools(path: Path | str) -> ChatTools:
    """Read and check a tool definitions file; ChatError names the file (and the definition) and what to do."""
    from phi3tui.core.data import tool_names

    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChatError(f"{path} does not exist: give {SHAPE}") from None
    except IsADirectoryError:
        raise ChatError(f"{path} is a folder: give a .json file holding {SHAPE}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatError(f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); the file must hold {SHAPE}") from None
    if isinstance(value, dict) and isinstance(value.get("tools"), list):
        value = value["tools"]  # a record's {"tools": [...]} copied whole is fine too
    if not isinstance(value, list):
        raise ChatError(f"{path} holds a JSON {type(value).__name__}, not a list: it must hold {SHAPE}")
    if not value:
        raise ChatError(f"{path} holds no tool definitions: it must hold {SHAPE}")
    names: list[str] = []
    for number, tool in enumerate(value, 1):
        where = f"{path}: tool {number}"
        if not isinstance(tool, dict):
            raise ChatError(f"{where} is a JSON {type(tool).__name__}, not an object: each must look like {SHAPE}")
        function = tool.get("function", tool)
        found = tool_names([tool])  # the data checks' reading of a definition's name (OpenAI's shape or bare)
        if not found or not function["name"].strip():
            raise ChatError(f'{where} has no function "name": each must look like {SHAPE}')
        (name,) = found
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ChatError(f'{where} ({name}): "parameters" must be a JSON Schema object, not '
                            f"{type(parameters).__name__}")
        if name in names:
            raise ChatError(f"{where} defines {name!r} a second time: give each function one definition")
        names.append(name)
    return ChatTools(path, tuple(value), tuple(names))


def _in_system_message(messages: list[dict], definitions: list) -> list[dict]:
    # Phi-4-mini's way: its template reads the definitions, as a JSON string, from the system message's 'tools'.
    listed = json.dumps(definitions, ensure_ascii=False)
    if messages and messages[0].get("role") == "system":
        return [{**messages[0], "tools": listed}, *messages[1:]]
    return [{"role": "system", "content": "", "tools": listed}, *messages]


def tool_form(tokenizer, chat_tools: ChatTools | None) -> str | None:
    """How the model's chat template takes tool definitions: "tools=" (the argument, as most templates), "system"
    (a JSON string in the system message's 'tools', as Phi-4-mini's), or None when it renders neither (the data
    checks' finding, core.data's dropped_tool_parts)."""
    from phi3tui.core.data import dropped_tool_parts

    if chat_tools is None or not getattr(tokenizer, "has_chat_template", False):
        return None
    probe = [{"role": "user", "content": "Hi"}]
    definitions = list(chat_tools.definitions)
    if "tool definitions" not in dropped_tool_parts(probe, definitions, tokenizer):
        return "tools="
    with_listed = _in_system_message(probe, definitions)
    without = [{k: v for k, v in m.items() if k != "tools"} for m in with_listed]  # the same system message, bare
    try:
        rendered = [tokenizer.apply_chat_template(m, tokenize=False) for m in (with_listed, without)]
    except Exception:  # noqa: BLE001 - a template that rejects an empty system message takes no tools this way
        return None
    return "system" if rendered[0] != rendered[1] else None


def with_tools(tokenizer, messages: list[dict], chat_tools: ChatTools | None) -> tuple[list[dict], list | None]:
    """(messages, the template's `tools=`) carrying `chat_tools` in the form the template reads (tool_form); a
    template that reads neither gets `tools=` anyway, and tools_note says it leaves them out."""
    if chat_tools is None:
        return messages, None
    definitions = list(chat_tools.definitions)
    if tool_form(tokenizer, chat_tools) == "system":
        return _in_system_message(messages, definitions), None
    return messages, definitions


def tools_note(tokenizer, chat_tools: ChatTools | None, model_name: str = "the model") -> str:
    """"" when the model's chat template renders the tool definitions (either form); else what the data checks say
    of a record whose tools the template leaves out, for the panes and the CLI to show."""
    from phi3tui.core.data import TEMPLATE_TOOLS_HINT

    if chat_tools is None or tool_form(tokenizer, chat_tools) is not None:
        return ""
    return (f"{model_name}'s chat template leaves out the tool definitions of {chat_tools.path.name}: the model "
            f"never sees them; {TEMPLATE_TOOLS_HINT}")


def tool_files(workspace_root: Path) -> list[Path]:
    """The JSON files a tools file may be, for the picker: the workspace's own and its tools/ folder's."""
    root = Path(workspace_root)
    return sorted(p for folder in (root, root / "tools") if folder.is_dir() for p in folder.glob("*.json")
                  if p.is_file())
