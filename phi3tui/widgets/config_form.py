"""Every lora_config.yaml key as a typed input, grouped, each with its help and mlx-lm's default.

The fields come from core.config_schema (read from mlx-lm); this widget only shows them and posts
`ConfigForm.Changed(path, value)` when the user enters a value that parses. It never writes files.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from phi3tui.core.config import load_values
from phi3tui.widgets.text_box import TextBox


def _show(value: Any) -> str:
    """A value as the user types it back: lists comma-separated, mappings in YAML flow style."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value)
    if isinstance(value, dict):
        from phi3tui.core.config import _flow_text

        return _flow_text(value)
    return str(value)


class BadValue(ValueError):
    pass


def parse_value(kind: str, text: str) -> Any:
    """The typed value for `text` as mlx-lm would read it; None for an empty field. Raises BadValue."""
    text = text.strip()
    if not text:
        return None
    if kind in ("int", "float", "floats", "mapping", "size", "yaml"):
        loaded = load_values(f"v: {text if kind != 'floats' else '[' + text + ']'}").get("v")
        if kind == "int":
            if isinstance(loaded, bool) or not isinstance(loaded, int):
                raise BadValue("a whole number")
            return loaded
        if kind == "float":
            if isinstance(loaded, bool) or not isinstance(loaded, (int, float)):
                raise BadValue("a number such as 1e-5")
            return loaded
        if kind == "floats":
            if not isinstance(loaded, list) or not all(isinstance(v, (int, float)) for v in loaded):
                raise BadValue("numbers separated by commas")
            return loaded
        if kind == "mapping":
            if not isinstance(loaded, dict):
                raise BadValue("a mapping such as {weight_decay: 0.01}")
            return loaded
        return loaded  # size (bytes, or text like 1GB, as mlx-lm's parser takes it) or any YAML value
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def preset_value(value: Any) -> str:
    """A value in a sentence (the presets' list): switches read on/off, the rest as the form shows it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return _show(value)


class FieldRow(Horizontal):
    """One key on one line: its name, its input, mlx-lm's default. Its help is shown for the focused key
    only (ConfigForm.Focused), so 80×24 shows a screenful of keys."""


# The screen's letter keys that a text box reached by n/N lets through until another key is pressed.
JUMP_KEYS = "nNzZ"
FLAGGING_LEVELS = ("error", "warning")


class GroupTitle(Static, can_focus=True):
    """A group's title line: enter or space folds the group's keys away or shows them again."""

    BINDINGS = [Binding("enter,space", "toggle", "Fold group", show=False, id="config_form.toggle_group")]

    class Toggled(Message):
        def __init__(self, group: str):
            super().__init__()
            self.group = group

    def __init__(self, group: str, **kwargs):
        super().__init__(f"▾ {group}", markup=False, **kwargs)
        self.group = group

    def show(self, collapsed: bool, keys: int, notable: int) -> None:
        note = f" · {keys} keys" + (f", {notable} set or flagged" if notable else "") if collapsed else ""
        self.update(f"{'▸' if collapsed else '▾'} {self.group}{note}")

    def action_toggle(self) -> None:
        self.post_message(self.Toggled(self.group))


class GroupBody(Vertical):
    """A group's rows, hidden while the group is folded."""


class ConfigForm(VerticalScroll):
    DEFAULT_CSS = """
    ConfigForm { height: 1fr; padding: 0 1; }
    ConfigForm .group { text-style: bold; color: $accent; margin-top: 1; }
    ConfigForm GroupTitle:focus { background: $accent 30%; }
    ConfigForm GroupBody { height: auto; }
    ConfigForm GroupBody.-collapsed { display: none; }
    ConfigForm FieldRow { height: 1; }
    ConfigForm FieldRow > .key { width: 24; }
    ConfigForm FieldRow > Input, ConfigForm FieldRow > Select { width: 1fr; }
    ConfigForm FieldRow > .default { width: 16; padding-left: 1; color: $text-muted; text-overflow: ellipsis; }
    ConfigForm .help { color: $text-muted; padding-left: 24; }
    ConfigForm .bad { color: $error; padding-left: 24; height: auto; display: none; }
    ConfigForm .bad.-shown { display: block; }
    ConfigForm Input.-invalid { color: $error; }
    """

    class Changed(Message):
        def __init__(self, path: tuple[str, ...], value: Any):
            super().__init__()
            self.path = path
            self.value = value

    class Focused(Message):
        """A key's input got the focus: spec is its config field (key, help, default)."""

        def __init__(self, spec):
            super().__init__()
            self.spec = spec

    def __init__(self, fields: list, values: dict, unknown: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.fields = fields
        self.values = values
        self.unknown = unknown or []
        self._loading = False
        self._refused: set[str] = set()  # fields whose line shows why the document refused an edit
        self._by_id = {self.field_id(f.path): f for f in fields}
        self.groups = list(dict.fromkeys(f.group for f in fields))
        self.collapsed: set[str] = set()
        self.findings: list = []  # the last check's findings (core Finding), for n/N and the folded titles

    @staticmethod
    def field_id(path: tuple[str, ...]) -> str:
        return "field-" + "--".join(path)

    def widget_for(self, path: tuple[str, ...]):
        return self.query_one("#" + self.field_id(path))

    @staticmethod
    def group_id(group: str) -> str:
        return "group-" + "".join(c if c.isalnum() else "-" for c in group)

    def compose(self) -> ComposeResult:
        for group in self.groups:
            yield GroupTitle(group, classes="group", id=self.group_id(group) + "-title")
            with GroupBody(id=self.group_id(group)):
                for spec in (f for f in self.fields if f.group == group):
                    with FieldRow(id=self.field_id(spec.path) + "-row"):
                        yield Label(spec.key, classes="key")
                        yield self._input(spec)
                        yield Label(_show(spec.default) or "none", classes="default", markup=False)
                    # The line under a key that says why a value was refused comes with the first refusal
                    # (bad_line): one hidden widget less per key on the first visit.
        if self.unknown:
            yield Label("other keys in this file (mlx-lm ignores them)", classes="group")
            yield Static(", ".join(self.unknown), classes="help", markup=False)

    def _input(self, spec):
        value = self._get(spec.path)
        wid = self.field_id(spec.path)
        if spec.kind in ("bool", "choice"):
            options = self._options(spec)
            return Select(options, value=value if value in [v for _, v in options] else Select.NULL, allow_blank=True,
                          prompt=f"default: {_show(spec.default) or 'none'}", id=wid, compact=True)
        kind = {"int": "integer"}.get(spec.kind, "text")
        return TextBox(_show(value), placeholder=_show(spec.default), type=kind, id=wid, select_on_focus=False,
                       compact=True, number=spec.kind in ("int", "float"))

    def bad_line(self, widget_id: str, create: bool = True) -> Static | None:
        """The line under a key (by its input's id) that says why its value was refused; made the first time
        one is needed (None without create, when there is none yet)."""
        found = self.query("#" + widget_id + "-bad")
        if found:
            return found.first(Static)
        if not create:
            return None
        bad = Static("", classes="bad", id=widget_id + "-bad")
        row = self.query_one("#" + widget_id + "-row", FieldRow)
        row.parent.mount(bad, after=row)
        return bad

    # -- folding and n/N ---------------------------------------------------------------------
    def is_notable(self, spec) -> bool:
        """Set to something other than mlx-lm's default, or named by an error or warning of the last check
        (an info finding, such as the trainable share, flags nothing)."""
        value = self._get(spec.path)
        if value is not None and value != spec.default:
            return True
        name = ".".join(spec.path)
        return any(f.field and (name == f.field or name.startswith(f.field + ".")) for f in self.findings
                   if f.level in FLAGGING_LEVELS)

    def show_findings(self, findings: list) -> None:
        self.findings = list(findings)
        self._show_titles()

    def _show_titles(self) -> None:
        for group in self.groups:
            specs = [f for f in self.fields if f.group == group]
            title = self.query_one("#" + self.group_id(group) + "-title", GroupTitle)
            title.show(group in self.collapsed, len(specs), sum(map(self.is_notable, specs)))

    def focused_group(self) -> str | None:
        """The group of the focused key or title."""
        focused = self.screen.focused
        if isinstance(focused, GroupTitle):
            return focused.group
        spec = self._by_id.get(getattr(focused, "id", None) or "")
        return spec.group if spec is not None else None

    def set_collapsed(self, group: str, collapsed: bool) -> None:
        if collapsed:
            self.collapsed.add(group)
        else:
            self.collapsed.discard(group)
        body = self.query_one("#" + self.group_id(group), GroupBody)
        body.set_class(collapsed, "-collapsed")
        self._show_titles()

    def toggle_group(self, group: str) -> None:
        """Fold or unfold one group; a key inside that is folded away gives the focus to the title."""
        fold = group not in self.collapsed
        if fold and self.focused_group() == group:
            self.focus_title(group)
        self.set_collapsed(group, fold)

    def toggle_all(self) -> None:
        """Fold every group, or unfold them all when all are folded."""
        fold = len(self.collapsed) < len(self.groups)
        group = self.focused_group()
        if fold and group is not None:
            self.focus_title(group)
        for name in self.groups:
            self.set_collapsed(name, fold)

    def focus_title(self, group: str) -> None:
        title = self.query_one("#" + self.group_id(group) + "-title", GroupTitle)
        title.focus()
        title.scroll_visible(animate=False)

    def on_group_title_toggled(self, event: GroupTitle.Toggled) -> None:
        event.stop()
        self.toggle_group(event.group)

    def jump_notable(self, step: int):
        """Focus the next (step 1) or previous (-1) notable key after the focused one, round the end;
        its group unfolds. Returns its spec, or None when no key is notable."""
        focused = self.screen.focused
        here = self._by_id.get(getattr(focused, "id", None) or "")
        if here is not None:
            start = self.fields.index(here)
        elif isinstance(focused, GroupTitle):  # from a title: its group's keys come next
            first = next(i for i, f in enumerate(self.fields) if f.group == focused.group)
            start = first - 1 if step > 0 else first
        else:
            start = -1 if step > 0 else len(self.fields)
        count = len(self.fields)
        for n in range(1, count + 1):
            spec = self.fields[(start + step * n) % count]
            if self.is_notable(spec):
                if spec.group in self.collapsed:
                    self.set_collapsed(spec.group, False)
                widget = self.widget_for(spec.path)
                widget.focus()
                if isinstance(widget, TextBox):  # a second n goes on; any other key edits the value
                    widget.let_through(JUMP_KEYS)
                self.call_after_refresh(widget.parent.scroll_visible, animate=False)
                return spec
        return None

    @staticmethod
    def _options(spec) -> list[tuple[str, Any]]:
        if spec.kind == "bool":
            return [("true", True), ("false", False)]
        return [(c, c) for c in spec.choices]

    def _get(self, path: tuple[str, ...]):
        node: Any = self.values
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    def set_values(self, values: dict) -> None:
        """Show new values (after a preset, a migration, a reload) without posting Changed."""
        self.values = values
        self._loading = True
        try:
            for spec in self.fields:
                widget = self.widget_for(spec.path)
                value = self._get(spec.path)
                if isinstance(widget, Select):
                    options = [v for _, v in self._options(spec)]
                    widget.value = value if value in options and value is not None else Select.NULL
                elif widget.has_focus and self._parse(spec, widget.value) == value:
                    pass  # the user is typing this value: leave the cursor alone
                else:
                    widget.value = _show(value)
                bad = self.bad_line(self.field_id(spec.path), create=False)
                if bad is not None:
                    bad.remove_class("-shown")
            self._refused.clear()
            self._show_titles()
        finally:
            self.call_after_refresh(self._done_loading)

    def refuse(self, path: tuple[str, ...], message: str, values: dict) -> None:
        """An edit the document could not make: show the values it still holds, and why, under the field."""
        self.set_values(values)
        if self.field_id(path) in self._by_id:
            bad = self.bad_line(self.field_id(path))
            bad.update(message)
            bad.add_class("-shown")
            self._refused.add(self.field_id(path))

    def _done_loading(self) -> None:
        self._loading = False

    def _parse(self, spec, text):
        try:
            return parse_value(spec.kind, text)
        except BadValue:
            return object()

    def _post(self, widget_id: str | None, raw) -> None:
        if self._loading or widget_id is None or widget_id not in self._by_id:
            return
        spec = self._by_id[widget_id]
        if isinstance(raw, str):
            try:
                value = parse_value(spec.kind, raw)
            except BadValue as exc:
                bad = self.bad_line(widget_id)
                bad.update(f"{spec.key}: needs {exc}")
                bad.add_class("-shown")
                return
        else:
            value = raw
        if value == self._get(spec.path) and widget_id in self._refused:
            # The box now shows the value the document kept (refuse): an echo of that, which can arrive after
            # loading ended, must not wipe the reason shown under it.
            return
        self._refused.discard(widget_id)
        bad = self.bad_line(widget_id, create=False)
        if bad is not None:
            bad.update("")
            bad.remove_class("-shown")
        if value != self._get(spec.path):
            self.post_message(self.Changed(spec.path, value))

    def on_descendant_focus(self, event) -> None:
        spec = self._by_id.get(event.widget.id or "")
        if spec is not None:
            self.post_message(self.Focused(spec))

    def help_text(self, spec) -> str:
        """The focused key's line under the form: name, help, mlx-lm's default."""
        default = _show(spec.default) or "none"
        return f"{'.'.join(spec.path)}: {spec.help} (default: {default})".strip()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._post(event.input.id, event.value)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._post(event.select.id, None if event.value is Select.NULL else event.value)
