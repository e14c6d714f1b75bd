"""One line per split: records, size, format (mlx-lm's, from the first record), and which is shown."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class SplitSummary(Static):
    DEFAULT_CSS = """
    SplitSummary { height: auto; padding: 0 1; }
    """

    def show(self, rows: list[tuple[str, str, str, str]], current: str) -> None:
        """rows: (split, record count text, size text, format text); the shown split is highlighted."""
        text = Text()
        for n, (split, records, size, fmt) in enumerate(rows):
            if n:
                text.append(" │ ", style="dim")
            style = f"bold reverse {self.app.colour('accent')}" if split == current else "bold"
            text.append(split, style=style)
            text.append(f" {records} · {size} · {fmt}")
        self.update(text if rows else Text("no train.jsonl / valid.jsonl / test.jsonl here (i imports a CSV)"))
