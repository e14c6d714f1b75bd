"""Phi-3.5-MoE (phimoe) and Phi-3-small (phi3small): trained by mlx-lm, but their GGUF is refused with llama.cpp's
reason BEFORE anything is fused or written, by the wizard's job, `phi3tui export all`, `export lora-gguf` and the
headless demo's fuse step. `phi3tui export fuse` (the MLX folder, no GGUF) still works for them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from test_export_fixtures import finished_training, record_run, train_adapter

from phi3tui.core.export import ExportError

RUN_ID = "20260101-000000-family"
TINY = {
    "phimoe": dict(architectures=["PhiMoEForCausalLM"], model_type="phimoe", hidden_size=64, intermediate_size=64,
                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
                   num_experts_per_tok=2, rms_norm_eps=1e-5, rope_scaling=None, max_position_embeddings=4096),
    "phi3small": dict(architectures=["Phi3SmallForCausalLM"], model_type="phi3small", hidden_size=64,
                      ff_intermediate_size=128, dense_attention_every_n_layers=2, gegelu_limit=20.0,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, layer_norm_epsilon=1e-5,
                      blocksparse_block_size=32, blocksparse_num_local_blocks=4, blocksparse_vert_stride=2,
                      max_position_embeddings=8192),
}
REASONS = {
    "phimoe": "Phi-3.5-MoE (phimoe) is not exported yet: llama.cpp's phimoe architecture needs",
    "phi3small": "llama.cpp has no phi3small architecture",
}
KEYS = {"phimoe": ["self_attn.q_proj", "self_attn.v_proj"], "phi3small": ["self_attn.query_key_value"]}


def family_workspace(demo_template: Path, root: Path, family: str) -> Path:
    """The demo workspace whose model/ is a tiny random model of `family` (the demo tokenizer), with an adapter
    mlx-lm trained on it."""
    if finished_training(root):  # a finished training only: adapters.safetensors comes at the first checkpoint
        return root
    import mlx.core as mx
    from mlx.utils import tree_flatten

    from phi3tui.core.mlx_lm_private import model_classes

    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(demo_template, root)
    model_dir = root / "model"
    demo_config = json.loads((model_dir / "config.json").read_text())
    config = dict(TINY[family], vocab_size=demo_config["vocab_size"], torch_dtype="float32")
    for weights in model_dir.glob("*.safetensors"):
        weights.unlink()
    model_class, args_class = model_classes(config)
    mx.random.seed(3)
    net = model_class(args_class.from_dict(config))
    mx.eval(net.parameters())
    mx.save_safetensors(str(model_dir / "model.safetensors"), dict(tree_flatten(net.parameters())),
                        metadata={"format": "mlx"})
    (model_dir / "config.json").write_text(json.dumps(config))
    text = (root / "lora_config.yaml").read_text()
    (root / "lora_config.yaml").write_text(text + "lora_parameters:\n  keys: " + json.dumps(KEYS[family]) +
                                           "\n  rank: 4\n  scale: 10.0\n  dropout: 0.0\n")
    adapters = root / "runs" / RUN_ID / "adapters"
    if family == "phi3small":
        # mlx's backward pass through phi3small crashes the process on CPU (SIGSEGV in mlx_lm lora), so its adapter
        # is mlx-lm's LoRA layers as training starts (B = 0), saved as mlx-lm saves adapters.
        from mlx_lm.tuner.utils import linear_to_lora_layers

        lora = {"keys": KEYS[family], "rank": 4, "scale": 10.0, "dropout": 0.0}
        net.freeze()
        linear_to_lora_layers(net, 2, dict(lora))
        adapters.mkdir(parents=True)
        mx.save_safetensors(str(adapters / "adapters.safetensors"), dict(tree_flatten(net.trainable_parameters())))
        (adapters / "adapter_config.json").write_text(json.dumps(
            {"model": "model", "fine_tune_type": "lora", "num_layers": 2, "lora_parameters": lora,
             "max_seq_length": 512}))
        record_run(adapters.parent)
    else:
        train_adapter(root, f"runs/{RUN_ID}/adapters", "--num-layers", "2")
    return root


@pytest.fixture(scope="session", params=["phimoe", "phi3small"])
def family_template(request, demo_template, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / f"family-{request.param}" / "ws"
    return request.param, family_workspace(demo_template, root, request.param)


@pytest.fixture
def family_ws(family_template, tmp_path):
    family, template = family_template
    shutil.copytree(template, tmp_path / "ws")
    return family, tmp_path / "ws"


def nothing_exported(ws: Path) -> bool:
    return not any((ws / "exports").rglob("*"))  # the demo workspace comes with an empty exports/


def test_export_all_refuses_before_fusing(family_ws):
    family, ws = family_ws
    proc = run_cli("export", "all", "-w", str(ws), "--name", "fam")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert REASONS[family] in proc.stderr and str(ws / "model" / "config.json") in proc.stderr
    assert "fused" not in proc.stdout  # no fuse ran
    assert nothing_exported(ws)


def test_the_wizards_job_and_lora_gguf_refuse_before_writing(family_ws):
    from phi3tui.core.export.job import ExportJob

    family, ws = family_ws
    job = ExportJob.create(ws, name="fam")
    with pytest.raises(ExportError, match=REASONS[family].replace("(", r"\(").replace(")", r"\)")):
        job.run_fuse()
    with pytest.raises(ExportError, match="phi3small|phimoe"):
        job.run_lora()
    assert not job.fused_dir.exists() and not job.lora_path.exists() and not job.base_gguf_path.exists()
    lora = run_cli("export", "lora-gguf", "-w", str(ws), "--name", "fam")
    assert lora.returncode == 2 and REASONS[family] in lora.stderr
    assert nothing_exported(ws)


def test_the_headless_demo_refuses_at_its_fuse_step(family_ws):
    from phi3tui.core.export.fuse import demo_step
    from phi3tui.core.workspace import Workspace

    family, ws = family_ws
    with pytest.raises(ExportError, match="phi3small|phimoe") as info:
        demo_step(Workspace.open(ws), {"adapter_dir": str(ws / "runs" / RUN_ID / "adapters")})
    assert REASONS[family] in str(info.value)
    assert nothing_exported(ws)


def test_fusing_alone_still_gives_the_mlx_folder(family_ws):
    family, ws = family_ws
    proc = run_cli("export", "fuse", "-w", str(ws), "--name", "fam")
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = json.loads((ws / "exports" / "fam" / "fused" / "config.json").read_text())
    assert config["model_type"] == family


async def test_the_wizard_refuses_at_its_first_step_and_names_the_reason(family_ws):
    from test_export_screen import log_text, wait_idle

    from phi3tui.app import Phi3App
    from phi3tui.core.workspace import Workspace

    family, ws = family_ws
    app = Phi3App(Workspace(ws), start_mode="export")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        screen = app.screen
        assert "de-quantize auto (d)" in str(screen.query_one("#export-choices").render())
        await pilot.press("a")
        await wait_idle(pilot, screen)
        steps = screen.query_one("#export-steps")
        assert steps.states["fuse"] == "failed", log_text(screen)
        assert REASONS[family] in log_text(screen)
        assert steps.states["gguf"] != "done"
        assert nothing_exported(ws)
        await pilot.press("d")  # auto <-> off: off refuses a quantized base instead of de-quantizing it
        await pilot.pause(0.2)
        assert "de-quantize off (d)" in str(screen.query_one("#export-choices").render())
