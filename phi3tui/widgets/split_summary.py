"""One line for the splits: records, size and format (mlx-lm's, from the first record); the shown one lit."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class SplitSummary(Static):
    DEFAULT_CSS = """
    SplitSummary { height: auto; padding: 0 1; }
    """

    def show(self, rows: list[tuple[str, str, str, str]], current: str) -> None:
        """rows: (split, record count text, size text, format text)."""
        if not rows:
            self.update(Text("no train.jsonl / valid.jsonl / test.jsonl here (i imports a CSV)"))
            return
        formats = {fmt for *_, fmt in rows}
        shared = formats.pop() if len(formats) == 1 else None
        text = Text()
        for n, (split, records, size, fmt) in enumerate(rows):
            if n:
                text.append(" │ ", style="dim")
            style = f"bold reverse {self.app.colour('accent')}" if split == current else "bold"
            text.append(split, style=style)
            text.append(f" {records} ({size})" + ("" if shared else f" {fmt}"))
        if shared:
            text.append(" │ ", style="dim")
            text.append(f"all {shared}")
        self.update(text)
