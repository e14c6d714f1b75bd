"""core/adapters.py: the one reference to an adapter at a checkpoint (AdapterRef), on real adapter folders:
weights written as real safetensors with MLX, run.json written by core.run_folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import pytest

from phi3tui.core.adapters import (
    CHECKPOINT_RE,
    ADAPTER_CONFIG,
    LATEST_WEIGHTS,
    AdapterNotFound,
    AdapterRef,
    adapter_at,
    checkpoint_choices,
    checkpoint_names,
    every_checkpoint,
    find_adapters,
    iteration_of,
    run_adapter_dir,
)
from phi3tui.core.chat import BASE, ChatError, side_for_path
from phi3tui.core.export import ExportError
from phi3tui.core.export.paths import adapter_kind, default_export_name, resolve_adapter
from phi3tui.core.run_folder import write_run_json


def write_adapter(adapter_dir: Path, iterations: list[int], kind: str = "lora", model: str = "model") -> None:
    """An adapter folder as the runner leaves it: config, numbered checkpoints, the latest a copy of the last."""
    adapter_dir.mkdir(parents=True)
    (adapter_dir / ADAPTER_CONFIG).write_text(json.dumps({"fine_tune_type": kind, "model": model}))
    for it in iterations:
        weights = {"model.layers.0.self_attn.qkv_proj.lora_a": mx.full((4, 2), float(it))}
        mx.save_safetensors(str(adapter_dir / checkpoint_names(it)[0]), weights)
    shutil.copyfile(adapter_dir / checkpoint_names(iterations[-1])[0], adapter_dir / LATEST_WEIGHTS)


def write_run(workspace: Path, run_id: str, iterations: list[int], kind: str = "lora") -> Path:
    run_dir = workspace / "runs" / run_id
    write_adapter(run_adapter_dir(run_dir), iterations, kind)
    write_run_json(run_dir, {"id": run_id, "state": "finished"})
    return run_dir


def test_run_id_comes_from_run_json_even_when_the_folder_is_moved(tmp_path):
    run_dir = write_run(tmp_path / "ws", "20260101-0000-abc", [10, 20])
    moved = tmp_path / "elsewhere" / "renamed-by-hand"
    moved.parent.mkdir()
    shutil.move(run_dir, moved)

    ref = adapter_at(moved)
    assert ref.run_id == "20260101-0000-abc" and ref.run_dir == moved
    assert ref.adapter_dir == run_adapter_dir(moved) and ref.is_latest and ref.iteration is None
    assert ref.label == "run 20260101-0000-abc · latest"
    assert side_for_path(moved).run_dir == moved  # Chat and Eval save beside the run, wherever it is now
    assert resolve_adapter(tmp_path, moved).run_id == "20260101-0000-abc"
    assert default_export_name(resolve_adapter(tmp_path, moved, checkpoint=10)) == "phi3-20260101-0000-abc-10"


def test_a_loose_folder_named_like_a_run_is_not_a_run(tmp_path):
    """No run.json beside it: no run, whatever the folders are called."""
    adapter_dir = tmp_path / "runs" / "20260101-0000-abc" / "adapters"
    write_adapter(adapter_dir, [5])
    ref = adapter_at(adapter_dir)
    assert ref.run_id is None and ref.run_dir is None
    assert ref.source_label == "adapters" and ref.file_label == f"{adapter_dir}, {LATEST_WEIGHTS}"


def test_checkpoint_choice_by_iteration_and_by_file(tmp_path):
    run_dir = write_run(tmp_path, "20260101-0000-abc", [10, 20, 30])
    ref = adapter_at(run_dir, 20)
    assert ref.iteration == 20 and ref.weights.name == checkpoint_names(20)[0]
    assert ref.checkpoint_label == "iteration 20" and ref.run_id == "20260101-0000-abc"
    assert mx.load(str(ref.weights))["model.layers.0.self_attn.qkv_proj.lora_a"][0, 0].item() == 20.0
    assert ref.at(None).is_latest and iteration_of(ref.at(None).weights) == 30  # the latest is a copy of 30

    by_file = adapter_at(ref.weights)
    assert by_file == ref
    assert [c.label for c in ref.checkpoints()] == ["iteration 10", "iteration 20", "iteration 30", "latest"]
    with pytest.raises(AdapterNotFound, match="no checkpoint for iteration 25.*checkpoints: 10, 20, 30"):
        ref.at(25)
    # Chat and Export say the same miss in their own words (their CLI spellings are unchanged).
    assert side_for_path(run_dir, "0000010").adapter == ref.at(10)
    with pytest.raises(ChatError, match="no checkpoint '25'"):
        side_for_path(run_dir, "25")
    with pytest.raises(ExportError, match="no checkpoint for iteration 25"):
        resolve_adapter(tmp_path, run_id="20260101-0000-abc", checkpoint=25)


def test_kind_and_base_model_come_from_adapter_config(tmp_path):
    for kind in ("lora", "dora", "full"):
        write_adapter(tmp_path / kind, [1], kind, model=f"models/{kind}-base")
        ref = adapter_at(tmp_path / kind)
        assert ref.kind == kind == adapter_kind(ref) and ref.base_model == f"models/{kind}-base"
    old = tmp_path / "old-dora"
    write_adapter(old, [1])
    (old / ADAPTER_CONFIG).write_text(json.dumps({"use_dora": True}))  # older mlx-lm: no fine_tune_type
    assert adapter_at(old).kind == "dora"
    (old / ADAPTER_CONFIG).write_text("{cut short")
    with pytest.raises(ExportError, match="not valid JSON"):
        adapter_kind(adapter_at(old))


def test_listing_newest_run_first_then_folders_each_latest_first(tmp_path):
    write_run(tmp_path, "20260101-0000-old", [10])
    write_run(tmp_path, "20260102-0000-new", [10, 20])
    write_adapter(tmp_path / "downloaded", [3])
    (tmp_path / "empty").mkdir()

    found = find_adapters(tmp_path)
    assert [r.source_label for r in found] == ["run 20260102-0000-new", "run 20260101-0000-old", "downloaded"]
    assert all(r.is_latest for r in found)
    labels = [label for label, _ in checkpoint_choices(tmp_path)]
    assert labels[:3] == ["run 20260102-0000-new · latest", "run 20260102-0000-new · iteration 20",
                          "run 20260102-0000-new · iteration 10"]
    assert [r.label for r in every_checkpoint(tmp_path)][-1] == "downloaded · iteration 3"
    assert resolve_adapter(tmp_path) == found[0]
    assert BASE.adapter is None and BASE.label == "base"

    with pytest.raises(AdapterNotFound, match="not an adapter folder"):
        adapter_at(tmp_path / "empty")
    with pytest.raises(AdapterNotFound, match="does not exist"):
        adapter_at(tmp_path / "nowhere")


def test_checkpoint_names():
    """The names the runner saves under and every listing reads (core.adapters is their one home)."""
    assert checkpoint_names(10) == ("0000010_adapters.safetensors", "0000010_optimizer.safetensors", "0000010_state.json")
    assert CHECKPOINT_RE.match(checkpoint_names(1234567)[0]).group(1) == "1234567"
