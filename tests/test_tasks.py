"""Training modes (core/runs/tasks.py): one table keyed by train_mode, and a new mode is one module plus one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from phi3tui.core import runs
from phi3tui.core.runs import tasks
from phi3tui.core.runs.launcher import create_run
from phi3tui.core.runs.preference import PreferenceTask
from phi3tui.core.workspace import Workspace
from tests.conftest import REPO

# A new training mode, as a contributor would add it: this module, whose last line registers it.
TOY_MODE = textwrap.dedent('''
    from phi3tui.core.runs.tasks import TASKS, SftTask


    class ToyTask(SftTask):
        """SFT that also records how many train reports it made."""

        plotted = ("toy_reports",)

        def __init__(self, args, tokenizer):
            super().__init__(args, tokenizer)
            self.reports = 0

        def train_metrics(self, model):
            self.reports += 1
            return {"toy_reports": float(self.reports)}


    TASKS["toy"] = ToyTask
''')


def test_the_table_picks_each_mode_and_names_an_unknown_one(monkeypatch):
    assert tasks.task_class("sft") is tasks.SftTask and tasks.task_class(None) is tasks.SftTask
    assert tasks.task_class("dpo") is PreferenceTask and tasks.task_class("orpo") is PreferenceTask
    with pytest.raises(ValueError, match="'toy'.*sft, dpo, orpo"):
        tasks.task_class("toy")
    assert tasks.plotted_metrics("dpo") == ("reward_margin", "chosen_reward", "rejected_reward", "accuracy")
    assert tasks.plotted_metrics("sft") == () and tasks.plotted_metrics("toy") == ()

    class Toy(tasks.SftTask):
        plotted = ("toy_reports",)

    monkeypatch.setitem(tasks.TASKS, "toy", Toy)
    assert tasks.task_class("toy") is Toy and tasks.plotted_metrics("toy") == ("toy_reports",)


def test_a_registered_toy_mode_trains_through_the_runner_and_records_its_metric(demo_workspace, tmp_path):
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


def test_an_unknown_mode_fails_the_run_naming_it(demo_workspace):
    run_dir = create_run(Workspace.open(demo_workspace), overrides=dict(iters=2, steps_per_report=1, save_every=2))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    (run_dir / "config.yaml").write_text(yaml.safe_dump(dict(config, train_mode="nope"), sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "phi3tui.core.runs.runner", str(run_dir)], capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    info = runs.wait_for_run(run_dir, timeout=60)
    assert proc.returncode == 1 and info["state"] == "failed", info
    assert "train_mode 'nope' names no training mode" in info["error"]
