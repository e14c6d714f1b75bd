"""mlx-lm's reporters in phi3tui runs: `report_to: wandb` writes a real (offline) wandb run holding the run's train and
validation losses, a resumed run continues the same wandb run, and a reporter whose package is missing is refused by
the config check before any run starts, naming the extra to install."""

from __future__ import annotations

import glob
import importlib.util
import json
import struct
import time
from pathlib import Path

import pytest

from phi3tui.core import runs
from phi3tui.core.config import REPORTERS, review_config
from phi3tui.core.run_folder import read_run_json
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli

HAVE_WANDB = importlib.util.find_spec("wandb") is not None
HAVE_SWANLAB = importlib.util.find_spec("swanlab") is not None
QUICK = "iters: 20\nsteps_per_report: 5\nsteps_per_eval: 5\nsave_every: 10\nval_batches: 4\n"


def add_to_config(ws_root: Path, text: str) -> None:
    """Set each `key: value` line of `text` in lora_config.yaml (in place: a key written twice is refused)."""
    import yaml

    from phi3tui.core.config import ConfigDocument

    path = ws_root / "lora_config.yaml"
    document = ConfigDocument.load(path)
    for key, value in yaml.safe_load(text).items():
        document.set(key, value)
    path.write_text(document.text, encoding="utf-8")


def wandb_records(path: Path) -> list:
    """The records of a .wandb file (wandb's transaction log: LevelDB log framing of wandb's own protobuf Record)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb transaction log"
    block, pos, records, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:  # zero padding / not yet written
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            rec = pb.Record()
            rec.ParseFromString(pending)
            records.append(rec)
            pending = b""
    return records


def wandb_history(path: Path) -> tuple[dict, dict[int, dict]]:
    """(the run record's fields, {step: logged values}) of one offline wandb run file."""
    run, history = {}, {}
    for rec in wandb_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run = {"id": rec.run.run_id, "project": rec.run.project, "name": rec.run.display_name}
        elif kind == "history":
            values = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in rec.history.item}
            history.setdefault(int(values["_step"]), {}).update(values)
    return run, history


def metrics(run_dir: Path, kind: str) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["iteration"]: r["loss"] for r in lines if r["kind"] == kind}


def stop_after_a_checkpoint(ws_root: Path) -> tuple[Path, dict, int]:
    """Start a run, stop it once it has a checkpoint at iteration 10: (run folder, run.json, iteration stopped at)."""
    run_dir = runs.start_run(Workspace.open(ws_root))
    deadline = time.monotonic() + 180
    while (read_run_json(run_dir).get("last_checkpoint") or 0) < 10:
        assert read_run_json(run_dir).get("state") in runs.LIVE_STATES, (run_dir / "log.txt").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint at iteration 10"
        time.sleep(0.1)
    runs.stop_run(run_dir)
    info = runs.wait_for_run(run_dir, timeout=180)
    assert info["state"] == "stopped", (info, (run_dir / "log.txt").read_text()[-3000:])
    return run_dir, info, int(info["reason"].rsplit(" ", 1)[-1])


def resume_to_the_end(run_dir: Path, stopped_at: int) -> dict:
    assert runs.resume_run(run_dir) == stopped_at
    info = runs.wait_for_run(run_dir, timeout=180)
    assert info["state"] == "finished", (info, (run_dir / "log.txt").read_text()[-3000:])
    return info


@pytest.mark.skipif(not HAVE_WANDB, reason="wandb is not installed (the test extra installs it: pip install -e '.[test]')")
def test_wandb_offline_run_holds_the_losses_and_a_resume_continues_it(demo_workspace, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    add_to_config(demo_workspace, QUICK + "report_to: wandb\nproject_name: phi3tui-test\n")
    run_dir, info, stopped_at = stop_after_a_checkpoint(demo_workspace)
    first = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(first) == 1, f"one offline wandb run expected in {run_dir / 'wandb'}"
    run_id = info["wandb_run_id"]
    run, history = wandb_history(Path(first[0]))
    assert run == {"id": run_id, "project": "phi3tui-test", "name": run_dir.name}
    train, val = metrics(run_dir, "train"), metrics(run_dir, "val")
    assert {s: v["train_loss"] for s, v in history.items() if "train_loss" in v} == pytest.approx(train)
    assert {s: v["val_loss"] for s, v in history.items() if "val_loss" in v} == pytest.approx(val)
    assert 0 in val and 5 in train  # the first validation and report are there

    info = resume_to_the_end(run_dir, stopped_at)
    assert info["wandb_run_id"] == run_id
    second = sorted(set(glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))) - set(first))
    assert len(second) == 1
    run2, history2 = wandb_history(Path(second[0]))
    assert run2["id"] == run_id  # the same wandb run, continued (wandb sync merges them)
    train, val = metrics(run_dir, "train"), metrics(run_dir, "val")
    resumed_train = {s: v["train_loss"] for s, v in history2.items() if "train_loss" in v}
    assert resumed_train and min(resumed_train) > stopped_at  # numbered by the run, not from 0 again
    assert resumed_train == pytest.approx({s: loss for s, loss in train.items() if s > stopped_at})
    assert {s: v["val_loss"] for s, v in history2.items() if "val_loss" in v} == pytest.approx(
        {s: loss for s, loss in val.items() if s >= stopped_at})
    assert 20 in train and 19 in val


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


@pytest.mark.parametrize("name", sorted(REPORTERS))
def test_missing_reporter_package_refuses_the_run_naming_the_extra(demo_workspace, name):
    module, extra = REPORTERS[name]
    if not _missing(module):  # the test extra installs wandb, not swanlab: in CI the swanlab case runs
        pytest.skip(f"{module} is installed here: its absence cannot be shown")
    add_to_config(demo_workspace, f"report_to: {name}\n")
    review = review_config((demo_workspace / "lora_config.yaml").read_text(), demo_workspace)
    errors = [str(f) for f in review.errors if f.field == "report_to"]
    assert errors == [f"error: report_to: {name} needs the {module} package, which is not installed "
                      f"(pip install 'phi3tui[{extra}]', or remove report_to)"]
    result = run_cli("train", "-w", str(demo_workspace), "--iters", "2")
    assert result.returncode == 2
    assert f"phi3tui[{extra}]" in result.stderr
    assert not (demo_workspace / "runs").exists() or not any((demo_workspace / "runs").iterdir())


def test_unknown_reporter_is_an_error_and_known_ones_are_mlx_lms(demo_workspace):
    from mlx_lm.tuner.callbacks import SUPPORT_CALLBACK

    assert set(REPORTERS) == set(SUPPORT_CALLBACK)
    add_to_config(demo_workspace, "report_to: WandB, tensorboard\n")
    review = review_config((demo_workspace / "lora_config.yaml").read_text(), demo_workspace)
    messages = [f.message for f in review.errors if f.field == "report_to"]
    assert any("'tensorboard' is not a reporter mlx-lm knows" in m for m in messages)
    assert any("wandb needs" in m for m in messages) == _missing("wandb")  # case-insensitive, as mlx-lm reads it


def swanlab_history(path: Path) -> tuple[dict, dict[str, dict[int, float]]]:
    """(the start record's fields, {key: {step: value}}) of one offline swanlab run file, read with swanlab's own
    reader of its record log."""
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record
    from swanlab.sdk.internal.core_python.store import DataStoreReader

    reader, start, scalars = DataStoreReader(), {}, {}
    reader.open(path)
    try:
        for data in reader:
            rec = Record()
            rec.ParseFromString(data)
            if rec.HasField("start"):
                start = {"id": rec.start.id, "project": rec.start.project, "name": rec.start.name,
                         "resume": rec.start.resume}
            elif rec.HasField("scalar"):
                scalars.setdefault(rec.scalar.key, {})[rec.scalar.step] = rec.scalar.value.number
    finally:
        reader.close()
    return start, scalars


@pytest.mark.skipif(not HAVE_SWANLAB, reason="swanlab is not installed (pip install 'phi3tui[swanlab]')")
def test_swanlab_offline_run_holds_the_losses_and_a_resume_continues_it(demo_workspace, monkeypatch):
    from swanlab.proto.swanlab.run.v1.run_pb2 import ResumeMode

    monkeypatch.setenv("SWANLAB_MODE", "offline")
    add_to_config(demo_workspace, QUICK + "report_to: swanlab\nproject_name: phi3tui-test\n")
    run_dir, info, stopped_at = stop_after_a_checkpoint(demo_workspace)
    pattern = str(run_dir / "swanlog" / "run-*" / "run-*.swanlab")
    first = glob.glob(pattern)
    assert len(first) == 1, f"one offline swanlab run expected in {run_dir / 'swanlog'}"
    run_id = info["swanlab_run_id"]
    start, scalars = swanlab_history(Path(first[0]))
    assert start == {"id": run_id, "project": "phi3tui-test", "name": run_dir.name,
                     "resume": ResumeMode.RESUME_MODE_ALLOW}
    train, val = metrics(run_dir, "train"), metrics(run_dir, "val")
    assert scalars["train_loss"] == pytest.approx(train) and scalars["val_loss"] == pytest.approx(val)
    assert 0 in val and 5 in train

    info = resume_to_the_end(run_dir, stopped_at)
    assert info["swanlab_run_id"] == run_id
    second = sorted(set(glob.glob(pattern)) - set(first))
    assert len(second) == 1
    start2, scalars2 = swanlab_history(Path(second[0]))
    assert start2["id"] == run_id and start2["resume"] == ResumeMode.RESUME_MODE_ALLOW  # the same run, continued
    train, val = metrics(run_dir, "train"), metrics(run_dir, "val")
    assert min(scalars2["train_loss"]) > stopped_at  # numbered by the run, not from 0 again
    assert scalars2["train_loss"] == pytest.approx({s: loss for s, loss in train.items() if s > stopped_at})
    assert scalars2["val_loss"] == pytest.approx({s: loss for s, loss in val.items() if s >= stopped_at})
    assert 20 in train and 19 in val
