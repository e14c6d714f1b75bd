"""Keep-awake said honestly (issue 23): on a MacBook, what caffeinate cannot hold (the lid closed on battery, a low
battery) is read from `pmset -g batt` and `ioreg` and said on the Train screen and in `i` / `runs status`; the
app's long jobs (export, verify, eval, batch compare) hold the same assertion as a run while they run. The Mac's
tools are faked by executable scripts the code is pointed at; the Linux holder by a fake systemd-inhibit on PATH."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from phi3tui.core import runs
from phi3tui.core.run_folder import read_run_json
from phi3tui.core.awake import awake_limits, kept_awake, read_mac_power, watch_power
from phi3tui.core.workspace import Workspace
from tests.test_runner import wait_until

ON_BATTERY = ("Now drawing from 'Battery Power'\n"
              " -InternalBattery-0 (id=4653155)\t85%; discharging; 5:32 remaining present: true\n")
LOW = ("Now drawing from 'Battery Power'\n"
       " -InternalBattery-0 (id=4653155)\t12%; discharging; 0:41 remaining present: true\n")
ON_POWER = ("Now drawing from 'AC Power'\n"
            " -InternalBattery-0 (id=4653155)\t100%; charged; 0:00 remaining present: true\n")
DESKTOP = "Now drawing from 'AC Power'\n"
LID = '  | {{\n  |   "AppleClamshellCausesSleep" = Yes\n  |   "AppleClamshellState" = {}\n'


def fake_tool(folder: Path, name: str, output: str) -> tuple[str, Path]:
    """An executable that prints the text kept in NAME.out (rewritten to change what it reports)."""
    text = folder / f"{name}.out"
    text.write_text(output)
    tool = folder / name
    tool.write_text(f"#!/bin/sh\ncat '{text}'\n")
    tool.chmod(0o755)
    return str(tool), text


@pytest.fixture
def mac_tools(tmp_path):
    pmset, batt = fake_tool(tmp_path, "pmset", ON_BATTERY)
    ioreg, lid = fake_tool(tmp_path, "ioreg", LID.format("No"))
    return pmset, ioreg, batt, lid


@pytest.mark.parametrize("batt, closed, risk, says", [
    (ON_BATTERY, "No", "on battery", "closing the lid sleeps this MacBook whatever caffeinate holds"),
    (ON_BATTERY, "Yes", "lid closed on battery", "a closed MacBook without power sleeps whatever caffeinate holds"),
    (LOW, "No", "battery low", "the battery is at 12% and discharging"),
    (ON_POWER, "No", "", "closing the lid sleeps this MacBook unless it has power and an external display"),
])
def test_what_caffeinate_cannot_hold_is_read_from_pmset_and_ioreg(mac_tools, batt, closed, risk, says):
    pmset, ioreg, batt_file, lid_file = mac_tools
    batt_file.write_text(batt)
    lid_file.write_text(LID.format(closed))
    power = read_mac_power(pmset, ioreg)
    assert power.battery and power.lid_closed is (closed == "Yes")
    found_risk, limits = awake_limits(power)
    assert found_risk == risk and any(says in line for line in limits), limits


def test_a_desktop_mac_and_no_pmset_say_nothing(mac_tools, tmp_path):
    pmset, ioreg, batt_file, _ = mac_tools
    batt_file.write_text(DESKTOP)
    power = read_mac_power(pmset, ioreg)
    assert power is not None and not power.battery and awake_limits(power) == ("", [])
    assert read_mac_power(str(tmp_path / "no-such-pmset"), ioreg) is None and awake_limits(None) == ("", [])


def test_the_runners_power_watch_keeps_run_json_current(demo_workspace, mac_tools):
    from phi3tui.core.runs.launcher import create_run

    pmset, ioreg, batt_file, lid_file = mac_tools
    run_dir = create_run(Workspace.open(demo_workspace), overrides={"iters": 2})
    stop = threading.Event()
    watch = threading.Thread(target=watch_power, args=(run_dir, stop, 0.05, pmset, ioreg))
    watch.start()
    try:
        wait_until(lambda: read_run_json(run_dir).get("awake_risk") == "on battery", timeout=30, what="on battery")
        lid_file.write_text(LID.format("Yes"))  # the lid closes
        wait_until(lambda: read_run_json(run_dir).get("awake_risk") == "lid closed on battery", timeout=30,
                   what="the lid closed")
        batt_file.write_text(ON_POWER)  # power plugged in, lid open again
        lid_file.write_text(LID.format("No"))
        wait_until(lambda: read_run_json(run_dir).get("awake_risk") is None, timeout=30, what="on power")
    finally:
        stop.set()
        watch.join(10)
    assert not watch.is_alive()
    assert read_run_json(run_dir)["awake_limits"] == [
        "closing the lid sleeps this MacBook unless it has power and an external display"]


def test_the_train_screens_word_and_run_details_say_the_limit():
    info = {"id": "r1", "state": "running", "awake": "caffeinate -i -w 42 (idle sleep prevented)",
            "awake_risk": "lid closed on battery", "awake_limits": ["the lid is closed on battery power: …"]}
    assert runs.awake_word(info) == "kept awake, but lid closed on battery (i)"
    assert ("awake limit", "the lid is closed on battery power: …") in runs.run_details(info)
    assert runs.awake_word(dict(info, awake_risk=None)) == "kept awake"
    assert runs.awake_word(dict(info, awake="nothing: systemd-inhibit is not installed")) == "not kept awake (i)"
    assert runs.awake_word(dict(info, state="finished")) is None
    assert runs.awake_word(dict(info, awake="nothing: keep_awake is off")) is None


@pytest.fixture
def fake_inhibit(tmp_path, monkeypatch):
    """A systemd-inhibit first on PATH that logs its start and its end (TERM), and holds until ended."""
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "inhibit.log"
    tool = folder / "systemd-inhibit"
    tool.write_text(f"#!/bin/sh\necho \"started $*\" >> '{log}'\ntrap 'echo ended >> \"{log}\"; exit 0' TERM\n"
                    "while :; do sleep 0.05; done\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{__import__('os').environ['PATH']}")
    return log


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_kept_awake_holds_for_the_job_and_ends_with_it(fake_inhibit, config_dir):
    with kept_awake("a phi3tui export", platform="linux") as how:
        assert how.startswith("systemd-inhibit --what=sleep:idle")
        wait_until(lambda: log_lines(fake_inhibit), timeout=30, what="the holder to start")
        assert "--why=a phi3tui export" in log_lines(fake_inhibit)[0] and "ended" not in log_lines(fake_inhibit)
    assert log_lines(fake_inhibit)[-1] == "ended"  # ended (and waited for) as the job ended
    (config_dir / "settings.yaml").write_text("keep_awake: off\n")
    with kept_awake("a phi3tui export", platform="linux") as how:
        assert "keep_awake is off" in how
    assert len(log_lines(fake_inhibit)) == 2  # the setting says off: nothing started


def test_the_model_worker_holds_it_for_long_jobs_only(fake_inhibit, config_dir):
    from phi3tui.core.chat.session import ModelWorker

    worker = ModelWorker()
    seen, done = [], threading.Event()

    def chat_turn(_worker):
        seen.append(list(log_lines(fake_inhibit)))
        done.set()

    def evaluation(_worker):
        wait_until(lambda: log_lines(fake_inhibit), timeout=30, what="the holder to start")
        seen.append(list(log_lines(fake_inhibit)))
        done.set()

    try:
        worker.submit(chat_turn)
        assert done.wait(30) and seen == [[]]  # a short job takes no assertion
        done.clear()
        worker.submit(evaluation, keep_awake="a phi3tui evaluation")
        assert done.wait(30) and "--why=a phi3tui evaluation" in seen[1][0] and "ended" not in seen[1]
        wait_until(lambda: log_lines(fake_inhibit)[-1:] == ["ended"], timeout=30, what="the holder to end")
    finally:
        worker.close()


def test_the_real_holder_here(config_dir):
    import shutil

    if not shutil.which("systemd-inhibit"):
        pytest.skip("systemd-inhibit is not installed here: no real holder to try")
    with kept_awake("a phi3tui test", platform="linux") as how:
        if how.startswith("nothing"):
            assert "systemd-inhibit refused" in how  # said, not hidden (here: no system bus / logind)
            pytest.skip(f"this machine cannot hold a real inhibitor: {how}")
        assert how.startswith("systemd-inhibit --what=sleep:idle")
