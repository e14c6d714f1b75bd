"""The problems found in a data folder, one row each (level, split:line, problem, hint); Enter jumps."""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable


class ValidationList(DataTable):
    DEFAULT_CSS = """
    ValidationList { height: 1fr; }
    """

    class Chosen(Message):
        """The user picked a problem: show that split's record (line 0: the split as a whole)."""

        def __init__(self, split: str, line: int) -> None:
            super().__init__()
            self.split = split
            self.line = line

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._problems: list = []

    def on_mount(self) -> None:
        self.add_columns("level", "where", "problem", "hint")

    def set_problems(self, problems, unlisted: int = 0, clean_splits=()) -> None:
        """The problems, then one "no problems" row for each split in clean_splits (never an empty table)."""
        colours = {"error": self.app.colour("bad"), "warning": self.app.colour("warn"), "info": self.app.colour("good")}
        self.clear()
        self._problems = list(problems)
        for p in self._problems:
            self.add_row(Text(p.level, style=f"bold {colours.get(p.level, '')}"), p.location, p.message, p.hint)
        if unlisted:
            self.add_row("", "", f"… and {unlisted:,} more of the same kinds", "")
        for split in clean_splits:
            self.add_row(Text("ok", style=f"bold {colours['info']}"), split, "no problems", "")

    def problem_at(self, row: int):
        """The core Problem shown on a row (None for the "and more" row)."""
        return self._problems[row] if 0 <= row < len(self._problems) else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        problem = self.problem_at(event.cursor_row)
        if problem is not None:
            self.post_message(self.Chosen(problem.split, problem.line))
