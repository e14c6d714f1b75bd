"""The other Phi families: Phi-3-medium-style grouped KV heads export and agree with MLX; Phi-3-small and Phi-3.5-MoE
are refused with the reason (llama.cpp has no phi3small; the phimoe layout is not written here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_export_fixtures import llama_cpp_or_skip

from phi3tui.core.export import ExportError
from phi3tui.core.export.gguf import write_gguf
from phi3tui.core.export.verify import read_back


def medium_style_model(demo_model: Path, target: Path) -> Path:
    """The demo Phi-3 reshaped like Phi-3-medium: 8 query heads sharing 2 KV heads (medium: 40 and 10)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import phi3

    shutil.copytree(demo_model, target)
    config = json.loads((target / "config.json").read_text())
    config.update(num_attention_heads=8, num_key_value_heads=2)
    mx.random.seed(1)
    net = phi3.Model(phi3.ModelArgs.from_dict(config))
    mx.eval(net.parameters())
    mx.save_safetensors(str(target / "model.safetensors"), dict(tree_flatten(net.parameters())), metadata={"format": "mlx"})
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_medium_style_grouped_kv_heads_agree_with_mlx_in_llama_cpp(demo_model, tmp_path):
    import gguf

    model = medium_style_model(demo_model, tmp_path / "medium")
    result = write_gguf(model, tmp_path / "medium.gguf", "f16")
    assert read_back(result.path, result).ok
    reader = gguf.GGUFReader(result.path)
    assert reader.fields["phi3.attention.head_count"].contents() == 8
    assert reader.fields["phi3.attention.head_count_kv"].contents() == 2
    qkv = next(t for t in reader.tensors if t.name == "blk.0.attn_qkv.weight")
    assert list(qkv.shape) == [64, 64 + 2 * 2 * 8]  # Q then K, V of 2 heads of 8
    llama_cpp_or_skip()
    from phi3tui.core.export.verify import verify_gguf

    agreement = verify_gguf(model, result.path, "f16", ["Why is the sky blue?", "What happens if you crack your knuckles a lot?"], 8)
    assert agreement.ok and all(r.same_tokens for r in agreement.rows), agreement.summary()
    assert agreement.cosine >= 0.9999


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"model_type": "phi3small", "architectures": ["Phi3SmallForCausalLM"]}, "llama.cpp has no phi3small architecture"),
        ({"model_type": "phimoe", "architectures": ["PhiMoEForCausalLM"], "num_local_experts": 4, "num_experts_per_tok": 2},
         "Phi-3.5-MoE \\(phimoe\\) is not exported yet: llama.cpp's phimoe architecture needs the 16 experts"),
    ],
)
def test_phi3_small_and_phimoe_are_refused_with_the_reason(demo_model, tmp_path, change, reason):
    model = tmp_path / "model"
    shutil.copytree(demo_model, model)
    config = json.loads((model / "config.json").read_text())
    config.update(change)
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match=reason) as info:
        write_gguf(model, tmp_path / "out.gguf")
    assert str(model / "config.json") in str(info.value)
    assert list(tmp_path.glob("out.gguf*")) == []
