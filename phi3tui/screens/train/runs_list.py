"""The runs of the workspace in a modal: attach, overlay, show config, diff two configs, delete; a sweep's
runs compared side by side (w) or marked together (m) to overlay their curves (o).

Dismisses with ("attach", run_dir), ("overlay", [run_dir, ...]) or None.
"""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from phi3tui.core import runs
from phi3tui.core.adapters import run_adapter_dir
from phi3tui.core.eval import current_scores, number_text


class RunsListScreen(ModalScreen[tuple | None]):
    DEFAULT_CSS = """
    RunsListScreen { align: center middle; }
    RunsListScreen > Vertical {
        width: 100; max-width: 100%; height: 90%;
    }
    RunsListScreen DataTable { height: 1fr; }
    RunsListScreen #runs-hint { height: auto; color: $text-muted; padding: 0 1; }
    """
    BINDINGS = [
        Binding("enter", "attach", "Attach", id="runs_list.attach"),
        Binding("space", "mark", "Mark", id="runs_list.mark"),
        Binding("o", "overlay", "Overlay marked", id="runs_list.overlay"),
        Binding("c", "config", "Config", id="runs_list.config"),
        Binding("d", "diff", "Diff marked", id="runs_list.diff"),
        Binding("w", "compare_sweep", "Compare sweep", id="runs_list.sweep"),
        Binding("m", "mark_sweep", "Mark sweep", id="runs_list.mark_sweep"),
        Binding("x,delete", "delete", "Delete", id="runs_list.delete"),
        Binding("escape", "close", "Close", id="runs_list.close"),
    ]

    def __init__(self, workspace):
        super().__init__()
        self.workspace = workspace
        self.marked: list = []
        self.summaries: list[runs.RunSummary] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = "Runs"
            yield DataTable(cursor_type="row", zebra_stripes=True, id="runs-table")
            yield Static(
                "enter attach · space mark · o overlay marked · c config · d diff two marked · x delete · "
                "w compare the run's sweep · m mark its sweep · esc close",
                id="runs-hint",
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # mc1/mc2/test: the saved evaluation (eval-*.json) of the checkpoint in use, else of the newest evaluated
        table.add_columns(" ", "run", "state", "progress", "best val", "age", "mc1", "mc2", "test", "@")
        self.reload()
        table.focus()

    def reload(self) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        self.summaries = runs.list_runs(self.workspace)
        for s in self.summaries:
            best = "-" if s.best_val_loss is None or not math.isfinite(s.best_val_loss) else f"{s.best_val_loss:.3f}"
            mark = "●" if s.run_dir in self.marked else " "
            scored = current_scores(run_adapter_dir(s.run_dir))
            it, sc = scored if scored else (None, {})
            cells = [number_text(sc.get(k), 3 if k == "test_loss" else 2) for k in ("mc1", "mc2", "test_loss")]
            table.add_row(mark, s.id, s.state, f"{s.iteration}/{s.iters}", best, s.age_text(), *cells,
                          "-" if it is None else str(it), key=str(s.run_dir))
        if self.summaries:
            table.move_cursor(row=min(row, len(self.summaries) - 1))

    def current(self) -> runs.RunSummary | None:
        table = self.query_one(DataTable)
        if not self.summaries:
            return None
        return self.summaries[min(table.cursor_row, len(self.summaries) - 1)]

    def action_attach(self) -> None:
        s = self.current()
        if s:
            self.dismiss(("attach", s.run_dir))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_attach()

    def action_mark(self) -> None:
        s = self.current()
        if s:
            if s.run_dir in self.marked:
                self.marked.remove(s.run_dir)
            else:
                self.marked.append(s.run_dir)
            self.reload()

    def action_overlay(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two or more runs with space first", severity="warning")
            return
        self.dismiss(("overlay", list(self.marked)))

    def action_config(self) -> None:
        from phi3tui.screens.train.run_text import RunTextScreen

        s = self.current()
        if s:
            self.app.push_screen(RunTextScreen(f"run {s.id}: config.yaml", runs.run_config_text(s.run_dir)))

    def action_diff(self) -> None:
        from phi3tui.screens.train.run_text import RunTextScreen

        if len(self.marked) != 2:
            self.notify("mark exactly two runs with space to compare their configs", severity="warning")
            return
        a, b = self.marked
        rows = runs.config_diff(a, b)
        if rows:
            lines = [f"{'setting':<26} {a.name:<24} {b.name}"]
            lines += [f"{key:<26} {str(va):<24} {vb}" for key, va, vb in rows]
        else:
            lines = ["the two runs have the same settings"]
        self.app.push_screen(RunTextScreen(f"config diff: {a.name} → {b.name}", "\n".join(lines)))

    def _sweep_id(self) -> str | None:
        s = self.current()
        sweep_id = s.info.get("sweep_id") if s else None
        if s and not sweep_id:
            self.notify(f"run {s.id} is not part of a sweep (phi3tui train --sweep, or a sweep: block)", severity="warning")
        return sweep_id

    def action_compare_sweep(self) -> None:
        from phi3tui.screens.train.run_text import RunTextScreen

        sweep_id = self._sweep_id()
        if sweep_id:
            table = runs.sweep_table(runs.sweep_rows(self.workspace, sweep_id))
            self.app.push_screen(RunTextScreen(f"sweep {sweep_id} (m marks its runs, o overlays them)", table, table=True))

    def action_mark_sweep(self) -> None:
        sweep_id = self._sweep_id()
        if sweep_id:
            self.marked = runs.sweep_runs(self.workspace, sweep_id)
            self.notify(f"marked the {len(self.marked)} runs of sweep {sweep_id}; o overlays their curves")
            self.reload()

    def action_delete(self) -> None:
        from phi3tui.widgets.confirm_dialog import ConfirmDialog

        s = self.current()
        if not s:
            return
        if s.live:
            self.notify(f"run {s.id} is {s.state}; stop or kill it before deleting", severity="error")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                runs.delete_run(s.run_dir)
            except (runs.RunError, OSError) as exc:
                self.notify(str(exc), severity="error")
                return
            if s.run_dir in self.marked:
                self.marked.remove(s.run_dir)
            self.notify(f"deleted run {s.id}")
            self.reload()

        self.app.push_screen(ConfirmDialog(f"Delete run {s.id} and its adapters? This cannot be undone."), answered)

    def action_close(self) -> None:
        self.dismiss(None)
