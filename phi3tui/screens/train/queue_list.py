"""The run queue in a modal: the waiting runs, next first; move one sooner or later, drop one (asks first).

The queue itself is files (core/runs/queue.py): every change here is made there and read back.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from phi3tui.core import runs


class QueueScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    QueueScreen { align: center middle; }
    QueueScreen > Vertical {
        width: 80; max-width: 100%; height: 90%;
    }
    QueueScreen DataTable { height: 1fr; }
    QueueScreen #queue-hint, QueueScreen #queue-running { height: auto; color: $text-muted; padding: 0 1; }
    """
    BINDINGS = [
        Binding("shift+up,K", "move(-1)", "Move up", id="queue.up"),
        Binding("shift+down,J", "move(1)", "Move down", id="queue.down"),
        Binding("x,delete", "drop", "Drop", id="queue.drop"),
        Binding("escape", "close", "Close", id="queue.close"),
    ]

    def __init__(self, workspace):
        super().__init__()
        self.workspace = workspace
        self.queued: list = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = "Queue (next first)"
            yield Static("", id="queue-running")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="queue-table")
            yield Static("shift+↑/K move up · shift+↓/J move down · x drop · esc close", id="queue-hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("#", "run", "sweep values", "iters")
        self.reload()
        table.focus()

    def reload(self, cursor: int | None = None) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row if cursor is None else cursor
        table.clear()
        self.queued = runs.queued_runs(self.workspace)
        for i, run_dir in enumerate(self.queued, 1):
            info = runs.read_run_json(run_dir)
            point = " ".join(f"{k}={v}" for k, v in (info.get("sweep_point") or {}).items()) or "-"
            table.add_row(str(i), run_dir.name, point, str(info.get("iters") or "-"), key=run_dir.name)
        if self.queued:
            table.move_cursor(row=max(0, min(row, len(self.queued) - 1)))
        live = runs.live_here(self.workspace)
        running = f"running: {', '.join(d.name for d in live)}" if live else "nothing running"
        empty = "" if self.queued else " · the queue is empty (queue runs with n while one runs, or a sweep: block)"
        self.query_one("#queue-running", Static).update(running + empty)

    def current(self):
        if not self.queued:
            return None
        return self.queued[min(self.query_one(DataTable).cursor_row, len(self.queued) - 1)]

    def action_move(self, delta: int) -> None:
        run_dir = self.current()
        if run_dir is None:
            return
        try:
            position = runs.move_queued(self.workspace, run_dir.name, delta)
        except (runs.RunError, OSError) as exc:
            self.notify(str(exc), severity="error")
            self.reload()
            return
        self.reload(cursor=position - 1)

    def action_drop(self) -> None:
        from phi3tui.widgets.confirm_dialog import ConfirmDialog

        run_dir = self.current()
        if run_dir is None:
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                runs.drop_queued(self.workspace, run_dir.name)
            except (runs.RunError, OSError) as exc:
                self.notify(str(exc), severity="error")
            else:
                self.notify(f"dropped run {run_dir.name} from the queue")
            self.reload()

        self.app.push_screen(ConfirmDialog(f"Drop run {run_dir.name} from the queue? Its config is deleted."), answered)

    def action_close(self) -> None:
        self.dismiss(None)
