"""A GRPO run on the Train screen (issue 27): o shows the latest sampled group (samples.jsonl: the prompt, each
completion with its rewards per function, total and advantage) in place of the plot, scrollable at 80×24, refreshed
as the run writes; the plot's title names o (the footer is full at 80 columns), the palette and ? list it;
w plots the task's reward series beside the loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from phi3tui.app import Phi3App
from phi3tui.core import runs
from phi3tui.core.run_folder import CONFIG_FILE, GRPO_SAMPLES, METRICS_FILE, read_latest_samples
from phi3tui.core.workspace import Workspace
from phi3tui.widgets.loss_plot import LossPlot
from tests.test_palette import footer_actions
from tests.test_train_screen import wait_for


def group(iteration: int, texts: list[str]) -> dict:
    """A samples.jsonl line as the GRPO task writes it (GRPO_CONTRACT.md)."""
    totals = [1.5 - 0.5 * n for n in range(len(texts))]
    mean = sum(totals) / len(totals)
    return {
        "iteration": iteration, "prompt": "What is the capital of France?", "answer": "Paris",
        "completions": [
            {"text": text, "rewards": {"any_correct": 1.0 if "Paris" in text else 0.0, "length": 0.5},
             "total": total, "advantage": round(total - mean, 4)}
            for text, total in zip(texts, totals)
        ],
    }


def append(run_dir: Path, line: str) -> None:
    with open(run_dir / GRPO_SAMPLES, "a", encoding="utf-8") as handle:
        handle.write(line)


def finished_run(workspace: Path) -> Path:
    """A real run folder: two iterations of the demo model through the real runner."""
    run_dir = runs.start_run(Workspace.open(workspace), overrides=dict(iters=2, steps_per_report=1, steps_per_eval=2,
                                                                       save_every=2, val_batches=1))
    assert runs.wait_for_run(run_dir, timeout=300)["state"] == "finished"
    return run_dir


def test_sample_group_lines_show_every_completion_and_survive_a_half_written_group():
    lines = runs.sample_group_lines(group(7, ["Paris.", "It is Lyon.\nOr Nice."]), hint="o: plot")
    assert lines[0] == "sampled group @ iteration 7 · 2 completions · o: plot"
    assert lines[1:5] == ["prompt:", "    What is the capital of France?", "answer:", "    Paris"]
    assert lines[5] == "#1  total 1.50 · advantage +0.25 · any_correct 1.00 · length 0.50"
    assert lines[6] == "    Paris."
    assert lines[7] == "#2  total 1.00 · advantage -0.25 · any_correct 0.00 · length 0.50"
    assert lines[8:] == ["    It is Lyon.", "    Or Nice."]
    odd = runs.sample_group_lines({"iteration": 3, "completions": [{"text": "", "total": "nan", "rewards": None}, 5]})
    assert odd[-2:] == ["#1  total nan · advantage -", "    (empty completion)"]
    assert runs.sample_group_lines(None)[0].startswith("no sampled group yet")


async def test_o_shows_the_latest_sampled_group_and_follows_the_file(demo_workspace):
    run_dir = finished_run(demo_workspace)
    app = Phi3App(Workspace.open(demo_workspace), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        panel, plot = screen.query_one("#run-samples"), screen.query_one(LossPlot)
        assert screen.run_dir == run_dir
        # No samples.jsonl (an SFT run): the plot's title does not name o, and pressing it says why.
        assert "o: samples" not in plot.title
        await pilot.press("o")
        await pilot.pause()
        assert not panel.display and plot.display
        assert any("GRPO" in n.message for n in app._notifications)

        # The run writes its first group: the app's run watcher's next poll reads it, the plot's title names o.
        append(run_dir, json.dumps(group(1, ["Paris is the capital.", "Lyon, I think."])) + "\n")
        await wait_for(pilot, lambda: plot.title.endswith("(o: samples)"), timeout=30)
        assert "toggle_samples" not in footer_actions(screen)  # the footer keeps its keys (full at 80 columns)
        await pilot.press("o")
        await pilot.pause()
        text = str(screen.query_one("#run-samples-text").render())
        assert panel.display and not plot.display and panel.region.height >= 10 and panel.has_focus
        assert "Paris is the capital." in text and "Lyon, I think." in text
        assert "#1  total 1.50 · advantage +0.25 · any_correct 1.00 · length 0.50" in text
        assert "What is the capital of France?" in text

        # A later report's group, many completions long, and a line still being written after it.
        many = [f"completion {n}: " + ("Paris " if n % 2 else "Rome ") * 12 for n in range(12)]
        append(run_dir, json.dumps(group(2, many)) + "\n" + '{"iteration": 3, "prom')
        await wait_for(pilot, lambda: "iteration 2" in str(screen.query_one("#run-samples-text").render()), timeout=30)
        text = str(screen.query_one("#run-samples-text").render())
        assert "completion 11:" in text and "Paris is the capital." not in text
        assert read_latest_samples(run_dir)["iteration"] == 2
        # It scrolls: the group is longer than the panel.
        await pilot.pause(0.3)
        assert panel.max_scroll_y > 0
        await pilot.press("pagedown")
        await pilot.pause(0.3)
        scrolled = panel.scroll_y
        assert scrolled > 0
        await pilot.pause(2.0)  # the app's run watcher polls meanwhile (every 0.5 s): the reader keeps their place
        assert panel.scroll_y == scrolled
        # o again: the plot is back.
        await pilot.press("o")
        await pilot.pause()
        assert not panel.display and plot.display
        # The palette offers it too.
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Train: Samples")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: panel.display, timeout=10)
    # `?` lists the key with the Train screen's others.
    assert ("o", "Samples") in dict(app.key_sections())["Train"]


async def test_w_plots_a_grpo_runs_rewards_beside_the_loss(demo_workspace):
    """The plot is the task's (`plotted`), with no screen change: a run whose config says grpo and whose
    metrics.jsonl carries the GRPO keys shows them on w."""
    from phi3tui.core.runs.grpo import GrpoTask as task

    run_dir = finished_run(demo_workspace)
    config = run_dir / CONFIG_FILE
    config.write_text(config.read_text() + "\ntrain_mode: grpo\n")
    records = [{"kind": "train", "iteration": it, "loss": 0.5 / it, "reward_mean": 0.2 * it, "reward_std": 0.1,
                "kl": 0.01 * it, "clip_fraction": 0.0, "completion_length": 12.0} for it in (1, 2)]
    (run_dir / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    app = Phi3App(Workspace.open(demo_workspace), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        plot = screen.query_one(LossPlot)
        assert screen.run_dir == run_dir and [c.label for c in plot.curves] == ["train", "val"]
        assert plot.title.endswith(f"(w: {task.plotted_title})")
        await pilot.press("w")
        await pilot.pause()
        curves = {c.label: c for c in plot.curves}
        assert set(curves) == set(task.plotted.values()) and plot.title.endswith(f"{task.plotted_title} (w: loss)")
        # With a sampled group written, the title names both keys.
        append(run_dir, json.dumps(group(2, ["Paris."])) + "\n")
        await wait_for(pilot, lambda: plot.title.endswith(f"{task.plotted_title} (w: loss · o: samples)"), timeout=30)
        for key, label in task.plotted.items():
            assert curves[label].xs == [1, 2] and curves[label].ys == [r[key] for r in records]
