"""The foundation: layering, the demo model, the CLI entry points."""

from __future__ import annotations

import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import phi3tui.core
from tests.conftest import REPO, run_cli


def _core_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(phi3tui.core.__path__, "phi3tui.core.")]


def test_core_never_imports_textual():
    modules = _core_modules()
    assert "phi3tui.core.demo" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'textual' or k.startswith('textual.'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, f"phi3tui.core imported textual: {proc.stdout}{proc.stderr}"


def test_demo_workspace_layout(demo_template):
    model = demo_template / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.model", "tokenizer.json", "tokenizer_config.json"):
        assert (model / name).is_file(), name
    config = json.loads((model / "config.json").read_text())
    assert config["model_type"] == "phi3"
    tok_cfg = json.loads((model / "tokenizer_config.json").read_text())
    assert "<|assistant|>" in tok_cfg["chat_template"]
    counts = {}
    for split in ("train", "valid", "test"):
        lines = (demo_template / "data" / f"{split}.jsonl").read_text().splitlines()
        counts[split] = len(lines)
        for line in lines:
            text = json.loads(line)["text"]
            assert text.startswith("<|user|>\n") and " <|end|>\n<|assistant|> \n" in text
            assert text.endswith(" <|end|>")
    assert sum(counts.values()) >= 300
    assert counts["valid"] >= 4 and counts["test"] >= 4
    assert (demo_template / "lora_config.yaml").is_file()


def test_demo_model_has_fused_phi3_weights(demo_model):
    from safetensors import safe_open

    with safe_open(str(demo_model / "model.safetensors"), "numpy") as f:
        names = set(f.keys())
    assert "model.layers.0.self_attn.qkv_proj.weight" in names
    assert "model.layers.0.mlp.gate_up_proj.weight" in names
    assert not any(".q_proj." in n or ".gate_proj." in n for n in names)


def test_demo_model_loads_and_renders_chat_template(demo_model):
    import mlx_lm

    model, tokenizer = mlx_lm.load(str(demo_model))
    assert len(model.layers) == 4
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is the sky blue?"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert prompt == "<|system|>\nBe brief.<|end|>\n<|user|>\nIs the sky blue?<|end|>\n<|assistant|>\n"
    ids = tokenizer.encode(prompt)
    for special in ("<|system|>", "<|user|>", "<|end|>", "<|assistant|>"):
        assert tokenizer.convert_tokens_to_ids(special) in ids, special
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    assert end_id in tokenizer.eos_token_ids
    # Byte fallback: characters never seen in training still round-trip.
    assert tokenizer.decode(tokenizer.encode("naïve ☃ text")).strip() == "naïve ☃ text"
    # The model runs: mlx-lm's cached, streaming generation gives exactly the greedy tokens of the model's
    # full forward pass, and stops at the same place (max_tokens or an end token).
    import mlx.core as mx

    greedy: list[int] = []
    while len(greedy) < 5:
        next_id = int(mx.argmax(model(mx.array([ids + greedy]))[0, -1]).item())
        if next_id in tokenizer.eos_token_ids:
            break
        greedy.append(next_id)
    streamed = [r.token for r in mlx_lm.stream_generate(model, tokenizer, ids, max_tokens=5)]
    streamed = [t for t in streamed if t not in tokenizer.eos_token_ids]
    assert greedy and streamed == greedy
    assert mlx_lm.generate(model, tokenizer, ids, max_tokens=5) == tokenizer.decode(greedy)


def test_demo_tokenizer_matches_sentencepiece(demo_model):
    """tokenizer.json (what mlx-lm uses) and tokenizer.model (what GGUF export uses) agree on plain text."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    sp = spm.SentencePieceProcessor(model_file=str(demo_model / "tokenizer.model"))
    hf = AutoTokenizer.from_pretrained(str(demo_model))
    for text in ("Do goldfish have a three-second memory?", "No. Goldfish can remember things for months."):
        assert hf.encode(text, add_special_tokens=False) == sp.encode(text)


def test_mlx_lm_lora_trains_demo_config(demo_workspace):
    """The demo's lora_config.yaml is accepted by the plain `mlx_lm lora --config` and trains."""
    proc = subprocess.run(
        [sys.executable, "-m", "mlx_lm", "lora", "--config", "lora_config.yaml", "--iters", "3",
         "--steps-per-eval", "2", "--val-batches", "2", "--adapter-path", "adapters-test"],
        cwd=demo_workspace, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (demo_workspace / "adapters-test" / "adapters.safetensors").is_file()


def test_demo_reuses_existing_workspace(demo_workspace):
    from phi3tui.core.demo import build_demo

    before = (demo_workspace / "model" / "model.safetensors").stat().st_mtime_ns
    result = build_demo(demo_workspace)
    assert not result.created
    assert (demo_workspace / "model" / "model.safetensors").stat().st_mtime_ns == before


def test_demo_refuses_foreign_folder(tmp_path):
    from phi3tui.core.demo import build_demo

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_demo(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_cli_help_lists_every_command():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("demo", "data", "config", "train", "runs", "export"):
        assert command in proc.stdout
    assert "WORKSPACE" in proc.stdout


def test_opening_a_workspace_imports_no_command_module(demo_workspace):
    """`phi3tui WS` goes to the app without importing the command modules (they cost the first paint)."""
    code = (
        "import sys; from phi3tui.cli import plan; _, args, ws = plan(['--screen', 'train', sys.argv[1]]); "
        "print(ws, args.screen, sorted(m for m in sys.modules if m.startswith('phi3tui.commands.')))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(demo_workspace)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(demo_workspace), "train", "[]"]


def test_command_names_are_the_registered_commands():
    from phi3tui.cli import build_parser
    from phi3tui.commands import COMMAND_NAMES

    assert build_parser()[1] == COMMAND_NAMES


def test_every_subcommand_has_help():
    from phi3tui.cli import build_parser

    _, commands = build_parser()
    for command in sorted(commands):
        proc = run_cli(command, "--help")
        assert proc.returncode == 0, (command, proc.stderr)
        assert proc.stdout.startswith("usage: phi3tui " + command), command


@pytest.mark.parametrize("kind", ["missing", "empty", "file"])
def test_not_a_workspace_gets_one_line_and_hint(tmp_path, kind):
    target = tmp_path / "x"
    if kind == "empty":
        target.mkdir()
    elif kind == "file":
        target.write_text("hello")
    proc = run_cli(str(target))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("phi3tui: ") and "phi3tui demo" in lines[1]


def test_python_dash_m_and_console_script_agree():
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("phi3tui ")
    script = Path(sys.executable).parent / "phi3tui"
    if script.exists():
        proc2 = subprocess.run([str(script), "--version"], capture_output=True, text=True)
        assert proc2.stdout == proc.stdout


def test_headless_demo_runs_the_whole_job(tmp_path):
    """`phi3tui demo DIR --headless` builds the workspace and every step of the job succeeds."""
    proc = run_cli("demo", str(tmp_path / "ws"), "--headless", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from phi3tui.core.pipeline import STEPS

    for number, (title, *_) in enumerate(STEPS, 1):
        assert f"[{number}/{len(STEPS)}] {title}: ok" in proc.stdout, title
    assert f"{len(STEPS)}/{len(STEPS)} steps succeeded" in proc.stdout
    assert "Traceback" not in proc.stderr
    # The scoring step prints both sides' multiple-choice scores on the test split, saved beside the run.
    assert re.search(r"test questions: base MC1 [01]\.\d+ MC2 0\.\d+, adapted MC1 [01]\.\d+ MC2 0\.\d+", proc.stdout)
    assert list((tmp_path / "ws" / "runs").glob("*/eval-*.json"))
    assert list((tmp_path / "ws" / "exports").glob("*/*-f16.gguf"))
    assert list((tmp_path / "ws" / "exports").glob("*/Modelfile"))


def test_headless_demo_fails_loudly_when_a_step_fails(demo_workspace):
    """A broken workspace makes the job exit non-zero and name the failing step. With --preference (through the
    CLI: the DPO step's own run is tests/test_preference.py's) the DPO pass is a step of the job, after train."""
    (demo_workspace / "data" / "train.jsonl").write_text('{"text": "ok"}\nnot json\n')
    proc = run_cli("demo", str(demo_workspace), "--headless", "--preference", timeout=900)
    assert proc.returncode != 0
    from phi3tui.core.pipeline import STEPS, steps_with_preference

    steps = steps_with_preference()
    assert len(steps) == len(STEPS) + 1
    assert f"[1/{len(steps)}] check the data: FAILED" in proc.stdout
    assert f"[2/{len(steps)}] train: FAILED" in proc.stdout, proc.stdout
    assert f"[3/{len(steps)}] preference-tune (DPO): skipped: train failed" in proc.stdout, proc.stdout
    for number, (title, *_) in enumerate(steps, 1):
        assert f"[{number}/{len(steps)}] {title}: " in proc.stdout, title
