"""Phi-4-mini (phi3 architecture, byte-level BPE vocabulary) to GGUF: the gpt2-kind vocabulary, the pre-tokenizer
chosen from tokenizer.json, partial rotary, tied embeddings, grouped KV heads, LongRoPE; with llama-cpp-python, the
same token ids as HF and MLX's greedy tokens with an adapter fused in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_export_fixtures import finished_training, llama_cpp_or_skip, train_adapter

from phi3tui.core.export import ExportError
from phi3tui.core.export.gguf import write_gguf
from phi3tui.core.export.verify import read_back

RUN_ID = "20260101-000000-phi4"


@pytest.fixture(scope="session")
def phi4_template(tmp_path_factory) -> Path:
    """Read-only: a tiny random Phi-4-mini-style model built by core/demo.py."""
    from phi3tui.core.demo import write_phi4_mini_model

    model = tmp_path_factory.mktemp("phi4") / "model"
    write_phi4_mini_model(model)
    return model


@pytest.fixture
def phi4_model(phi4_template, tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(phi4_template, target)
    return target


@pytest.fixture(scope="session")
def phi4_trained_template(demo_template, phi4_template, tmp_path_factory) -> Path:
    """Read-only: the demo workspace with the Phi-4-mini-style model as its model and a trained adapter."""
    root = tmp_path_factory.getbasetemp() / "phi4-trained" / "ws"
    if not finished_training(root):  # adapters.safetensors alone comes at the first checkpoint, before the end
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(demo_template, root)
        shutil.rmtree(root / "model")
        shutil.copytree(phi4_template, root / "model")
        train_adapter(root, f"runs/{RUN_ID}/adapters")
    return root


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_phi4_mini_gguf_is_written_as_llama_cpps_converter_writes_it(phi4_model, tmp_path):
    import gguf

    config = json.loads((phi4_model / "config.json").read_text())
    tok = json.loads((phi4_model / "tokenizer.json").read_text())
    result = write_gguf(phi4_model, tmp_path / "p4.gguf", "f16", name="my-phi3-finetune")
    assert read_back(result.path, result).ok
    reader = gguf.GGUFReader(result.path)
    f = reader.fields
    assert f["tokenizer.ggml.model"].contents() == "gpt2"
    assert f["tokenizer.ggml.pre"].contents() == "gpt-4o"  # from the o200k Split regex, not from a hash
    assert "tokenizer.ggml.scores" not in f
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    n_vocab = config["vocab_size"]
    assert len(tokens) == len(types) == n_vocab
    pieces = tok["model"]["vocab"]
    assert all(tokens[i] == p and types[i] == 1 for p, i in pieces.items())  # NORMAL, byte-level strings as stored
    specials = {a["content"]: a["id"] for a in tok["added_tokens"]}
    assert all(tokens[i] == c and types[i] == 3 for c, i in specials.items())  # CONTROL
    top = max(specials.values())
    assert top + 1 < n_vocab and all(tokens[i] == f"[PAD{i}]" and types[i] == 5 for i in range(top + 1, n_vocab))
    assert f["tokenizer.ggml.merges"].contents() == [" ".join(m) for m in tok["model"]["merges"]]
    eot = specials["<|endoftext|>"]
    for key in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"):
        assert f[f"tokenizer.ggml.{key}"].contents() == eot, key
    assert f["tokenizer.ggml.add_bos_token"].contents() is False
    assert f["tokenizer.chat_template"].contents() == json.loads((phi4_model / "tokenizer_config.json").read_text())["chat_template"]
    # llama.cpp applies Phi-3's token rules when general.name says phi3, and they need <s>/<unk>: the name must not.
    assert f["general.name"].contents() == "my-Phi-finetune"
    assert any("general.name 'my-Phi-finetune'" in n for n in result.notes)  # said, not silent
    # The model: partial rotary 0.75 of head dim 16, tied embeddings, 2 KV heads, LongRoPE, sliding window.
    assert f["phi3.rope.dimension_count"].contents() == 12
    assert f["phi3.attention.head_count_kv"].contents() == 2
    assert f["phi3.attention.sliding_window"].contents() == 262144
    names = {t.name: t for t in reader.tensors}
    assert "output.weight" not in names
    assert list(names["rope_factors_long.weight"].data) == config["rope_scaling"]["long_factor"]
    assert list(names["blk.0.attn_qkv.weight"].shape) == [64, 64 + 2 * 2 * 16]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex=r"\p{L}+|\p{N}+|\s+"), "matches none of the llama.cpp pre-tokenizers"),
        (lambda t: t["pre_tokenizer"]["pretokenizers"][1].update(use_regex=True), "matches none of the llama.cpp pre-tokenizers"),
        (lambda t: t.update(pre_tokenizer={"type": "Whitespace"}), "matches none of the llama.cpp pre-tokenizers"),
        (lambda t: t.update(normalizer={"type": "NFC"}), "normalizer"),
        (lambda t: t["model"].update(merges=[]), "merges is empty"),
    ],
)
def test_a_byte_level_tokenizer_llama_cpp_would_split_differently_is_refused(phi4_model, tmp_path, change, message):
    edit_json(phi4_model / "tokenizer.json", change)
    with pytest.raises(ExportError, match=message) as info:
        write_gguf(phi4_model, tmp_path / "x.gguf")
    assert "tokenizer.json" in str(info.value)
    assert list(tmp_path.glob("x.gguf*")) == []


def test_llama_cpp_tokenizes_the_check_strings_as_hf_does(phi4_model, tmp_path, monkeypatch):
    llama_cpp_or_skip()
    from phi3tui.core.export import vocab
    from phi3tui.core.export.verify import TOKENIZER_CHECK_STRINGS, check_tokenizer

    result = write_gguf(phi4_model, tmp_path / "p4.gguf", "f16")
    check = check_tokenizer(phi4_model, result.path)
    assert check.ok, check.summary()
    assert len(check.strings) == len(TOKENIZER_CHECK_STRINGS) >= 12
    specials = {a["content"]: a["id"] for a in json.loads((phi4_model / "tokenizer.json").read_text())["added_tokens"]}
    assert any(specials["<|user|>"] in ids and specials["<|end|>"] in ids for ids in check.hf)  # special tokens parsed
    # The check has teeth, and gpt-4o is the only right name: llama.cpp's other splits give other ids somewhere.
    for other in ("gpt-2", "llama-bpe", "qwen2"):
        monkeypatch.setitem(vocab.KNOWN_PRE_TOKENIZERS, next(iter(vocab.KNOWN_PRE_TOKENIZERS)), other)
        wrong = write_gguf(phi4_model, tmp_path / f"{other}.gguf", "f16")
        bad = check_tokenizer(phi4_model, wrong.path)
        assert not bad.ok and "first difference" in bad.summary(), other


def test_phi4_mini_f16_gguf_with_a_fused_adapter_gives_mlxs_greedy_tokens(phi4_trained_template, tmp_path):
    llama_cpp_or_skip()
    from phi3tui.core.export.job import ExportJob
    from phi3tui.core.export.verify import check_tokenizer

    ws = tmp_path / "ws"
    shutil.copytree(phi4_trained_template, ws)
    job = ExportJob.create(ws, name="phi4", max_tokens=8)
    job.run_fuse()
    from phi3tui.core.export.gguf import read_safetensors

    # The adapter is really in: the fused attention weights are not the base's.
    base, fused = read_safetensors(ws / "model"), read_safetensors(job.fused_dir)
    name = "model.layers.0.self_attn.qkv_proj.weight"
    assert (base[name].read_rows(0, base[name].rows) != fused[name].read_rows(0, fused[name].rows)).any()
    result, report = job.run_gguf()
    assert report.ok and "output.weight" not in {name for name, _, _ in result.tensors}
    tokenizer_check = check_tokenizer(job.fused_dir, job.gguf_path)
    assert tokenizer_check.ok, tokenizer_check.summary()
    lines = job.run_verify()
    assert lines[1] == f"{job.gguf_path.name}: llama.cpp tokenizes 14/14 check strings as the model's tokenizer does"
    (agreement,) = job.results["verify"][1]
    assert agreement.ok, lines
    assert all(r.same_tokens and len(r.llama_tokens) == 8 for r in agreement.rows)
    assert agreement.cosine >= 0.9999


def test_verify_stops_at_the_tokenizer_when_llama_cpp_splits_text_otherwise(phi4_trained_template, tmp_path, monkeypatch):
    llama_cpp_or_skip()
    from phi3tui.core.export import vocab
    from phi3tui.core.export.job import VERIFY_DISAGREES, ExportJob

    ws = tmp_path / "ws"
    shutil.copytree(phi4_trained_template, ws)
    job = ExportJob.create(ws, name="phi4")
    job.run_fuse()
    monkeypatch.setitem(vocab.KNOWN_PRE_TOKENIZERS, next(iter(vocab.KNOWN_PRE_TOKENIZERS)), "llama-bpe")  # a wrong name
    job.run_gguf()
    with pytest.raises(ExportError, match=r"tokenizes \d+/14 check strings .*first difference"):
        job.run_verify()
    assert job.verify_state == VERIFY_DISAGREES and job.results["verify"][1] == []  # no logits compared
