"""Security: no remote code unless asked, no pickles, no open ports (serve: 127.0.0.1 only), names that
stay inside their folder, and no Hugging Face token written anywhere."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from phi3tui.core import runs
from phi3tui.core.workspace import Workspace
from tests.conftest import REPO, run_cli
from tests.reliability.test_faults import Tmux, _runner_pid, _wait

SECRET = "hf_reliabilitySecretToken0123456789"


def _inet_connections(pid: int) -> list:
    import psutil

    found = []
    proc = psutil.Process(pid)
    for p in [proc, *proc.children(recursive=True)]:
        try:
            found += p.net_connections(kind="inet")
        except psutil.Error:
            continue
    return found


def test_trust_remote_code_off_unless_turned_on(bad_workspace):
    from phi3tui.core.workspace import load_config_values
    from phi3tui.core.config import build_args

    config = bad_workspace / "lora_config.yaml"
    assert build_args(load_config_values(config)).trust_remote_code is False
    result = run_cli("config", "check", str(config))
    assert "warning: trust_remote_code" not in result.stdout + result.stderr
    config.write_text(config.read_text() + "trust_remote_code: true\n")
    result = run_cli("config", "check", str(config))
    output = result.stdout + result.stderr
    assert "warning: trust_remote_code: is on: loading the model runs Python code" in output, output


def test_no_port_opened_by_runner_or_app(bad_workspace):
    tmux = Tmux()
    try:
        run_dir = runs.start_run(Workspace.open(bad_workspace), overrides={"iters": 400, "steps_per_eval": 1000})
        runner = _runner_pid(run_dir)
        command = f"cd {REPO} && exec {sys.executable} -m phi3tui {bad_workspace} --screen train"
        tmux("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)
        _wait(lambda: "Train" in tmux.screen(), 60, "the app's Train screen")
        app = int(tmux("display-message", "-p", "-t", "app", "#{pane_pid}").strip())
        # Sampled over and over while both do their work, until the app has drawn the run 10 iterations on:
        # the runner has trained, reported and been read; the app has polled, drawn and painted (not "1 s later").
        opened = {"runner": [], "app": []}

        def sampled_until_the_app_shows_progress():
            opened["runner"] += _inet_connections(runner)
            opened["app"] += _inet_connections(app)
            shown = [int(n) for n in re.findall(r"(\d+)/400", tmux.screen())]
            return shown and max(shown) >= 10

        _wait(sampled_until_the_app_shows_progress, 120, "the app to show the run 10 iterations on")
        assert opened["runner"] == [], "the runner opened a network socket"
        assert opened["app"] == [], "the app opened a network socket"
    finally:
        tmux.close()
        runs.stop_run(run_dir)
        runs.wait_for_run(run_dir, timeout=60)


def test_serve_listens_on_loopback_only(bad_workspace):
    pytest.importorskip("textual_serve", reason="textual-serve is not installed (the `serve` command needs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "phi3tui", "serve", str(bad_workspace), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        listening = _wait(lambda: [c for c in _inet_connections(proc.pid) if c.status == "LISTEN"], 30, "serve to listen")
        addresses = {c.laddr.ip for c in listening}
        assert addresses <= {"127.0.0.1", "::1"}, addresses
        assert any(c.laddr.port == port for c in listening)
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


@pytest.mark.parametrize("name", ["../../outside", "/etc/evil", "a b/../../c", "..", "UPPER:tag!"])
def test_export_names_stay_inside_and_suit_ollama(trained_workspace, name):
    from phi3tui.core.export.job import ExportJob
    from phi3tui.core.export.ollama import check_model_name

    job = ExportJob.create(trained_workspace, name=name)
    exports = (trained_workspace / "exports").resolve()
    assert job.out_dir.resolve().parent == exports, job.out_dir
    check_model_name(job.name)  # the name `ollama create` is given passes the rule write_modelfile applies
    for path in (job.gguf_path, job.lora_path, job.base_gguf_path):
        assert path.resolve().parent == job.out_dir.resolve(), path


def test_hf_token_never_written(bad_workspace):
    result = run_cli("train", "-w", str(bad_workspace), "--iters", "6", "--attach", env={"HF_TOKEN": SECRET}, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = next(iter(runs.run_dirs(Workspace.open(bad_workspace))))
    assert runs.run_info(run_dir)["state"] == "finished"
    leaks = [str(p) for p in bad_workspace.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == [], f"the token was written to {leaks}"
    assert SECRET not in result.stdout + result.stderr
