"""The vocabulary of a phi3-architecture model as llama.cpp wants it: two kinds.

SentencePiece (Phi-3, Phi-3.5; GGUF tokenizer model "llama"): pieces, real scores, token types, from
tokenizer.model when there is one; otherwise rebuilt exactly from tokenizer.json (a SentencePiece BPE
model stores its pieces sorted by score, so the score is a function of the id). Never flat scores:
llama.cpp's SPM tokenizer orders its merges by score.

Byte-level BPE (Phi-4-mini; GGUF tokenizer model "gpt2"): tokens, token types and merges, plus the name of
llama.cpp's pre-tokenizer, chosen from what tokenizer.json's pre_tokenizer really does (never by hashing a
tokenization, which breaks for any retrained or extended vocabulary).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from phi3tui.core.adapters import ADAPTER_CONFIG
from phi3tui.core.export import O200K_SPLIT_REGEX, ExportError
from phi3tui.core.export.paths import EXPORT_RECORD, read_json

# gguf.TokenType values (kept here so this module needs no numpy-heavy import to be read).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
ADDED_TOKEN_SCORE = -1000.0
PAD_SCORE = -10000.0
WHITESPACE_ONLY_SCORE = -1e9  # Llama-2 / Phi-3 tokenizer.model gives pieces made only of "▁" this score
# llama.cpp needs these in a vocabulary whose general.name says Phi-3 (see gguf.py's general.name rule).
REQUIRED_TOKENS = ("<unk>", "<s>", "</s>", "<|endoftext|>")


@dataclass
class Vocab:
    tokens: list[str]
    scores: list[float]
    types: list[int]
    source: str  # "tokenizer.model" or "tokenizer.json"
    notes: list[str] = field(default_factory=list)
    model: str = "llama"  # tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    pre: str = "default"  # tokenizer.ggml.pre: how llama.cpp splits text before BPE
    merges: list[str] = field(default_factory=list)  # gpt2 kind only: "left right", in rank order

    def check(self, vocab_size: int, where: Path | str) -> None:
        """The checks llama.cpp would otherwise fail on at load time (some by aborting the process)."""
        if len(self.tokens) != vocab_size:
            raise ExportError(f"{where}: the vocabulary has {len(self.tokens)} tokens but the model has {vocab_size} embedding rows")
        seen: dict[str, int] = {}
        for i, tok in enumerate(self.tokens):
            if tok in seen:
                raise ExportError(f"{where}: token {tok!r} appears twice (ids {seen[tok]} and {i}); llama.cpp refuses such a vocabulary")
            seen[tok] = i
        missing = [t for t in REQUIRED_TOKENS if t not in seen]
        if missing and self.model == "llama":
            raise ExportError(f"{where}: the vocabulary lacks {', '.join(missing)}, which llama.cpp's Phi-3 tokenizer needs")


def _padded(vocab_size: int) -> tuple[list[str], list[float], list[int]]:
    return [f"[PAD{i}]" for i in range(vocab_size)], [PAD_SCORE] * vocab_size, [UNUSED] * vocab_size


def from_sentencepiece(path: Path, vocab_size: int) -> Vocab:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromFile(str(path))
    except (OSError, RuntimeError) as exc:
        raise ExportError(f"{path}: not a SentencePiece model ({exc})") from None
    if sp.vocab_size() > vocab_size:
        raise ExportError(f"{path} has {sp.vocab_size()} pieces but the model only {vocab_size} embedding rows")
    tokens, scores, types = _padded(vocab_size)
    for i in range(sp.vocab_size()):
        tokens[i] = sp.IdToPiece(i)
        scores[i] = sp.GetScore(i)
        if sp.IsUnknown(i):
            types[i] = UNKNOWN
        elif sp.IsControl(i):
            types[i] = CONTROL
        elif sp.IsUnused(i):
            types[i] = UNUSED
        elif sp.IsByte(i):
            types[i] = BYTE
        else:
            types[i] = NORMAL
    return Vocab(tokens, scores, types, "tokenizer.model")


def _is_byte_piece(piece: str) -> bool:
    return len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">")


def from_tokenizer_json(data: dict, vocab_size: int, where: str = "tokenizer.json") -> Vocab:
    """Rebuild tokenizer.model's pieces, scores and types from a SentencePiece-BPE tokenizer.json."""
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        raise ExportError(
            f"{where}: model.type is {model.get('type')!r} (byte_fallback {model.get('byte_fallback')!r}); only a SentencePiece "
            "BPE tokenizer with byte_fallback (Phi-3's) can be exported: put the base model's tokenizer.model beside it"
        )
    pieces: dict[str, int] = model.get("vocab") or {}
    if max(pieces.values(), default=-1) >= vocab_size:
        raise ExportError(f"{where}: token ids go up to {max(pieces.values())} but the model has {vocab_size} embedding rows")
    tokens, scores, types = _padded(vocab_size)
    special_names = {"<s>", "</s>"}
    normal_ids = []
    for piece, i in pieces.items():
        tokens[i] = piece
        if _is_byte_piece(piece):
            types[i], scores[i] = BYTE, 0.0
        elif piece == (model.get("unk_token") or "<unk>"):
            types[i], scores[i] = UNKNOWN, 0.0
        elif piece in special_names:
            types[i], scores[i] = CONTROL, 0.0
        else:
            types[i] = NORMAL
            normal_ids.append(i)
    first_normal = min(normal_ids, default=0)
    llama2_vocab = len(pieces) == 32000 and pieces.get("▁▁") == 259
    for i in normal_ids:
        scores[i] = -float(i - first_normal)
        if llama2_vocab and set(tokens[i]) == {"▁"}:
            scores[i] = WHITESPACE_ONLY_SCORE
    return Vocab(tokens, scores, types, "tokenizer.json")


def apply_added_tokens(vocab: Vocab, model_dir: Path, tokenizer_json: dict | None) -> None:
    """llama.cpp's converter passes: added_tokens.json, tokenizer_config's added_tokens_decoder, tokenizer.json's added_tokens."""
    size = len(vocab.tokens)

    def put(token_id: int, content: str, special: bool | None) -> None:
        if 0 <= token_id < size:
            vocab.tokens[token_id] = content
            vocab.scores[token_id] = ADDED_TOKEN_SCORE
            vocab.types[token_id] = CONTROL if special else USER_DEFINED

    added_path = model_dir / "added_tokens.json"
    if added_path.is_file():
        for content, token_id in json.loads(added_path.read_text(encoding="utf-8")).items():
            put(int(token_id), content, False)
    config_path = model_dir / "tokenizer_config.json"
    if config_path.is_file():
        decoder = json.loads(config_path.read_text(encoding="utf-8")).get("added_tokens_decoder") or {}
        for token_id, info in decoder.items():
            put(int(token_id), info["content"], bool(info.get("special")))
    for info in (tokenizer_json or {}).get("added_tokens") or []:
        put(int(info["id"]), info["content"], bool(info.get("special")))


def find_tokenizer_model(model_dir: Path, explicit: Path | None = None) -> Path | None:
    """tokenizer.model: given, in the folder, or in the base model the folder was fused from."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise ExportError(f"--tokenizer-model {explicit} does not exist")
        return Path(explicit)
    if (model_dir / "tokenizer.model").is_file():
        return model_dir / "tokenizer.model"
    record = model_dir / EXPORT_RECORD
    base = read_json(record).get("base_model") if record.is_file() else None
    if base is None and (model_dir / ADAPTER_CONFIG).is_file():
        base = read_json(model_dir / ADAPTER_CONFIG).get("model")
    if base:
        from phi3tui.core.models import model_file

        try:
            return model_file(str(base), "tokenizer.model")
        except Exception:  # an unreadable cache: fall back to tokenizer.json
            return None
    return None


def read_tokenizer_json(model_dir: Path) -> dict | None:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); fix or re-download it") from None


def build_vocab(model_dir: Path, vocab_size: int, tokenizer_model: Path | None = None, source: str = "auto") -> Vocab:
    """The vocabulary for the GGUF. source: "auto" (tokenizer.model if found), "tokenizer.model" or "tokenizer.json"."""
    model_dir = Path(model_dir)
    tokenizer_json = read_tokenizer_json(model_dir)
    if source != "tokenizer.model" and is_byte_level_bpe(tokenizer_json):
        # Phi-4-mini: no tokenizer.model exists for such a vocabulary; the added tokens are in tokenizer.json.
        return from_byte_level_bpe(tokenizer_json, vocab_size, str(model_dir / "tokenizer.json"))
    spm_path = tokenizer_model or (model_dir / "tokenizer.model")
    use_spm = source == "tokenizer.model" or (source == "auto" and Path(spm_path).is_file())
    if use_spm:
        if not Path(spm_path).is_file():
            raise ExportError(f"{spm_path} is missing: copy the base model's tokenizer.model there or pass --tokenizer-model")
        vocab = from_sentencepiece(Path(spm_path), vocab_size)
        if tokenizer_json is not None:
            _check_same_pieces(vocab, tokenizer_json, Path(spm_path))
    elif tokenizer_json is not None:
        vocab = from_tokenizer_json(tokenizer_json, vocab_size, str(model_dir / "tokenizer.json"))
        vocab.notes.append("tokenizer.model not found: scores rebuilt from tokenizer.json")
    else:
        raise ExportError(
            f"{model_dir} has neither tokenizer.model nor tokenizer.json: copy the base model's tokenizer files there "
            "or pass --tokenizer-model PATH"
        )
    apply_added_tokens(vocab, model_dir, tokenizer_json)
    return vocab


def _check_same_pieces(vocab: Vocab, tokenizer_json: dict, spm_path: Path) -> None:
    """A tokenizer.model from elsewhere (the base model) must be the one tokenizer.json was made from."""
    pieces = (tokenizer_json.get("model") or {}).get("vocab") or {}
    for piece, i in pieces.items():
        if i < len(vocab.tokens) and vocab.tokens[i] != piece:
            raise ExportError(f"{spm_path} does not match tokenizer.json (id {i}: {vocab.tokens[i]!r} vs {piece!r}); use the base model's own tokenizer.model")


def add_bos_setting(model_dir: Path, tokenizer_json: dict | None) -> bool:
    """Whether the tokenizer adds BOS: tokenizer_config's bool, else tokenizer.json's post-processor, else False.

    Written explicitly: with no key llama.cpp would add BOS, which HF's Phi-3 tokenizer does not.
    """
    config_path = model_dir / "tokenizer_config.json"
    if config_path.is_file():
        value = json.loads(config_path.read_text(encoding="utf-8")).get("add_bos_token")
        if isinstance(value, bool):
            return value
    post = (tokenizer_json or {}).get("post_processor") or {}
    single = post.get("single") or []
    return bool(post.get("type") == "TemplateProcessing" and single and "SpecialToken" in single[0])


# -- byte-level BPE (gpt2 kind) ------------------------------------------------------------------

# llama.cpp's pre-tokenizers this exporter can name, by what tokenizer.json's pre_tokenizer does:
# (Split regex, ByteLevel use_regex) -> tokenizer.ggml.pre. Add one only with a test that llama.cpp
# then tokenizes like HF.
KNOWN_PRE_TOKENIZERS = {
    (O200K_SPLIT_REGEX, False): "gpt-4o",
}


def _describe_pre(pre) -> str:
    text = json.dumps(pre, ensure_ascii=False)
    return text if len(text) <= 160 else text[:157] + "..."


def pre_tokenizer_name(data: dict, where: str = "tokenizer.json") -> str:
    """llama.cpp's name for the split tokenizer.json's pre_tokenizer makes, or ExportError saying why there is none."""
    if data.get("normalizer"):
        raise ExportError(
            f"{where}: normalizer {_describe_pre(data['normalizer'])}: llama.cpp's byte-level BPE applies no normalizer, "
            "so its tokens would differ from the model's; this tokenizer cannot be exported"
        )
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    splits = [p for p in steps or [] if p.get("type") == "Split"]
    levels = [p for p in steps or [] if p.get("type") == "ByteLevel"]
    others = [p.get("type") for p in steps or [] if p.get("type") not in ("Split", "ByteLevel")]
    key = None
    if len(splits) == 1 and len(levels) == 1 and not others and steps.index(splits[0]) < steps.index(levels[0]):
        split, level = splits[0], levels[0]
        regex = (split.get("pattern") or {}).get("Regex")
        if (
            regex is not None and str(split.get("behavior", "")).lower() == "isolated" and not split.get("invert")
            and not level.get("add_prefix_space")
        ):
            key = (regex, bool(level.get("use_regex", True)))
    if key not in KNOWN_PRE_TOKENIZERS:
        known = ", ".join(sorted(set(KNOWN_PRE_TOKENIZERS.values())))
        raise ExportError(
            f"{where}: pre_tokenizer {_describe_pre(pre)} matches none of the llama.cpp pre-tokenizers this export knows "
            f"({known}: a Split with the o200k regex, isolated, then ByteLevel without regex or prefix space); llama.cpp "
            "would split text differently from the model's tokenizer, so the GGUF is not written"
        )
    return KNOWN_PRE_TOKENIZERS[key]


def looks_special(token: str) -> bool:
    """llama.cpp's converter's rule (does_token_look_special) for added tokens not marked special."""
    return (
        token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (token.startswith("<|") and token.endswith("|>"))
        or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
        or (token.startswith("<unused") and token.endswith(">"))
    )


def from_byte_level_bpe(data: dict, vocab_size: int, where: str = "tokenizer.json") -> Vocab:
    """A gpt2-kind vocabulary as llama.cpp's converter writes it (_set_vocab_gpt2): tokens, types, merges, pre."""
    model = data.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ExportError(f"{where}: model.type {model.get('type')!r} is not a byte-level BPE tokenizer")
    pre = pre_tokenizer_name(data, where)
    pieces: dict[str, int] = model.get("vocab") or {}
    added = (data.get("added_tokens") or [])
    top = max([*pieces.values(), *(int(a["id"]) for a in added)], default=-1)
    if top >= vocab_size:
        raise ExportError(f"{where}: token ids go up to {top} but the model has {vocab_size} embedding rows")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [UNUSED] * vocab_size
    for piece, i in pieces.items():
        tokens[i], types[i] = piece, NORMAL
    for info in added:
        i, content = int(info["id"]), info["content"]
        tokens[i] = content
        types[i] = CONTROL if info.get("special") or looks_special(content) else USER_DEFINED
    merges = _merges(model.get("merges") or [], where)
    if not merges:
        raise ExportError(f"{where}: model.merges is empty; a byte-level BPE tokenizer needs its merges")
    # gpt2-kind GGUFs carry no scores: llama.cpp ranks merges by their order.
    return Vocab(tokens, [0.0] * vocab_size, types, "tokenizer.json", model="gpt2", pre=pre, merges=merges)


def _merges(raw: list, where: str) -> list[str]:
    """Merges as "left right" strings (tokenizers >= 0.20 saves them as [left, right] pairs)."""
    out = []
    for n, m in enumerate(raw):
        pair = m.split(" ") if isinstance(m, str) else list(m)
        if len(pair) != 2 or any(" " in part for part in pair):
            raise ExportError(f"{where}: model.merges[{n}] is {m!r}; expected two byte-level symbols")
        out.append(f"{pair[0]} {pair[1]}")
    return out


def is_byte_level_bpe(tokenizer_json: dict | None) -> bool:
    model = (tokenizer_json or {}).get("model") or {}
    return model.get("type") == "BPE" and not model.get("byte_fallback")
