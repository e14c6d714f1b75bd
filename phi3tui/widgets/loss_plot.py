"""The loss plot: train and validation curves against iteration (one run, or several overlaid).

textual-plotext rebuilds the whole chart on every repaint, on the UI thread, so the curves are
downsampled to about twice the plot's width before they reach plotext: a 100,000-point run costs
what a 500-point one does. The owner decides when new data is worth a redraw (see TrainScreen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from textual.color import Color
from textual_plotext import PlotextPlot

from phi3tui.core.runs import downsample


def nice_ticks(high: float, count: int = 5) -> list[int]:
    """Iteration ticks from 0 to at least `high`, a step of 1, 2 or 5 × 10^k, about `count` of them (plotext's own
    split the range evenly: 0.0 49.8 99.5)."""
    if high <= 0:
        return [0]
    rough = high / max(count - 1, 1)
    magnitude = 10 ** max(math.floor(math.log10(rough)), 0)
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    return list(range(0, int(math.ceil(high / step)) * step + 1, step))


@dataclass
class Curve:
    label: str
    xs: list
    ys: list
    role: str  # an app colour role: "train-loss", "val-loss", ...
    marker: str = "braille"


class LossPlot(PlotextPlot):
    DEFAULT_CSS = """
    LossPlot { height: 1fr; min-height: 8; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.curves: list[Curve] = []
        self.log_scale = False
        self.title = "loss"
        self.drawn_points = 0  # points handed to plotext in the last draw (after downsampling)
        self.draws = 0
        self.x_end: int | None = None

    def show_curves(self, curves: list[Curve], title: str = "loss", x_end: int | None = None) -> None:
        """Draw these curves; x_end: the run's last iteration, so the axis shows how far along it is."""
        self.curves = curves
        self.title = title
        self.x_end = x_end
        self.rebuild()

    def toggle_log_scale(self) -> bool:
        self.log_scale = not self.log_scale
        self.rebuild()
        return self.log_scale

    def on_resize(self) -> None:
        self.rebuild()  # the downsampling depends on the width

    def uses_terminal_colours(self) -> bool:
        """A 16-colour theme: the plot must draw with the terminal's own colours, not RGB."""
        theme = self.app.current_theme
        return bool(theme and theme.ansi)

    def curve_colour(self, role: str):
        colour = Color.parse(self.app.colour(role))
        if self.uses_terminal_colours() and colour.ansi is not None and colour.ansi >= 0:
            return colour.ansi  # plotext takes 0-15 as the terminal's palette entries
        return colour.rgb

    def rebuild(self) -> None:
        # textual-plotext's "auto" theme turns the app's colours into RGB, which for ansi_default is black on
        # black; plotext's "clear" theme leaves frame, labels and background to the terminal.
        self.theme = "clear" if self.uses_terminal_colours() else "auto"
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        width = max(self.size.width, 40)
        drawn, x_high = 0, 0
        for curve in self.curves:
            # Downsample first (list slicing: the cost stays that of ~2×width points however long the run),
            # then drop what cannot be drawn: NaN/inf (a diverged run), non-positive values on a log axis.
            xs, ys = downsample(curve.xs, curve.ys, 2 * width)
            points = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y) and (y > 0 or not self.log_scale)]
            if not points:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            drawn += len(xs)
            x_high = max(x_high, xs[-1])
            plt.plot(xs, ys, label=curve.label, color=self.curve_colour(curve.role), marker=curve.marker)
        plt.title(self.title + (" (log scale)" if self.log_scale else ""))
        plt.xlabel("iteration")
        plt.yscale("log" if self.log_scale else "linear")
        if drawn:
            ticks = nice_ticks(self.x_end or x_high, 5 if width >= 60 else 3)
            plt.xticks(ticks, [str(t) for t in ticks])
            plt.xlim(0, self.x_end or ticks[-1])
        self.drawn_points = drawn
        self.draws += 1
        self.refresh()
