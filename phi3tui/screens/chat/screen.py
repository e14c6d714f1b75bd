"""Chat (F4): the base and the adapted model (or two checkpoints) answer the same prompt side by side,
streaming, from one copy of the weights. All model work runs on the app's model worker thread."""

from __future__ import annotations

from dataclasses import replace

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Static

from phi3tui.core.chat import BASE, ChatError, ChatSession, describe_error, model_path
from phi3tui.core.terminal import OSC52_NOTE, PBCOPY_NOTE, copy_with_program, local_clipboard_program
from phi3tui.screens.base import ModeScreen
from phi3tui.widgets.chat_pane import ChatPane
from phi3tui.widgets.text_box import TextBox

PANES = ("pane-left", "pane-right")



# The footer shows ^f and ^r as one group: "^f^r Models". (^l clears, as in a shell; ^e, ^k are the text box's.)
MODEL_GROUP = Binding.Group("Models", compact=True)


class ChatScreen(ModeScreen):
    TITLE = "Chat"
    DEFAULT_CSS = """
    ChatScreen #chat-bar { height: 1; padding: 0 1; color: $text-muted; }
    ChatScreen #chat-panes { height: 1fr; }
    ChatScreen #chat-input { height: 3; }
    """
    # ctrl+b is tmux's prefix key, so batch compare is ^g (b too, with a pane focused). The footer keeps
    # what fits 80 columns; the rest are in the palette and `?`.
    BINDINGS = [
        Binding("enter", "send", "Send", id="chat.send"),
        Binding("escape", "stop", "Stop", show=False, id="chat.stop"),
        Binding("ctrl+f", "pick(0)", "Left model", key_display="^f", group=MODEL_GROUP, id="chat.pick_left"),
        Binding("ctrl+r", "pick(1)", "Right model", key_display="^r", group=MODEL_GROUP, id="chat.pick_right"),
        Binding("ctrl+t", "settings", "Settings", key_display="^t", show=False, id="chat.settings"),
        Binding("ctrl+g,b", "compare", "Batch compare", key_display="^g", id="chat.compare"),
        Binding("ctrl+o,e", "evaluate", "Evaluate", key_display="^o", show=False, id="chat.evaluate"),
        Binding("ctrl+y", "copy", "Copy", key_display="^y", id="chat.copy"),  # short: the footer fits 80 columns with "Send" shown too
        Binding("ctrl+l,ctrl+n", "clear", "Clear", key_display="^l", show=False, id="chat.clear"),
        Binding("ctrl+j", "tools", "Tools", key_display="^j", show=False, id="chat.tools"),
    ]

    class Streamed(Message):
        """New text for the panes (events) and their statistics so far."""

        def __init__(self, events, stats):
            super().__init__()
            self.events, self.stats = events, stats

    class Finished(Message):
        def __init__(self, error: str | None = None):
            super().__init__()
            self.error = error

    class Status(Message):
        """A note (or an error) for one pane, or both when pane is None; sides_changed re-reads the sides."""

        def __init__(self, text: str, pane: int | None = None, error: bool = False, sides_changed: bool = False):
            super().__init__()
            self.text, self.pane, self.error, self.sides_changed = text, pane, error, sides_changed

    def compose_body(self) -> ComposeResult:
        yield Static("", id="chat-bar", markup=False)
        with Horizontal(id="chat-panes"):
            yield ChatPane("base", id=PANES[0])
            yield ChatPane("adapted", id=PANES[1])
        yield TextBox(placeholder="Ask both models (enter sends, esc stops; 1–5 ? work while empty)", id="chat-input")

    def on_mount(self) -> None:
        self.session = ChatSession(self.workspace)
        self.generating = False
        self.last_stats: dict = {}
        try:
            self.session.default_sides()
        except ChatError as exc:
            self.pane(1).show_error(f"{exc}\n(ctrl+r picks a model for this pane)")
        self.show_sides()
        self.query_one(Input).focus()
        self.submit(self._load_job)

    # -- helpers ---------------------------------------------------------------
    def pane(self, index: int) -> ChatPane:
        return self.query_one(f"#{PANES[index]}", ChatPane)

    def show_sides(self) -> None:
        for index, side in enumerate(self.session.sides):
            if side is None:
                self.pane(index).set_side("no model chosen", is_base=False)
            else:
                self.pane(index).set_side(side.label, side.is_base)
        tools = self.session.tools
        self.query_one("#chat-bar", Static).update(
            self.session.settings.summary() + (f" · {tools.summary()}" if tools else ""))

    def submit(self, job):
        """Queue a job on the app's model thread; returns the event that stops it (even before it starts)."""
        return self.app.model_worker.submit(job)

    # -- jobs (run on the model worker thread; they talk back only through messages) ------------
    def _load_job(self, worker) -> None:
        self.post_message(self.Status("loading the model…"))
        try:
            model = worker.chat_model(model_path(self.workspace))
            model.set_sides([s or BASE for s in self.session.sides])
        except Exception as exc:  # ChatError says what to do; anything else must not leave the screen stuck
            self.post_message(self.Status(describe_error(exc), error=True))
            return
        self.post_message(self.Status("", sides_changed=True))

    def _choose_job(self, pane: int, side):
        def job(worker) -> None:
            try:
                model = worker.chat_model(model_path(self.workspace))
                self.session.choose(model, pane, side)
            except Exception as exc:  # ChatError says what to do; anything else must not leave the screen stuck
                self.post_message(self.Status(describe_error(exc), pane=pane, error=True))
                return
            self.post_message(self.Status(f"now: {side.label}", pane=pane, sides_changed=True))

        return job

    def _ask_job(self, text: str):
        def job(worker) -> None:
            try:
                model = worker.chat_model(model_path(self.workspace))
                for events, stats in self.session.ask(model, text, worker.cancel):
                    self.post_message(self.Streamed(events, {p: replace(s) for p, s in stats.items()}))
            except Exception as exc:  # ChatError says what to do; anything else must not leave the screen stuck
                self.post_message(self.Finished(describe_error(exc)))
                return
            self.post_message(self.Finished())

        return job

    def _tools_job(self, path):
        def job(worker) -> None:
            try:
                tools = self.session.load_tools(path)  # core reads and checks the file
                note = self.session.tools_note(worker.chat_model(model_path(self.workspace))) if tools else ""
            except Exception as exc:  # ChatError names the file and what is wrong; nothing changed
                self.post_message(self.Status(describe_error(exc), error=True))
                return
            said = note or (f"{tools.summary()}: both panes' prompts carry them" if tools else "no tools")
            self.post_message(self.Status(said, error=bool(note), sides_changed=True))

        return job

    def _clear_job(self, worker) -> None:
        self.session.clear()

    # -- actions -----------------------------------------------------------------
    def action_send(self) -> None:
        box = self.query_one(Input)
        text = box.value.strip()
        if not text or self.generating:
            if self.generating:
                self.notify("Still answering: esc stops it", severity="warning")
            return
        box.value = ""
        self.generating = True
        self.last_stats = {}
        for index, side in enumerate(self.session.sides):
            if side is not None:
                self.pane(index).note("")
                self.pane(index).start_answer(text)
        self.answer_cancel = self.submit(self._ask_job(text))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_send()

    def action_stop(self) -> None:
        if self.generating:
            self.answer_cancel.set()

    def action_pick(self, pane: int) -> None:
        from phi3tui.widgets.picker import side_picker

        title = f"Model for the {'left' if pane == 0 else 'right'} pane"

        def chosen(side) -> None:
            if side is not None and side != self.session.sides[pane]:
                self.action_stop()
                self.pane(pane).clear()
                self.pane(pane).note(f"switching to {side.label}…")
                self.submit(self._choose_job(pane, side))

        self.app.push_screen(side_picker(title, self.workspace.root, self.session.sides[pane]), chosen)

    def action_tools(self) -> None:
        from phi3tui.widgets.picker import tools_picker

        def chosen(path) -> None:
            if path is not None:  # "" is "no tools"
                self.submit(self._tools_job(path or None))

        current = self.session.tools.path if self.session.tools else ""
        self.app.push_screen(tools_picker(self.workspace, current), chosen)

    def action_settings(self) -> None:
        from phi3tui.screens.chat.settings import ChatSettingsScreen

        def chosen(settings) -> None:
            if settings is not None:
                self.session.settings = settings
                self.show_sides()

        self.app.push_screen(ChatSettingsScreen(self.session.settings), chosen)

    def action_compare(self) -> None:
        from phi3tui.screens.chat.compare import CompareScreen

        self.app.push_screen(CompareScreen(self.session))

    def action_evaluate(self) -> None:
        from phi3tui.screens.eval.screen import EvaluateScreen

        self.app.push_screen(EvaluateScreen(self.session))

    def action_copy(self) -> None:
        focused = self.focused if isinstance(self.focused, ChatPane) else self.pane(1)
        text = focused.answer_text or self.session.conversations[0 if focused is self.pane(0) else 1].last_answer()
        if not text:
            self.notify("No answer to copy yet")
            return
        what = f"{focused.border_title}'s answer ({len(text)} characters)"
        program = local_clipboard_program()
        problem = copy_with_program(program, text) if program else None
        if program and problem is None:
            self.notify(f"{what} {PBCOPY_NOTE}")
            return
        # Over SSH, or not on a Mac: only the terminal can reach the clipboard. Say so: a terminal that
        # ignores OSC 52 drops it silently.
        self.app.copy_to_clipboard(text)
        self.notify(f"{what} {OSC52_NOTE}" + (f"; {problem}" if problem else ""),
                    severity="warning" if problem else "information")

    def action_clear(self) -> None:
        self.action_stop()
        for index in (0, 1):
            self.pane(index).clear()
        self.submit(self._clear_job)

    # -- messages from the worker ---------------------------------------------------------------
    async def on_chat_screen_streamed(self, message: Streamed) -> None:
        for event in message.events:
            await self.pane(event.row).write(event.text)
        for index, stats in message.stats.items():
            self.pane(index).set_stats(stats.summary())
        self.last_stats.update(message.stats)

    async def on_chat_screen_finished(self, message: Finished) -> None:
        self.generating = False
        for index in (0, 1):
            stats = self.last_stats.get(index)
            await self.pane(index).finish(stats.finish_note if stats else "")
        if message.error:
            for index in (0, 1):
                self.pane(index).show_error(message.error)

    def on_chat_screen_status(self, message: Status) -> None:
        panes = (0, 1) if message.pane is None else (message.pane,)
        if message.sides_changed:
            self.show_sides()
        for index in panes:
            if message.error:
                self.pane(index).show_error(message.text)
            else:
                self.pane(index).note(message.text)
