"""How a run ends when a Mac's GPU or memory gives out (issue 23), seen on Linux through a real runner: the trainer
prints Metal's own error text and aborts as MLX does when the error comes from Metal's completion handler, or
raises it (PHI3TUI_TEST_FAULT, core/runs/failures.py); a trainer killed by the OS is judged by the MLX peak it
recorded, not by its process's RSS."""

from __future__ import annotations

import os
import signal

from phi3tui.core import runs
from phi3tui.core.machine import WORKING_SET_ENV
from phi3tui.core.run_folder import read_run_json
from phi3tui.core.runs.failures import FAULT_ENV, is_memory_failure, watchdog_hint
from phi3tui.core.runs.supervisor import recorded_peak_bytes
from phi3tui.core.workspace import Workspace
from tests.test_runner import wait_until

METAL_OOM = "[METAL] Command buffer execution failed: Insufficient Memory (00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)"
WATCHDOG = ("[METAL] Command buffer execution failed: Impacting Interactivity "
            "(0000000e:kIOGPUCommandBufferCallbackErrorImpactingInteractivity)")
RUN = dict(iters=6, batch_size=4, steps_per_report=1, steps_per_eval=100, save_every=2, val_batches=1)


def run_with_fault(demo_workspace, monkeypatch, fault: str, **overrides) -> dict:
    monkeypatch.setenv(FAULT_ENV, fault)
    run_dir = runs.start_run(Workspace.open(demo_workspace), overrides=dict(RUN, **overrides), keep_awake="off")
    return runs.wait_for_run(run_dir, timeout=300) | {"run_dir": run_dir}


def test_metal_out_of_memory_abort_ends_out_of_memory(demo_workspace, monkeypatch):
    info = run_with_fault(demo_workspace, monkeypatch, f"abort:3:{METAL_OOM}")
    assert info["state"] == "out of memory", info
    assert "Insufficient Memory" in info["reason"] and "SIGABRT" in info["reason"]
    assert f"phi3tui runs resume {info['run_dir'].name} --smaller" in info["reason"]


def test_gpu_watchdog_abort_fails_with_the_hint(demo_workspace, monkeypatch):
    info = run_with_fault(demo_workspace, monkeypatch, f"abort:3:{WATCHDOG}")
    assert info["state"] == "failed", info
    assert "Impacting Interactivity" in info["reason"] and "let the display sleep" in info["reason"]
    assert "MLX_MAX_OPS_PER_BUFFER" in info["reason"]


def test_gpu_watchdog_raised_fails_with_the_hint(demo_workspace, monkeypatch):
    info = run_with_fault(demo_workspace, monkeypatch, f"raise:2:{WATCHDOG}")
    assert info["state"] == "failed", info
    assert info["error"] == f"RuntimeError: {WATCHDOG}" and "let the display sleep" in info["reason"]


def test_metal_texts():
    assert is_memory_failure(RuntimeError(METAL_OOM))
    assert not is_memory_failure(RuntimeError(WATCHDOG)) and watchdog_hint(WATCHDOG)
    assert watchdog_hint(METAL_OOM) == "" and watchdog_hint("[grad] Must specify at least one argument.") == ""


def _kill_after_a_report(demo_workspace, monkeypatch, budget_gb: str, **overrides):
    monkeypatch.setenv(WORKING_SET_ENV, budget_gb)
    run_dir = runs.start_run(Workspace.open(demo_workspace), overrides=dict(RUN, iters=400, **overrides),
                             keep_awake="off")
    wait_until(lambda: recorded_peak_bytes(run_dir) > 0, what="a train report")
    pid = read_run_json(run_dir)["runner_pid"]
    with open(f"/proc/{pid}/status") as status:  # the trainer's peak RSS: Python and its libraries too
        rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: runs.run_info(run_dir)["state"] not in ("running", "queued"), timeout=60, what="an end state")
    return read_run_json(run_dir), rss, recorded_peak_bytes(run_dir)


def test_kill_9_is_judged_by_the_recorded_mlx_peak_not_rss(demo_workspace, monkeypatch):
    # MLX holds a few MB of a 0.1 GB budget; the process's RSS (Python, mlx-lm: ~0.11 GB) is above 80% of it.
    info, rss, peak = _kill_after_a_report(demo_workspace, monkeypatch, "0.1")
    assert rss > 0.8 * 0.1e9 and peak < 0.05e9  # ru_maxrss alone would have called it out of memory
    assert info["state"] == "failed" and "without recording a result" in info["reason"], info


def test_kill_9_near_the_budget_by_the_recorded_mlx_peak_is_out_of_memory(demo_workspace, monkeypatch):
    # Batch 8 peaks at about 0.04 GB on the demo model (tests/test_out_of_memory.py): past 80% of 0.045 GB.
    info, _, peak = _kill_after_a_report(demo_workspace, monkeypatch, "0.045", batch_size=8)
    assert peak >= 0.8 * 0.045e9, peak
    assert info["state"] == "out of memory" and "the OS killed the runner (SIGKILL)" in info["reason"], info
    assert abs(info["peak_memory_gb"] - peak / 1e9) < 1e-6
