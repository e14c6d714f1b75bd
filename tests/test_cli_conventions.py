"""One CLI convention (issue 24): -w/--workspace everywhere (the documented positionals kept as aliases), a typo
of a command gets a suggestion, an error names the command that failed, `demo --help` lists the steps
`demo --headless` runs."""

from __future__ import annotations

import pytest

from phi3tui.cli import plan
from phi3tui.core.pipeline import STEPS
from tests.conftest import run_cli


@pytest.mark.parametrize("command", [["eval"], ["chat", "compare"], ["demo"], ["train"], ["runs", "list"], ["export", "all"]])
def test_every_workspace_command_takes_w(command):
    for flag in ("-w", "--workspace"):
        _, args, _ = plan([*command, flag, "WS"])
        assert args.workspace == "WS", (command, flag)


@pytest.mark.parametrize("command", [["eval"], ["chat", "compare"], ["demo"]])
def test_the_documented_positional_is_an_alias(command):
    _, args, _ = plan([*command, "WS"])
    assert args.workspace == "WS"


def test_the_app_takes_w_too():
    assert plan(["-w", "WS"])[2] == "WS" and plan(["--screen", "chat", "--workspace", "WS"])[2] == "WS"
    assert plan(["WS"])[2] == "WS"


def test_config_check_takes_w():
    _, args, _ = plan(["config", "check", "lora_config.yaml", "-w", "WS"])
    assert args.workspace == "WS"


def test_a_typo_of_a_command_gets_a_suggestion(tmp_path):
    done = run_cli("trian", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown command 'trian' — did you mean train?" in done.stderr and "does not exist" not in done.stderr
    (tmp_path / "trian").mkdir()  # a folder of that name is a workspace to open, not a typo
    assert "did you mean" not in run_cli("trian", cwd=tmp_path, timeout=60).stderr


def test_train_outside_a_workspace_names_train(tmp_path):
    done = run_cli("train", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("phi3tui train: "), done.stderr


def test_demo_help_lists_every_step():
    done = run_cli("demo", "--help")
    text = " ".join(done.stdout.split())
    assert f"in {len(STEPS)} steps" in text
    for number, (title, _owner, _needs) in enumerate(STEPS, 1):
        assert f"{number}. {title}" in text


def test_the_readme_quick_start_shows_the_demos_steps():
    import re

    from tests.conftest import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    shown = re.findall(r"^\[(\d+)/(\d+)\] (.+?): ok", text, flags=re.M)
    assert [(int(n), int(of), title) for n, of, title in shown] == [
        (number, len(STEPS), title) for number, (title, _o, _n) in enumerate(STEPS, 1)
    ]
    assert f"{len(STEPS)}/{len(STEPS)} steps succeeded" in text
