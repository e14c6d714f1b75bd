"""Shared fixtures: the demo workspace is built once per session (real tokenizer, real tiny Phi-3); so is the
tool-calling workspace (the tiny Phi-4-mini-style model with the tool-calling template, tool-calling records)."""

from __future__ import annotations

import json
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


# -- pytest-xdist: README command 2 runs the suite on several worker processes (pyproject's addopts) -----------
# Each worker builds the session fixtures it needs. Tests that share a machine-wide resource, or a fixture worth
# building once, are sent to one worker: xdist's loadgroup keeps a group together.
SHARED_FIXTURE_GROUPS = {
    # trained by mlx-lm once per worker; its tests (chat, eval, their screens) are several minutes together
    "trained_r1_template": "trained-r1",
}
# Runs through mlx.launch's ring backend: each picks its own ports (core/runs/hosts.py starting_port, tested by a
# test that runs two at once); they stay on one worker so that their many processes (two ranks, each with its
# supervisor) do not crowd the cores all at once.
MLX_RING_GROUP = "mlx-ring-ports"


def pytest_configure(config):
    config.addinivalue_line("markers", "mlx_ring: starts ranks through mlx.launch's ring backend")
    # pytest-xdist registers it too; said here so that a run without xdist does not warn of an unknown mark
    config.addinivalue_line("markers", "xdist_group(name): run with the other tests of this group on one worker")


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the xdist_group marks into each test's id
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("mlx_ring"):
            item.add_marker(pytest.mark.xdist_group(MLX_RING_GROUP))
            continue
        group = next((g for f, g in SHARED_FIXTURE_GROUPS.items() if f in item.fixturenames), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_xdist_auto_num_workers(config):
    """`-n auto`: one worker more than the cores (most tests spend part of their time waiting on a subprocess or
    the app), at most 6 (each worker holds its own Python, MLX and fixtures)."""
    return max(2, min(6, (os.cpu_count() or 1) + 1))


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


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Today's weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CITIES = [("Paris", "sunny and mild"), ("Oslo", "snow"), ("Lima", "cloudy"), ("Rome", "hot"),
          ("Kyiv", "rain"), ("Quito", "windy"), ("Perth", "dry"), ("Cairo", "very hot")]


def tool_record(city: str, weather: str) -> dict:
    """A {"messages", "tools"} record: the user asks, the assistant calls get_weather, the tool answers, the
    assistant answers."""
    return {"messages": [
        {"role": "system", "content": "Use the tools when they help."},
        {"role": "user", "content": f"What is the weather in {city}?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": weather},
        {"role": "assistant", "content": f"In {city} it is {weather} today."},
    ], "tools": [WEATHER]}


@pytest.fixture(scope="session")
def tools_template(tmp_path_factory) -> Path:
    """Read-only: a workspace with the tiny Phi-4-mini-style model with the tool-calling template
    (core/demo.py write_phi4_mini_model(tool_calling=True)) and tool-calling records (train: CITIES[:6],
    valid: CITIES[6:]), mask_prompt and assistant_turns: all. Copy it to change it."""
    import yaml

    from phi3tui.core.demo import DEMO_CONFIG_YAML, write_phi4_mini_model

    root = tmp_path_factory.mktemp("tools") / "ws"
    write_phi4_mini_model(root / "model", tool_calling=True)
    data = root / "data"
    data.mkdir()
    records = [tool_record(c, w) for c, w in CITIES]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:6]))
    (data / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[6:]))
    config = yaml.safe_load(DEMO_CONFIG_YAML)
    config.update(batch_size=2, max_seq_length=1024, mask_prompt=True, assistant_turns="all", iters=2,
                  steps_per_report=1, steps_per_eval=2, save_every=2, val_batches=1)
    (root / "lora_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "runs").mkdir()
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
