"""Training modes (core/runs/tasks.py): one table keyed by train_mode (core/train_modes.py), and a new mode is one
module plus one line, whose metrics the Train screen plots without touching the store or the screens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from phi3tui.app import Phi3App
from phi3tui.core import runs
from phi3tui.core.config import TRAIN_MODES, config_fields, preference_settings
from phi3tui.core.runs import tasks
from phi3tui.core.runs.launcher import create_run
from phi3tui.core.runs.grpo import GrpoTask
from phi3tui.core.runs.preference import PreferenceTask
from phi3tui.core.workspace import Workspace
from phi3tui.widgets.loss_plot import LossPlot
from tests.conftest import REPO
from tests.test_train_screen import wait_for

# A new training mode, as a contributor would add it: this module, whose last line registers it.
TOY_MODE = textwrap.dedent('''
    from phi3tui.core.runs.tasks import SftTask
    from phi3tui.core.train_modes import TRAIN_MODES


    class ToyTask(SftTask):
        """SFT that also records how many train reports it made."""

        plotted = {"toy_reports": "reports"}
        plotted_title = "toy counts"

        def __init__(self, args, tokenizer):
            super().__init__(args, tokenizer)
            self.reports = 0

        def train_metrics(self, model):
            self.reports += 1
            return {"toy_reports": float(self.reports)}


    TRAIN_MODES["toy"] = "toy_mode:ToyTask"
''')


class Toy(tasks.SftTask):
    plotted = {"toy_reports": "reports"}
    plotted_title = "toy counts"


def test_the_table_picks_each_mode_and_names_an_unknown_one(monkeypatch):
    assert tasks.task_class("sft") is tasks.SftTask and tasks.task_class(None) is tasks.SftTask
    assert tasks.task_class("dpo") is PreferenceTask and tasks.task_class("orpo") is PreferenceTask
    assert tasks.task_class("grpo") is GrpoTask and tasks.plotted_series("grpo") == ({"reward_mean": "reward", "kl": "KL"}, "rewards")
    with pytest.raises(ValueError, match="'toy'.*sft, dpo, orpo, grpo"):
        tasks.task_class("toy")
    assert tasks.plotted_metrics("dpo") == ("reward_margin", "chosen_reward", "rejected_reward", "accuracy")
    assert tasks.plotted_metrics("sft") == () and tasks.plotted_metrics("toy") == ()

    monkeypatch.setitem(TRAIN_MODES, "toy", f"{__name__}:Toy")
    assert tasks.task_class("toy") is Toy and tasks.plotted_series("toy") == ({"toy_reports": "reports"}, "toy counts")


def test_config_reads_the_same_table_of_modes(monkeypatch):
    """The one line that registers a mode is all the Config form's choices and the config check need."""
    spec = next(s for s in config_fields() if s.key == "train_mode")
    assert spec.choices == ("sft", "dpo", "orpo", "grpo")
    with pytest.raises(ValueError, match="'toy'"):
        preference_settings({"train_mode": "toy"})
    monkeypatch.setitem(TRAIN_MODES, "toy", f"{__name__}:Toy")
    assert preference_settings({"train_mode": "toy"})["train_mode"] == "toy"
    assert next(s for s in config_fields() if s.key == "train_mode").choices == ("sft", "dpo", "orpo", "grpo", "toy")


async def test_a_registered_toy_mode_trains_through_the_runner_and_the_train_screen_plots_its_metric(
        demo_workspace, tmp_path, monkeypatch):
    (tmp_path / "toy_mode.py").write_text(TOY_MODE)
    run_dir = create_run(Workspace.open(demo_workspace), overrides=dict(iters=10, steps_per_report=5, steps_per_eval=5,
                                                                        save_every=10, val_batches=2))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    (run_dir / "config.yaml").write_text(yaml.safe_dump(dict(config, train_mode="toy"), sort_keys=False))
    # The runner's own entry point, in a process where the toy module has registered its mode.
    start = "import sys, toy_mode; from phi3tui.core.runs.runner import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    with open(run_dir / "log.txt", "ab") as log:
        proc = subprocess.run([sys.executable, "-c", start, str(run_dir)], stdout=log, stderr=subprocess.STDOUT,
                              env=env, timeout=300)
    info = runs.wait_for_run(run_dir, timeout=60)
    assert proc.returncode == 0 and info["state"] == "finished", (info, (run_dir / "log.txt").read_text()[-2000:])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [(r["iteration"], r["toy_reports"]) for r in train] == [(5, 1.0), (10, 2.0)]
    assert any(r["kind"] == "val" for r in records)

    # The app's process, where the same module registered the mode: the Train screen plots the toy's series
    # (w), named as its task names it; neither the store nor the screen knows the mode.
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(TRAIN_MODES, "toy", "toy_mode:ToyTask")
    app = Phi3App(Workspace.open(demo_workspace), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.run_dir == run_dir)
        plot = app.screen.query_one(LossPlot)
        await wait_for(pilot, lambda: [c.label for c in plot.curves] == ["train", "val"])
        assert plot.title.endswith("(w: toy counts)")
        await pilot.press("w")
        await wait_for(pilot, lambda: [c.label for c in plot.curves] == ["reports"])
        assert plot.curves[0].xs == [5, 10] and plot.curves[0].ys == [1.0, 2.0]  # training's: no val records of it
        assert "toy counts (w: loss)" in plot.title


def test_an_unknown_mode_fails_the_run_naming_it(demo_workspace):
    run_dir = create_run(Workspace.open(demo_workspace), overrides=dict(iters=2, steps_per_report=1, save_every=2))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    (run_dir / "config.yaml").write_text(yaml.safe_dump(dict(config, train_mode="nope"), sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "phi3tui.core.runs.runner", str(run_dir)], capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    info = runs.wait_for_run(run_dir, timeout=60)
    assert proc.returncode == 1 and info["state"] == "failed", info
    assert "train_mode 'nope' names no training mode" in info["error"]
