"""lora_config.yaml as a document that can be edited without moving anything else.

ruamel.yaml's composer gives the exact text span of every key and value; an edit replaces only the
span it is about (a value, a key name, one list) and leaves every other byte as the user wrote it:
comments, blank lines, key order, quoting, indentation and keys we do not know. Loading and saving
with no edit gives the same bytes. Values are always read back with mlx-lm's own semantics
(`load_values`), never from ruamel's YAML 1.2 view (where `yes` is a string and `1e-6` might differ).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from phi3tui.core.files import atomic_write_text

Path_ = tuple[str, ...]


class DocumentEditError(Exception):
    """An edit this document cannot make in place (the message says why and what to do)."""


def _compose(text: str):
    from ruamel.yaml import YAML

    return YAML(typ="rt").compose(text)


def _mapping_items(node) -> list:
    return list(node.value) if node is not None and node.tag.endswith(":map") else []


def _find_key(node, key: str):
    for knode, vnode in _mapping_items(node):
        if knode.value == key:
            return knode, vnode
    return None


def _last_scalar(node):
    """The last scalar inside a node: where a block collection really ends (its end mark runs on)."""
    while not hasattr(node, "value") or isinstance(node.value, list):
        if not node.value:
            return node
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    return node


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """Index just past the newline of the line holding `index` (or the end of the text)."""
    end = text.find("\n", index)
    return len(text) if end < 0 else end + 1


def _plain_ok(value: str) -> bool:
    """Whether `value` can be written unquoted and read back (by mlx-lm's loader) as the same string."""
    from phi3tui.core.workspace import MlxLmLoader as _MlxLmLoader

    if not value or value != value.strip() or any(c in value for c in ":#{}[],&*!|>'\"%@`\n"):
        return False
    try:
        return yaml.load(value, Loader=_MlxLmLoader) == value
    except yaml.YAMLError:
        return False


def scalar_text(value: Any, quote: str | None = None) -> str:
    """YAML text for one scalar that mlx-lm's loader reads back as `value`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)  # e.g. 1e-06 or 0.0001: both floats for mlx-lm's resolver
    if isinstance(value, str):
        if quote == "'":
            return "'" + value.replace("'", "''") + "'"
        if quote == '"' or not _plain_ok(value):
            return json.dumps(value, ensure_ascii=False)
        return value
    raise DocumentEditError(f"cannot write a {type(value).__name__} as a single YAML value")


def _flow_text(value: Any, quote: str | None = None) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar_text(k)}: {_flow_text(v, quote)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow_text(v, quote) for v in value) + "]"
    return scalar_text(value, quote)


def _block_text(key: str, value: Any, indent: str, step: str = "  ") -> str:
    """`key: value` lines at `indent`, nested mappings as blocks, lists in flow style."""
    if isinstance(value, dict) and value:
        lines = f"{indent}{scalar_text(key)}:\n"
        for k, v in value.items():
            lines += _block_text(str(k), v, indent + step, step)
        return lines
    return f"{indent}{scalar_text(key)}: {_flow_text(value)}\n"


class ConfigDocument:
    """The text of a lora_config.yaml with in-place edits. `text` is what `save` writes."""

    def __init__(self, text: str = "", path: Path | str | None = None):
        self.path = Path(path) if path is not None else None
        self.saved_text = text
        self.text = text
        self._root = _compose(text) if text.strip() else None
        if self._root is not None and not self._root.tag.endswith(":map"):
            raise DocumentEditError("the top level must be a mapping of keys to values")

    @classmethod
    def load(cls, path: Path | str) -> "ConfigDocument":
        from phi3tui.core.workspace import ConfigError, load_config_values

        load_config_values(path)  # the same readable messages for unreadable files and bad YAML
        text = Path(path).read_text(encoding="utf-8")
        try:
            return cls(text, path)
        except DocumentEditError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    # -- reading ------------------------------------------------------------
    @property
    def values(self) -> dict:
        """The values exactly as `mlx_lm lora --config` reads this text."""
        return load_values(self.text)

    @property
    def modified(self) -> bool:
        return self.text != self.saved_text

    def has(self, path: Path_) -> bool:
        return self._node(path) is not None

    def _node(self, path: Path_):
        node = self._root
        for key in path:
            found = _find_key(node, key)
            if found is None:
                return None
            node = found[1]
        return node

    def line_of(self, path: Path_) -> int | None:
        """1-based line of a key, for messages that point into the file."""
        node = self._root
        knode = None
        for key in path:
            found = _find_key(node, key)
            if found is None:
                return None
            knode, node = found
        return knode.start_mark.line + 1 if knode is not None else None

    # -- editing ------------------------------------------------------------
    def _splice(self, start: int, end: int, new: str) -> None:
        text = self.text[:start] + new + self.text[end:]
        root = _compose(text) if text.strip() else None
        self.text, self._root = text, root

    def set(self, path: Path_ | str, value: Any) -> None:
        """Set the value at `path` (e.g. ("lora_parameters", "rank")), adding the key if absent."""
        path = (path,) if isinstance(path, str) else tuple(path)
        node = self._node(path)
        if node is None:
            self._add(path, value)
        elif isinstance(value, dict):
            if not node.tag.endswith(":map") or getattr(node, "flow_style", False):
                self._replace_node(node, _flow_text(value))
            else:
                for k, v in value.items():
                    self.set(path + (str(k),), v)
        elif isinstance(value, (list, tuple)):
            self._set_list(node, list(value))
        else:
            quote = node.style if getattr(node, "style", None) in ("'", '"') else None
            if node.tag.endswith(":seq") or node.tag.endswith(":map"):
                self._replace_node(node, _flow_text(value))
            else:
                self._splice(node.start_mark.index, node.end_mark.index, scalar_text(value, quote))
        self._verify(path, value)

    def _verify(self, path: Path_, value: Any) -> None:
        got: Any = self.values
        for key in path:
            got = got.get(key) if isinstance(got, dict) else None
        expected = list(value) if isinstance(value, tuple) else value
        if isinstance(expected, dict) and isinstance(got, dict):
            got = {k: got.get(k) for k in expected}
        if got != expected:
            raise DocumentEditError(f"setting {'.'.join(path)} did not read back as {value!r} (got {got!r})")

    def _replace_node(self, node, new: str) -> None:
        if getattr(node, "flow_style", None) is False and isinstance(node.value, list):
            # A block collection: rewrite from its first line to the end of its last line.
            start = _line_start(self.text, node.start_mark.index)
            end = _line_end(self.text, _last_scalar(node).end_mark.index)
            key_line_end = self.text.rfind("\n", 0, start)
            # Put the flow value right after "key:" on the key's line.
            colon = self.text.rfind(":", 0, key_line_end + 1 if key_line_end >= 0 else start)
            self._splice(colon + 1, end, f" {new}\n")
        else:
            self._splice(node.start_mark.index, node.end_mark.index, new)

    def _set_list(self, node, items: list) -> None:
        if not node.tag.endswith(":seq"):
            self._replace_node(node, _flow_text(items))
            return
        quote = next((i.style for i in node.value if getattr(i, "style", None) in ("'", '"')), None)
        if node.flow_style or not node.value:
            self._replace_node(node, _flow_text(items, quote))
            return
        # A block list: keep its indentation, one "- item" line per item.
        first = node.value[0]
        line_start = _line_start(self.text, first.start_mark.index)
        dash = self.text.rfind("-", line_start, first.start_mark.index)
        prefix = self.text[line_start:dash]
        gap = self.text[dash + 1 : first.start_mark.index]
        end = _line_end(self.text, _last_scalar(node).end_mark.index)
        lines = "".join(f"{prefix}-{gap}{_flow_text(i, quote)}\n" for i in items)
        if not items:
            self._replace_node(node, "[]")
            return
        self._splice(line_start, end, lines)

    def _add(self, path: Path_, value: Any) -> None:
        # Find the deepest existing mapping on the path; write the rest beneath it as a block.
        parent, depth, owner = self._root, 0, None
        while depth < len(path) - 1:
            found = _find_key(parent, path[depth])
            if found is None or not found[1].tag.endswith(":map"):
                if found is not None:
                    raise DocumentEditError(f"{'.'.join(path[:depth + 1])} is not a mapping; fix it in the file")
                break
            owner, parent, depth = found[0], found[1], depth + 1
        nested: Any = value
        for key in reversed(path[depth + 1 :]):
            nested = {key: nested}
        key = path[depth]
        if parent is None or parent is self._root and depth == 0:
            indent = ""
            if parent is not None and parent.value:
                first_key = parent.value[0][0]
                indent = " " * first_key.start_mark.column
            text = self.text
            if text and not text.endswith("\n"):
                text += "\n"
            self.text = text
            self._splice(len(text), len(text), _block_text(key, nested, indent))
            return
        if getattr(parent, "flow_style", False):
            current = self.values
            for k in path[:depth]:
                current = current[k]
            merged = dict(current)
            merged[key] = nested
            self._replace_node(parent, _flow_text(merged))
            return
        if not parent.value:
            raise DocumentEditError(f"{'.'.join(path[:depth])} is empty; add a key to it in the file")
        first_key = parent.value[0][0]
        indent = " " * first_key.start_mark.column
        step = " " * max(2, first_key.start_mark.column - owner.start_mark.column)
        at = _line_end(self.text, _last_scalar(parent).end_mark.index)
        self._splice(at, at, _block_text(key, nested, indent, step))

    def rename(self, path: Path_, new_key: str) -> None:
        """Rename a key where it stands, keeping its value and comments."""
        node = self._root
        for key in path[:-1]:
            node = _find_key(node, key)[1]
        found = _find_key(node, path[-1])
        if found is None:
            raise DocumentEditError(f"{'.'.join(path)} is not in the file")
        knode = found[0]
        self._splice(knode.start_mark.index, knode.end_mark.index, scalar_text(new_key))

    def delete(self, path: Path_) -> None:
        """Remove a key and its value (its lines, in block style)."""
        node = self._root
        for key in path[:-1]:
            node = _find_key(node, key)[1]
        found = _find_key(node, path[-1])
        if found is None:
            return
        knode, vnode = found
        if getattr(node, "flow_style", False):
            current = self.values
            for k in path[:-1]:
                current = current[k]
            self._replace_node(node, _flow_text({k: v for k, v in current.items() if k != path[-1]}))
            return
        start = _line_start(self.text, knode.start_mark.index)
        last = _last_scalar(vnode) if isinstance(vnode.value, list) else vnode
        end = _line_end(self.text, max(last.end_mark.index - 1, knode.end_mark.index))
        self._splice(start, end, "")

    # -- saving -------------------------------------------------------------
    def save(self, path: Path | str | None = None) -> Path:
        target = Path(path) if path is not None else self.path
        if target is None:
            raise DocumentEditError("this config has no file yet; choose where to save it")
        atomic_write_text(target, self.text)
        self.path, self.saved_text = target, self.text
        return target


def load_values(text: str) -> dict:
    from phi3tui.core.workspace import MlxLmLoader as _MlxLmLoader

    values = yaml.load(text, Loader=_MlxLmLoader) if text.strip() else None
    return values if isinstance(values, dict) else {}
