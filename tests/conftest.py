"""Shared fixtures: the demo workspace is built once per session (real tokenizer, real tiny Phi-3)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests never reach the network: mlx-lm / transformers must find everything on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Settings and user themes go to a throw-away folder, never the real ~/.config (tests may override).
os.environ["PHI3TUI_CONFIG_DIR"] = tempfile.mkdtemp(prefix="phi3tui-test-config-")
os.environ["PHI3TUI_CACHE_DIR"] = tempfile.mkdtemp(prefix="phi3tui-test-cache-")  # the gate's data-check cache


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """The demo workspace, built once through core/demo.py. Do not modify: use `demo_workspace`."""
    from phi3tui.core.demo import build_demo

    root = tmp_path_factory.mktemp("demo-template") / "ws"
    build_demo(root)
    return root


@pytest.fixture(scope="session")
def trained_r1_template(demo_template, tmp_path_factory) -> Path:
    """Read-only: the demo workspace plus run 20260101-0000-r1 trained by mlx-lm (20 iterations, rank 16,
    checkpoints 10 and 20), built once per session for the chat and eval tests (each copies it)."""
    from tests.test_chat import train

    root = tmp_path_factory.mktemp("trained-r1") / "ws"
    shutil.copytree(demo_template, root)
    train(root, "20260101-0000-r1", 20)
    return root


@pytest.fixture
def demo_workspace(demo_template, tmp_path) -> Path:
    """A private copy of the demo workspace that a test may change freely."""
    target = tmp_path / "ws"
    shutil.copytree(demo_template, target)
    return target


@pytest.fixture
def demo_model(demo_template) -> Path:
    """The demo model folder (read-only by convention)."""
    return demo_template / "model"


@pytest.fixture
def config_dir(tmp_path, monkeypatch) -> Path:
    """A private, empty user config folder for this test (settings.yaml, themes/): PHI3TUI_CONFIG_DIR."""
    folder = tmp_path / "config"
    folder.mkdir()
    monkeypatch.setenv("PHI3TUI_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (it sits beside the repository in CI and development)")
    return SHARED_DATA


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run `python -m phi3tui ARGS` in a real subprocess and return the CompletedProcess."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "phi3tui", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
