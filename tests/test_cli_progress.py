"""The CLI's long commands say what they are doing while they do it (on stderr), and stdout keeps only the results."""

from __future__ import annotations

import io
import json
import re
import shutil

import pytest

from tests.conftest import run_cli

RUN = "20260101-0000-r1"
MC = {"question": "Are bats blind?", "correct": ["No. All bats can see."], "incorrect": ["Yes. Bats are blind."]}


@pytest.fixture
def trained(trained_r1_template, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(trained_r1_template, ws)
    (ws / "mc.jsonl").write_text(json.dumps(MC) + "\n" + json.dumps(MC) + "\n")
    return ws


def test_eval_prints_each_phase_with_its_count_on_stderr_and_pure_json_on_stdout(trained):
    done = run_cli("eval", str(trained), "--run", RUN, "--mc", str(trained / "mc.jsonl"), "--limit", "2",
                   "--max-tokens", "4", "--json")
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)  # nothing but the JSON object
    lines = done.stderr.splitlines()
    # Into a pipe: each phase's start and end, in the order they run (not only on a terminal, as before).
    for phase, total in (("loading the model", 1), ("test loss", 1), ("multiple choice", 2), ("answers", 2)):
        assert f"{phase}: 0/{total}" in lines, done.stderr
        assert f"{phase}: {total}/{total}" in lines, done.stderr
    assert lines.index("loading the model: 0/1") < lines.index("test loss: 0/1") < lines.index("answers: 2/2")
    assert any(line.startswith("left: base · right: ") for line in lines)


def test_export_all_prints_each_step_as_it_starts_and_ends(trained):
    done = run_cli("export", "all", "-w", str(trained), "--name", "p", "--no-verify")
    assert done.returncode == 0, done.stderr
    starts = re.findall(r"^\[(\d)/(\d)\] ([\w-]+): started$", done.stderr, re.M)
    ends = re.findall(r"^\[(\d)/(\d)\] ([\w-]+): done in \d+\.\d s$", done.stderr, re.M)
    assert [s[2] for s in starts] == [e[2] for e in ends] and len(starts) >= 3, done.stderr
    assert [s[2] for s in starts][:2] == ["fuse", "gguf"] and starts[-1][2] == "ollama"
    assert {s[1] for s in starts} == {str(len(starts))}
    # Each step's start comes before its progress and its end; the outcome lines stay on stdout.
    assert done.stderr.index("fuse: started") < done.stderr.index("fuse: done") < done.stderr.index("gguf: started")
    assert "started" not in done.stdout and "Modelfile" in done.stdout


def test_a_terminal_line_is_redrawn_and_closed_before_a_line_of_its_own():
    from phi3tui.commands.progress import ProgressLine

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    line = ProgressLine(out)
    line("answers", 0, 3)
    line.say("left: base · right: run x")
    line("answers", 3, 3)
    text = out.getvalue()
    assert text.startswith("\ranswers: 0/3") and "\nleft: base · right: run x\n" in text
    assert text.endswith("answers: 3/3".ljust(100) + "\n")
    line("multiple choice", 1, 4)
    line.close()  # a job stopped half way: what follows starts on its own line
    assert out.getvalue().endswith("multiple choice: 1/4".ljust(100) + "\n")
