"""The SentencePiece vocabulary of a Phi-3 model as llama.cpp wants it: pieces, real scores, token types.

From tokenizer.model when there is one; otherwise rebuilt exactly from tokenizer.json (a SentencePiece
BPE model stores its pieces sorted by score, so the score is a function of the id). Never flat
scores: llama.cpp's SPM tokenizer orders its merges by score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from phi3tui.core.export import ExportError

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
        if missing:
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
