"""A resumed run's log on the run's own numbering (issue 24): log.txt shows the rows an uninterrupted run of the
same config shows (the config's report points, numbered by the run, not from 1 again), the checkpoint lines
after their iteration's row, the bar ending at the run's iterations; a stop has one iteration number in the
header's progress, the log and the checkpoint table. Real tiny runs on the demo model."""

from __future__ import annotations

import re
from pathlib import Path

from phi3tui.core import runs
from phi3tui.core.run_folder import read_run_json
from phi3tui.core.workspace import Workspace
from tests.test_runner import QUICK, straight_and_stopped_runs

ROW = re.compile(r"^\s+(\d+)\s+\d+\.\d+ [▼▲]")
SAVED = re.compile(r"saved checkpoint at iteration (\d+)")
BAR = re.compile(r"\b(\d+)/(\d+)\s*$")
STYLE = re.compile(r"\x1b\[[0-9;]*m")  # mlx-lm's console styles its rows


def log_events(run_dir: Path) -> list[tuple[str, int]]:
    """('row', it) for each table row, ('saved', it) for each checkpoint line, ('bar', done/total) for each
    progress bar as printed, in log order."""
    events = []
    for line in (run_dir / "log.txt").read_text(encoding="utf-8").splitlines():
        line = STYLE.sub("", line)
        if match := ROW.match(line):
            events.append(("row", int(match.group(1))))
        elif match := SAVED.search(line):
            events.append(("saved", int(match.group(1))))
        elif line.lstrip().startswith("train") and (match := BAR.search(line)):
            events.append(("bar", f"{match.group(1)}/{match.group(2)}"))
    return events


def test_a_resumed_runs_log_numbers_like_an_uninterrupted_one(demo_workspace):
    ws = Workspace.open(demo_workspace)
    straight, stopped, at = straight_and_stopped_runs(ws, QUICK)
    # The stop: one number in run.json (the header's progress), the log and the checkpoint table.
    assert read_run_json(stopped)["iteration"] == at
    assert runs.summarize(stopped).iteration == at
    assert at in [row[0] for row in runs.checkpoint_table(stopped)]
    first = log_events(stopped)
    assert ("saved", at) in first and [e for e in first if e[0] == "bar"] == [("bar", f"{at}/20")], first

    assert runs.resume_run(stopped) == at
    assert runs.wait_for_run(stopped, timeout=120)["state"] == "finished"
    assert runs.wait_for_run(straight, timeout=120)["state"] == "finished"
    whole, resumed = log_events(straight), log_events(stopped)
    rows = [it for kind, it in whole if kind == "row"]
    assert rows == [5, 10, 15, 20]
    assert [it for kind, it in resumed if kind == "row"] == rows, resumed
    assert [e for e in whole if e[0] == "bar"] == [("bar", "20/20")]
    assert [e for e in resumed if e[0] == "bar"] == [("bar", f"{at}/20"), ("bar", "20/20")]
    # Each checkpoint line follows the row of its iteration (or the last row before it, for the stop).
    for log in (whole, resumed):
        for index, (kind, it) in enumerate(log):
            if kind == "saved":
                before = [i for k, i in log[:index] if k == "row"]
                assert before and before[-1] == max(i for i in before if i <= it), log
                assert before[-1] <= it < before[-1] + QUICK["steps_per_report"], log
