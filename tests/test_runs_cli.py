"""`phi3tui train` and `phi3tui runs ...` as a user types them, on the demo model."""

from __future__ import annotations

from phi3tui.core import runs
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli


def test_train_attach_status_config_delete(demo_workspace):
    ws = str(demo_workspace)
    started = run_cli("train", "--iters", "6", "-w", ws, "--attach")
    assert started.returncode == 0, started.stderr
    out = started.stdout
    assert "started run" in out and "val loss" in out and "train loss" in out and "finished" in out
    (run_dir,) = runs.run_dirs(Workspace.open(demo_workspace))

    status = run_cli("runs", "status", "--oneline", "-w", ws)
    assert status.returncode == 0 and status.stdout.count("\n") == 1
    assert run_dir.name in status.stdout and "finished 6/6" in status.stdout

    # Attaching late replays the whole history, then reports the end.
    attached = run_cli("runs", "attach", "latest", "-w", ws)
    assert attached.returncode == 0
    history = [line for line in out.splitlines() if line.startswith("iter")]
    assert [line for line in attached.stdout.splitlines() if line.startswith("iter")] == history

    config = run_cli("runs", "config", run_dir.name, "-w", ws)
    assert "iters: 6" in config.stdout and f"adapter_path: runs/{run_dir.name}/adapters" in config.stdout

    # Nothing to stop; deleting asks first (no terminal here: refused), --yes deletes.
    assert run_cli("runs", "stop", run_dir.name, "-w", ws).returncode == 1
    refused = run_cli("runs", "delete", run_dir.name, "-w", ws)
    assert refused.returncode == 2 and run_dir.exists()
    assert run_cli("runs", "delete", run_dir.name, "--yes", "-w", ws).returncode == 0
    assert not run_dir.exists()


def test_bad_config_is_refused_and_nothing_is_written(demo_workspace):
    bad = demo_workspace / "bad.yaml"
    bad.write_text("model: model\niters: [10\n")
    result = run_cli("train", "--config", str(bad), "-w", str(demo_workspace))
    assert result.returncode == 2
    assert "bad.yaml:" in result.stderr and "YAML" in result.stderr
    assert not (demo_workspace / "runs").exists() or not any((demo_workspace / "runs").iterdir())
    # A config the checks reject (more layers than the model has) is refused with the finding.
    config = (demo_workspace / "lora_config.yaml").read_text()
    too_deep = demo_workspace / "deep.yaml"
    too_deep.write_text(config.replace("num_layers: -1", "num_layers: 99"))
    refused = run_cli("train", "-c", str(too_deep), "-w", str(demo_workspace))
    assert refused.returncode == 2 and "num_layers" in refused.stderr and "deep.yaml" in refused.stderr
    assert not (demo_workspace / "runs").exists() or not any((demo_workspace / "runs").iterdir())
    unknown = run_cli("runs", "attach", "nope", "-w", str(demo_workspace))
    assert unknown.returncode == 2 and "no run 'nope'" in unknown.stderr


def test_a_cut_short_run_json_is_listed_as_unreadable(demo_workspace):
    ws = str(demo_workspace)
    assert run_cli("train", "--iters", "2", "-w", ws, "--attach").returncode == 0
    (run_dir,) = runs.run_dirs(Workspace.open(demo_workspace))
    run_json = run_dir / "run.json"
    whole = run_json.read_bytes()
    run_json.write_bytes(whole[: len(whole) // 2])  # what a full disk leaves behind

    listed = run_cli("runs", "list", "-w", ws)
    assert listed.returncode == 0, listed.stderr
    row, reason = listed.stdout.splitlines()[1:3]
    assert row.split()[:2] == [run_dir.name, "unreadable"]
    assert "d ago" not in listed.stdout and "0/0" not in listed.stdout  # no age from 1970, no made-up progress
    assert "run.json is cut short or not JSON" in reason and str(run_dir) in reason
    status = run_cli("runs", "status", "--oneline", "-w", ws)
    assert status.stdout.strip() == f"run {run_dir.name} unreadable (`phi3tui runs list` says why)"
    summary = runs.summarize(run_dir)
    assert summary.state == "unreadable" and summary.age_text() == "-"
    assert run_json.read_bytes() == whole[: len(whole) // 2]  # reading it changed nothing
