"""Verify on a Mac's unified memory (issue 23): MLX runs the model in its own dtype (a float32 copy of Phi-3-mini
would take ~15 GB), the near-tie rule allows for that dtype's own rounding, and the MLX model is released (and MLX's
cache cleared) before llama.cpp loads the GGUF. Real MLX on the demo model, cast to bfloat16 as Phi-3 ships."""

from __future__ import annotations

import dataclasses

import mlx.core as mx
import numpy as np
import pytest
from test_export_fixtures import llama_cpp_or_skip

from phi3tui.core.export import verify
from phi3tui.core.export.gguf import write_gguf

PROMPTS = ["Why is the sky blue?"]


def bf16_loader(model_dir):
    """load_model for run_mlx_side: the demo model in bfloat16 (Phi-3's own dtype), with the bytes it holds."""
    from mlx_lm.utils import load

    held = {}

    def load_model():
        before = mx.get_active_memory()
        model, tokenizer, config = load(str(model_dir), return_config=True)
        model.set_dtype(mx.bfloat16)
        mx.eval(model.parameters())
        mx.clear_cache()
        held["weights"] = mx.get_active_memory() - before
        return model, tokenizer, config

    return load_model, held


def test_the_reference_runs_in_the_models_own_dtype(demo_model):
    load_model, _ = bf16_loader(demo_model)
    model, tokenizer, _ = load_model()
    gaps, slack = [], []
    ((ids, tokens, logits),) = verify.mlx_reference(model, tokenizer, PROMPTS, 4, gaps, slack)
    assert verify.model_dtype(model) == "bfloat16"  # not cast to float32
    expected = np.array(model(mx.array([ids]))[0].astype(mx.float32))
    assert logits.dtype == np.float32 and np.array_equal(logits, expected)  # bfloat16 logits, handed back as float32
    # Greedy: each token is the argmax of bfloat16 logits; the slack is bfloat16's own rounding at the top logit.
    assert tokens[0] == int(expected[-1].argmax()) and len(tokens) == len(gaps[0]) == len(slack[0]) == 4
    assert slack[0][0] == pytest.approx(abs(float(expected[-1].max())) * 2 ** -7) and all(s > 0 for s in slack[0])


def test_the_mlx_model_is_released_before_llama_cpp_could_load(demo_model):
    load_model, held = bf16_loader(demo_model)
    baseline = mx.get_active_memory()
    side = verify.run_mlx_side(load_model, PROMPTS, 4)
    assert held["weights"] > 300_000 and side.dtype == "bfloat16"  # the demo model held ~0.6 MB while loaded
    # Once run_mlx_side returns (the point where compare_with_llama starts llama.cpp), MLX holds none of it.
    assert side.active_after_release - baseline < 0.05 * held["weights"], (side.active_after_release, held)
    assert mx.get_cache_memory() == 0
    ((_, tokens, _),) = side.reference
    assert len(tokens) == 4 and side.tokenizer.decode(tokens)


def test_tie_slack_is_the_dtypes_rounding_and_nothing_for_float32():
    assert verify.tie_slack(mx.bfloat16, -20.0) == pytest.approx(20 * 2 ** -7)
    assert verify.tie_slack(mx.float16, 20.0) == pytest.approx(20 * 2 ** -10)
    assert verify.tie_slack(mx.float32, 20.0) == 0.0


def test_a_bfloat16_reference_allows_its_own_rounding_and_no_more():
    gap = verify.NEAR_TIE_EPS + 0.1  # beyond the float32 rule
    row = verify.PromptAgreement("p", [1, 2, 3], [1, 9, 9], 0.999, 0.0, 1.0, mlx_gaps=[5.0, gap, 1.0])
    assert not row.near_tie  # float32 reference (no slack): refused
    within = dataclasses.replace(row, mlx_slack=[0.0, 0.1 + 1e-6, 0.0])
    assert within.near_tie and "+ 0.1000 for MLX's own rounding" in within.divergence_text()
    beyond = dataclasses.replace(row, mlx_slack=[0.0, 0.1 - 1e-6, 0.0])
    assert not beyond.near_tie and "not a near tie" in beyond.divergence_text()


def test_verify_of_the_demo_gguf_passes_with_mlx_released(demo_model, tmp_path):
    llama_cpp_or_skip()
    path = write_gguf(demo_model, tmp_path / "m.gguf", "f16").path
    baseline = mx.get_active_memory()
    agreement = verify.verify_gguf(demo_model, path, "f16", PROMPTS, 6)
    assert agreement.ok, agreement.summary()
    assert agreement.mlx_dtype == "float32"  # the demo model's own dtype
    assert agreement.mlx_active_at_llama_start - baseline < 1_000_000


def test_a_16_bit_reference_is_held_to_what_16_bits_can_hold():
    row = verify.PromptAgreement("p", [1, 2], [1, 2], 0.9995, 0.0, 1.0, mlx_gaps=[1.0, 1.0])
    f16 = verify.Agreement("f16", [row])  # a float32 reference (the demo model): the f16 rule, cos >= 0.9999
    assert f16.rule() == (0.9999, True) and not f16.ok
    bf16_reference = dataclasses.replace(f16, mlx_dtype="bfloat16")
    assert bf16_reference.rule() == (0.999, True) and bf16_reference.ok  # bf16's own cosine, same tokens still
    assert "needs cos >= 0.999, same tokens" in bf16_reference.summary()
    q4 = verify.Agreement("q4_0", [row], mlx_dtype="bfloat16")
    assert q4.rule() == (0.8, False)  # never tighter than the GGUF type's own rule
