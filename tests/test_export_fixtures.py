"""Fixtures shared by the export tests: a demo workspace with a really trained adapter.

The adapter is trained once per test session with the real `mlx_lm lora` (3 iterations, a checkpoint
at iteration 2) into runs/<id>/adapters, where phi3tui looks for runs. Imported by test_export*.py,
test_gguf*.py and test_ollama*.py; this module has no tests of its own.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RUN_ID = "20260101-000000-export"


def train_adapter(root: Path, adapter_path: str, *extra: str) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_lm", "lora", "--config", "lora_config.yaml", "--iters", "3", "--save-every", "2",
         "--learning-rate", "1e-2", "--adapter-path", adapter_path, *extra],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    adapters = root / adapter_path
    if adapters.parent.parent.name == "runs":
        record_run(adapters.parent)
    return adapters


def record_run(run_dir: Path) -> None:
    """The run.json phi3tui's launcher writes into every run folder: it names the run (core.adapters reads the
    id from it), here for a run trained by mlx-lm directly."""
    from phi3tui.core.run_folder import write_run_json

    write_run_json(run_dir, {"id": run_dir.name, "state": "finished"})


def finished_training(root: Path) -> bool:
    """Whether root/runs/RUN_ID holds a FINISHED training: mlx-lm writes adapters.safetensors at its first checkpoint,
    long before it ends, so only the run.json that record_run writes after mlx-lm exited 0 says a copy is reusable."""
    from phi3tui.core.run_folder import RunJsonUnreadable, read_run_json

    run_dir = root / "runs" / RUN_ID
    try:
        return read_run_json(run_dir).get("state") == "finished" and (run_dir / "adapters" / "adapters.safetensors").is_file()
    except RunJsonUnreadable:  # torn: not finished
        return False


@pytest.fixture(scope="session")
def trained_template(demo_template, tmp_path_factory) -> Path:
    """Read-only: the demo workspace plus runs/RUN_ID/adapters (latest and iteration-2 checkpoint)."""
    root = tmp_path_factory.getbasetemp() / "export-trained" / "ws"
    if not finished_training(root):
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(demo_template, root)
        train_adapter(root, f"runs/{RUN_ID}/adapters")
    return root


@pytest.fixture
def trained_ws(trained_template, tmp_path) -> Path:
    """A private copy of the trained workspace."""
    target = tmp_path / "ws"
    shutil.copytree(trained_template, target)
    return target


def llama_cpp_or_skip():
    from phi3tui.core.export.verify import LLAMA_CPP_MISSING, llama_cpp_available

    if not llama_cpp_available():
        pytest.skip(LLAMA_CPP_MISSING)
