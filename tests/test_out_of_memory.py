"""A run that exhausts the memory it may use ends `out of memory` with the figure it reached, and
`runs resume ID --smaller` finishes it from its last checkpoint with the same effective batch; the Train
screen offers that on such a run. The memory is capped by PHI3TUI_MEMORY_LIMIT_GB, which the runner honours
(mx.set_memory_limit, which neither MLX's CPU build nor, in mlx 0.32, Metal's allocator enforces, so the runner
checks it itself)."""

from __future__ import annotations

import signal

import yaml

from phi3tui.app import Phi3App
from phi3tui.core import runs
from phi3tui.core.run_folder import read_run_json
from phi3tui.core.runs.runner import MEMORY_LIMIT_ENV, died_of_memory, is_memory_failure
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli
from tests.test_runner import wait_until

# Batch 8 peaks at about 0.04 GB on the demo model, batch 4 at about 0.023 GB (measured): the cap sits between.
CAP_GB = "0.032"
RUN = dict(iters=12, batch_size=8, grad_accumulation_steps=1, steps_per_report=2, steps_per_eval=100,
           save_every=2, val_batches=1)


def test_exhausted_memory_ends_out_of_memory_and_smaller_finishes_it(demo_workspace, monkeypatch):
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=RUN, keep_awake="off")
    wait_until(lambda: (read_run_json(run_dir).get("last_checkpoint") or 0) >= 4, what="a checkpoint")
    runs.stop_run(run_dir)
    at = runs.resumable_checkpoint(run_dir) if runs.wait_for_run(run_dir)["state"] == "stopped" else None
    assert at and at >= 4

    # Resumed where it may hold less memory than batch 8 needs: it runs out.
    monkeypatch.setenv(MEMORY_LIMIT_ENV, CAP_GB)
    runs.resume_run(run_dir)
    info = runs.wait_for_run(run_dir, timeout=120)
    assert info["state"] == "out of memory", info
    assert info["peak_memory_gb"] > float(CAP_GB) and f"peak {info['peak_memory_gb']:.3f} GB" in info["reason"]
    assert f"phi3tui runs resume {run_dir.name} --smaller" in info["reason"]
    status = run_cli("runs", "status", run_dir.name, "-w", str(demo_workspace), env={MEMORY_LIMIT_ENV: CAP_GB})
    assert "out of memory" in status.stdout and "reached" in status.stdout

    # The key: the same cap, half the batch, twice the accumulation; it finishes.
    resumed = run_cli("runs", "resume", run_dir.name, "--smaller", "-w", str(demo_workspace),
                      env={MEMORY_LIMIT_ENV: CAP_GB})
    assert resumed.returncode == 0, resumed.stderr
    info = runs.wait_for_run(run_dir, timeout=180)
    assert info["state"] == "finished", info
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["batch_size"] * config["grad_accumulation_steps"] == RUN["batch_size"] * RUN["grad_accumulation_steps"]
    assert (config["batch_size"], config["grad_accumulation_steps"]) == (4, 2)
    change = info["resumes"][-1]["smaller"]
    assert change["from"] == at and change["effective_batch"] == 8
    # Twice the iterations left: the same number of optimizer updates as planned.
    assert config["iters"] == info["iters"] == at + 2 * (RUN["iters"] - at) == info["iteration"]
    after = [r for r in runs.read_metrics(run_dir).train_x if r > at]
    assert after and max(r["peak_mem"] for r in _train_records(run_dir) if r["iteration"] > at) < float(CAP_GB)
    status = run_cli("runs", "status", run_dir.name, "-w", str(demo_workspace))
    assert "batch_size 8 → 4, grad_accumulation_steps 1 → 2 (effective batch 8)" in status.stdout


def _train_records(run_dir):
    import json

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def test_what_counts_as_a_memory_failure():
    assert is_memory_failure(MemoryError())
    assert is_memory_failure(RuntimeError("[metal::malloc] Unable to allocate 1073741824 bytes."))
    assert is_memory_failure(RuntimeError("std::bad_alloc"))
    assert not is_memory_failure(RuntimeError("[grad] Must specify at least one argument."))
    assert not is_memory_failure(ValueError("out of memory"))  # only allocation errors, not any text
    # A trainer killed by the OS: SIGKILL, and the kernel counted an OOM kill or it had used most memory.
    gb = 10**9
    assert died_of_memory(signal.SIGKILL, 1 * gb, 16 * gb, 3, 4)
    assert died_of_memory(signal.SIGKILL, 14 * gb, 16 * gb, None, None)
    assert not died_of_memory(signal.SIGKILL, 1 * gb, 16 * gb, 3, 3)  # a person's kill -9
    assert not died_of_memory(signal.SIGSEGV, 15 * gb, 16 * gb, 3, 4)


async def test_train_screen_offers_the_smaller_resume(demo_workspace, monkeypatch):
    ws = Workspace.open(demo_workspace)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, CAP_GB)
    run_dir = runs.start_run(ws, overrides=RUN, keep_awake="off")
    assert runs.wait_for_run(run_dir, timeout=120)["state"] == "out of memory"
    app = Phi3App(ws, start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        assert screen.run_dir == run_dir
        footer_keys = {ab.binding.key for ab in screen.active_bindings.values() if ab.binding.show and ab.enabled}
        assert "b" in footer_keys  # the footer shows the key on this run
        assert "out of memory" in str(screen.query_one("#run-alarm").render())
        await pilot.press("b")
        await pilot.pause(0.5)
    info = runs.wait_for_run(run_dir, timeout=180)
    assert info["state"] == "finished", info
    assert info["resumes"][-1]["smaller"]["batch_size"] == [8, 4]
