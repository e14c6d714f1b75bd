"""QLoRA on an MLX-quantized base (4-bit, 8-bit, mixed-bit): the export de-quantizes on its own, says so, and the GGUF
runs in llama.cpp as MLX runs the quantized base + adapter; `--no-dequantize` refuses instead."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from test_export_fixtures import finished_training, llama_cpp_or_skip, train_adapter

RUN_ID = "20260101-000000-qlora"
QUANTIZE = {
    "4-bit": ["-q", "--q-bits", "4", "--q-group-size", "32"],
    "8-bit": ["-q", "--q-bits", "8", "--q-group-size", "32"],
    "mixed 4/6-bit": ["-q", "--quant-predicate", "mixed_4_6", "--q-group-size", "32"],
}


def quantized_workspace(demo_template: Path, root: Path, label: str) -> Path:
    """The demo workspace whose model/ is the demo model quantized by mlx-lm's own convert, with a QLoRA adapter."""
    if finished_training(root):  # a finished training only: adapters.safetensors comes at the first checkpoint
        return root
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(demo_template, root)
    shutil.move(root / "model", root / "full-model")
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_lm", "convert", "--hf-path", str(root / "full-model"), "--mlx-path", str(root / "model"),
         *QUANTIZE[label]],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    train_adapter(root, f"runs/{RUN_ID}/adapters")
    return root


@pytest.fixture(scope="session")
def q4_template(demo_template, tmp_path_factory) -> Path:
    return quantized_workspace(demo_template, tmp_path_factory.getbasetemp() / "qlora-4" / "ws", "4-bit")


@pytest.fixture
def q4_ws(q4_template, tmp_path) -> Path:
    target = tmp_path / "ws"
    shutil.copytree(q4_template, target)
    return target


def llama_matches_quantized_base_plus_adapter(ws: Path, gguf_path: Path, max_tokens: int = 8):
    """(MLX greedy tokens of the quantized base + adapter, llama.cpp's of the GGUF) for the job's first prompt."""
    from phi3tui.core.export.fuse import load_adapted
    from phi3tui.core.export.job import DEFAULT_PROMPTS
    from phi3tui.core.export.paths import base_model_of, resolve_adapter
    from phi3tui.core.export.verify import mlx_reference, run_llama

    adapter = resolve_adapter(ws)
    model, tokenizer, config = load_adapted(base_model_of(ws, adapter), adapter)
    assert config.get("quantization"), "the base must really be quantized"
    ((ids, mlx_tokens, _),) = mlx_reference(model, tokenizer, list(DEFAULT_PROMPTS[:1]), max_tokens)
    ((llama_tokens, _),) = run_llama(gguf_path, [ids], max_tokens, 256)
    return mlx_tokens, llama_tokens


def test_export_all_on_a_4bit_base_dequantizes_on_its_own_and_says_so(q4_ws):
    proc = run_cli("export", "all", "-w", str(q4_ws), "--name", "q4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "the base model is MLX-quantized (4-bit): de-quantized while fusing" in proc.stdout
    gguf_path = q4_ws / "exports" / "q4" / "q4-f16.gguf"
    assert gguf_path.is_file()
    llama_cpp_or_skip()
    mlx_tokens, llama_tokens = llama_matches_quantized_base_plus_adapter(q4_ws, gguf_path)
    assert llama_tokens == mlx_tokens and len(mlx_tokens) == 8


def test_no_dequantize_refuses_a_quantized_base_and_writes_nothing(q4_ws):
    proc = run_cli("export", "all", "-w", str(q4_ws), "--name", "q4", "--no-dequantize")
    assert proc.returncode == 2
    assert "MLX-quantized (4-bit) and --no-dequantize was given" in proc.stderr and "drop --no-dequantize" in proc.stderr
    assert not (q4_ws / "exports" / "q4").exists()


@pytest.mark.parametrize("label", ["8-bit", "mixed 4/6-bit"])
def test_8bit_and_mixed_bit_bases_are_dequantized_by_the_wizards_job(demo_template, tmp_path, label):
    from phi3tui.core.export.job import ExportJob
    from phi3tui.core.export.paths import read_json

    ws = quantized_workspace(demo_template, tmp_path / "ws", label)
    job = ExportJob.create(ws, name="q")
    fused = job.run_fuse()
    assert f"MLX-quantized ({label}): de-quantized" in fused.summary()
    assert "quantization" not in read_json(job.fused_dir / "config.json")
    result, report = job.run_gguf()
    assert report.ok
    llama_cpp_or_skip()
    mlx_tokens, llama_tokens = llama_matches_quantized_base_plus_adapter(ws, result.path)
    assert llama_tokens == mlx_tokens


def test_base_and_lora_gguf_on_a_4bit_base_dequantize_on_their_own_and_match_mlx(q4_ws):
    """The Ollama ADAPTER path: the quantized base is de-quantized for its GGUF alone (and said so); llama.cpp with
    base GGUF + LoRA GGUF gives the greedy tokens of MLX's quantized base + adapter."""
    from phi3tui.core.export.job import ExportJob

    proc = run_cli("export", "lora-gguf", "-w", str(q4_ws), "--name", "q4", "--no-verify")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: the base model is MLX-quantized (4-bit): de-quantized" in proc.stdout
    out = q4_ws / "exports" / "q4"
    assert sorted(p.name for p in out.iterdir()) == ["q4-base-f16.gguf", "q4-lora-f16.gguf"]  # no scratch folder left
    refused = run_cli("export", "lora-gguf", "-w", str(q4_ws), "--name", "q4b", "--no-dequantize")
    assert refused.returncode == 2 and "--no-dequantize was given" in refused.stderr
    assert not (q4_ws / "exports" / "q4b").exists()
    llama_cpp_or_skip()
    from phi3tui.core.export.fuse import load_adapted
    from phi3tui.core.export.verify import mlx_reference, run_llama

    job = ExportJob.create(q4_ws, name="q4")
    model, tokenizer, config = load_adapted(job.require_base(), job.require_adapter())
    assert config.get("quantization")
    refs = mlx_reference(model, tokenizer, list(job.prompts), 8)
    got = run_llama(job.base_gguf_path, [ids for ids, _, _ in refs], 8, 256, lora=job.lora_path)
    for (ids, mlx_tokens, _), (llama_tokens, _) in zip(refs, got):
        assert llama_tokens == mlx_tokens and len(mlx_tokens) == 8
    lines = job.run_verify()
    assert job.verify_state == "agreed", lines
