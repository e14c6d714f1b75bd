"""The streamed fuse writes what `mlx_lm fuse` writes: every tensor bit for bit, the same names, dtypes, shards,
index, config and tokenizer files (plus the files phi3tui restores from the base, and its export record).

Each case runs the real `mlx_lm fuse` command on the demo model with a really trained adapter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_export_fixtures import RUN_ID, train_adapter, trained_template, trained_ws  # noqa: F401

from phi3tui.core.export.fuse import _read_header, fuse
from phi3tui.core.export.paths import base_model_of, resolve_adapter


def mlx_lm_fuse(model: Path, adapter_dir: Path, out: Path, *extra: str) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_lm", "fuse", "--model", str(model), "--adapter-path", str(adapter_dir),
         "--save-path", str(out), *extra],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def tensors(folder: Path) -> dict[str, tuple[str, str, list, bytes]]:
    """name -> (shard file, dtype, shape, raw bytes) of every tensor in a model folder."""
    found = {}
    for file in sorted(folder.glob("*.safetensors")):
        data_start, header = _read_header(file)
        raw = file.read_bytes()
        for name, info in header.items():
            if name != "__metadata__":
                start, end = info["data_offsets"]
                found[name] = (file.name, info["dtype"], info["shape"], raw[data_start + start:data_start + end])
    return found


def assert_same_as_mlx_lm(ours: Path, theirs: Path, restored: tuple[str, ...]) -> None:
    mine, reference = tensors(ours), tensors(theirs)
    assert sorted(mine) == sorted(reference)
    for name, (shard, dtype, shape, raw) in reference.items():
        assert mine[name][:3] == (shard, dtype, shape), name
        assert mine[name][3] == raw, f"{name} differs from mlx_lm fuse"
    for file in theirs.iterdir():
        if file.suffix == ".safetensors":
            continue
        if file.name == "tokenizer_config.json":  # phi3tui puts back the keys transformers 5 drops, and says so
            got, want = json.loads((ours / file.name).read_text()), json.loads(file.read_text())
            back = {r.split(":", 1)[1] for r in restored if r.startswith("tokenizer_config.json:")}
            assert {k: v for k, v in got.items() if k not in back} == want
            continue
        assert (ours / file.name).read_bytes() == file.read_bytes(), f"{file.name} differs from mlx_lm fuse"
    extra = {f.name for f in ours.iterdir()} - {f.name for f in theirs.iterdir()}
    assert extra <= {"phi3tui-export.json", *restored}, extra


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_streamed_fuse_equals_mlx_lm_fuse(trained_ws, tmp_path, kind):
    if kind == "dora":
        train_adapter(trained_ws, "dora", "--fine-tune-type", "dora", "--iters", "2")
    adapter = resolve_adapter(trained_ws, None if kind == "lora" else "dora")
    assert adapter.kind == kind
    base = base_model_of(trained_ws, adapter)
    theirs = mlx_lm_fuse(Path(base), adapter.adapter_dir, tmp_path / "mlx-lm")
    result = fuse(base, adapter, tmp_path / "ours")
    assert_same_as_mlx_lm(result.fused_dir, theirs, result.restored)
    # The adapter really changed the layers it touches, and only those (else equality above would prove little).
    adapted = {n.rsplit(".", 1)[0] for n in _read_header(adapter.weights)[1] if n.endswith(".lora_a")}
    base_tensors = tensors(Path(base))
    changed = {n.rsplit(".", 1)[0] for n, t in tensors(theirs).items() if base_tensors[n][3] != t[3]}
    assert changed == adapted


@pytest.fixture(scope="module")
def four_bit_base(trained_template, tmp_path_factory) -> Path:
    q_model = tmp_path_factory.mktemp("q") / "model-4bit"
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_lm", "convert", "--hf-path", str(trained_template / "model"), "--mlx-path",
         str(q_model), "-q", "--q-group-size", "32"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    shutil.copy2(trained_template / "model" / "tokenizer.model", q_model / "tokenizer.model")
    return q_model


@pytest.mark.parametrize("dequantize", [True, False], ids=["dequantize", "kept-4bit"])
def test_streamed_fuse_of_a_4bit_base_equals_mlx_lm_fuse(trained_template, four_bit_base, tmp_path, dequantize):
    adapter = resolve_adapter(trained_template)
    extra = ("--dequantize",) if dequantize else ()
    theirs = mlx_lm_fuse(four_bit_base, adapter.adapter_dir, tmp_path / "mlx-lm", *extra)
    result = fuse(str(four_bit_base), adapter, tmp_path / "ours", dequantize=dequantize)
    assert_same_as_mlx_lm(result.fused_dir, theirs, result.restored)
    dtypes = {t[1] for t in tensors(result.fused_dir).values()}
    assert ("U32" in dtypes) is (not dequantize)
    assert ("quantization" in json.loads((result.fused_dir / "config.json").read_text())) is (not dequantize)
