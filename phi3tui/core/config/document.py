"""lora_config.yaml as a document that can be edited without moving anything else.

ruamel.yaml's composer gives the exact text span of every key and value; an edit replaces only the
span it is about (a value, a key name, one list) and leaves every other byte as the user wrote it:
comments, blank lines, key order, quoting, indentation and keys we do not know. Loading and saving
with no edit gives the same bytes. Values are always read back with mlx-lm's own semantics
(`load_values`), never from ruamel's YAML 1.2 view (where `yes` is a string and `1e-6` might differ).
Every edit is a transaction: one that cannot be made, or does not read back as asked, leaves the text as it was.
"""

from __future__ import annotations

import bisect
import copy
import json
import math
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from phi3tui.core.files import atomic_write_text

Path_ = tuple[str, ...]


class DocumentEditError(Exception):
    """An edit this document cannot make in place (the message says why and what to do)."""


# A comment line longer than this is read by ruamel's composer in a shortened copy: its scanner walks a
# comment a character at a time in Python (a 10 MB comment: 3 s a read, and every edit reads the text again),
# and no position the edits use is inside a comment.
LONG_LINE = 2000
_LONG_LINE = re.compile(r"[^\n]{%d,}" % LONG_LINE)
_COMMENT_START = re.compile(r"(?:^|[ \t])#")


def _ruamel_compose(text: str):
    from ruamel.yaml import YAML

    return YAML(typ="rt").compose(text)


def _without_long_comments(text: str) -> tuple[str, list[int], list[int]]:
    """`text` with the tail of every long line's comment cut, and where: (copy, cut positions in the copy,
    characters removed up to and including each cut). Line numbers are unchanged (line breaks are kept)."""
    pieces, positions, removed = [], [], []
    done = total = 0
    for line in _LONG_LINE.finditer(text):
        hash_ = _COMMENT_START.search(line.group())
        if hash_ is None:
            continue
        cut = line.start() + hash_.end()  # just past the `#`
        end = line.end() - (1 if line.group().endswith("\r") else 0)
        if end - cut < LONG_LINE // 2:
            continue
        pieces.append(text[done:cut])
        total += end - cut
        positions.append(cut - (total - (end - cut)))
        removed.append(total)
        done = end
    pieces.append(text[done:])
    return "".join(pieces), positions, removed


def _shift_marks(root, positions: list[int], removed: list[int]) -> None:
    """Move every node's marks from the shortened copy's positions to the original text's."""
    seen_nodes, seen_marks = set(), set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        for mark in (node.start_mark, node.end_mark):
            if mark is not None and id(mark) not in seen_marks:
                seen_marks.add(id(mark))
                before = bisect.bisect_right(positions, mark.index)
                if before:
                    mark.index += removed[before - 1]
        if isinstance(node.value, list):
            for item in node.value:
                stack.extend(item if isinstance(item, tuple) else (item,))


def _compose(text: str):
    """ruamel's node tree of `text` (its marks: positions in `text`), in time linear in the text's size.

    Long comments are cut in a copy before ruamel reads it; the copy is used only when it reads back as the
    same values (a `#` inside a quoted or block string is not a comment: then the whole text is composed)."""
    short, positions, removed = _without_long_comments(text)
    if not positions:
        return _ruamel_compose(text)
    try:
        same = load_values(short) == load_values(text)
    except yaml.YAMLError:
        same = False
    if not same:
        return _ruamel_compose(text)
    root = _ruamel_compose(short)
    if root is not None:
        _shift_marks(root, positions, removed)
    return root


def read_config_text(path: Path | str) -> str:
    """The file's text exactly: CRLF line ends and a byte order mark kept (Path.read_text would turn
    CRLF into LF, and a save would then rewrite every line)."""
    return Path(path).read_bytes().decode("utf-8")


def _newline_of(text: str) -> str:
    """The line break the file uses (its first one), for the lines an edit adds."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def duplicate_keys(text: str) -> list[tuple[str, list[int]]]:
    """Every key written more than once in the same mapping, as (dotted key, its 1-based lines). mlx-lm
    (PyYAML) reads only the last silently. Read by libyaml's composer: linear, whatever the comments."""
    from phi3tui.core.workspace import FastMlxLmLoader

    try:
        root = yaml.compose(text, Loader=FastMlxLmLoader) if text.strip() else None
    except yaml.YAMLError:
        return []  # a syntax error is reported by the reader, with its line
    found: list[tuple[str, list[int]]] = []
    stack = [(root, ())]
    seen = set()
    while stack:
        node, path = stack.pop()
        if not isinstance(node, yaml.MappingNode) or id(node) in seen:
            continue
        seen.add(id(node))
        lines: dict[str, list[int]] = {}
        for knode, vnode in node.value:
            if isinstance(knode, yaml.ScalarNode) and knode.value != "<<":
                lines.setdefault(knode.value, []).append(knode.start_mark.line + 1)
                stack.append((vnode, path + (knode.value,)))
        found += [(_dotted(path + (key,)), at) for key, at in lines.items() if len(at) > 1]
    return sorted(found, key=lambda item: item[1])


def _mapping_items(node) -> list:
    return list(node.value) if node is not None and node.tag.endswith(":map") else []


def _find_key(node, key: str):
    for knode, vnode in _mapping_items(node):
        if knode.value == key:
            return knode, vnode
    return None


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


def _block_text(key: str, value: Any, indent: str, step: str = "  ", newline: str = "\n") -> str:
    """`key: value` lines at `indent`, nested mappings as blocks, lists in flow style."""
    if isinstance(value, dict) and value:
        lines = f"{indent}{scalar_text(key)}:{newline}"
        for k, v in value.items():
            lines += _block_text(str(k), v, indent + step, step, newline)
        return lines
    return f"{indent}{scalar_text(key)}: {_flow_text(value)}{newline}"


_ABSENT = object()


def _value_end(text: str, node) -> int:
    """Index just past a value's own text. A block collection's end mark runs on over the comments and
    blank lines up to the next key, and a block scalar's takes its trailing newlines: neither is the value."""
    if isinstance(node.value, list) and node.value and not getattr(node, "flow_style", False):
        last = node.value[-1]
        return _value_end(text, last[1] if isinstance(last, tuple) else last)
    end = node.end_mark.index
    if getattr(node, "style", None) in ("|", ">"):
        while end > node.start_mark.index and text[end - 1] in "\r\n":
            end -= 1
    return end


def _colon_after(text: str, knode) -> int:
    """The `:` that ends a block mapping's key: the parser's end of the key, then only blanks. (A `:` found
    by searching the line could be one inside the key line's comment.)"""
    at = knode.end_mark.index
    while text[at : at + 1] in (" ", "\t"):
        at += 1
    if text[at : at + 1] != ":":
        raise DocumentEditError(f"the key at line {knode.start_mark.line + 1} is not a plain `key:`; edit it in the file")
    return at


def _same_except(before: Any, after: Any, path: Path_) -> bool:
    """Whether `after` equals `before` everywhere except at `path` (a level that was not a mapping before
    was replaced whole)."""
    if not path or not isinstance(before, dict) or not isinstance(after, dict):
        return True
    others = (set(before) | set(after)) - {path[0]}
    return all(before.get(k, _ABSENT) == after.get(k, _ABSENT) for k in others) and _same_except(
        before.get(path[0]), after.get(path[0]), path[1:])


def _dotted(path: Path_) -> str:
    return ".".join(path)


class ConfigDocument:
    """The text of a lora_config.yaml with in-place edits. `text` is what `save` writes.

    Every edit is a transaction: it is made, read back with mlx-lm's loader and compared (the edited key
    holds the new value, every other value is as it was); when it cannot be made or does not read back,
    the text (and so `modified`) is exactly what it was before, and DocumentEditError says why."""

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
        text = read_config_text(path)
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
    def newline(self) -> str:
        return _newline_of(self.text)

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

    def _locate(self, path: Path_):
        """(key node, value node) of the key an edit is about, or None when a key on the path is absent.
        Refuses a key written twice (mlx-lm reads the last, an edit would land on one) and a value shared
        through a YAML anchor or alias (an edit would change the other keys that use it too)."""
        node, found = self._root, None
        for depth, key in enumerate(path):
            matches = [(k, v) for k, v in _mapping_items(node) if k.value == key]
            if not matches:
                return None
            where = _dotted(path[: depth + 1])
            if len(matches) > 1:
                lines = ", ".join(str(k.start_mark.line + 1) for k, _ in matches)
                raise DocumentEditError(f"{where} is written {len(matches)} times (lines {lines}) and mlx-lm reads "
                                        "only the last; delete the others in the file")
            found = matches[0]
            knode, node = found
            if node.start_mark.index < knode.end_mark.index or getattr(node, "anchor", None):
                raise DocumentEditError(f"{where} (line {knode.start_mark.line + 1}) shares its value through a YAML "
                                        "anchor (&) or alias (*); edit it in the file")
        return found

    # -- editing ------------------------------------------------------------
    @contextmanager
    def transaction(self, what: str = "the edit"):
        """All the edits inside happen, or none: on any failure the text is put back as it was."""
        from ruamel.yaml.error import YAMLError as RoundTripError

        text, root = self.text, self._root
        try:
            yield
        except (yaml.YAMLError, RoundTripError) as exc:
            self.text, self._root = text, root
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DocumentEditError(f"{what} would not leave valid YAML ({problem}); nothing was changed, "
                                    "edit it in the file") from None
        except BaseException:
            self.text, self._root = text, root
            raise

    def _splice(self, start: int, end: int, new: str) -> None:
        if start == end == len(self.text) and self.text and not self.text.endswith("\n") and new.endswith("\n"):
            new = self.newline + new  # lines added after a last line that has no line break
        text = self.text[:start] + new + self.text[end:]
        if self.text and text:  # an edit keeps whether the file ends with a line break
            if not self.text.endswith("\n") and text.endswith("\n"):
                text = text[: -2 if text.endswith("\r\n") else -1]
            elif self.text.endswith("\n") and not text.endswith("\n"):
                text += self.newline
        root = _compose(text) if text.strip() else None
        if root is not None and not root.tag.endswith(":map"):
            raise DocumentEditError("the top level would no longer be a mapping")
        self.text, self._root = text, root

    def set(self, path: Path_ | str, value: Any) -> None:
        """Set the value at `path` (e.g. ("lora_parameters", "rank")), adding the key if absent."""
        path = (path,) if isinstance(path, str) else tuple(path)
        with self.transaction(f"setting {_dotted(path)}"):
            before = self.values
            found = self._locate(path)
            if found is None:
                self._add(path, value)
            else:
                knode, node = found
                if isinstance(value, dict):
                    if not node.tag.endswith(":map") or getattr(node, "flow_style", False):
                        self._replace_value(knode, node, _flow_text(value))
                    else:
                        for k, v in value.items():
                            self.set(path + (str(k),), v)
                elif isinstance(value, (list, tuple)):
                    self._set_list(knode, node, list(value))
                else:
                    quote = node.style if getattr(node, "style", None) in ("'", '"') else None
                    self._replace_value(knode, node, scalar_text(value, quote))
            self._verify(path, value, before)

    def _verify(self, path: Path_, value: Any, before: dict) -> None:
        after: Any = self.values
        got: Any = after
        for key in path:
            got = got.get(key) if isinstance(got, dict) else None
        expected = list(value) if isinstance(value, tuple) else value
        if isinstance(expected, dict) and isinstance(got, dict):
            got = {k: got.get(k) for k in expected}
        if got != expected:
            raise DocumentEditError(f"setting {_dotted(path)} did not read back as {value!r} (got {got!r}); "
                                    "nothing was changed, edit it in the file")
        if not _same_except(before, after, path):
            raise DocumentEditError(f"setting {_dotted(path)} would change other keys too; nothing was changed, "
                                    "edit it in the file")

    def _replace_value(self, knode, node, new: str) -> None:
        """Put `new` (one line of YAML) where the value of `knode` is, keeping the key line's comment."""
        if getattr(node, "flow_style", None) is False and isinstance(node.value, list):
            self._replace_block(knode, node, new)
            return
        start, end = node.start_mark.index, _value_end(self.text, node)
        if start == end and knode is not None:
            # An empty value: its mark is wherever the next token starts (often the next line), so the
            # value goes right after the key's colon: `key:  # note` becomes `key: new  # note`.
            start = end = _colon_after(self.text, knode) + 1
            new = " " + new
        self._splice(start, end, new)

    def _replace_block(self, knode, node, new: str) -> None:
        """A block collection becomes a one-line value right after its key's colon. The key line's comment
        and the comment lines above the first item stay; the item lines go."""
        if knode is None:
            raise DocumentEditError("a block value that is not under a key; edit it in the file")
        text = self.text
        colon = _colon_after(text, knode)
        key_line_end = _line_end(text, colon)
        first = _line_start(text, node.start_mark.index)
        if first < key_line_end:
            raise DocumentEditError(f"the value of the key at line {knode.start_mark.line + 1} starts on the key's "
                                    "line; edit it in the file")
        end = _line_end(text, _value_end(text, node))
        self._splice(colon + 1, end, " " + new + text[colon + 1 : key_line_end] + text[key_line_end:first])

    def _set_list(self, knode, node, items: list) -> None:
        if not node.tag.endswith(":seq"):
            self._replace_value(knode, node, _flow_text(items))
            return
        quote = next((i.style for i in node.value if getattr(i, "style", None) in ("'", '"')), None)
        if node.flow_style or not node.value or not items:
            self._replace_value(knode, node, _flow_text(items, quote))
            return
        # A block list: keep its indentation, one "- item" line per item.
        first = node.value[0]
        line_start = _line_start(self.text, first.start_mark.index)
        dash = self.text.rfind("-", line_start, first.start_mark.index)
        if dash < 0 or self.text[line_start:dash].strip():
            raise DocumentEditError(f"the list at line {first.start_mark.line + 1} is not one `- item` a line; "
                                    "edit it in the file")
        prefix = self.text[line_start:dash]
        gap = self.text[dash + 1 : first.start_mark.index]
        end = _line_end(self.text, _value_end(self.text, node))
        self._splice(line_start, end, "".join(f"{prefix}-{gap}{_flow_text(i, quote)}{self.newline}" for i in items))

    def _add(self, path: Path_, value: Any) -> None:
        # Find the deepest existing mapping on the path; write the rest beneath it as a block.
        parent, depth, owner = self._root, 0, None
        while depth < len(path) - 1:
            found = self._locate(path[: depth + 1])
            if found is None or not found[1].tag.endswith(":map"):
                if found is not None:
                    raise DocumentEditError(f"{_dotted(path[:depth + 1])} is not a mapping; fix it in the file")
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
            at = len(self.text)
            self._splice(at, at, _block_text(key, nested, indent, newline=self.newline))
            return
        if getattr(parent, "flow_style", False):
            current = self.values
            for k in path[:depth]:
                current = current[k]
            merged = dict(current)
            merged[key] = nested
            self._replace_value(owner, parent, _flow_text(merged))
            return
        if not parent.value:
            raise DocumentEditError(f"{_dotted(path[:depth])} is empty; add a key to it in the file")
        first_key = parent.value[0][0]
        indent = " " * first_key.start_mark.column
        step = " " * max(2, first_key.start_mark.column - owner.start_mark.column)
        at = _line_end(self.text, _value_end(self.text, parent))
        self._splice(at, at, _block_text(key, nested, indent, step, self.newline))

    def rename(self, path: Path_, new_key: str) -> None:
        """Rename a key where it stands, keeping its value and comments."""
        path = tuple(path)
        with self.transaction(f"renaming {_dotted(path)} to {new_key}"):
            before = self.values
            found = self._locate(path)
            if found is None:
                raise DocumentEditError(f"{_dotted(path)} is not in the file")
            parent = self._locate(path[:-1])[1] if len(path) > 1 else self._root
            clash = _find_key(parent, new_key)
            if clash is not None:
                raise DocumentEditError(f"cannot rename {_dotted(path)} to {new_key}: {new_key} is already at line "
                                        f"{clash[0].start_mark.line + 1}; remove one of them in the file")
            knode = found[0]
            self._splice(knode.start_mark.index, knode.end_mark.index, scalar_text(new_key))
            expected = copy.deepcopy(before)
            level = expected
            for key in path[:-1]:
                level = level[key]
            level[new_key] = level.pop(path[-1])
            if self.values != expected:
                raise DocumentEditError(f"renaming {_dotted(path)} to {new_key} did not read back; edit it in the file")

    def delete(self, path: Path_) -> None:
        """Remove a key and its value (its lines, in block style). A key that is not there is already gone."""
        path = tuple(path)
        with self.transaction(f"removing {_dotted(path)}"):
            before = self.values
            found = self._locate(path)
            if found is None:
                return
            parent_found = self._locate(path[:-1]) if len(path) > 1 else (None, self._root)
            owner, parent = parent_found
            knode, vnode = found
            if getattr(parent, "flow_style", False):
                current = before
                for k in path[:-1]:
                    current = current[k]
                self._replace_value(owner, parent, _flow_text({k: v for k, v in current.items() if k != path[-1]}))
            else:
                start = _line_start(self.text, knode.start_mark.index)
                end = _line_end(self.text, max(_value_end(self.text, vnode), knode.end_mark.index))
                self._splice(start, end, "")
            expected = copy.deepcopy(before)
            level = expected
            for key in path[:-1]:
                level = level[key]
            level.pop(path[-1], None)
            if self.values != expected:
                raise DocumentEditError(f"removing {_dotted(path)} did not read back; edit it in the file")

    # -- saving -------------------------------------------------------------
    def save(self, path: Path | str | None = None) -> Path:
        """Write the text atomically. On an OSError the file and the document are as they were."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise DocumentEditError("this config has no file yet; choose where to save it")
        atomic_write_text(target, self.text)
        self.path, self.saved_text = target, self.text
        return target


def load_values(text: str) -> dict:
    # libyaml's parser (same values, same resolver): linear in the text, where the Python one walks a
    # long comment one character at a time.
    from phi3tui.core.workspace import FastMlxLmLoader

    values = yaml.load(text, Loader=FastMlxLmLoader) if text.strip() else None
    return values if isinstance(values, dict) else {}
