"""Export: fusing, choosing adapters, output-folder guards, the CLI and the headless demo steps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli
from test_export_fixtures import RUN_ID, train_adapter, trained_template, trained_ws  # noqa: F401

from phi3tui.core.export import ExportError
from phi3tui.core.export.fuse import compare_fused, fuse
from phi3tui.core.export.paths import base_model_of, resolve_adapter

PROMPTS = ["Can you see the Great Wall of China from space?", "What happens if you swallow gum?"]


def test_fused_model_answers_exactly_as_base_plus_adapter(trained_ws):
    adapter = resolve_adapter(trained_ws)
    assert adapter.run_id == RUN_ID and adapter.weights.name == "adapters.safetensors"
    base = base_model_of(trained_ws, adapter)
    assert Path(base) == (trained_ws / "model").resolve()
    result = fuse(base, adapter, trained_ws / "exports" / "x" / "fused")
    fused = result.fused_dir
    # transformers 5 leaves tokenizer.model out; the fuse step brings it (and add_bos_token) back from the base.
    assert (fused / "tokenizer.model").read_bytes() == (trained_ws / "model" / "tokenizer.model").read_bytes()
    assert "tokenizer.model" in result.restored
    assert json.loads((fused / "tokenizer_config.json").read_text())["add_bos_token"] is False
    assert json.loads((fused / "phi3tui-export.json").read_text())["run_id"] == RUN_ID
    rows = compare_fused(base, adapter, fused, PROMPTS, max_tokens=12)
    for prompt, adapted, got in rows:
        assert len(adapted) > 0
        assert adapted == got, prompt


def test_a_checkpoint_is_fused_not_the_latest(trained_ws):
    adapter = resolve_adapter(trained_ws, checkpoint=2)
    assert adapter.weights.name == "0000002_adapters.safetensors"
    base = base_model_of(trained_ws, adapter)
    fused = fuse(base, adapter, trained_ws / "exports" / "ck" / "fused").fused_dir
    latest = fuse(base, resolve_adapter(trained_ws), trained_ws / "exports" / "latest" / "fused").fused_dir
    a = (fused / "model.safetensors").read_bytes()
    assert a != (latest / "model.safetensors").read_bytes()
    (prompt, adapted, got), = compare_fused(base, adapter, fused, PROMPTS[:1], max_tokens=8)
    assert adapted == got
    with pytest.raises(ExportError, match="no checkpoint for iteration 7.*checkpoints: 2"):
        resolve_adapter(trained_ws, checkpoint=7)


def test_a_non_empty_output_folder_is_not_overwritten_without_force(trained_ws):
    adapter = resolve_adapter(trained_ws)
    base = base_model_of(trained_ws, adapter)
    target = trained_ws / "exports" / "keep" / "fused"
    target.mkdir(parents=True)
    (target / "mine.txt").write_text("precious")
    with pytest.raises(ExportError, match="not empty.*--force"):
        fuse(base, adapter, target)
    assert sorted(p.name for p in target.iterdir()) == ["mine.txt"]
    fuse(base, adapter, target, force=True)
    assert (target / "model.safetensors").is_file() and not (target / "mine.txt").exists()
    assert not list(target.parent.glob(".*partial*")) and not list(target.parent.glob(".*old"))


def test_dora_adapter_fuses_and_is_refused_as_gguf_lora(trained_ws, tmp_path):
    train_adapter(trained_ws, "dora", "--fine-tune-type", "dora", "--iters", "2")
    adapter = resolve_adapter(trained_ws, "dora")
    assert adapter.kind == "dora"
    base = base_model_of(trained_ws, adapter)
    fused = fuse(base, adapter, tmp_path / "dora-fused").fused_dir
    (prompt, adapted, got), = compare_fused(base, adapter, fused, PROMPTS[:1], max_tokens=8)
    assert adapted == got
    from phi3tui.core.export.lora_gguf import write_lora_gguf

    with pytest.raises(ExportError, match="dora.*export the fused model instead"):
        write_lora_gguf(adapter, tmp_path / "dora.gguf")
    assert not (tmp_path / "dora.gguf").exists()


def test_quantized_base_needs_dequantize_before_gguf(trained_ws, tmp_path):
    q_model = trained_ws / "model-4bit"
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_lm", "convert", "--hf-path", str(trained_ws / "model"), "--mlx-path", str(q_model), "-q", "--q-group-size", "32"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    shutil.copy2(trained_ws / "model" / "tokenizer.model", q_model / "tokenizer.model")
    from phi3tui.core.export.gguf import write_gguf

    adapter = resolve_adapter(trained_ws)
    kept = fuse(str(q_model), adapter, tmp_path / "q-fused").fused_dir
    with pytest.raises(ExportError, match=r"MLX-quantized \(4-bit\).*--dequantize"):
        write_gguf(kept, tmp_path / "q.gguf")
    assert not (tmp_path / "q.gguf").exists()
    deq = fuse(str(q_model), adapter, tmp_path / "deq-fused", dequantize=True).fused_dir
    assert "quantization" not in json.loads((deq / "config.json").read_text())
    result = write_gguf(deq, tmp_path / "deq.gguf")
    assert result.path.is_file()


def test_cli_export_all_writes_everything_and_says_what_to_run_for_ollama(trained_ws):
    proc = run_cli("export", "all", "-w", str(trained_ws), "--name", "demo-ft", "--no-verify")
    assert proc.returncode == 0, proc.stderr
    out_dir = trained_ws / "exports" / "demo-ft"
    assert (out_dir / "fused" / "tokenizer.model").is_file()
    assert (out_dir / "demo-ft-f16.gguf").is_file()
    modelfile = (out_dir / "Modelfile").read_text()
    assert "FROM ./demo-ft-f16.gguf" in modelfile
    from phi3tui.core.export.ollama import find_ollama

    if find_ollama() is None:
        assert "ollama is not installed" in proc.stdout
        assert "ollama create demo-ft -f Modelfile" in proc.stdout
    # Run again: the outputs exist, so it refuses (exit 2) and changes nothing.
    before = (out_dir / "demo-ft-f16.gguf").stat().st_mtime_ns
    again = run_cli("export", "all", "-w", str(trained_ws), "--name", "demo-ft", "--no-verify")
    assert again.returncode == 2 and "--force" in again.stderr
    assert (out_dir / "demo-ft-f16.gguf").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "nope"], "run nope has no adapters"),
        (["--checkpoint", "99"], "no checkpoint for iteration 99"),
        (["--adapter-path", "missing-dir"], "does not exist"),
        (["--model", "not a model"], "nor a Hugging Face repo id"),
    ],
)
def test_cli_fuse_bad_input_exits_2_with_the_reason(trained_template, args, message):
    proc = run_cli("export", "fuse", "-w", str(trained_template), *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (trained_template / "exports").exists() or not any((trained_template / "exports").iterdir())


def test_cli_without_any_adapter_says_to_train_first(demo_workspace):
    proc = run_cli("export", "fuse", "-w", str(demo_workspace))
    assert proc.returncode == 2 and "train first" in proc.stderr


def test_cli_help_describes_every_step():
    proc = run_cli("export", "--help")
    assert proc.returncode == 0
    for step in ("fuse", "gguf", "lora-gguf", "verify", "ollama", "all"):
        assert step in proc.stdout
    proc = run_cli("export", "gguf", "--help")
    for option in ("--outtype", "--tokenizer-model", "--model-dir", "--outfile", "--no-verify", "--force"):
        assert option in proc.stdout


def test_headless_demo_steps_chain_through_state(trained_ws):
    from phi3tui.core.export import fuse as fuse_mod
    from phi3tui.core.export import gguf as gguf_mod
    from phi3tui.core.export import ollama as ollama_mod
    from phi3tui.core.workspace import Workspace

    ws = Workspace(trained_ws)
    with pytest.raises(ExportError, match="no adapter from this job"):  # never the newest adapter on disk
        fuse_mod.demo_step(ws, {})
    state: dict = {"adapter_dir": str(trained_ws / "runs" / RUN_ID / "adapters")}  # what the train step stores
    line = fuse_mod.demo_step(ws, state)
    assert RUN_ID in line and Path(state["fused_dir"]).is_dir()
    line = gguf_mod.demo_step(ws, state)
    assert "read back" in line and "complete" in line and Path(state["gguf_path"]).is_file()
    line = ollama_mod.demo_step(ws, state)
    assert "Modelfile" in line
    if ollama_mod.find_ollama() is None:
        assert "not installed" in line and "ollama create" in line


def test_gguf_demo_step_without_a_fused_model_raises_clearly(demo_workspace):
    from phi3tui.core.export import gguf as gguf_mod
    from phi3tui.core.workspace import Workspace

    with pytest.raises(ExportError, match="run the fuse step first"):
        gguf_mod.demo_step(Workspace(demo_workspace), {})


def test_cli_fuse_check_compares_greedy_answers(trained_ws):
    proc = run_cli("export", "fuse", "-w", str(trained_ws), "--checkpoint", "2", "--check", "--prompt", PROMPTS[0])
    assert proc.returncode == 0, proc.stderr
    assert "phi3-20260101-000000-export-2" in proc.stdout  # the checkpoint's own export name
    assert proc.stdout.count("same: ") == 1 and "DIFFERENT" not in proc.stdout


def old_export(root: Path):
    """A complete earlier export of the trained run (fused folder and GGUF), as an earlier attempt leaves it."""
    from phi3tui.core.export.job import ExportJob

    job = ExportJob.create(root)
    job.run_fuse()
    job.run_gguf()
    return job


def test_demo_steps_never_take_an_earlier_attempts_export(trained_ws):
    from phi3tui.core.export import gguf as gguf_mod
    from phi3tui.core.export import ollama as ollama_mod
    from phi3tui.core.workspace import Workspace

    job = old_export(trained_ws)
    assert (job.fused_dir / "config.json").is_file() and job.gguf_path.is_file()
    ws = Workspace(trained_ws)
    with pytest.raises(ExportError, match="no fused model from this job"):
        gguf_mod.demo_step(ws, {})
    with pytest.raises(ExportError, match="no GGUF from this job"):
        ollama_mod.demo_step(ws, {})
    assert not job.modelfile.exists()


def test_pipeline_after_a_failed_fuse_skips_instead_of_using_the_old_export(trained_ws):
    """A new attempt whose adapter is broken: fuse fails; the old export in exports/ is not picked up."""
    import io

    from phi3tui.core.pipeline import export_demo_steps, run_pipeline
    from phi3tui.core.workspace import Workspace

    job = old_export(trained_ws)
    before = {p: p.stat().st_mtime_ns for p in job.out_dir.rglob("*") if p.is_file()}
    attempt = trained_ws / "runs" / "20260102-000000-broken"
    shutil.copytree(trained_ws / "runs" / RUN_ID, attempt)
    (attempt / "adapters" / "adapters.safetensors").write_bytes(b"not safetensors")
    out = io.StringIO()
    code = run_pipeline(Workspace(trained_ws), out, steps=export_demo_steps(), state={"adapter_dir": str(attempt / "adapters")})
    text = out.getvalue()
    assert code == 1
    assert "[1/3] fuse: FAILED" in text, text
    assert "[2/3] write the GGUF: skipped: fuse failed" in text, text
    assert "[3/3] write the Modelfile: skipped: fuse failed" in text, text
    assert "0/3 steps succeeded" in text
    assert {p: p.stat().st_mtime_ns for p in job.out_dir.rglob("*") if p.is_file()} == before  # untouched
    assert not list((trained_ws / "exports").glob("*/Modelfile"))


BLOCK_LLAMA_CPP = """
import json, sys
sys.modules["llama_cpp"] = None  # llama-cpp-python as if not installed: `import llama_cpp` raises ImportError
try:
    import llama_cpp
    raise SystemExit("llama_cpp still imports")
except ImportError:
    pass
from phi3tui.core.export.job import ExportJob
job = ExportJob.create(sys.argv[1])
job.run_fuse()
job.run_gguf()
lines = job.run_verify()
print(json.dumps({"state": job.verify_state, "shortfall": job.shortfall("verify"), "lines": lines}))
"""


def test_verify_without_llama_cpp_is_a_read_back_not_a_pass(trained_ws):
    from phi3tui.core.export.job import VERIFY_AGREED, VERIFY_READ_BACK_ONLY

    proc = subprocess.run([sys.executable, "-c", BLOCK_LLAMA_CPP, str(trained_ws)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["state"] == VERIFY_READ_BACK_ONLY == "read back; llama.cpp not installed"
    assert got["state"] != VERIFY_AGREED and got["shortfall"] == VERIFY_READ_BACK_ONLY
    assert VERIFY_READ_BACK_ONLY in got["lines"] and any("complete" in line for line in got["lines"])


def test_verify_with_llama_cpp_agrees_only_after_the_comparison(trained_ws):
    from test_export_fixtures import llama_cpp_or_skip

    from phi3tui.core.export.job import VERIFY_AGREED, ExportJob

    llama_cpp_or_skip()
    job = ExportJob.create(trained_ws)
    job.run_fuse()
    job.run_gguf()
    assert job.verify_state is None  # the read-back inside the GGUF step is not a verify
    lines = job.run_verify()
    (agreement,) = job.results["verify"][1]
    assert agreement.ok and "llama.cpp agrees with MLX (f16)" in "\n".join(lines)
    assert job.verify_state == VERIFY_AGREED and job.shortfall("verify") is None
