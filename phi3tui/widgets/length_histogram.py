"""Tokens per record as horizontal bars, with max_seq_length marked."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


def bins_of(histogram: dict[int, int], count: int) -> list[tuple[int, int, int]]:
    """(low, high, records) for `count` equal-width bins over the lengths present."""
    if not histogram:
        return []
    low, high = min(histogram), max(histogram)
    width = max(1, -(-(high - low + 1) // count))
    bins = [0] * (-(-(high - low + 1) // width))
    for length, n in histogram.items():
        bins[(length - low) // width] += n
    return [(low + i * width, low + (i + 1) * width - 1, n) for i, n in enumerate(bins)]


class LengthHistogram(Static):
    DEFAULT_CSS = """
    LengthHistogram { height: auto; padding: 0 1; }
    """

    def plot(self, histogram: dict[int, int], max_seq_length: int, rows: int = 10, bar_width: int = 40) -> None:
        bins = bins_of(histogram, rows)
        if not bins:
            self.update("no token counts yet")
            return
        top = max(n for _, _, n in bins) or 1
        bar = self.app.colour("train-loss")
        over = self.app.colour("bad")
        text = Text()
        for low, high, n in bins:
            label = f"{low:>6,}–{high:<6,}"
            style = over if high > max_seq_length else bar
            text.append(label + " ")
            text.append("█" * max(1 if n else 0, round(bar_width * n / top)), style=style)
            text.append(f" {n:,}\n")
        text.append(f"tokens per record; bars past max_seq_length {max_seq_length:,} are marked", style="dim")
        self.update(text)
