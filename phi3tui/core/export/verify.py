"""Is the GGUF right? Read it back with gguf's reader; run it in llama.cpp and compare with MLX.

The llama.cpp part needs the `verify` extra (llama-cpp-python) and runs in a separate process.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from phi3tui.core.export import ExportError

# Keys a phi3 model GGUF must carry, with their GGUF value type names.
MODEL_KEYS = {
    "general.architecture": "STRING",
    "general.type": "STRING",
    "general.name": "STRING",
    "general.file_type": "UINT32",
    "general.quantization_version": "UINT32",
    "phi3.context_length": "UINT32",
    "phi3.rope.scaling.original_context_length": "UINT32",
    "phi3.embedding_length": "UINT32",
    "phi3.feed_forward_length": "UINT32",
    "phi3.block_count": "UINT32",
    "phi3.attention.head_count": "UINT32",
    "phi3.attention.head_count_kv": "UINT32",
    "phi3.attention.layer_norm_rms_epsilon": "FLOAT32",
    "phi3.rope.dimension_count": "UINT32",
    "phi3.rope.freq_base": "FLOAT32",
    "phi3.attention.sliding_window": "UINT32",
    "tokenizer.ggml.model": "STRING",
    "tokenizer.ggml.pre": "STRING",
    "tokenizer.ggml.tokens": "ARRAY",
    "tokenizer.ggml.scores": "ARRAY",
    "tokenizer.ggml.token_type": "ARRAY",
    "tokenizer.ggml.bos_token_id": "UINT32",
    "tokenizer.ggml.eos_token_id": "UINT32",
    "tokenizer.ggml.unknown_token_id": "UINT32",
    "tokenizer.ggml.padding_token_id": "UINT32",
    "tokenizer.ggml.add_bos_token": "BOOL",
    "tokenizer.ggml.add_eos_token": "BOOL",
    "tokenizer.chat_template": "STRING",
}
LORA_KEYS = {
    "general.architecture": "STRING",
    "general.type": "STRING",
    "adapter.type": "STRING",
    "adapter.lora.alpha": "FLOAT32",
}

# Agreement required per output type: mean cosine of the logit rows, and identical greedy tokens.
# Random tiny models amplify quantization error; real models do better.
TOLERANCES = {
    "f32": (0.99999, True),
    "f16": (0.9999, True),
    "bf16": (0.999, False),
    "q8_0": (0.995, False),
    "q5_0": (0.9, False),
    "q5_1": (0.9, False),
    "q4_0": (0.8, False),
    "q4_1": (0.8, False),
}


@dataclass
class ReadBackReport:
    path: Path
    problems: list[str] = field(default_factory=list)
    n_tensors: int = 0
    n_keys: int = 0
    metadata: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        state = "complete" if self.ok else f"{len(self.problems)} problem(s)"
        return f"{self.n_tensors} tensors, {self.n_keys} keys, {state}"


def read_back(path: Path, expected=None, kind: str = "model") -> ReadBackReport:
    """Open the file with gguf's reader; check every key (and its type), tensor, shape and type is there.

    `expected` is the writer's result (GGUFResult or LoraResult): its tensors must be exactly the file's.
    """
    from gguf import GGUFReader

    report = ReadBackReport(Path(path))
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # the reader raises assorted errors on a damaged file
        report.problems.append(f"gguf cannot read it: {exc}")
        return report
    fields = reader.fields
    report.n_keys = len([k for k in fields if not k.startswith("GGUF.")])
    report.n_tensors = len(reader.tensors)
    wanted = MODEL_KEYS if kind == "model" else LORA_KEYS
    byte_level = kind == "model" and "tokenizer.ggml.model" in fields and fields["tokenizer.ggml.model"].contents() == "gpt2"
    for key, type_name in wanted.items():
        f = fields.get(key)
        if f is None and byte_level and key == "tokenizer.ggml.scores":
            continue  # llama.cpp's converter writes no scores for a gpt2-kind vocabulary
        if f is None:
            report.problems.append(f"key {key} is missing")
        elif f.types[0].name != type_name:
            report.problems.append(f"key {key} is {f.types[0].name}, expected {type_name}")
    for key in ("general.architecture", "general.type", "general.name", "general.file_type", "tokenizer.ggml.add_bos_token",
                "tokenizer.ggml.model", "adapter.lora.alpha"):
        if key in fields:
            report.metadata[key] = fields[key].contents()
    if report.metadata.get("general.architecture") != "phi3":
        report.problems.append(f"general.architecture is {report.metadata.get('general.architecture')!r}, expected 'phi3'")
    if kind == "model":
        _check_model_fields(fields, report)
    else:
        if report.metadata.get("general.type") != "adapter":
            report.problems.append("general.type is not 'adapter'")
    if expected is not None:
        want = {name: (tuple(shape), qtype) for name, shape, qtype in expected.tensors}
        have = {t.name: (tuple(int(d) for d in reversed(list(t.shape))), t.tensor_type.name) for t in reader.tensors}
        for name in sorted(set(want) - set(have)):
            report.problems.append(f"tensor {name} is missing")
        for name in sorted(set(have) - set(want)):
            report.problems.append(f"unexpected tensor {name}")
        for name in sorted(set(want) & set(have)):
            if want[name] != have[name]:
                report.problems.append(f"tensor {name} is {have[name]}, expected {want[name]}")
    for t in reader.tensors:
        if t.data.nbytes != t.n_bytes:
            report.problems.append(f"tensor {t.name} data is {t.data.nbytes} bytes, expected {t.n_bytes}")
    return report


def _check_model_fields(fields, report: ReadBackReport) -> None:
    import re

    name = str(report.metadata.get("general.name", ""))
    kind = fields["tokenizer.ggml.model"].contents() if "tokenizer.ggml.model" in fields else None
    says_phi3 = bool(re.search(r"phi-?3", name, re.IGNORECASE))
    if kind == "llama" and not says_phi3:
        report.problems.append(f"general.name {name!r} does not say Phi-3 (llama.cpp would tokenize special tokens differently)")
    if kind == "gpt2" and says_phi3:
        report.problems.append(f"general.name {name!r} says Phi-3: llama.cpp would apply Phi-3's token rules to a byte-level vocabulary")
    if kind == "gpt2" and "tokenizer.ggml.merges" not in fields:
        report.problems.append("key tokenizer.ggml.merges is missing (a gpt2-kind vocabulary needs its merges)")
    arrays = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")
    lengths = {k: len(fields[k].data) for k in arrays if k in fields}
    if len(set(lengths.values())) > 1:
        report.problems.append(f"vocabulary arrays differ in length: {lengths}")


# -- llama.cpp ------------------------------------------------------------------------------------


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


LLAMA_CPP_MISSING = "llama-cpp-python is not installed: `pip install 'phi3tui[verify]'` to compare with llama.cpp"


def run_llama(gguf_path: Path, prompts: list[list[int]], max_tokens: int, n_ctx: int, lora: Path | None = None, timeout: float = 600):
    """[(greedy tokens, prompt logits)] from llama.cpp, in a child process."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="phi3tui-llama-") as tmp:
        request = {
            "model": str(gguf_path), "lora": str(lora) if lora else None, "prompts": prompts,
            "max_tokens": max_tokens, "n_ctx": n_ctx, "out": str(Path(tmp) / "out.npz"),
        }
        _run_worker(request, Path(tmp), gguf_path, timeout)
        data = np.load(request["out"])
        return [(data[f"tokens_{i}"].tolist(), data[f"logits_{i}"]) for i in range(len(prompts))]


# Strings llama.cpp must tokenize exactly as the model's HF tokenizer does before logits are compared:
# leading spaces, tabs and newlines, digits, accents, CJK, emoji, contractions, a chat turn with special tokens.
TOKENIZER_CHECK_STRINGS = (
    "Hello world",
    " Hello world",
    "  two leading spaces",
    "\ttab\tseparated",
    "line one\nline two\n\n  indented",
    "\n\nnewlines first",
    "1 22 333 4444 55555 3.14159",
    "Café, naïve, über, São Paulo, Ångström",
    "東京は日本の首都です。中文测试",
    "emoji 😀🚀 and ❤️ hearts",
    "don't I'M we'll they'RE it's",
    "MiXeD CaSe WORDS and CamelCaseWords",
    "<|user|>What is 2+2?<|end|><|assistant|>4<|end|>",
    "<|system|>You are helpful.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\n",
)


@dataclass
class TokenizerCheck:
    strings: list[str]
    hf: list[list[int]]  # the model's own tokenizer's ids
    llama: list[list[int]]
    source: str = "the model's tokenizer"

    @property
    def mismatches(self) -> list[tuple[str, list[int], list[int]]]:
        return [(s, h, g) for s, h, g in zip(self.strings, self.hf, self.llama) if h != g]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        n = len(self.strings)
        if self.ok:
            return f"llama.cpp tokenizes {n}/{n} check strings as {self.source} does"
        text, hf, got = self.mismatches[0]
        return (
            f"llama.cpp tokenizes {n - len(self.mismatches)}/{n} check strings as {self.source} does; "
            f"first difference: {text!r}: tokenizer {hf[:12]} vs llama.cpp {got[:12]}"
        )


@dataclass(frozen=True)
class AddedToken:
    """An added (special) token as tokenizer.json holds it: split out of the text before the model sees it."""

    content: str
    id: int
    lstrip: bool = False
    rstrip: bool = False


def added_tokens(model_dir: Path) -> list[AddedToken]:
    """tokenizer.json's added_tokens, else tokenizer_config.json's added_tokens_decoder."""
    found = []
    tokenizer_json = model_dir / "tokenizer.json"
    if tokenizer_json.is_file():
        for entry in json.loads(tokenizer_json.read_text(encoding="utf-8")).get("added_tokens") or []:
            found.append(AddedToken(entry["content"], int(entry["id"]), bool(entry.get("lstrip")), bool(entry.get("rstrip"))))
        return found
    config = model_dir / "tokenizer_config.json"
    decoder = json.loads(config.read_text(encoding="utf-8")).get("added_tokens_decoder") or {} if config.is_file() else {}
    return [AddedToken(e["content"], int(i), bool(e.get("lstrip")), bool(e.get("rstrip"))) for i, e in decoder.items()]


def sentencepiece_ids(sp_model: Path, specials: list[AddedToken], prefix: list[int], strings) -> list[list[int]]:
    """Each string as the SentencePiece model itself tokenizes it (what Phi-3 was trained with): the added tokens
    split out first, longest first, whitespace stripped beside them as their lstrip/rstrip say, then every text
    piece encoded on its own (each gets SentencePiece's dummy-prefix space). `prefix`: BOS when the tokenizer adds it."""
    import re

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    by_content = {t.content: t for t in specials}
    pattern = re.compile("|".join(re.escape(c) for c in sorted(by_content, key=len, reverse=True))) if specials else None
    out = []
    for text in strings:
        ids, pieces, at = list(prefix), [], 0
        for match in pattern.finditer(text) if pattern else ():
            pieces.append(text[at:match.start()])
            pieces.append(by_content[match.group()])
            at = match.end()
        pieces.append(text[at:])
        for i, piece in enumerate(pieces):
            if isinstance(piece, AddedToken):
                ids.append(piece.id)
                continue
            if i > 0 and pieces[i - 1].rstrip:
                piece = piece.lstrip()
            if i + 1 < len(pieces) and pieces[i + 1].lstrip:
                piece = piece.rstrip()
            if piece:
                ids.extend(sp.encode(piece))
        out.append(ids)
    return out


def reference_ids(model_dir: Path, strings, tokenizer_model: Path | None = None) -> tuple[list[list[int]], str]:
    """(ids, what gave them) for the check strings: the model's own tokenizer. A byte-level BPE is HF's tokenizer
    itself; a SentencePiece vocabulary is its tokenizer.model (transformers 5's legacy=False Phi-3 tokenizer differs
    from it on leading spaces, and the model was trained with SentencePiece), with HF's BOS rule."""
    from transformers import AutoTokenizer

    from phi3tui.core.export.vocab import find_tokenizer_model
    from phi3tui.core.export.vocab import is_byte_level_bpe, read_tokenizer_json

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    sp_model = None if is_byte_level_bpe(read_tokenizer_json(model_dir)) else find_tokenizer_model(model_dir, tokenizer_model)
    if sp_model is None:
        return [list(tokenizer.encode(s, add_special_tokens=True)) for s in strings], "the model's tokenizer"
    with_special = list(tokenizer.encode("a", add_special_tokens=True))
    without = list(tokenizer.encode("a", add_special_tokens=False))
    prefix = with_special[: len(with_special) - len(without)] if with_special[-len(without):] == without else []
    return sentencepiece_ids(sp_model, added_tokens(model_dir), prefix, strings), "the model's tokenizer.model (SentencePiece)"


def check_tokenizer(model_dir: Path, gguf_path: Path, strings=TOKENIZER_CHECK_STRINGS, timeout: float = 300,
                    tokenizer_model: Path | None = None) -> TokenizerCheck:
    """Tokenize the check strings with the model's own tokenizer (reference_ids) and with the GGUF's vocabulary in
    llama.cpp."""
    if not llama_cpp_available():
        raise ExportError(LLAMA_CPP_MISSING)
    hf, source = reference_ids(Path(model_dir), strings, tokenizer_model)
    got = llama_tokenize(gguf_path, strings, timeout)
    return TokenizerCheck(list(strings), hf, got, source)


def llama_tokenize(gguf_path: Path, strings, timeout: float = 300) -> list[list[int]]:
    """The GGUF vocabulary's ids for each string in llama.cpp (special tokens parsed, BOS as the GGUF says)."""
    with tempfile.TemporaryDirectory(prefix="phi3tui-llama-") as tmp:
        request = {"mode": "tokenize", "model": str(gguf_path), "texts": list(strings), "out": str(Path(tmp) / "ids.json")}
        _run_worker(request, Path(tmp), gguf_path, timeout)
        return json.loads(Path(request["out"]).read_text(encoding="utf-8"))


def _run_worker(request: dict, tmp: Path, gguf_path: Path, timeout: float) -> None:
    req_path = tmp / "request.json"
    req_path.write_text(json.dumps(request), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "phi3tui.core.export.llama_worker", str(req_path)],
        capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        reason = [line for line in proc.stderr.splitlines() if "error" in line.lower()][-3:] or proc.stderr.strip().splitlines()[-3:]
        raise ExportError(f"llama.cpp could not run {gguf_path.name} (exit {proc.returncode}): {' | '.join(reason)}")


# The near-tie rule for greedy tokens: llama.cpp may pick another token only where MLX's two best logits are
# within this many logit units (f16 rounding of real-size models moves logits by ~1e-2). After the first
# difference the two continue from different text, so only that first one is judged.
NEAR_TIE_EPS = 0.02
# MLX runs the model in its own dtype (a float32 copy of Phi-3-mini would take ~15 GB): in 16 bits its own top two
# logits are rounded too, by up to half a unit in the last place each, so a gap that small says nothing. That
# rounding (eps x |top logit|, at least one unit in the last place) is added to NEAR_TIE_EPS for bfloat16/float16
# references; a float32 reference rounds below 1e-5 and adds nothing.
HALF_PRECISION = ("bfloat16", "float16")


def tie_slack(dtype, top_logit: float) -> float:
    """What the reference's own rounding adds to NEAR_TIE_EPS at a step whose best logit is `top_logit`."""
    import mlx.core as mx

    name = str(dtype).rsplit(".", 1)[-1]
    return float(mx.finfo(dtype).eps) * abs(top_logit) if name in HALF_PRECISION else 0.0


@dataclass
class PromptAgreement:
    prompt: str
    mlx_tokens: list[int]
    llama_tokens: list[int]
    cosine: float
    max_rel_diff: float
    argmax_agree: float
    mlx_gaps: list[float] = field(default_factory=list)  # per greedy step: MLX's top-1 minus top-2 logit
    mlx_slack: list[float] = field(default_factory=list)  # per greedy step: tie_slack, MLX's own rounding there

    @property
    def same_tokens(self) -> bool:
        return self.mlx_tokens == self.llama_tokens

    @property
    def divergence(self) -> tuple[int, int | None, int | None, float] | None:
        """(step, MLX's token, llama.cpp's token, MLX's top-two gap there) at the first difference; None if none."""
        for step in range(max(len(self.mlx_tokens), len(self.llama_tokens))):
            a = self.mlx_tokens[step] if step < len(self.mlx_tokens) else None
            b = self.llama_tokens[step] if step < len(self.llama_tokens) else None
            if a != b:
                gap = self.mlx_gaps[step] if step < len(self.mlx_gaps) else float("inf")
                return step, a, b, gap
        return None

    def tie_limit(self, step: int) -> float:
        """The largest top-two gap that counts as a near tie at `step`."""
        return NEAR_TIE_EPS + (self.mlx_slack[step] if step < len(self.mlx_slack) else 0.0)

    @property
    def near_tie(self) -> bool:
        """The tokens differ only from a step where MLX itself nearly chose llama.cpp's token."""
        d = self.divergence
        return d is not None and d[1] is not None and d[2] is not None and d[3] <= self.tie_limit(d[0])

    @property
    def tokens_ok(self) -> bool:
        return self.same_tokens or self.near_tie

    def divergence_text(self) -> str:
        d = self.divergence
        if d is None:
            return ""
        step, a, b, gap = d
        verdict = "allowed" if self.near_tie else "not a near tie"
        slack = self.tie_limit(step) - NEAR_TIE_EPS
        rule = f"<= {NEAR_TIE_EPS}" + (f" + {slack:.4f} for MLX's own rounding" if slack else "")
        return (f"{self.prompt!r}: step {step}: MLX {a} vs llama.cpp {b}, MLX's top two logits {gap:.4f} apart "
                f"(near-tie rule: {rule}): {verdict}")


@dataclass
class Agreement:
    outtype: str
    rows: list[PromptAgreement]
    text: list[str] = field(default_factory=list)  # decoded greedy answers (MLX), for display
    mlx_dtype: str = ""  # the dtype MLX ran the model in (its own)
    mlx_active_at_llama_start: int | None = None  # MLX's active memory when llama.cpp started (model released)

    @property
    def cosine(self) -> float:
        return min(r.cosine for r in self.rows)

    def rule(self) -> tuple[float, bool]:
        """(the least logit cosine, whether greedy tokens must match but for near ties): the GGUF type's rule, no
        tighter than a reference in 16 bits can hold (MLX in bfloat16 rounds its own logits as a bf16 GGUF would)."""
        min_cos, same = TOLERANCES.get(self.outtype, (0.8, False))
        own = {"bfloat16": "bf16", "float16": "f16"}.get(self.mlx_dtype)
        if own:
            min_cos = min(min_cos, TOLERANCES[own][0])
        return min_cos, same

    @property
    def ok(self) -> bool:
        min_cos, same = self.rule()
        return self.cosine >= min_cos and (not same or all(r.tokens_ok for r in self.rows))

    def summary(self) -> str:
        same = sum(r.same_tokens for r in self.rows)
        min_cos, need_same = self.rule()
        rule = f"cos >= {min_cos}" + (f", same tokens but for near ties (<= {NEAR_TIE_EPS})" if need_same else "")
        state = "agrees" if self.ok else "DISAGREES"
        where = "".join(f"; {r.divergence_text()}" for r in self.rows if not r.same_tokens)
        return (
            f"llama.cpp {state} with MLX ({self.outtype}): greedy tokens equal on {same}/{len(self.rows)} prompts, "
            f"logit cosine {self.cosine:.6f}, max rel diff {max(r.max_rel_diff for r in self.rows):.2e} (needs {rule}){where}"
        )


def mlx_reference(model, tokenizer, prompts: list[str], max_tokens: int, gaps: list | None = None,
                  slack: list | None = None):
    """[(prompt ids, greedy tokens, prompt logits)] from the MLX model in its own dtype, greedy, no early stop
    (logits handed back as float32).

    gaps, when given, receives per prompt the list of MLX's top-1 minus top-2 logit at each greedy step; slack, when
    given, per prompt the list of tie_slack at each step (what the model's own rounding adds to NEAR_TIE_EPS)."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm.models.cache import make_prompt_cache

    from phi3tui.core.export.fuse import prompt_ids

    out = []
    for prompt in prompts:
        ids = prompt_ids(tokenizer, prompt)
        cache = make_prompt_cache(model)
        rows = model(mx.array([ids]), cache=cache)[0]
        dtype = rows.dtype
        logits = np.array(rows.astype(mx.float32))
        last = logits[-1]
        tokens, step_gaps, step_slack = [], [], []
        for step in range(max_tokens):
            token = int(last.argmax())
            top = np.sort(last)[-2:]
            tokens.append(token)
            step_gaps.append(float(top[1] - top[0]))
            step_slack.append(tie_slack(dtype, float(top[1])))
            if step + 1 < max_tokens:
                last = np.array(model(mx.array([[token]]), cache=cache)[0, -1].astype(mx.float32))
        if gaps is not None:
            gaps.append(step_gaps)
        if slack is not None:
            slack.append(step_slack)
        out.append((ids, tokens, logits))
    return out


@dataclass
class MlxSide:
    """What verify keeps of the MLX model once it is released: its answers, tokenizer and config."""
    reference: list  # mlx_reference's rows
    gaps: list[list[float]]
    slack: list[list[float]]
    tokenizer: object
    config: dict
    dtype: str
    active_after_release: int  # mx.get_active_memory() once the model is dropped and MLX's cache cleared


def run_mlx_side(load_model, prompts: list[str], max_tokens: int) -> MlxSide:
    """Load the model (load_model() -> (model, tokenizer, config)), take its greedy answers and logits, then drop
    it and clear MLX's cache, so that llama.cpp never loads the GGUF beside a second copy of the model in
    unified memory."""
    import gc

    import mlx.core as mx

    model, tokenizer, config = load_model()
    gaps: list[list[float]] = []
    slack: list[list[float]] = []
    reference = mlx_reference(model, tokenizer, prompts, max_tokens, gaps, slack)
    dtype = model_dtype(model)
    del model
    gc.collect()  # mlx-lm modules hold reference cycles (cache <-> layers): the weights go only when collected
    mx.clear_cache()
    return MlxSide(reference, gaps, slack, tokenizer, config, dtype, int(mx.get_active_memory()))


def model_dtype(model) -> str:
    """The dtype of the model's first floating-point weight (its own dtype): "bfloat16", "float32", ..."""
    from mlx.utils import tree_flatten

    for _, array in tree_flatten(model.parameters()):
        if "float" in str(array.dtype):
            return str(array.dtype).rsplit(".", 1)[-1]
    return ""


def compare_logits(ref, got) -> tuple[float, float, float]:
    """(mean row cosine, max relative difference, fraction of rows with the same argmax)."""
    import numpy as np

    ref = ref.astype(np.float64)
    got = got.astype(np.float64)
    cos = (ref * got).sum(-1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(got, axis=-1) + 1e-30)
    rel = np.abs(ref - got).max() / (np.abs(ref).max() + 1e-30)
    agree = (ref.argmax(-1) == got.argmax(-1)).mean()
    return float(cos.mean()), float(rel), float(agree)


def context_for(config: dict, longest: int) -> int:
    """n_ctx for the check: past original_max_position_embeddings for LongRoPE models (MLX always uses the long factors)."""
    n = max(256, longest)
    if config.get("rope_scaling") or (config.get("rope_parameters") or {}).get("rope_type") not in (None, "default"):
        n = max(n, int(config.get("original_max_position_embeddings") or 0) + 256)
    return n


def compare_with_llama(
    load_model, gguf_path: Path, outtype: str, prompts: list[str], max_tokens: int = 8, lora: Path | None = None,
) -> Agreement:
    """Run the same prompts through the MLX model (load_model() -> (model, tokenizer, config)) and, once MLX has
    released it, through the GGUF in llama.cpp; measure their agreement."""
    if not llama_cpp_available():
        raise ExportError(LLAMA_CPP_MISSING)
    mlx = run_mlx_side(load_model, prompts, max_tokens)
    ref = mlx.reference
    n_ctx = context_for(mlx.config, max(len(ids) for ids, _, _ in ref) + max_tokens + 1)
    got = run_llama(gguf_path, [ids for ids, _, _ in ref], max_tokens, n_ctx, lora=lora)
    rows = []
    for prompt, (ids, tokens, logits), (l_tokens, l_logits), step_gaps, step_slack in zip(
            prompts, ref, got, mlx.gaps, mlx.slack):
        cos, rel, agree = compare_logits(logits, l_logits)
        rows.append(PromptAgreement(prompt, tokens, l_tokens, cos, rel, agree, step_gaps, step_slack))
    return Agreement(outtype, rows, [mlx.tokenizer.decode(t) for _, t, _ in ref], mlx.dtype, mlx.active_after_release)


def verify_gguf(model_dir: Path, gguf_path: Path, outtype: str, prompts: list[str], max_tokens: int = 8) -> Agreement:
    """A model GGUF against the MLX folder it was written from."""
    from mlx_lm.utils import load

    return compare_with_llama(lambda: load(str(model_dir), return_config=True), gguf_path, outtype, prompts,
                              max_tokens)


def verify_lora(base_model: str, adapter, base_gguf: Path, lora_gguf: Path, outtype: str, prompts: list[str], max_tokens: int = 8) -> Agreement:
    """Base GGUF + LoRA GGUF in llama.cpp against MLX base + adapter."""
    from phi3tui.core.export.fuse import load_adapted

    return compare_with_llama(lambda: load_adapted(base_model, adapter), base_gguf, outtype, prompts, max_tokens,
                              lora=lora_gguf)
