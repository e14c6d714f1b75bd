"""Preference tuning on the screens (issue 17): the Train screen plots a DPO run's rewards (w), the Data
screen's import form makes preference pairs; an SFT run shows no rewards, a DPO run no perplexity."""

from __future__ import annotations

import csv
import json

from phi3tui.app import Phi3App
from phi3tui.core import runs
from phi3tui.core.workspace import Workspace
from phi3tui.widgets.loss_plot import LossPlot
from tests.test_train_screen import wait_for


async def test_train_screen_switches_a_dpo_run_between_loss_and_rewards(demo_workspace):
    from phi3tui.core.demo import write_demo_preference_data

    write_demo_preference_data(demo_workspace / "pref")
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(train_mode="dpo", data="pref", iters=6, steps_per_report=2,
                                                 steps_per_eval=3, save_every=6, val_batches=2, test=True,
                                                 test_batches=2))
    assert runs.wait_for_run(run_dir, timeout=300)["state"] == "finished"
    val = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "val"]
    app = Phi3App(ws, start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        plot = screen.query_one(LossPlot)
        assert screen.run_dir == run_dir and [c.label for c in plot.curves] == ["train", "val"]
        assert plot.title.endswith("(w: rewards)")  # the key is named where it matters (the footer is full)
        assert "ppl" not in str(screen.query_one("#run-stats").render())  # DPO writes none
        await pilot.press("w")
        await pilot.pause()
        # The validation rewards, as metrics.jsonl holds them.
        curves = {c.label: c for c in plot.curves}
        assert set(curves) == {"margin", "chosen", "rejected", "accuracy"} and "rewards" in plot.title
        assert curves["margin"].xs == [r["iteration"] for r in val]
        assert curves["margin"].ys == [r["reward_margin"] for r in val]
        assert curves["accuracy"].ys == [r["accuracy"] for r in val]
        await pilot.press("w")
        await pilot.pause()
        assert [c.label for c in plot.curves] == ["train", "val"]
        # The palette offers it too.
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Train: Plot rewards")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: {c.label for c in plot.curves} == {"margin", "chosen", "rejected", "accuracy"},
                       timeout=10)

        # An SFT run records no rewards: w says so and the loss stays.
        sft = runs.start_run(ws, overrides=dict(iters=2, steps_per_report=1, steps_per_eval=2, save_every=2,
                                                val_batches=1))
        assert runs.wait_for_run(sft, timeout=300)["state"] == "finished"
        screen.attach(sft)
        await pilot.pause()
        screen.show_rewards = False
        await pilot.press("w")
        await pilot.pause()
        assert [c.label for c in plot.curves] == ["train", "val"] and not screen.show_rewards
        assert "w:" not in plot.title
    # `?` lists the key with the Train screen's others.
    assert ("w", "Plot rewards/loss") in dict(app.key_sections())["Train"]


async def test_import_form_makes_preference_pairs(demo_workspace, tmp_path):
    source = tmp_path / "qa.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
        for i in range(20):
            writer.writerow(["A", "B", f"Question {i}?", f"Answer {i}.", "", f"Wrong {i}.; Also wrong {i}.", ""])
    out = demo_workspace / "pairs"
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("i")
        await pilot.pause()
        form = app.screen
        assert type(form).__name__ == "ImportForm"
        await pilot.press(*str(source))
        form.query_one("#import-out_dir").value = str(out)
        form.query_one("#import-format").value = "preference"
        form.query_one("#import-pairs_per_question").value = "2"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: (out / "train.jsonl").is_file())
    records = [json.loads(line) for split in ("train", "valid", "test")
               for line in (out / f"{split}.jsonl").read_text().splitlines()]
    assert len(records) == 40 and all(set(r) == {"prompt", "chosen", "rejected"} for r in records)
    for r in records:
        i = r["prompt"].split()[1].rstrip("?")
        assert r["chosen"] == f"Answer {i}." and r["rejected"] in (f"Wrong {i}.", f"Also wrong {i}.")
