"""A fused Phi-3 folder -> one GGUF file for llama.cpp's `phi3` architecture, with the gguf package.

Keys, tensor names and types as llama.cpp's converter writes them (see shared/reference/gguf-phi3.md).
The file is streamed: tensor by tensor, each in row chunks read straight from the safetensors files,
so memory stays a small fraction of the model. It is written beside the destination and renamed at
the end: a failure (a full disk included) leaves nothing at the destination.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phi3tui.core.export import OUT_TYPES, ExportError, Progress, no_progress
from phi3tui.core.export.paths import EXPORT_RECORD, REFUSED_MODEL_TYPES, read_json
from phi3tui.core.export.vocab import (
    Vocab,
    add_bos_setting,
    build_vocab,
    find_tokenizer_model,
    is_byte_level_bpe,
    read_tokenizer_json,
)
from phi3tui.core.files import atomic_output_file

SUPPORTED_ARCHITECTURES = {"Phi3ForCausalLM": "phi3"}  # HF class -> GGUF architecture
SUPPORTED_TEXT = "phi3 (Phi3ForCausalLM: Phi-3 / Phi-3.5 mini and medium, 4k and 128k, Phi-4-mini)"
SKIPPED_TENSORS = (".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")
CHUNK_ELEMENTS = 1 << 22  # elements per streamed chunk (16 MB as f32): bounds the memory of one conversion


def _gguf():
    import gguf

    return gguf


def out_types() -> dict:
    """outtype -> (GGML tensor type, GGUF file type)."""
    g = _gguf()
    Q, F = g.GGMLQuantizationType, g.LlamaFileType
    return {
        "f32": (Q.F32, F.ALL_F32),
        "f16": (Q.F16, F.MOSTLY_F16),
        "bf16": (Q.BF16, F.MOSTLY_BF16),
        "q8_0": (Q.Q8_0, F.MOSTLY_Q8_0),
        "q4_0": (Q.Q4_0, F.MOSTLY_Q4_0),
        "q4_1": (Q.Q4_1, F.MOSTLY_Q4_1),
        "q5_0": (Q.Q5_0, F.MOSTLY_Q5_0),
        "q5_1": (Q.Q5_1, F.MOSTLY_Q5_1),
    }


# -- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceTensor:
    """One tensor inside a safetensors file, read in row ranges with plain file reads (no mmap: RSS stays low)."""

    file: Path
    offset: int
    dtype: str  # "F32" | "F16" | "BF16"
    shape: tuple[int, ...]

    @property
    def rows(self) -> int:
        return self.shape[0] if len(self.shape) > 1 else 1

    @property
    def row_elements(self) -> int:
        return math.prod(self.shape[1:]) if len(self.shape) > 1 else max(1, math.prod(self.shape))

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        np_dtype = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}[self.dtype]
        count = (stop - start) * self.row_elements
        offset = self.offset + start * self.row_elements * np.dtype(np_dtype).itemsize
        with open(self.file, "rb") as handle:
            handle.seek(offset)
            raw = np.fromfile(handle, dtype=np_dtype, count=count)
        if raw.size != count:
            raise ExportError(f"{self.file}: truncated tensor data (expected {count} values at byte {offset})")
        return raw.reshape((stop - start, *self.shape[1:]) if len(self.shape) > 1 else (-1,))


def as_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        wide = raw.astype(np.uint32)
        wide <<= 16  # in place: one temporary instead of two
        return wide.view(np.float32)
    return raw.astype(np.float32, copy=False)


def read_safetensors(model_dir: Path) -> dict[str, SourceTensor]:
    """Every tensor of a model folder (single file or shards) by name."""
    from gguf.utility import SafetensorsLocal

    files = sorted(model_dir.glob("model*.safetensors"))
    if not files:
        raise ExportError(f"{model_dir} has no model*.safetensors: is it a fused model folder?")
    found: dict[str, SourceTensor] = {}
    for f in files:
        try:
            with SafetensorsLocal(f) as tensors:
                for name, t in tensors.items():
                    found[name] = SourceTensor(f, t.data_range.offset, t.dtype, tuple(t.shape))
        except ValueError as exc:
            raise ExportError(f"{f}: not a readable safetensors file ({exc})") from None
    return found


def check_model(config: dict, model_dir: Path) -> None:
    """Refuse, with the reason, what the phi3 GGUF cannot hold."""
    where = model_dir / "config.json"
    arch = (config.get("architectures") or [None])[0]
    if config.get("model_type") in REFUSED_MODEL_TYPES:
        raise ExportError(f"{where}: {REFUSED_MODEL_TYPES[config['model_type']]}")
    if config.get("model_type") != "phi3" or arch not in SUPPORTED_ARCHITECTURES:
        raise ExportError(
            f"{where}: architecture {arch or config.get('model_type')!r} is not supported; supported: {SUPPORTED_TEXT}"
        )
    if config.get("quantization") or config.get("quantization_config"):
        q = config.get("quantization") or config.get("quantization_config")
        bits = q.get("bits", "?") if isinstance(q, dict) else "?"
        raise ExportError(
            f"{where}: the model is MLX-quantized ({bits}-bit); GGUF needs full weights: fuse again with de-quantize "
            "(`phi3tui export fuse --dequantize`)"
        )
    if "vision_config" in config or config.get("embd_layer"):
        raise ExportError(f"{where}: a vision model (Phi-3 vision) is not supported; only the text model {SUPPORTED_TEXT}")


def rope_settings(config: dict) -> tuple[float, dict | None]:
    """(rope_theta, rope scaling dict or None), from the classic keys or transformers 5's rope_parameters."""
    params = config.get("rope_parameters") or {}
    theta = float(config.get("rope_theta") or params.get("rope_theta") or 10000.0)
    scaling = config.get("rope_scaling")
    if not scaling and params.get("rope_type") not in (None, "default"):
        scaling = params
    return theta, scaling or None


@dataclass
class Hparams:
    n_embd: int
    n_layers: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    rope_dims: int
    context_length: int
    orig_context_length: int
    rms_eps: float
    rope_theta: float
    sliding_window: int
    rope_scaling: dict | None
    tied_embeddings: bool
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: dict, where: Path) -> "Hparams":
        def need(*keys):
            for k in keys:
                if config.get(k) is not None:
                    return config[k]
            raise ExportError(f"{where}: `{keys[0]}` is missing")

        n_embd = int(need("hidden_size", "n_embd"))
        n_head = int(need("num_attention_heads", "n_head"))
        ctx = int(need("max_position_embeddings", "n_positions"))
        notes = []
        orig = config.get("original_max_position_embeddings")
        if orig is None:
            orig = ctx
            notes.append("original_max_position_embeddings missing: using max_position_embeddings")
        theta, scaling = rope_settings(config)
        rope_dims = int(float(config.get("partial_rotary_factor", 1.0)) * n_embd) // n_head
        return cls(
            n_embd=n_embd,
            n_layers=int(need("num_hidden_layers", "n_layers", "n_layer", "num_layers")),
            n_ff=int(need("intermediate_size")),
            n_head=n_head,
            n_head_kv=int(config.get("num_key_value_heads") or n_head),
            n_vocab=int(need("vocab_size")),
            rope_dims=rope_dims,
            context_length=ctx,
            orig_context_length=int(orig),
            rms_eps=float(need("rms_norm_eps")),
            rope_theta=theta,
            sliding_window=int(config.get("sliding_window") or 0),
            rope_scaling=scaling,
            tied_embeddings=bool(config.get("tie_word_embeddings", False)),
            notes=notes,
        )

    def rope_factors(self, where: Path) -> tuple[float, np.ndarray, np.ndarray] | None:
        """(attn_factor, long, short) for LongRoPE (128k) models; None for plain RoPE."""
        s = self.rope_scaling
        if not s:
            return None
        kind = str(s.get("rope_type") or s.get("type") or "").lower()
        scale = self.context_length / self.orig_context_length
        if kind in ("su", "longrope"):
            attn = math.sqrt(1 + math.log(scale) / math.log(self.orig_context_length)) if scale > 1 else 1.0
        elif kind == "yarn":
            attn = 0.1 * math.log(scale) + 1.0 if scale > 1 else 1.0
        else:
            raise ExportError(f"{where}: rope_scaling type {kind!r} is not supported (su, longrope, yarn)")
        long = np.asarray(s.get("long_factor") or [], dtype=np.float32)
        short = np.asarray(s.get("short_factor") or [], dtype=np.float32)
        if len(long) != self.rope_dims // 2 or len(short) != self.rope_dims // 2:
            raise ExportError(
                f"{where}: rope_scaling long/short factors have {len(long)}/{len(short)} values, expected {self.rope_dims // 2}"
            )
        return attn, long, short


# -- the plan -------------------------------------------------------------------------------------


@dataclass
class PlannedTensor:
    name: str  # GGUF name
    shape: tuple[int, ...]  # numpy (out, in) order
    qtype: object  # gguf.GGMLQuantizationType
    source: SourceTensor | np.ndarray

    @property
    def nbytes(self) -> int:
        g = _gguf()
        block, size = g.GGML_QUANT_SIZES[self.qtype]
        return math.prod(self.shape[:-1]) * (self.shape[-1] // block) * size


def tensor_qtype(name: str, shape: tuple[int, ...], outtype: str, notes: list[str]):
    g = _gguf()
    Q = g.GGMLQuantizationType
    qtype = out_types()[outtype][0]
    if len(shape) <= 1 or name.endswith("_norm.weight"):
        return Q.F32
    if outtype in ("q4_0", "q4_1", "q5_0", "q5_1") and name == "output.weight":
        qtype = Q.Q8_0  # llama-quantize would use Q6_K, which gguf cannot make; Q8_0 keeps the output layer accurate
    block = g.GGML_QUANT_SIZES[qtype][0]
    if shape[-1] % block:
        notes.append(f"{name}: rows of {shape[-1]} are not a multiple of {block}: written as F16")
        return Q.F16
    return qtype


def plan_tensors(model_dir: Path, hp: Hparams, outtype: str, notes: list[str]) -> list[PlannedTensor]:
    g = _gguf()
    where = model_dir / "config.json"
    name_map = g.get_tensor_name_map(g.MODEL_ARCH.PHI3, hp.n_layers)
    sources = read_safetensors(model_dir)
    plan: list[PlannedTensor] = []
    for src_name, src in sources.items():
        if src_name.endswith(SKIPPED_TENSORS):
            continue
        if src_name.startswith(("model.vision", "vision_", "mm_projector", "model.embed_tokens_extend")):
            raise ExportError(f"{where}: vision tensor {src_name}: Phi-3 vision is not supported; only {SUPPORTED_TEXT}")
        if src.dtype not in ("F32", "F16", "BF16"):
            raise ExportError(
                f"{src.file}: tensor {src_name} is {src.dtype}; the model looks quantized: fuse again with de-quantize"
            )
        if src_name == "lm_head.weight" and hp.tied_embeddings:
            continue  # tied: llama.cpp reuses token_embd when output.weight is absent
        name = name_map.get_name(src_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"{src.file}: tensor {src_name} has no phi3 GGUF name (is this a Phi-3 model?)")
        plan.append(PlannedTensor(name, src.shape, tensor_qtype(name, src.shape, outtype, notes), src))
    factors = hp.rope_factors(where)
    if factors:
        _, long, short = factors
        F32 = g.GGMLQuantizationType.F32
        plan.append(PlannedTensor(g.TENSOR_NAMES[g.MODEL_TENSOR.ROPE_FACTORS_LONG] + ".weight", long.shape, F32, long))
        plan.append(PlannedTensor(g.TENSOR_NAMES[g.MODEL_TENSOR.ROPE_FACTORS_SHORT] + ".weight", short.shape, F32, short))
    _check_shapes(plan, hp, where)
    return plan


def _check_shapes(plan: list[PlannedTensor], hp: Hparams, where: Path) -> None:
    by_name = {t.name: t.shape for t in plan}
    head_dim = hp.n_embd // hp.n_head
    expected = {
        "token_embd.weight": (hp.n_vocab, hp.n_embd),
        "output_norm.weight": (hp.n_embd,),
    }
    if not hp.tied_embeddings:
        expected["output.weight"] = (hp.n_vocab, hp.n_embd)
    for i in range(hp.n_layers):
        expected.update({
            f"blk.{i}.attn_norm.weight": (hp.n_embd,),
            f"blk.{i}.attn_qkv.weight": (hp.n_embd + 2 * hp.n_head_kv * head_dim, hp.n_embd),
            f"blk.{i}.attn_output.weight": (hp.n_embd, hp.n_embd),
            f"blk.{i}.ffn_norm.weight": (hp.n_embd,),
            f"blk.{i}.ffn_up.weight": (2 * hp.n_ff, hp.n_embd),
            f"blk.{i}.ffn_down.weight": (hp.n_embd, hp.n_ff),
        })
    for name, shape in expected.items():
        if name not in by_name:
            if name == "output.weight":
                continue  # absent lm_head: llama.cpp ties it to token_embd
            raise ExportError(f"{where}: the weights lack {name} (a Phi-3 model has it); is the model folder complete?")
        if tuple(by_name[name]) != shape:
            raise ExportError(f"{where}: {name} has shape {tuple(by_name[name])}, expected {shape} from config.json")


# -- metadata -------------------------------------------------------------------------------------


PHI3_NAME = re.compile(r"phi-?3", re.IGNORECASE)  # what llama.cpp looks for in general.name (llama-vocab.cpp)


def gguf_model_name(name: str, tokenizer_model: str = "llama") -> str:
    """general.name for llama.cpp, which picks tokenizer rules by it.

    A SentencePiece (Phi-3) vocabulary: the name must say Phi-3, so the added tokens get Phi-3's rstrip behaviour.
    A byte-level (Phi-4-mini) vocabulary: it must not, since that rule looks up <s>/</s>/<unk>, which such a
    vocabulary lacks (the load fails), and Phi-4-mini's added tokens do not rstrip.
    """
    if tokenizer_model == "gpt2":
        return PHI3_NAME.sub("Phi", name)
    return name if PHI3_NAME.search(name) else f"Phi-3 {name}"



def write_metadata(writer, hp: Hparams, ftype, vocab: Vocab, model_dir: Path, name: str, where: Path) -> None:
    g = _gguf()
    writer.add_type("model")
    writer.add_name(gguf_model_name(name, vocab.model))
    writer.add_context_length(hp.context_length)
    writer.add_rope_scaling_orig_ctx_len(hp.orig_context_length)
    writer.add_embedding_length(hp.n_embd)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_block_count(hp.n_layers)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv(hp.n_head_kv)
    writer.add_layer_norm_rms_eps(hp.rms_eps)
    writer.add_rope_dimension_count(hp.rope_dims)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_file_type(ftype)
    writer.add_sliding_window(hp.sliding_window)
    factors = hp.rope_factors(where)
    if factors:
        writer.add_rope_scaling_attn_factors(factors[0])
    writer.add_quantization_version(g.GGML_QUANT_VERSION)
    # vocabulary
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    if vocab.model == "llama":
        writer.add_token_scores(vocab.scores)  # a gpt2-kind vocabulary has none: merges are ranked by order
    writer.add_token_types(vocab.types)
    special = g.SpecialVocab(model_dir, load_merges=False, n_vocab=len(vocab.tokens))
    special.merges = vocab.merges  # ours, checked (vocab.py); add_to_gguf writes them
    config = read_json(model_dir / "config.json")
    fallbacks = {"bos": "<s>", "eos": "<|endoftext|>", "unk": "<unk>", "pad": "<|endoftext|>"}
    if vocab.model == "gpt2":
        fallbacks.update(bos="<|endoftext|>", unk="<|endoftext|>")  # Phi-4-mini's: it has no <s> or <unk>
    for kind, fallback in fallbacks.items():
        if kind not in special.special_token_ids:
            token_id = config.get(f"{kind}_token_id")
            if isinstance(token_id, list):
                token_id = token_id[0]
            if token_id is None and fallback in vocab.tokens:
                token_id = vocab.tokens.index(fallback)
            if token_id is not None:
                special.special_token_ids[kind] = int(token_id)
    # Explicit, always: without the key llama.cpp adds BOS for SPM vocabularies.
    special.add_special_token = {"bos": add_bos_setting(model_dir, read_tokenizer_json(model_dir)), "eos": False}
    if special.chat_template is None:
        raise ExportError(f"{model_dir}: no chat template (tokenizer_config.json chat_template or chat_template.jinja)")
    special.add_to_gguf(writer, quiet=True)


# -- writing --------------------------------------------------------------------------------------


class _StreamedTensor:
    """Stands in for a numpy array in GGUFWriter.write_tensor_data: its data arrive chunk by chunk."""

    def __init__(self, nbytes: int, chunks: Iterator[np.ndarray], on_chunk):
        self.nbytes = nbytes
        self._chunks = chunks
        self._on_chunk = on_chunk

    def tofile(self, fout) -> None:
        written = 0
        for chunk in self._chunks:
            data = memoryview(np.ascontiguousarray(chunk)).cast("B")
            fout.write(data)
            written += len(data)
            self._on_chunk(len(data))
        if written != self.nbytes:
            raise ExportError(f"internal: wrote {written} bytes for a tensor of {self.nbytes}")


def converted_chunks(t: PlannedTensor) -> Iterator[np.ndarray]:
    """The tensor's bytes in its GGUF type, a few rows at a time."""
    g = _gguf()
    Q = g.GGMLQuantizationType
    if isinstance(t.source, np.ndarray):
        yield g.quants.quantize(t.source.astype(np.float32), t.qtype)
        return
    src = t.source
    step = max(1, CHUNK_ELEMENTS // src.row_elements)
    for start in range(0, src.rows, step):
        raw = src.read_rows(start, min(src.rows, start + step))
        if t.qtype == Q.F16 and src.dtype == "F16" or t.qtype == Q.BF16 and src.dtype == "BF16":
            yield raw  # same type: copied as is
        elif t.qtype == Q.F32:
            yield as_float32(raw, src.dtype)
        elif t.qtype == Q.F16:
            yield raw.astype(np.float16) if src.dtype == "F32" else as_float32(raw, src.dtype).astype(np.float16)
        else:
            yield g.quants.quantize(as_float32(raw, src.dtype), t.qtype)
        del raw


@dataclass
class GGUFResult:
    path: Path
    outtype: str
    name: str
    tensors: list[tuple[str, tuple[int, ...], str]]  # (name, numpy shape, GGML type name)
    vocab_source: str
    add_bos: bool
    size: int
    notes: list[str]

    def summary(self) -> str:
        mb = self.size / 1e6
        return f"{self.path} ({self.outtype}, {len(self.tensors)} tensors, {mb:.1f} MB, vocabulary from {self.vocab_source})"


def write_gguf(
    model_dir: Path,
    outfile: Path,
    outtype: str = "f16",
    name: str | None = None,
    tokenizer_model: Path | None = None,
    vocab_source: str = "auto",
    force: bool = False,
    progress: Progress = no_progress,
) -> GGUFResult:
    """Write the GGUF of a (fused) Phi-3 folder. Raises ExportError with the reason when it cannot."""
    g = _gguf()
    model_dir, outfile = Path(model_dir), Path(outfile)
    if outtype not in OUT_TYPES:
        raise ExportError(f"output type {outtype!r} is not one of {', '.join(OUT_TYPES)}")
    where = model_dir / "config.json"
    config = read_json(where)
    check_model(config, model_dir)
    hp = Hparams.from_config(config, where)
    notes = list(hp.notes)
    plan = plan_tensors(model_dir, hp, outtype, notes)
    byte_level = vocab_source != "tokenizer.model" and is_byte_level_bpe(read_tokenizer_json(model_dir))
    spm = find_tokenizer_model(model_dir, tokenizer_model) if vocab_source != "tokenizer.json" and not byte_level else None
    vocab = build_vocab(model_dir, hp.n_vocab, spm, source=vocab_source)
    vocab.check(hp.n_vocab, model_dir)
    notes.extend(vocab.notes)
    ftype = out_types()[outtype][1]
    model_name = name or (model_dir.parent.name if model_dir.name == "fused" else model_dir.name)
    if vocab.model == "gpt2" and gguf_model_name(model_name, vocab.model) != model_name:
        notes.append(f"general.name {gguf_model_name(model_name, vocab.model)!r}: llama.cpp applies Phi-3's SentencePiece token rules to a name saying phi3")
    total = sum(t.nbytes for t in plan)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(done, total, f"writing {outfile.name}")

    progress(0, total, f"writing {outfile.name}")
    with atomic_output_file(outfile, force=force, error=ExportError) as tmp:
        writer = g.GGUFWriter(tmp, SUPPORTED_ARCHITECTURES[config["architectures"][0]])
        try:
            write_metadata(writer, hp, ftype, vocab, model_dir, model_name, where)
            for t in plan:
                writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=t.qtype)
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for t in plan:
                writer.write_tensor_data(_StreamedTensor(t.nbytes, converted_chunks(t), advance))
        finally:
            writer.close()
    return GGUFResult(
        path=outfile,
        outtype=outtype,
        name=gguf_model_name(model_name, vocab.model),
        tensors=[(t.name, tuple(t.shape), t.qtype.name) for t in plan],
        vocab_source=vocab.source,
        add_bos=add_bos_setting(model_dir, read_tokenizer_json(model_dir)),
        size=outfile.stat().st_size,
        notes=notes,
    )


def demo_step(workspace, state: dict) -> str:
    """Headless demo: the f16 GGUF of the fused model, read back and checked."""
    from phi3tui.core.export.verify import read_back

    fused = state.get("fused_dir")
    if not fused:
        # Never a fused model an earlier attempt left in exports/: only this job's.
        raise ExportError("no fused model from this job: run the fuse step first (`phi3tui export fuse`)")
    fused_dir = Path(fused)
    name = state.get("export_name") or fused_dir.parent.name
    result = write_gguf(fused_dir, fused_dir.parent / f"{name}-f16.gguf", "f16", name=name, force=True)
    report = read_back(result.path, result)
    if not report.ok:
        raise ExportError(f"{result.path} does not read back: {'; '.join(report.problems)}")
    state["gguf_path"] = str(result.path)
    return f"{result.summary()}; read back: {report.summary()}"
