"""The SentencePiece (Phi-3) side of verify's tokenizer check: llama.cpp must split the check strings exactly as the
model's tokenizer.model does (added tokens split out first, as tokenizer.json says), on the demo model and on
llama.cpp's own Phi-3 vocabulary (shared/data/ggml-vocab-phi-3.gguf, with the ids Phi-3's tokenizer gives its test
strings). transformers 5's legacy=False tokenizer is not the reference: it drops SentencePiece's space prefix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_export_fixtures import llama_cpp_or_skip

from phi3tui.core.export.gguf import write_gguf
from phi3tui.core.export.verify import (
    TOKENIZER_CHECK_STRINGS,
    AddedToken,
    check_tokenizer,
    llama_tokenize,
    reference_ids,
    sentencepiece_ids,
)

VOCAB = "ggml-vocab-phi-3.gguf"
# Phi-3-mini-4k-instruct's tokenizer.json added tokens: <|endoftext|> keeps the whitespace after it, the ten chat and
# placeholder tokens strip it (rstrip), which is also the rule llama.cpp applies to a vocabulary named Phi-3.
PHI3_ADDED = ("<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
              "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>")


def phi3_sentencepiece(shared: Path, target: Path) -> Path:
    """Phi-3's tokenizer.model rebuilt from llama.cpp's vocabulary GGUF: its 32,000 SentencePiece pieces with their
    scores and types, byte fallback, the dummy-prefix space, no whitespace folding (Llama-2 / Phi-3 settings)."""
    import gguf
    from sentencepiece import sentencepiece_model_pb2 as pb

    fields = gguf.GGUFReader(shared / VOCAB).fields
    tokens, scores, types = (fields[f"tokenizer.ggml.{k}"].contents() for k in ("tokens", "scores", "token_type"))
    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.vocab_size = 32000
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    for i, (token, score, kind) in enumerate(zip(tokens[:32000], scores, types)):
        piece = proto.pieces.add()
        piece.piece, piece.score = token, score
        piece.type = pb.ModelProto.SentencePiece.UNKNOWN if i == 0 else pb.ModelProto.SentencePiece.CONTROL if i < 3 else kind
    target.write_bytes(proto.SerializeToString())
    return target


def vocab_test_cases(shared: Path) -> list[tuple[str, list[int]]]:
    strings = (shared / f"{VOCAB}.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    ids = (shared / f"{VOCAB}.out").read_text(encoding="utf-8").split("\n")
    return [(s, [int(x) for x in line.split()]) for s, line in zip(strings, ids)]


def test_the_sentencepiece_reference_gives_phi3s_published_ids(shared_data, tmp_path):
    model = phi3_sentencepiece(shared_data, tmp_path / "tokenizer.model")
    cases = vocab_test_cases(shared_data)
    assert len(cases) >= 40
    got = sentencepiece_ids(model, [], [], [s for s, _ in cases])
    assert [ids for _, ids in cases] == got


def test_added_tokens_are_split_out_and_strip_as_tokenizer_json_says(shared_data, tmp_path):
    model = phi3_sentencepiece(shared_data, tmp_path / "tokenizer.model")
    specials = [AddedToken("<|user|>", 32010, rstrip=True), AddedToken("<|end|>", 32007, rstrip=True),
                AddedToken("<|endoftext|>", 32000)]
    ((turn, keeps),) = [sentencepiece_ids(model, specials, [1], ["<|user|>\nHi<|end|>\n", "<|endoftext|> a"])]
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    assert turn == [1, 32010, *sp.encode("Hi"), 32007]  # the newlines after rstrip tokens go
    assert keeps == [1, 32000, *sp.encode(" a")]  # each text piece gets the space prefix; " a" keeps its own space too


def test_llama_cpp_splits_the_check_strings_as_phi3s_sentencepiece_does(shared_data, tmp_path):
    llama_cpp_or_skip()
    model = phi3_sentencepiece(shared_data, tmp_path / "tokenizer.model")
    specials = [AddedToken(c, 32000 + i, rstrip=c != "<|endoftext|>") for i, c in enumerate(PHI3_ADDED)]
    fields_bos = [1]  # the vocabulary GGUF says add_bos_token: true
    want = sentencepiece_ids(model, specials, fields_bos, TOKENIZER_CHECK_STRINGS)
    got = llama_tokenize(shared_data / VOCAB, TOKENIZER_CHECK_STRINGS)
    assert got == want
    assert any(32010 in ids and 32007 in ids for ids in got)  # special tokens parsed, not spelled out


def test_the_demo_models_gguf_passes_the_tokenizer_check_against_its_tokenizer_model(demo_model, tmp_path):
    from transformers import AutoTokenizer

    ids, source = reference_ids(demo_model, TOKENIZER_CHECK_STRINGS)
    assert source == "the model's tokenizer.model (SentencePiece)"
    hf = AutoTokenizer.from_pretrained(str(demo_model))
    differ = [s for s, i in zip(TOKENIZER_CHECK_STRINGS, ids) if hf.encode(s) != i]
    assert " Hello world" in differ  # transformers 5 drops SentencePiece's space prefix: it is not the reference
    llama_cpp_or_skip()
    result = write_gguf(demo_model, tmp_path / "demo.gguf", "f16")
    check = check_tokenizer(demo_model, result.path)
    assert check.ok, check.summary()
    assert check.summary() == "llama.cpp tokenizes 14/14 check strings as the model's tokenizer.model (SentencePiece) does"


def test_the_check_fails_when_llama_cpp_would_not_strip_after_special_tokens(demo_model, tmp_path):
    """Teeth: named without Phi-3, llama.cpp keeps the newline after <|user|>, and the check says where."""
    llama_cpp_or_skip()
    import phi3tui.core.export.gguf as gguf_module

    original = gguf_module.gguf_model_name
    try:
        gguf_module.gguf_model_name = lambda name, tokenizer_model="llama": "plain"
        result = write_gguf(demo_model, tmp_path / "plain.gguf", "f16", name="plain")
    finally:
        gguf_module.gguf_model_name = original
    check = check_tokenizer(demo_model, result.path)
    assert not check.ok and "first difference" in check.summary()
    assert all("<|" in text for text, _, _ in check.mismatches)
