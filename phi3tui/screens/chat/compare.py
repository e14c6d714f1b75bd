"""Batch compare: every prompt of the test split (or a file) through both panes' models, as a table
(prompt, reference, left answer, right answer), saved to the run folder as JSONL."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Static

from phi3tui.core.chat import batch_compare, describe_error, model_path
from phi3tui.widgets.job_dialog import JobDialog


def _cell(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "—").split())
    return text if len(text) <= width else text[: width - 1] + "…"


class CompareScreen(JobDialog):
    DEFAULT_CSS = """
    CompareScreen Label { width: 14; }
    CompareScreen #compare-detail { height: 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    /* The highlighted row's two answers side by side, so both show at 80 columns however long they are. */
    CompareScreen #compare-answers { height: 4; }
    CompareScreen #compare-answers > Static { width: 1fr; height: 4; overflow: hidden; padding-right: 1; }
    """
    STOPPING = "stopping after this prompt…"
    BINDINGS = [
        Binding("enter", "start", "Start", id="chat_compare.start"),
        Binding("escape", "stop_or_close", "Stop / close", id="chat_compare.stop_or_close"),
    ]

    class Started(Message):
        def __init__(self, path: Path, total: int):
            super().__init__()
            self.path, self.total = path, total

    class Record(Message):
        def __init__(self, record: dict):
            super().__init__()
            self.record = record

    class Done(Message):
        def __init__(self, path: Path | None, count: int, error: str | None = None):
            super().__init__()
            self.path, self.count, self.error = path, count, error

    def __init__(self, session):
        super().__init__()
        self.session = session
        self.running = False
        self.records: list[dict] = []
        self.total = 0

    def compose(self) -> ComposeResult:
        left, right = (s.label if s else "—" for s in self.session.sides)
        with Vertical(classes="dialog"):
            tools = f" · {self.session.tools.summary()}" if self.session.tools else ""
            yield Static(f"Batch compare: left {left} · right {right} · {self.session.settings.summary()}{tools}")
            with Horizontal():
                yield Label("prompts file")
                yield Input("data/test.jsonl", id="compare-file")
            table = DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("#", "prompt", "reference", "left", "right")
            yield table
            yield Static("", id="compare-detail", markup=False)
            with Horizontal(id="compare-answers"):
                yield Static("", id="compare-left", markup=False)
                yield Static("", id="compare-right", markup=False)
            yield Static("enter: start · esc: stop or close", id="compare-status", classes="job-status", markup=False)

    def on_mount(self) -> None:
        self.query_one("#compare-file", Input).focus()

    def action_start(self) -> None:
        if self.running:
            return
        prompts_file = self.query_one("#compare-file", Input).value.strip() or None
        self.records = []
        self.query_one(DataTable).clear()
        self._status("loading the model…")
        self.running = True
        workspace, sides, settings = self.session.workspace, list(self.session.sides), self.session.settings
        tools = self.session.tools
        post = self.post_message

        def job(worker) -> None:
            out, count = None, 0
            try:
                model = worker.chat_model(model_path(workspace))
                out, records = batch_compare(
                    model, workspace, sides, settings, Path(prompts_file) if prompts_file else None,
                    cancel=worker.cancel,
                    on_start=lambda path, total: post(self.Started(path, total)),
                    on_record=lambda record: post(self.Record(record)), tools=tools,
                )
                count = len(records)
            except Exception as exc:  # ChatError says what to do; anything else must not leave the dialog stuck
                post(self.Done(out, count, describe_error(exc)))
                return
            post(self.Done(out, count))

        self.cancel = self.app.model_worker.submit(job, keep_awake="a phi3tui batch compare")

    def on_compare_screen_started(self, message: Started) -> None:
        self.total = message.total
        self._status(f"0/{message.total} prompts · saving to {message.path}")
        self.query_one(DataTable).focus()

    def on_compare_screen_record(self, message: Record) -> None:
        r = message.record
        self.records.append(r)
        self.query_one(DataTable).add_row(
            # Sized so the whole row, both answers included, fits 80 columns (76 inside the dialog, with each
            # cell's padding); the highlighted row's answers are shown below, side by side.
            str(r["index"] + 1), _cell(r["prompt"], 18), _cell(r["reference"], 10),
            _cell(r["left"]["answer"], 16), _cell(r["right"]["answer"], 16),
        )
        self._status(f"{len(self.records)}/{self.total} prompts · esc stops")

    def on_compare_screen_done(self, message: Done) -> None:
        self.running = False
        if message.error:
            self._status(message.error, error=True)
        else:
            self._status(f"{message.count} prompts compared · saved to {message.path} · esc closes")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.records):
            r = self.records[event.cursor_row]
            self.query_one("#compare-detail", Static).update(f"prompt: {r['prompt']} · reference: {r['reference'] or '—'}")
            self.query_one("#compare-left", Static).update(f"left ({r['left']['side']}): {r['left']['answer']}")
            self.query_one("#compare-right", Static).update(f"right ({r['right']['side']}): {r['right']['answer']}")
