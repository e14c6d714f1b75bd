"""Probes during training: the real runner on the demo model answers probe_prompts greedily right after
each checkpoint, with the weights it holds, into the run folder; probing changes nothing about training."""

from __future__ import annotations

import json
import shutil

import pytest

from phi3tui.core import runs
from phi3tui.core.eval import read_probes
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli

# Dropout on: a probe that left dropout on or drew from MLX's random state would change the weights.
LORA = {"keys": ["self_attn.o_proj", "self_attn.qkv_proj", "mlp.gate_up_proj", "mlp.down_proj"], "rank": 8,
        "scale": 2.0, "dropout": 0.1}
QUICK = dict(iters=20, steps_per_report=5, steps_per_eval=10, save_every=10, val_batches=2, lora_parameters=LORA)


def greedy_answer(model_dir, adapter_dir, prompt: str, max_tokens: int) -> str:
    """The answer plain mlx-lm gives for this checkpoint: load with adapter_path, greedy generate."""
    from mlx_lm import generate, load

    model, tokenizer = load(str(model_dir), adapter_path=str(adapter_dir))
    tokens = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    tokenizer.add_eos_token("<|end|>")
    return generate(model, tokenizer, tokens, max_tokens=max_tokens).strip()


def test_probes_after_each_checkpoint_and_identical_training(demo_workspace, tmp_path):
    import mlx.core as mx

    ws = Workspace.open(demo_workspace)
    probed = runs.start_run(ws, overrides=dict(QUICK, probe_prompts=2, probe_max_tokens=8))
    plain = runs.start_run(ws, overrides=QUICK)
    assert runs.wait_for_run(probed, timeout=300)["state"] == "finished", (probed / "log.txt").read_text()[-2000:]
    assert runs.wait_for_run(plain, timeout=300)["state"] == "finished"

    probes = read_probes(probed)
    assert sorted(probes) == [10, 20]  # one file per checkpoint
    test_prompts = [json.loads(line) for line in (demo_workspace / "data" / "test.jsonl").read_text().splitlines()[:2]]
    for iteration, answers in probes.items():
        assert [a["iteration"] for a in answers] == [iteration, iteration]
        assert [a["prompt"] for a in answers] == [runs_prompt(r) for r in test_prompts]
    assert not (plain / "probes").exists()

    # The answer is the checkpoint's own: plain mlx-lm, loading that checkpoint, says the same.
    check = tmp_path / "ckpt10"
    check.mkdir()
    shutil.copy(probed / "adapters" / "adapter_config.json", check)
    shutil.copy(probed / "adapters" / "0000010_adapters.safetensors", check / "adapters.safetensors")
    first = probes[10][0]
    assert first["answer"] == greedy_answer(demo_workspace / "model", check, first["prompt"], 8)

    # Probing leaves training exactly as it was: the same final weights, bit for bit.
    a = mx.load(str(probed / "adapters" / "adapters.safetensors"))
    b = mx.load(str(plain / "adapters" / "adapters.safetensors"))
    assert a.keys() == b.keys()
    assert max(mx.max(mx.abs(a[k] - b[k])).item() for k in a) == 0.0

    # The CLI prints them, newest checkpoint first.
    out = run_cli("runs", "probes", probed.name, str(demo_workspace))
    assert out.returncode == 0, out.stderr
    assert out.stdout.index("iteration 20") < out.stdout.index("iteration 10")
    assert first["prompt"] in out.stdout


def runs_prompt(record: dict) -> str:
    from phi3tui.core.chat import prompt_from_record

    return prompt_from_record(record)[0]


@pytest.mark.parametrize(
    "value, said",
    [("missing.txt", "missing.txt does not exist"), (0, "at least 1"), (True, "a file of prompts or a whole number")],
)
def test_bad_probe_prompts_are_refused_before_a_run_starts(demo_workspace, value, said):
    config = demo_workspace / "lora_config.yaml"
    config.write_text(config.read_text() + f"probe_prompts: {json.dumps(value)}\n")
    before = sorted(p.name for p in demo_workspace.rglob("*"))
    out = run_cli("train", "-w", str(demo_workspace))
    assert out.returncode != 0
    assert "probe_prompts" in out.stderr and said in out.stderr, out.stderr
    assert sorted(p.name for p in demo_workspace.rglob("*")) == before  # no run folder


def test_probe_file_one_prompt_a_line_or_jsonl(demo_workspace):
    from phi3tui.core.eval import EvalError, read_probe_prompts

    (demo_workspace / "probes.txt").write_text("What is 2+2?\n\nName a colour.\n")
    (demo_workspace / "probes.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "Hi?"}]}) + "\n"
                                                 + json.dumps({"prompt": "Why?"}) + "\n")
    data = demo_workspace / "data"
    assert [p.prompt for p in read_probe_prompts("probes.txt", demo_workspace, data)] == ["What is 2+2?", "Name a colour."]
    assert [p.prompt for p in read_probe_prompts("probes.jsonl", demo_workspace, data)] == ["Hi?", "Why?"]
    assert len(read_probe_prompts(3, demo_workspace, data)) == 3
    (demo_workspace / "bad.jsonl").write_text('{"prompt": "ok"}\n{"nothing": 1}\n')
    with pytest.raises(EvalError, match=r"probe_prompts: .*bad.jsonl:2"):
        read_probe_prompts("bad.jsonl", demo_workspace, data)
