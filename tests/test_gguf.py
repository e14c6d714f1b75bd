"""The phi3 GGUF writer: keys, tensors, types, vocabulary, errors, and (with llama-cpp-python) parity with MLX."""

from __future__ import annotations

import json
import math
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_export_fixtures import llama_cpp_or_skip, trained_template, trained_ws  # noqa: F401

from phi3tui.core.export import ExportError
from phi3tui.core.export.gguf import OUT_TYPES, read_safetensors, write_gguf
from phi3tui.core.export.verify import MODEL_KEYS, read_back
from phi3tui.core.export.vocab import build_vocab, from_tokenizer_json

PER_BLOCK = ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down")


def model_copy(demo_model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(demo_model, target)
    return target


def edit_config(model_dir: Path, **changes) -> dict:
    config = json.loads((model_dir / "config.json").read_text())
    config.update(changes)
    (model_dir / "config.json").write_text(json.dumps(config))
    return config


def src_weights(model_dir: Path) -> dict[str, np.ndarray]:
    return {k: np.array(v.read_rows(0, v.rows), dtype=np.float32).reshape(v.shape) for k, v in read_safetensors(model_dir).items()}


@pytest.mark.parametrize("outtype", OUT_TYPES)
def test_each_output_type_reads_back_complete(demo_model, tmp_path, outtype):
    import gguf

    result = write_gguf(demo_model, tmp_path / f"m-{outtype}.gguf", outtype, name="my-finetune")
    report = read_back(result.path, result)
    assert report.ok, report.problems
    reader = gguf.GGUFReader(result.path)
    fields = reader.fields
    for key, type_name in MODEL_KEYS.items():
        assert fields[key].types[0].name == type_name, key
    config = json.loads((demo_model / "config.json").read_text())
    assert fields["general.architecture"].contents() == "phi3"
    assert fields["general.type"].contents() == "model"
    assert "phi-3" in fields["general.name"].contents().lower()  # llama.cpp's Phi-3 tokenizer behaviour
    assert fields["general.file_type"].contents() == {
        "f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, "q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9,
    }[outtype]
    assert fields["phi3.block_count"].contents() == config["num_hidden_layers"]
    assert fields["phi3.rope.dimension_count"].contents() == config["hidden_size"] // config["num_attention_heads"]
    assert fields["phi3.attention.sliding_window"].contents() == 2047
    assert fields["tokenizer.ggml.add_bos_token"].contents() is False  # explicit: llama.cpp would default to True
    assert fields["tokenizer.ggml.add_eos_token"].contents() is False
    assert fields["tokenizer.chat_template"].contents().startswith("{% for message in messages %}")
    n = config["num_hidden_layers"]
    names = {t.name for t in reader.tensors}
    assert names == {"token_embd.weight", "output_norm.weight", "output.weight"} | {
        f"blk.{i}.{p}.weight" for i in range(n) for p in PER_BLOCK
    }
    by_name = {t.name: t for t in reader.tensors}
    h, ff, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    assert list(by_name["blk.0.attn_qkv.weight"].shape) == [h, 3 * h]  # ggml order: fused Q|K|V, not split
    assert list(by_name["blk.0.ffn_up.weight"].shape) == [h, 2 * ff]  # gate and up together, no ffn_gate
    assert list(by_name["token_embd.weight"].shape) == [h, v]
    assert by_name["blk.1.attn_norm.weight"].tensor_type.name == "F32"
    expected_main = {"f32": "F32", "f16": "F16", "bf16": "BF16"}.get(outtype, outtype.upper())
    assert by_name["blk.2.ffn_down.weight"].tensor_type.name == expected_main
    assert by_name["output.weight"].tensor_type.name == ("Q8_0" if outtype[:2] in ("q4", "q5") else expected_main)
    # The values survive: exact casts for f32/f16/bf16, small errors for the quantized types.
    source = src_weights(demo_model)["model.layers.2.mlp.down_proj.weight"]
    t = by_name["blk.2.ffn_down.weight"]
    got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(source.shape)
    rel_rmse = np.sqrt(np.mean((got - source) ** 2)) / np.sqrt(np.mean(source**2))
    bound = {"f32": 0, "f16": 1e-3, "bf16": 1e-2, "q8_0": 1e-2}.get(outtype, 0.12)
    assert rel_rmse <= bound


def test_quantized_tensor_bytes_equal_ggufs_quantizer(demo_model, tmp_path):
    import gguf

    result = write_gguf(demo_model, tmp_path / "q8.gguf", "q8_0")
    reader = gguf.GGUFReader(result.path)
    tensor = next(t for t in reader.tensors if t.name == "blk.0.attn_qkv.weight")
    source = src_weights(demo_model)["model.layers.0.self_attn.qkv_proj.weight"]
    expected = gguf.quants.quantize(source, gguf.GGMLQuantizationType.Q8_0)
    assert tensor.data.tobytes() == expected.tobytes()


def test_streaming_in_small_chunks_writes_the_same_file(demo_model, tmp_path, monkeypatch):
    from phi3tui.core.export import gguf as gguf_mod

    whole = write_gguf(demo_model, tmp_path / "whole.gguf", "q4_0").path.read_bytes()
    monkeypatch.setattr(gguf_mod, "CHUNK_ELEMENTS", 500)  # several row chunks per tensor
    chunked = write_gguf(demo_model, tmp_path / "chunked.gguf", "q4_0").path.read_bytes()
    assert whole == chunked


def test_keys_and_types_match_llama_cpps_reference_phi3_gguf(demo_model, tmp_path, shared_data):
    import gguf

    reference = gguf.GGUFReader(shared_data / "ggml-vocab-phi-3.gguf").fields
    ours = gguf.GGUFReader(write_gguf(demo_model, tmp_path / "m.gguf", "f16").path).fields
    for key, f in reference.items():
        if key.startswith("GGUF."):
            continue
        assert key in ours, key
        assert [t.name for t in ours[key].types] == [t.name for t in f.types], key
    assert ours["tokenizer.ggml.model"].contents() == reference["tokenizer.ggml.model"].contents() == "llama"
    assert ours["tokenizer.ggml.pre"].contents() == reference["tokenizer.ggml.pre"].contents()


def reference_tokenizer_json(fields) -> dict:
    """Phi-3-mini's tokenizer.json, as far as the exporter reads it, rebuilt from llama.cpp's reference vocabulary."""
    tokens = fields["tokenizer.ggml.tokens"].contents()
    special = {0: True, 1: True, 2: False} | {i: True for i in range(32000, 32011)}
    return {
        "model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>", "vocab": {tokens[i]: i for i in range(32000)}},
        "added_tokens": [{"id": i, "content": tokens[i], "special": s} for i, s in special.items()],
    }


def test_vocabulary_rebuilt_from_tokenizer_json_equals_llama_cpps_reference(shared_data, tmp_path):
    import gguf

    from phi3tui.core.export.vocab import apply_added_tokens

    fields = gguf.GGUFReader(shared_data / "ggml-vocab-phi-3.gguf").fields
    data = reference_tokenizer_json(fields)
    vocab = from_tokenizer_json(data, 32064)
    apply_added_tokens(vocab, tmp_path, data)  # tmp_path: no added_tokens.json / tokenizer_config.json there
    assert vocab.tokens == fields["tokenizer.ggml.tokens"].contents()
    ref_types = fields["tokenizer.ggml.token_type"].contents()
    # The padding rows [PAD32011..]: the fixture's (older) converter typed them UNKNOWN (2); today's converter
    # writes UNUSED (5), as we do. Every other id must match exactly.
    assert vocab.types[:32011] == ref_types[:32011]
    assert set(vocab.types[32011:]) == {5} and set(ref_types[32011:]) == {2}
    assert np.array_equal(np.array(vocab.scores, dtype=np.float32), np.array(fields["tokenizer.ggml.scores"].contents(), dtype=np.float32))


def test_vocabulary_is_the_same_from_tokenizer_model_and_from_tokenizer_json(demo_model):
    config = json.loads((demo_model / "config.json").read_text())
    from_spm = build_vocab(demo_model, config["vocab_size"], source="tokenizer.model")
    from_json = build_vocab(demo_model, config["vocab_size"], source="tokenizer.json")
    assert from_spm.source == "tokenizer.model" and from_json.source == "tokenizer.json"
    assert from_spm.tokens == from_json.tokens
    assert from_spm.scores == from_json.scores
    assert from_spm.types == from_json.types
    assert len(set(from_spm.tokens)) == config["vocab_size"]
    assert len({s for s in from_spm.scores if s > -1000}) > 700  # real, distinct scores, not a flat -1000


def test_fused_folder_without_tokenizer_model_uses_the_base_models(trained_ws, tmp_path):
    from phi3tui.core.export.fuse import fuse
    from phi3tui.core.export.paths import base_model_of, resolve_adapter

    adapter = resolve_adapter(trained_ws)
    fused = fuse(base_model_of(trained_ws, adapter), adapter, tmp_path / "fused").fused_dir
    (fused / "tokenizer.model").unlink()  # as `mlx_lm fuse` leaves it
    result = write_gguf(fused, tmp_path / "a.gguf")
    assert result.vocab_source == "tokenizer.model"  # found through phi3tui-export.json's base model
    (fused / "phi3tui-export.json").unlink()
    result = write_gguf(fused, tmp_path / "b.gguf")
    assert result.vocab_source == "tokenizer.json" and any("rebuilt from tokenizer.json" in n for n in result.notes)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, "not supported; supported: phi3"),
        ({"quantization": {"group_size": 64, "bits": 4}}, "fuse again with de-quantize"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling type 'linear' is not supported"),
    ],
)
def test_unsupported_models_are_refused_with_the_reason(demo_model, tmp_path, change, message):
    model = model_copy(demo_model, tmp_path)
    edit_config(model, **change)
    with pytest.raises(ExportError, match=message):
        write_gguf(model, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_missing_tokenizer_files_are_named(demo_model, tmp_path):
    model = model_copy(demo_model, tmp_path)
    (model / "tokenizer.model").unlink()
    (model / "tokenizer.json").unlink()
    with pytest.raises(ExportError, match="neither tokenizer.model nor tokenizer.json"):
        write_gguf(model, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_tied_embeddings_and_partial_rotary_are_handled(demo_model, tmp_path):
    import gguf
    import mlx.core as mx

    model = model_copy(demo_model, tmp_path)
    weights = mx.load(str(model / "model.safetensors"))
    weights.pop("lm_head.weight")
    mx.save_safetensors(str(model / "model.safetensors"), weights)
    edit_config(model, tie_word_embeddings=True, partial_rotary_factor=0.5)
    result = write_gguf(model, tmp_path / "tied.gguf")
    fields = gguf.GGUFReader(result.path).fields
    assert "output.weight" not in {name for name, _, _ in result.tensors}  # llama.cpp reuses token_embd
    assert fields["phi3.rope.dimension_count"].contents() == 8  # 0.5 x head dim 16
    assert read_back(result.path, result).ok


def test_tied_embeddings_and_partial_rotary_agree_with_mlx_in_llama_cpp(demo_model, tmp_path):
    llama_cpp_or_skip()
    import mlx.core as mx

    from phi3tui.core.export.verify import verify_gguf

    model = model_copy(demo_model, tmp_path)
    weights = mx.load(str(model / "model.safetensors"))
    weights.pop("lm_head.weight")
    mx.save_safetensors(str(model / "model.safetensors"), weights)
    edit_config(model, tie_word_embeddings=True, partial_rotary_factor=0.5)
    result = write_gguf(model, tmp_path / "tied.gguf", "f32")
    agreement = verify_gguf(model, result.path, "f32", ["Why is the sky blue?"], 4)
    assert agreement.ok, agreement.summary()


def test_general_name_gives_phi3_special_token_handling_in_llama_cpp(demo_model, tmp_path):
    """Whatever name the user gives, llama.cpp strips the newline after <|user|> and <|end|> as HF's Phi-3 does."""
    llama_cpp_or_skip()
    result = write_gguf(demo_model, tmp_path / "named.gguf", "f16", name="my-finetune")
    script = (
        "import sys, json\nfrom llama_cpp import Llama\n"
        "llm = Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)\n"
        "ids = llm.tokenize('<|user|>\\nHello<|end|>\\n<|assistant|>\\n'.encode(), add_bos=False, special=True)\n"
        "print(json.dumps([llm.detokenize([i], special=True).decode() for i in ids]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(result.path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    pieces = json.loads(proc.stdout)
    assert pieces[0] == "<|user|>" and "<|end|>" in pieces and pieces[-1] == "<|assistant|>"
    assert "\n" not in "".join(pieces)  # rstrip after each special token, as HF's tokenizer does


def longrope_model(demo_model: Path, tmp_path: Path) -> Path:
    model = model_copy(demo_model, tmp_path)
    half = 8  # head dim 16 -> 8 factors
    edit_config(
        model, max_position_embeddings=4096, original_max_position_embeddings=512,
        rope_scaling={"type": "longrope", "long_factor": [1.0 + 0.5 * i for i in range(half)], "short_factor": [1.0] * half},
    )
    return model


def test_longrope_factors_and_attention_factor_are_written(demo_model, tmp_path):
    import gguf

    result = write_gguf(longrope_model(demo_model, tmp_path), tmp_path / "long.gguf")
    reader = gguf.GGUFReader(result.path)
    by_name = {t.name: t for t in reader.tensors}
    assert by_name["rope_factors_long.weight"].tensor_type.name == "F32"
    assert list(by_name["rope_factors_long.weight"].data) == [1.0 + 0.5 * i for i in range(8)]
    assert list(by_name["rope_factors_short.weight"].shape) == [8]
    attn = reader.fields["phi3.rope.scaling.attn_factor"].contents()
    assert attn == pytest.approx(math.sqrt(1 + math.log(8) / math.log(512)), rel=1e-6)
    assert reader.fields["phi3.rope.scaling.original_context_length"].contents() == 512


def test_existing_file_is_not_replaced_without_force(demo_model, tmp_path):
    out = tmp_path / "m.gguf"
    out.write_bytes(b"mine")
    with pytest.raises(ExportError, match="--force"):
        write_gguf(demo_model, out)
    assert out.read_bytes() == b"mine"
    write_gguf(demo_model, out, force=True)
    assert out.read_bytes()[:4] == b"GGUF"


def test_a_full_disk_leaves_nothing_at_the_destination(demo_model, tmp_path):
    """The file-size limit makes the OS refuse writes past 200 kB, the way a full disk does."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    proc = subprocess.run(
        [sys.executable, "-m", "phi3tui", "export", "gguf", "--model-dir", str(demo_model), "--outfile", str(out_dir / "m.gguf"),
         "--outtype", "f32", "--no-verify"],
        capture_output=True, text=True, preexec_fn=limit, timeout=300, cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode != 0
    assert "File too large" in proc.stderr or "No space" in proc.stderr
    assert list(out_dir.iterdir()) == []  # neither the GGUF nor a temporary file


# -- llama.cpp (the `verify` extra) ---------------------------------------------------------------


def test_f16_gguf_gives_mlxs_greedy_tokens_in_llama_cpp(trained_ws, tmp_path):
    llama_cpp_or_skip()
    from phi3tui.core.export.job import ExportJob

    job = ExportJob.create(trained_ws, name="parity")
    job.run_fuse()
    job.run_gguf()
    (lines, agreements) = job.run_verify(), job.results["verify"][1]
    assert len(agreements) == 1 and agreements[0].ok, lines
    assert all(r.same_tokens and len(r.llama_tokens) == job.max_tokens for r in agreements[0].rows)
    assert agreements[0].cosine > 0.9999


def test_lora_gguf_over_base_gguf_gives_mlxs_greedy_tokens(trained_ws, tmp_path):
    llama_cpp_or_skip()
    from phi3tui.core.export.job import ExportJob
    from phi3tui.core.export.verify import compare_logits, mlx_reference, run_llama

    job = ExportJob.create(trained_ws, name="lora", outtype="f32", lora_outtype="f16")
    lora, report, base = job.run_lora()
    assert report.ok and lora.size < 0.5 * base.size
    lines = job.run_verify()
    (agreement,) = job.results["verify"][1]
    assert agreement.ok and all(r.same_tokens for r in agreement.rows), lines
    # The adapter really acts in llama.cpp: without it the logits move away from MLX base + adapter.
    from phi3tui.core.export.fuse import load_adapted

    model, tokenizer, _ = load_adapted(job.base_model, job.adapter)
    ((ids, _, ref),) = mlx_reference(model, tokenizer, job.prompts[:1], 1)
    ((_, plain),) = run_llama(job.base_gguf_path, [ids], 1, 256)
    ((_, with_lora),) = run_llama(job.base_gguf_path, [ids], 1, 256, lora=job.lora_path)
    assert compare_logits(ref, with_lora)[1] < 1e-2 < compare_logits(ref, plain)[1]


def test_longrope_gguf_agrees_with_mlx_in_llama_cpp(demo_model, tmp_path):
    llama_cpp_or_skip()
    from phi3tui.core.export.verify import verify_gguf

    model = longrope_model(demo_model, tmp_path)
    result = write_gguf(model, tmp_path / "long.gguf", "f32")
    agreement = verify_gguf(model, result.path, "f32", ["Why is the sky blue?"], 4)
    assert agreement.ok, agreement.summary()


def test_q8_0_gguf_stays_close_to_mlx(demo_model, tmp_path):
    llama_cpp_or_skip()
    from phi3tui.core.export.verify import verify_gguf

    result = write_gguf(demo_model, tmp_path / "q8.gguf", "q8_0")
    agreement = verify_gguf(demo_model, result.path, "q8_0", ["Why is the sky blue?"], 4)
    assert agreement.ok and agreement.cosine > 0.995, agreement.summary()


def test_llama_cpp_tokenizes_like_the_reference_with_our_vocabulary(shared_data, tmp_path):
    """A Phi-3-sized vocabulary rebuilt from tokenizer.json alone tokenizes llama.cpp's 46 test strings as HF does."""
    llama_cpp_or_skip()
    import gguf
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import phi3

    fields = gguf.GGUFReader(shared_data / "ggml-vocab-phi-3.gguf").fields
    model = tmp_path / "phi3-vocab"
    model.mkdir()
    (model / "tokenizer.json").write_text(json.dumps(reference_tokenizer_json(fields)))
    (model / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": False, "bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>",
        "pad_token": "<|endoftext|>", "chat_template": "{{ messages }}", "tokenizer_class": "LlamaTokenizer",
    }))
    config = {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 32, "num_hidden_layers": 1,
              "intermediate_size": 64, "num_attention_heads": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0, "max_position_embeddings": 4096, "original_max_position_embeddings": 4096,
              "vocab_size": 32064, "bos_token_id": 1, "eos_token_id": 32000, "pad_token_id": 32000}
    (model / "config.json").write_text(json.dumps(config))
    net = phi3.Model(phi3.ModelArgs.from_dict(config))
    mx.save_safetensors(str(model / "model.safetensors"), dict(tree_flatten(net.parameters())))
    result = write_gguf(model, tmp_path / "vocab.gguf", "f16", name="Phi-3 vocab test")
    assert result.vocab_source == "tokenizer.json"
    script = (
        "import sys, json\nfrom llama_cpp import Llama\n"
        "llm = Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)\n"
        "texts = json.load(open(sys.argv[2]))\n"
        "print(json.dumps([llm.tokenize(t.encode(), add_bos=False, special=False) for t in texts]))\n"
    )
    # llama.cpp's format: strings end with a line __ggml_vocab_test__; one line of ids per string.
    inputs = (shared_data / "ggml-vocab-phi-3.gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")[:-1]
    expected = (shared_data / "ggml-vocab-phi-3.gguf.out").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(inputs) == len(expected) == 46
    (tmp_path / "in.json").write_text(json.dumps(inputs))
    proc = subprocess.run([sys.executable, "-c", script, str(result.path), str(tmp_path / "in.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    got = json.loads(proc.stdout)
    want = [[int(x) for x in line.split()] for line in expected]
    mismatches = [(t, g, w) for t, g, w in zip(inputs, got, want) if g != w]
    assert len(got) == len(want) and not mismatches, mismatches[:3]
