"""The one picker: choose one item (a run's checkpoint, an adapter folder, a model, a preset) or several
(LoRA keys) from a list of (label, value) choices, by keyboard. What the choices are comes from core;
this only shows them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, OptionList, SelectionList, Static
from textual.widgets.option_list import Option
from textual.widgets.selection_list import Selection


class Picker(ModalScreen[Any]):
    """Dismisses with the chosen value (or the list of chosen values when `multi`); None when cancelled.

    current: the value in use now, marked "(now)" and highlighted. empty: said when there are no choices;
    find: when given (one choice only), a box above the list, with this prompt, that narrows the list as
    you type: fuzzy, as in the command palette, best match first;
    note: said under the list in any case. from_path: when given, a box where a
    path can be typed instead; it turns the text into a value or raises one of `path_errors`, whose
    message is shown in the dialog.
    """

    DEFAULT_CSS = """
    Picker { align: center middle; }
    Picker > Vertical {
        width: 90%; max-width: 100; height: auto; max-height: 90%; padding: 0 1;
    }
    Picker #pick-title { text-style: bold; }
    Picker #pick-list { height: auto; max-height: 16; }
    Picker .hint { color: $text-muted; }
    Picker #pick-error { color: $error; height: auto; }
    """
    BINDINGS = [
        # priority: the list would take enter for itself (SelectionList toggles with it)
        Binding("enter", "choose", "Choose", priority=True, id="picker.choose"),
        Binding("escape", "cancel", "Cancel", id="picker.cancel"),
        # From the find box (which has no use for them): move in the list below it.
        Binding("down", "move(1)", "Next", show=False, id="picker.next"),
        Binding("up", "move(-1)", "Previous", show=False, id="picker.previous"),
    ]

    def __init__(
        self,
        title: str,
        choices: list[tuple[str, Any]],
        *,
        multi: bool = False,
        selected=(),
        current: Any = None,
        empty: str = "nothing to pick from",
        note: str = "",
        from_path: Callable[[str], Any] | None = None,
        path_errors: tuple[type[Exception], ...] = (ValueError,),
        path_prompt: str = "or type a path, enter",
        find: str | None = None,
    ):
        super().__init__()
        self.title_text = title
        self.choices = list(choices)
        self.multi = multi
        self.selected = list(selected)
        self.current = current
        self.empty = empty
        self.note = note
        self.from_path = from_path
        self.path_errors = path_errors
        self.path_prompt = path_prompt
        self.find = None if multi else find
        self.shown = list(range(len(self.choices)))  # the list's rows, as indices into choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, id="pick-title", markup=False)
            if self.find is not None:
                yield Input(placeholder=self.find, id="pick-find")
            if self.multi:
                yield SelectionList(
                    *[Selection(label, i, value in self.selected) for i, (label, value) in enumerate(self.choices)],
                    id="pick-list",
                )
            else:
                options = [
                    Option(label + ("  (now)" if self.current is not None and value == self.current else ""))
                    for label, value in self.choices
                ]
                yield OptionList(*options, id="pick-list")
            if not self.choices or self.note:
                yield Static(self.note or self.empty, id="pick-empty", classes="hint", markup=False)
            if self.from_path is not None:
                yield Input(placeholder=self.path_prompt, id="pick-path")
                yield Static("", id="pick-error", markup=False)
            keys = "space toggle · enter done" if self.multi else "enter choose"
            path = " · tab to the path box" if self.from_path is not None else ""
            yield Static(f"↑/↓ move{path} · {keys} · esc cancel", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        values = [value for _, value in self.choices]
        if not self.multi and self.current is not None and self.current in values:
            self.query_one(OptionList).highlighted = values.index(self.current)
        self.query_one("#pick-find" if self.find is not None else "#pick-list").focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "pick-find":
            return
        from textual.fuzzy import Matcher

        event.stop()
        query = event.value.strip()
        if query:
            matcher = Matcher(query)
            scored = [(matcher.match(label), i) for i, (label, _) in enumerate(self.choices)]
            self.shown = [i for score, i in sorted(scored, key=lambda s: -s[0]) if score > 0]
        else:
            self.shown = list(range(len(self.choices)))
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([Option(self.choices[i][0]) for i in self.shown])
        options.highlighted = 0 if self.shown else None

    def action_move(self, delta: int) -> None:
        if self.find is None or not self.shown:
            return
        options = self.query_one(OptionList)
        options.highlighted = ((options.highlighted or 0) + delta) % len(self.shown)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.choices[self.shown[event.option_index]][1])

    def action_choose(self) -> None:
        if self.from_path is not None and self.focused is self.query_one("#pick-path", Input):
            self.choose_path(self.query_one("#pick-path", Input).value)
        elif self.multi:
            chosen = sorted(self.query_one(SelectionList).selected)
            self.dismiss([self.choices[i][1] for i in chosen])
        else:
            index = self.query_one(OptionList).highlighted
            if index is not None and self.shown:
                self.dismiss(self.choices[self.shown[index]][1])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "pick-path":
            self.choose_path(event.value)

    def choose_path(self, text: str) -> None:
        try:
            value = self.from_path(text.strip() or ".")
        except self.path_errors as exc:
            self.query_one("#pick-error", Static).update(str(exc))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def side_picker(title: str, workspace_root, current=None) -> Picker:
    """The picker of a model side (Chat's panes, Evaluate's two sides): the base model or any checkpoint of
    any run or adapter folder, each with its saved scores, or an adapter folder typed as a path."""
    from pathlib import Path

    from phi3tui.core.chat import ChatError, side_choices, side_for_path
    from phi3tui.core.eval import labels_with_scores

    sides = side_choices(workspace_root)
    return Picker(
        title,
        list(zip(labels_with_scores(sides), sides)),
        current=current,
        note="" if len(sides) > 1 else "No adapters yet: train a run (F3), or put an adapter folder in the workspace.",
        from_path=lambda text: side_for_path(Path(text)),
        path_errors=(ChatError,),
        path_prompt="or an adapter folder anywhere: type its path, enter",
    )


def tools_picker(workspace, current=None) -> Picker:
    """The picker of Chat's tool definitions file: none, a JSON file of the workspace, or any file by path (checked
    by core before the dialog closes). Dismisses with its path, "" for no tools, None when cancelled."""
    from phi3tui.core.chat import ChatError, load_tools, tool_files

    files = tool_files(workspace.root)
    return Picker(
        "Tool definitions for both panes",
        [("no tools", "")] + [(str(path.relative_to(workspace.root)), path) for path in files],
        current=current,
        note="A JSON list of tool definitions (OpenAI-style function specs), given to the chat template."
        + ("" if files else " No .json file in the workspace yet: type a file's path below."),
        from_path=lambda text: load_tools(workspace.resolve(text)).path,
        path_errors=(ChatError,),
        path_prompt="or a tools file anywhere: type its path, enter",
    )
