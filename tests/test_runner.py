"""The detached runner on the demo model: same losses as mlx-lm, stop/resume, kill -9, divergence, failures, two ranks."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phi3tui.core import runs
from phi3tui.core.adapters import checkpoint_names
from phi3tui.core.run_folder import read_run_json
from phi3tui.core.workspace import Workspace
from tests.conftest import REPO

QUICK = dict(iters=20, steps_per_report=5, steps_per_eval=5, save_every=10, val_batches=4)


def curve(run_dir: Path, kind: str) -> list[tuple[int, float]]:
    m = runs.read_metrics(run_dir)
    return list(zip(m.val_x, m.val_y)) if kind == "val" else list(zip(m.train_x, m.train_y))


def learning_rates(run_dir: Path) -> dict[int, float]:
    lines = (json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines())
    return {r["iteration"]: r["lr"] for r in lines if r["kind"] == "train"}


def wait_until(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def straight_and_stopped_runs(ws, overrides: dict) -> tuple[Path, Path, int]:
    """Two runs of one config; the second stopped after its first checkpoint (at 10 of 20 iterations).
    Returns (straight run, stopped run, the iteration it stopped at)."""
    straight = runs.start_run(ws, overrides=overrides)
    stopped = runs.start_run(ws, overrides=overrides)
    wait_until(lambda: (read_run_json(stopped).get("last_checkpoint") or 0) >= 10, what="first checkpoint")
    runs.stop_run(stopped)
    info = runs.wait_for_run(stopped, timeout=120)
    assert info["state"] == "stopped", info
    at = int(info["reason"].rsplit(" ", 1)[-1])
    assert 10 <= at < 20
    return straight, stopped, at


def test_same_losses_as_mlx_lm_and_run_folder_layout(demo_workspace, tmp_path):
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(QUICK, test=True, test_batches=4))
    ref_out = tmp_path / "ref.json"
    ref = subprocess.run(
        [sys.executable, "-m", "bench.run_reference", str(run_dir / "config.yaml"), str(tmp_path / "ref-adapters"), str(ref_out)],
        cwd=demo_workspace, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert ref.returncode == 0, ref.stderr[-2000:]
    info = runs.wait_for_run(run_dir, timeout=300)
    assert info["state"] == "finished", info
    # The run folder of DESIGN.md, with mlx-lm's adapter file names.
    for name in ("config.yaml", "run.json", "metrics.jsonl", "log.txt"):
        assert (run_dir / name).is_file(), name
    adapters = run_dir / "adapters"
    for name in ("adapter_config.json", "adapters.safetensors", "0000010_adapters.safetensors", "0000020_adapters.safetensors"):
        assert (adapters / name).is_file(), name

    expected = json.loads(ref_out.read_text())
    for kind in ("val", "train"):
        ours = curve(run_dir, kind)
        theirs = [(r["iteration"], r["loss"]) for r in expected if r["kind"] == kind]
        assert [it for it, _ in ours] == [it for it, _ in theirs], kind
        for (_, a), (_, b) in zip(ours, theirs):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), kind
    # Every train report carries the figures the screen shows; the test set was evaluated.
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if r["kind"] == "train"]
    assert all({"lr", "it_per_s", "tokens_per_s", "trained_tokens", "peak_mem", "time"} <= r.keys() for r in train)
    test = [r for r in lines if r["kind"] == "test"]
    assert len(test) == 1 and test[0]["ppl"] == pytest.approx(math.exp(test[0]["loss"]))
    assert info["test_loss"] == pytest.approx(test[0]["loss"])


def test_stop_then_resume_continues_curve_and_optimizer(demo_workspace):
    import mlx.core as mx
    from mlx_lm import load

    ws = Workspace.open(demo_workspace)
    # A warm-up + cosine schedule: its value depends on the optimizer's step, which a resume must restore.
    schedule = dict(QUICK, lr_schedule={"name": "cosine_decay", "arguments": [1e-3, 20], "warmup": 3})
    straight, stopped, at = straight_and_stopped_runs(ws, schedule)
    # The stop left an adapter that mlx-lm loads, and the optimizer state (step = iterations done) beside it.
    model, _ = load(str(demo_workspace / "model"), adapter_path=str(stopped / "adapters"))
    assert any("lora_a" in k for k, _ in __import__("mlx.utils").utils.tree_flatten(model.parameters()))
    opt = mx.load(str(stopped / "adapters" / f"{at:07d}_optimizer.safetensors"))
    assert int(opt["step"].item()) == at

    assert runs.resume_run(stopped) == at
    assert runs.wait_for_run(stopped, timeout=120)["state"] == "finished"
    assert runs.wait_for_run(straight, timeout=120)["state"] == "finished"
    # Validation is exactly that of the uninterrupted run: weights, optimizer state, step (hence the
    # LR schedule), random state and data order were all restored.
    assert curve(stopped, "val") == pytest.approx(curve(straight, "val"))
    lr_at, resumed_lr = learning_rates(straight), learning_rates(stopped)
    assert resumed_lr[20] == pytest.approx(lr_at[20]) and lr_at[20] < lr_at[5]
    train_its = [it for it, _ in curve(stopped, "train")]
    assert train_its == sorted(set(train_its)) and train_its[-1] == 20
    assert any(it > at for it in train_its) and all(it <= 20 for it in train_its)
    final = read_run_json(stopped)
    assert final["iteration"] == 20 and final["resumes"][0]["from"] == at

    # Promote: adapters.safetensors becomes the checkpoint whose nearest validation loss is lowest.
    table = runs.checkpoint_table(stopped)
    best_it, best_path, _ = min(table, key=lambda row: row[2])
    assert runs.promote_best(stopped)[0] == best_it
    assert (stopped / "adapters" / "adapters.safetensors").read_bytes() == best_path.read_bytes()


def test_kill_9_is_reported_failed_and_resumes(demo_workspace):
    from tests.conftest import run_cli

    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(QUICK, iters=400, save_every=5))
    wait_until(lambda: (read_run_json(run_dir).get("last_checkpoint") or 0) >= 5, what="a checkpoint")
    pid = read_run_json(run_dir)["runner_pid"]
    os.kill(pid, signal.SIGKILL)  # dies without a word: no final state written
    wait_until(lambda: runs.run_info(run_dir)["state"] == "failed", timeout=30, what="failed state")
    info = read_run_json(run_dir)
    assert "without recording a result" in info["reason"]
    listed = run_cli("runs", "list", "-w", str(demo_workspace))
    assert listed.returncode == 0 and f"{run_dir.name}" in listed.stdout and "failed" in listed.stdout

    resumed = run_cli("runs", "resume", run_dir.name[:17], "-w", str(demo_workspace))
    assert resumed.returncode == 0, resumed.stderr
    start = read_run_json(run_dir)["resume_from"]
    assert start >= 5 and start % 5 == 0
    wait_until(lambda: (read_run_json(run_dir).get("iteration") or 0) > start + 5, what="progress after resume")
    stop = run_cli("runs", "stop", run_dir.name, "--wait", "-w", str(demo_workspace))
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stdout + stop.stderr
    first_train_after = [it for it, _ in curve(run_dir, "train") if it > start]
    assert first_train_after and first_train_after[0] <= start + QUICK["steps_per_report"]


def test_huge_learning_rate_ends_diverged(demo_workspace):
    import mlx.core as mx

    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(QUICK, learning_rate=1e30, save_every=2, steps_per_report=3))
    info = runs.wait_for_run(run_dir, timeout=120)
    assert info["state"] == "diverged", info
    assert any(a["kind"] == "diverged" for a in info["alarms"])
    latest = run_dir / "adapters" / "adapters.safetensors"
    # Diverged before its first checkpoint: nothing to go back to, and no NaN weights left as the latest.
    assert info["last_good_checkpoint"] is None and not latest.exists(), info
    assert "no checkpoint was saved before it" in info["reason"]


def test_a_run_that_diverges_after_checkpoints_goes_back_to_the_last_good_one(demo_workspace):
    """The learning rate grows 100x a step (exponential_decay with a rate of 100): tiny for the checkpoints at 2 and
    4, then huge, so the run diverges after them; adapters.safetensors is then the last checkpoint, byte for byte."""
    import mlx.core as mx

    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(QUICK, save_every=2, steps_per_report=1, steps_per_eval=1000,
                                                lr_schedule={"name": "exponential_decay", "arguments": [1e-5, 100.0]}))
    info = runs.wait_for_run(run_dir, timeout=120)
    assert info["state"] == "diverged", info
    adapters = run_dir / "adapters"
    saved = sorted(int(p.name.split("_")[0]) for p in adapters.glob("[0-9]*" + checkpoint_names(0)[0][7:]))
    assert len(saved) >= 2 and saved[0] == 2, saved  # diverged after (at least) two checkpoints
    good = info["last_good_checkpoint"]
    assert good == saved[-1], (good, saved)
    assert f"kept the checkpoint of iteration {good}" in info["reason"]
    assert info["alarms"][-1]["iteration"] > good  # it diverged after the checkpoint it went back to
    latest = adapters / "adapters.safetensors"
    assert latest.read_bytes() == (adapters / checkpoint_names(good)[0]).read_bytes()
    assert all(bool(mx.isfinite(w).all().item()) for w in mx.load(str(latest)).values())


def test_missing_model_fails_with_error_and_log_tail(demo_workspace):
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(QUICK, model="no-such-model-folder"))
    info = runs.wait_for_run(run_dir, timeout=120)
    assert info["state"] == "failed"
    assert info["error"] and info["log_tail"]
    assert "no-such-model-folder" in (info["error"] + "\n".join(info["log_tail"]))


@pytest.mark.mlx_ring
def test_two_ranks_on_localhost_write_one_metrics_stream(demo_workspace):
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(QUICK, iters=10), hosts=["127.0.0.1", "127.0.0.1"])
    info = runs.wait_for_run(run_dir, timeout=240)
    assert info["state"] == "finished", (info, (run_dir / "log.txt").read_text()[-2000:])
    assert info["world_size"] == 2
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["kind"], r["iteration"]) for r in lines]
    assert len(keys) == len(set(keys))  # one stream: rank 1 wrote nothing
    assert ("train", 10) in keys and ("val", 0) in keys
    assert "rank 1 of 2" in (run_dir / "log.txt").read_text()


def test_the_recorder_writes_states_only_through_transition(tmp_path, capsys):
    from phi3tui.core.runs.recorder import RunRecorder
    from phi3tui.core.runs.state import RunState, transition

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    transition(run_dir, RunState.QUEUED)
    recorder = RunRecorder(run_dir, writer=True)
    with pytest.raises(ValueError, match="move()"):
        recorder.update(state="finished")
    recorder.move(RunState.RUNNING, runner_pid=1)
    recorder.move(RunState.FINISHED, reason="all iterations done")
    assert read_run_json(run_dir)["state"] == "finished" and read_run_json(run_dir)["ended"]
    recorder.move(RunState.FAILED, reason="late")  # a finished run cannot fail: the move is refused and said
    info = read_run_json(run_dir)
    assert info["state"] == "finished" and info["reason"] == "all iterations done"
    assert "run.json not moved" in capsys.readouterr().out


def test_health_alarms_are_written_into_run_json(tmp_path):
    from phi3tui.core.runs.runner import Diverged, RunRecorder

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    recorder = RunRecorder(run_dir, writer=True)
    for it, loss in enumerate([3.0, 2.5, 2.6, 2.7, 2.8]):
        recorder.check_val(it * 10, loss)
    train = {"iteration": 50, "loss": 2.0, "tokens_per_s": 1000.0, "peak_mem": 1.0}
    for it in range(3):
        recorder.check_train(dict(train, iteration=it), memory_limit_gb=100)
    recorder.check_train(dict(train, iteration=4, tokens_per_s=100.0, peak_mem=95.0), memory_limit_gb=100)
    info = read_run_json(run_dir)
    assert [a["kind"] for a in info["alarms"]] == ["overfitting", "slow", "memory"]
    assert info["alarms"][0]["iteration"] == 40 and info["best_val_loss"] == 2.5
    with pytest.raises(Diverged):
        recorder.check_train(dict(train, loss=math.inf), memory_limit_gb=100)
