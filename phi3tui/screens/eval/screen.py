"""Evaluate: did the fine-tune help? Two sides (at first the Chat panes' two; ^l / ^r pick any checkpoint
for either) scored on the same items (test loss, MC1/MC2, exact match, ROUGE-L), per metric with the
difference, saved beside the adapter as eval-<time>.json. All model work runs on the app's model worker
thread; this screen only shows."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Label, ProgressBar, Static

from phi3tui.core.chat import describe_error, model_path
from phi3tui.core.eval import EvalError, counts, output_path, read_mc, rows, save, split_items
from phi3tui.widgets.job_dialog import JobDialog


class EvaluateScreen(JobDialog):
    DEFAULT_CSS = """
    EvaluateScreen Label { width: 12; }
    EvaluateScreen ProgressBar { height: 1; }
    """
    BINDINGS = [
        Binding("enter", "start", "Start", id="eval.start"),
        Binding("escape", "stop_or_close", "Stop / close", id="eval.stop_or_close"),
        Binding("ctrl+l", "pick(0)", "Left side", key_display="^l", id="eval.pick_left"),
        Binding("ctrl+r", "pick(1)", "Right side", key_display="^r", id="eval.pick_right"),
    ]

    class Progress(Message):
        def __init__(self, what: str, done: int, total: int):
            super().__init__()
            self.what, self.done, self.total = what, done, total

    class Done(Message):
        def __init__(self, result: dict | None, path: Path | None, error: str | None = None):
            super().__init__()
            self.result, self.path, self.error = result, path, error

    def __init__(self, session):
        super().__init__()
        self.session = session
        self.running = False
        self.sides = list(session.sides)  # this view's own: picking here leaves the Chat panes as they are

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.sides_text(), id="eval-sides", markup=False)
            with Horizontal():
                yield Label("questions")
                yield Input("", placeholder="TruthfulQA CSV or JSONL (empty: the test split)", id="eval-mc")
            with Horizontal():
                yield Label("limit")
                yield Input("20", id="eval-limit", type="integer")
            table = DataTable(id="eval-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("metric", "left", "right", "difference", "right is")
            yield table
            yield ProgressBar(id="eval-progress", show_eta=False)
            yield Static("enter: start · ^l / ^r: pick the left / right checkpoint · esc: stop or close", id="eval-status",
                         classes="job-status", markup=False)

    def on_mount(self) -> None:
        self.query_one("#eval-mc", Input).focus()

    def sides_text(self) -> str:
        left, right = (s.label if s else "—" for s in self.sides)
        return f"Evaluate: left {left} · right {right}"

    def action_pick(self, index: int) -> None:
        from phi3tui.widgets.picker import side_picker

        if self.running:
            self._status("still evaluating: esc stops it first", error=True)
            return

        def chosen(side) -> None:
            if side is not None:
                self.sides[index] = side
                self.query_one("#eval-sides", Static).update(self.sides_text())

        title = f"{'Left' if index == 0 else 'Right'} side: the base model or any checkpoint"
        self.app.push_screen(side_picker(title, self.session.workspace.root, self.sides[index]), chosen)

    def action_start(self) -> None:
        if self.running:
            return
        mc_text = self.query_one("#eval-mc", Input).value.strip()
        limit_text = self.query_one("#eval-limit", Input).value.strip()
        limit = int(limit_text) if limit_text.isdigit() and int(limit_text) > 0 else None
        workspace, sides, settings = self.session.workspace, list(self.sides), self.session.settings
        if any(side is None for side in sides) or all(side.is_base for side in sides):
            self._status("pick an adapter for one side first (ctrl+l / ctrl+r)", error=True)
            return
        self.query_one(DataTable).clear()
        self._status("loading the model…")
        self.running = True
        post = self.post_message

        def job(worker) -> None:
            from phi3tui.core.eval.scoring import evaluate_sides

            try:
                model = worker.chat_model(model_path(workspace))
                items = read_mc(workspace.resolve(mc_text)) if mc_text else split_items(workspace.data_dir / "test.jsonl")
                result = evaluate_sides(
                    model, workspace, sides, items, limit, settings=settings, cancel=worker.cancel,
                    progress=lambda what, done, total: post(self.Progress(what, done, total)),
                )
                target = next(side for side in reversed(sides) if not side.is_base)
                path = output_path(target)
                save(result, path)
            except Exception as exc:  # EvalError/ChatError say what to do; nothing may leave the dialog stuck
                post(self.Done(None, None, str(exc) if isinstance(exc, EvalError) else describe_error(exc)))
                return
            post(self.Done(result, path))

        self.cancel = self.app.model_worker.submit(job, keep_awake="a phi3tui evaluation")

    def on_evaluate_screen_progress(self, message: Progress) -> None:
        self.query_one(ProgressBar).update(total=max(message.total, 1), progress=message.done)
        self._status(f"{message.what}: {message.done}/{message.total} · esc stops")

    def on_evaluate_screen_done(self, message: Done) -> None:
        self.running = False
        if message.error:
            self._status(message.error, error=True)
            return
        self.result = message.result
        table = self.query_one(DataTable)
        for row in rows(message.result):
            table.add_row(*row)
        self._status(f"{counts(message.result) or 'done'} · saved to {message.path} · esc closes")
