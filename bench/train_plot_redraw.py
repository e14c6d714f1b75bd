"""Loss-plot redraw time for a 100,000-point run ÷ a 500-point run (goal: about 1).

One app at 80×24 on the Train screen; each repeat hands the LossPlot a train curve of 500 points and
one of 100,000 (plus a validation curve of 1/25 as many), alternating, and times show_curves() (the
downsampling and the plotext calls) plus render() (plotext building the chart), as one redraw costs.
For scale, the same 100,000 points handed to plotext without downsampling are timed once.

Usage: python bench/train_plot_redraw.py [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def curves(n: int):
    from phi3tui.widgets.loss_plot import Curve

    xs = list(range(1, n + 1))
    val_xs = xs[:: 25]
    return [
        Curve("train", xs, [5.0 / (1 + i / (n / 50)) + 0.1 * ((i * 7919) % 13) / 13 for i in xs], "train-loss"),
        Curve("val", val_xs, [5.0 / (1 + i / (n / 50)) for i in val_xs], "val-loss", "dot"),
    ]


def timed(plot, data) -> float:
    start = time.perf_counter()
    plot.show_curves(data, "bench")
    plot.render()
    return time.perf_counter() - start


async def measure(repeats: int) -> None:
    from phi3tui.app import Phi3App
    from phi3tui.core.demo import build_demo
    from phi3tui.widgets.loss_plot import LossPlot

    ws = build_demo(Path(tempfile.mkdtemp(prefix="bench-plot-")) / "ws").workspace
    small, large = curves(500), curves(100_000)
    app = Phi3App(ws, start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        plot = app.screen.query_one(LossPlot)
        timed(plot, small)  # warm-up
        t_small, t_large = [], []
        for _ in range(repeats):
            t_small.append(timed(plot, small))
            t_large.append(timed(plot, large))
        drawn = plot.drawn_points
        # What a redraw would cost without downsampling: the full curves straight into plotext.
        plt = plot.plt
        start = time.perf_counter()
        plt.clear_data()
        for c in large:
            plt.plot(c.xs, c.ys)
        plot.render()
        full = time.perf_counter() - start
        width, height = plot.size.width, plot.size.height
    print(f"plot {width}x{height} cells; 100,000 points drawn as {drawn}; {repeats} repeats, medians")
    print(f"500 points: {1000 * statistics.median(t_small):.1f} ms   100,000 points: {1000 * statistics.median(t_large):.1f} ms")
    print(f"100,000 points without downsampling (once): {1000 * full:.0f} ms")
    print(f"redraw time 100,000 ÷ 500 points: {statistics.median(t_large) / statistics.median(t_small):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    asyncio.run(measure(parser.parse_args().repeats))


if __name__ == "__main__":
    main()
