"""The known Phi models: facts, LoRA keys, trainable counts and memory offline, before any download.

The table's configs build mlx-lm's real (weightless) structures; a tiny model of the same shape, built and
evaluated with weights, gives the same trainable count through mlx-lm's own LoRA conversion.
"""

from __future__ import annotations

import pytest

from phi3tui.core import models
from phi3tui.core.config import review_config

MINI = "microsoft/Phi-3-mini-4k-instruct"
QKV_O_RANK64 = {"keys": ["self_attn.o_proj", "self_attn.qkv_proj"], "rank": 64, "scale": 20.0, "dropout": 0.0}


def test_the_table_holds_each_phi_and_its_mlx_community_builds():
    repos = {m.repo for m in models.known_models()}
    bases = {"Phi-3-mini-4k-instruct", "Phi-3-mini-128k-instruct", "Phi-3.5-mini-instruct", "Phi-3-medium-4k-instruct",
             "Phi-3-medium-128k-instruct", "Phi-3.5-MoE-instruct", "Phi-4-mini-instruct"}
    for name in bases:
        assert {f"microsoft/{name}", f"mlx-community/{name}-4bit", f"mlx-community/{name}-8bit"} <= repos
    assert "microsoft/Phi-3-small-8k-instruct" in repos
    assert models.known_model("MICROSOFT/phi-3-mini-4k-instruct").repo == MINI  # repo ids are case-blind
    assert models.known_model("acme/other") is None


@pytest.mark.parametrize("repo, blocks, hidden, heads, kv, context, rope, tokenizer, experts", [
    (MINI, 32, 3072, 32, 32, 4096, "plain", "SentencePiece BPE", None),
    ("microsoft/Phi-3.5-mini-instruct", 32, 3072, 32, 32, 131072, "longrope", "SentencePiece BPE", None),
    ("mlx-community/Phi-3-medium-128k-instruct-4bit", 40, 5120, 40, 10, 131072, "longrope", "SentencePiece BPE", None),
    ("microsoft/Phi-3.5-MoE-instruct", 32, 4096, 32, 8, 131072, "longrope", "SentencePiece BPE", 16),
    ("microsoft/Phi-4-mini-instruct", 32, 3072, 24, 8, 131072, "longrope", "byte-level BPE", None),
])
def test_facts_of_a_known_model(repo, blocks, hidden, heads, kv, context, rope, tokenizer, experts):
    known = models.known_model(repo)
    info = known.info
    assert (info.num_blocks, info.hidden_size, info.attention_heads, info.kv_heads, info.context, info.rope_kind,
            info.experts) == (blocks, hidden, heads, kv, context, rope, experts)
    assert known.tokenizer == tokenizer
    assert f"{blocks} blocks" in known.facts() and f"{heads}/{kv} KV" in known.facts()


def test_sizes_on_disk_follow_the_published_parameter_counts():
    # Phi-3-mini has 3,821,079,552 parameters (bf16: 2 bytes each); 4-bit packs 8 weights in 4 bytes plus a bf16
    # scale and bias per 64; Phi-3.5-MoE is 41.9 B parameters.
    mini = models.known_model(MINI).size_on_disk()
    assert mini == 2 * 3_821_079_552
    four = models.known_model("mlx-community/Phi-3-mini-4k-instruct-4bit").size_on_disk()
    assert 0.25 < four / mini < 0.3
    assert models.known_model("microsoft/Phi-3.5-MoE-instruct").size_on_disk() == pytest.approx(2 * 41.87e9, rel=0.01)
    # Phi-4-mini ties its embeddings: one 200064 x 3072 matrix, not two.
    assert models.known_model("microsoft/Phi-4-mini-instruct").size_on_disk() == pytest.approx(2 * 3.836e9, rel=0.005)


def test_trainable_count_offline_is_the_published_figure():
    config = models.known_model(MINI).structure_config()
    plan = models.plan_lora(config, 32, QKV_O_RANK64)
    assert plan.trainable == 37_748_736 and plan.blocks == 32
    quantized = models.known_model("mlx-community/Phi-3-mini-4k-instruct-4bit").structure_config()
    assert models.plan_lora(quantized, 32, QKV_O_RANK64).trainable == 37_748_736


@pytest.mark.parametrize("repo, keys", [
    ("microsoft/Phi-4-mini-instruct", ["self_attn.qkv_proj", "mlp.down_proj"]),
    ("microsoft/Phi-3-medium-4k-instruct", ["self_attn.qkv_proj", "self_attn.o_proj"]),
    ("microsoft/Phi-3.5-MoE-instruct", ["self_attn.q_proj", "block_sparse_moe.switch_mlp.down_proj"]),
])
def test_offline_count_equals_a_real_tiny_model_of_the_same_shape(repo, keys):
    """Scaled down by the same factor in every width (heads, KV heads and experts kept), the table's config
    built with real weights and converted by mlx-lm trains exactly what plan_lora says for it."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from phi3tui.core.mlx_lm_private import model_classes

    config = models.known_model(repo).structure_config()
    scale = 16
    head_dim = config["hidden_size"] // config["num_attention_heads"] // scale
    tiny = dict(config, hidden_size=head_dim * config["num_attention_heads"], num_hidden_layers=3,
                intermediate_size=config["intermediate_size"] // scale, vocab_size=512)
    scaling = tiny.get("rope_scaling")
    if scaling:
        half = int(head_dim * tiny.get("partial_rotary_factor", 1.0)) // 2
        tiny["rope_scaling"] = dict(scaling, long_factor=[1.0] * half, short_factor=[1.0] * half)
    lora = {"keys": keys, "rank": 8, "scale": 20.0, "dropout": 0.0}
    model_class, args_class = model_classes(tiny)
    model = model_class(args_class.from_dict(tiny))
    mx.eval(model.parameters())
    model.freeze()
    linear_to_lora_layers(model, 2, dict(lora))
    real = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    assert real > 0
    assert models.plan_lora(tiny, 2, lora).trainable == real


def test_a_known_model_not_downloaded_is_checked_offline(tmp_path):
    text = ("model: mlx-community/Phi-4-mini-instruct-4bit\ntrain: true\ndata: data\nnum_layers: 32\n"
            "lora_parameters:\n  keys: [self_attn.qkv_proj, self_attn.o_proj]\n  rank: 64\n  scale: 20.0\n"
            "  dropout: 0.0\n")
    review = review_config(text, tmp_path)
    assert review.model.location.kind == "not downloaded" and review.model.block_modules
    # Phi-4-mini: 24 query heads, 8 KV heads of 128: qkv out = 3072 + 2 * 1024
    assert review.plan.trainable == 32 * 64 * ((3072 + 3072) + (3072 + 5120))
    assert review.memory is not None and review.memory.weights == models.known_model(
        "mlx-community/Phi-4-mini-instruct-4bit").size_on_disk()
    said = [f.message for f in review.findings if f.field == "model"]
    assert any("not downloaded yet: checked against phi3tui's table" in m for m in said), said
    wrong = text.replace("self_attn.o_proj", "self_attn.dense")
    errors = [f.message for f in review_config(wrong, tmp_path).errors]
    assert any("'self_attn.dense' matches no module" in m for m in errors), errors


def test_the_check_names_the_known_models_a_file_does_not_suit(tmp_path):
    text = ("model: microsoft/Phi-3-medium-4k-instruct\ntrain: true\ndata: data\nnum_layers: 40\n"
            "max_seq_length: 8192\nlora_parameters:\n  keys: [self_attn.qkv_proj]\n  rank: 8\n  scale: 20.0\n"
            "  dropout: 0.0\n")
    review = review_config(text, tmp_path)
    (suits,) = [f.message for f in review.findings if f.message.startswith("known models these settings suit")]
    suited, _, unsuited = suits.partition("; not: ")
    assert suited.endswith("suit: Phi-3-medium-128k-instruct")
    assert "Phi-3-mini-4k-instruct (num_layers 40 > its 32 blocks; max_seq_length 8192 > its context 4096)" in unsuited
    assert "Phi-3-medium-4k-instruct (max_seq_length 8192 > its context 4096)" in unsuited
    assert "no self_attn.qkv_proj in its phimoe blocks" in unsuited
    # The file's own model: its context is said as a warning on max_seq_length.
    assert any(f.field == "max_seq_length" and "context is 4096" in f.message for f in review.findings)
    fitting = text.replace("num_layers: 40", "num_layers: 16").replace("max_seq_length: 8192", "max_seq_length: 2048")
    (suits,) = [f.message for f in review_config(fitting, tmp_path).findings if f.message.startswith("known models")]
    assert "; not: Phi-3.5-MoE-instruct (no self_attn.qkv_proj in its phimoe blocks), Phi-3-small-8k-instruct" in suits


def test_the_model_picker_offers_known_models_with_their_facts(demo_workspace):
    choices, _ = models.model_choices(demo_workspace)
    labels = dict((value, label) for label, value in choices)
    assert labels["model"] == "model  (folder in this workspace)"
    phi4 = labels["microsoft/Phi-4-mini-instruct"]
    assert phi4.startswith("microsoft/Phi-4-mini-instruct  (not downloaded)\n")
    assert "32 blocks" in phi4 and "24/8 KV" in phi4 and "byte-level BPE" in phi4 and "GB" in phi4
    assert "16 experts" in labels["mlx-community/Phi-3.5-MoE-instruct-4bit"]
