"""Fuse a LoRA or DoRA adapter into its base model with mlx-lm's own functions, one tensor at a time.

mlx-lm's `fuse` holds the whole model in memory (7.6 GB for Phi-3-mini). Here the model is built lazily
(nothing read from the shards yet), mlx-lm's own `fuse`/`dequantize_model` turn the adapted layers into
lazy fused arrays, and each output tensor is then evaluated, written into its shard and dropped before
the next one; tensors the adapter does not touch are copied byte for byte from the base shards. The
result is what `mlx_lm fuse` writes: the same tensors (bit for bit), dtypes, names, shards, index,
config and tokenizer files.

The fused folder is complete: besides the weights and config it has tokenizer.model and every
tokenizer file the base model has (transformers 5's save_pretrained leaves tokenizer.model out),
so the GGUF step and other tools can read it on their own.
"""

from __future__ import annotations

import glob
import json
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from phi3tui.core import models
from phi3tui.core.adapters import ADAPTER_CONFIG, KINDS, LATEST_WEIGHTS, AdapterRef
from phi3tui.core.export import ExportError, Progress, no_progress
from phi3tui.core.export.paths import (
    EXPORT_RECORD,
    adapter_config,
    adapter_kind,
    base_model_of,
    default_export_name,
    dequantize_for_gguf,
    local_model_dir,
    read_json,
    resolve_adapter,
)
from phi3tui.core.files import atomic_output_dir
from phi3tui.core.mlx_thread import mlx_thread

# Tokenizer and config files a fused folder should carry over from the base when the save left them out.
TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "generation_config.json",
)
# tokenizer_config.json keys that transformers 5 drops on save but exporters rely on (add_bos decides BOS in llama.cpp).
TOKENIZER_CONFIG_KEYS = ("add_bos_token", "add_eos_token", "added_tokens_decoder")


@dataclass(frozen=True)
class FuseResult:
    fused_dir: Path
    base_model: str
    adapter: AdapterRef
    dequantized: bool
    restored: tuple[str, ...]  # files or keys taken from the base model

    def summary(self) -> str:
        extra = f"; from the base: {', '.join(self.restored)}" if self.restored else ""
        return f"fused {self.adapter.file_label} into {self.base_model} -> {self.fused_dir}{extra}"


def is_quantized(config: dict) -> bool:
    return bool(config.get("quantization") or config.get("quantization_config"))


def _adapter_folder_for(adapter: AdapterRef, scratch: Path) -> Path:
    """mlx-lm loads <dir>/adapters.safetensors; a numbered checkpoint gets a folder of its own."""
    if adapter.is_latest:
        return adapter.adapter_dir
    scratch.mkdir(parents=True, exist_ok=True)
    shutil.copy2(adapter.config_path, scratch / ADAPTER_CONFIG)
    shutil.copy2(adapter.weights, scratch / LATEST_WEIGHTS)
    return scratch


def load_adapted(base_model: str, adapter: AdapterRef, lazy: bool = False):
    """(model, tokenizer, config) of the base with the adapter applied, as mlx-lm loads it.

    lazy: the base weights stay unread until used (the adapter's own weights are read now, as their
    file may be a temporary copy).
    """
    with mlx_thread(tuner=True):  # load(adapter_path=) imports mlx_lm.tuner
        from mlx_lm.utils import load

    problem = models.model_folder_problem(base_model) if Path(base_model).is_dir() else None
    if problem:
        raise ExportError(problem)
    with tempfile.TemporaryDirectory(prefix="phi3tui-adapter-") as scratch:
        folder = _adapter_folder_for(adapter, Path(scratch) / "adapter")
        try:
            loaded = load(base_model, adapter_path=str(folder), return_config=True, lazy=lazy)
        except (ValueError, RuntimeError, KeyError) as exc:  # shapes of another model, a broken file
            raise ExportError(f"cannot apply the adapter {adapter.weights} to {base_model}: {exc} "
                              "(pick the adapter trained for this model, or the model it was trained on)") from None
        if lazy:
            import mlx.core as mx
            from mlx.utils import tree_flatten

            names = set(mx.load(str(folder / LATEST_WEIGHTS)))
            mx.eval([v for k, v in tree_flatten(loaded[0].parameters()) if k in names])
        return loaded


def fuse(
    base_model: str,
    adapter: AdapterRef,
    save_path: Path,
    dequantize: bool = False,
    force: bool = False,
    progress: Progress = no_progress,
) -> FuseResult:
    """Fuse `adapter` into `base_model` and save the result at `save_path` (atomically), one tensor at a time."""
    save_path = Path(save_path)
    base_dir = local_model_dir(base_model)
    base_config = read_json(base_dir / "config.json")
    kind = adapter_kind(adapter)
    if kind not in KINDS:
        raise ExportError(f"{adapter.config_path}: unknown fine_tune_type {kind!r}")
    progress(0, 1, "reading the base model and the adapter")
    with atomic_output_dir(save_path, force=force, error=ExportError) as tmp:
        plan = _fused_plan(base_model, adapter, dequantize)
        _save_streaming(tmp, base_model, base_dir, plan, progress)
        restored = complete_tokenizer_files(tmp, base_dir)
        record = {
            "base_model": base_model,
            "adapter_dir": str(adapter.adapter_dir),
            "adapter_weights": adapter.weights.name,
            "run_id": adapter.run_id,
            "fine_tune_type": kind,
            "dequantized": bool(dequantize and is_quantized(base_config)),
            "max_seq_length": adapter_config(adapter).get("max_seq_length"),
        }
        (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return FuseResult(save_path, base_model, adapter, record["dequantized"], tuple(restored))


def dequantize_base(base_model: str, save_path: Path, force: bool = False, progress: Progress = no_progress) -> Path:
    """The MLX-quantized base alone, de-quantized by mlx-lm and saved at `save_path` (atomically), one tensor at a
    time: what a base GGUF (for Ollama's ADAPTER or llama.cpp's --lora) is written from."""
    from mlx.utils import tree_flatten
    from mlx_lm.utils import dequantize_model, get_total_parameters, load

    save_path = Path(save_path)
    base_dir = local_model_dir(base_model)
    problem = models.model_folder_problem(base_dir)
    if problem:
        raise ExportError(problem)
    progress(0, 1, "reading the base model")
    with atomic_output_dir(save_path, force=force, error=ExportError) as tmp:
        model, tokenizer, config = load(str(base_dir), return_config=True, lazy=True)
        model = dequantize_model(model)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
        plan = _FusePlan(dict(tree_flatten(model.parameters())), get_total_parameters(model), tokenizer, config,
                         "vision_tower" in getattr(model, "model", {}), frozenset(), copy_through=False)
        del model
        _save_streaming(tmp, base_model, base_dir, plan, progress)
        complete_tokenizer_files(tmp, base_dir)
    return save_path


@dataclass
class _FusePlan:
    weights: dict  # name -> lazy mx.array, in the order mlx-lm's save_model writes them
    total_parameters: int
    tokenizer: object
    config: dict
    keep_vision_config: bool
    touched: frozenset[str]  # module paths whose tensors the fuse changes
    copy_through: bool  # whether unchanged tensors may be copied from the base shards as bytes


def _fused_plan(base_model: str, adapter: AdapterRef, dequantize: bool) -> _FusePlan:
    """The fused model as lazy arrays, built by mlx-lm's own fuse and dequantize (nothing computed yet).

    The model object is dropped on return, so an evaluated tensor is held only by the writer, which lets go of it.
    """
    from mlx.utils import tree_flatten, tree_unflatten
    from mlx_lm.utils import dequantize_model, get_total_parameters

    model, tokenizer, config = load_adapted(base_model, adapter, lazy=True)
    fused = [(name, module.fuse(dequantize=dequantize)) for name, module in model.named_modules() if hasattr(module, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    if dequantize:  # mlx_lm fuse dequantizes and drops the keys whenever asked
        model = dequantize_model(model)
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    return _FusePlan(
        weights=dict(tree_flatten(model.parameters())),
        total_parameters=get_total_parameters(model),
        tokenizer=tokenizer,
        config=config,
        keep_vision_config="vision_tower" in getattr(model, "model", {}),
        touched=frozenset(name for name, _ in fused),
        # A model's sanitize may rewrite a tensor under its own name, and a full fine-tune replaces them:
        # then every tensor goes through MLX.
        copy_through=not hasattr(model, "sanitize") and adapter_kind(adapter) != "full",
    )


# mlx dtype -> safetensors dtype tag, and the same-size integer type whose bytes numpy can hold.
_ST_DTYPES = {
    "bool": ("BOOL", None), "uint8": ("U8", None), "uint16": ("U16", None), "uint32": ("U32", None),
    "uint64": ("U64", None), "int8": ("I8", None), "int16": ("I16", None), "int32": ("I32", None),
    "int64": ("I64", None), "float16": ("F16", None), "float32": ("F32", None), "float64": ("F64", None),
    "bfloat16": ("BF16", "uint16"), "complex64": ("C64", None),
}


def _dtype_tag(dtype) -> str:
    return _ST_DTYPES[str(dtype).rsplit(".", 1)[-1]][0]


def _read_header(path: Path) -> tuple[int, dict]:
    """(offset of the data block, header) of a safetensors file."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return 8 + size, json.loads(f.read(size))


def _base_tensors(base_dir: Path) -> dict[str, tuple[Path, int, int, str, list]]:
    """name -> (file, start, end, dtype tag, shape) of every tensor in the base shards (the files mlx-lm loads)."""
    found = {}
    for file in sorted(glob.glob(str(base_dir / "model*.safetensors"))):
        data_start, header = _read_header(Path(file))
        for name, info in header.items():
            if name != "__metadata__":
                start, end = info["data_offsets"]
                found[name] = (Path(file), data_start + start, data_start + end, info["dtype"], info["shape"])
    return found


_COPY_CHUNK = 16 << 20


def _write_shard(path: Path, names: list[str], plan: _FusePlan, base: dict, step) -> None:
    """Write one safetensors shard, evaluating (or copying) one tensor at a time and letting go of it."""
    import mlx.core as mx
    import numpy as np

    header: dict = {"__metadata__": {"format": "mlx"}}
    offset = 0
    for name in names:
        array = plan.weights[name]
        header[name] = {"dtype": _dtype_tag(array.dtype), "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)  # the data block starts 8-byte aligned, as the format asks
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)
        for name in names:
            array = plan.weights.pop(name)
            src = base.get(name) if plan.copy_through and not _under(name, plan.touched) else None
            if src and src[3] == header[name]["dtype"] and list(src[4]) == header[name]["shape"]:
                with open(src[0], "rb") as f:
                    f.seek(src[1])
                    left = src[2] - src[1]
                    while left:
                        chunk = f.read(min(left, _COPY_CHUNK))
                        if not chunk:
                            raise ExportError(f"{src[0]} is shorter than its header says: download the base model again")
                        out.write(chunk)
                        left -= len(chunk)
            else:
                as_int = _ST_DTYPES[str(array.dtype).rsplit(".", 1)[-1]][1]
                view = array.view(getattr(mx, as_int)) if as_int else array
                mx.eval(view)
                out.write(np.ascontiguousarray(view).data)
            del array, src
            mx.clear_cache()  # freed buffers would otherwise stay cached and count against the peak
            step(name)


def _under(name: str, modules: frozenset[str]) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in modules for i in range(1, len(parts)))


def _save_streaming(dst: Path, base_model: str, base_dir: Path, plan: _FusePlan, progress: Progress) -> None:
    """mlx_lm.utils.save, but the weights are written as they are computed."""
    from mlx_lm.utils import create_model_card, make_shards, save_config

    shards = [list(shard) for shard in make_shards(plan.weights)]  # mlx-lm's own split, by byte size
    file_format = "model-{:05d}-of-{:05d}.safetensors" if len(shards) > 1 else "model.safetensors"
    index = {
        "metadata": {"total_size": sum(v.nbytes for v in plan.weights.values()), "total_parameters": plan.total_parameters},
        "weight_map": {},
    }
    base = _base_tensors(base_dir) if plan.copy_through else {}
    total, done = len(plan.weights), 0

    def step(name: str) -> None:
        nonlocal done
        done += 1
        progress(done, total + 1, f"fused {name}")

    for i, names in enumerate(shards):
        shard_name = file_format.format(i + 1, len(shards))
        _write_shard(dst / shard_name, names, plan, base, step)
        index["weight_map"].update(dict.fromkeys(names, shard_name))
    index["weight_map"] = dict(sorted(index["weight_map"].items()))
    with open(dst / "model.safetensors.index.json", "w") as f:
        json.dump(index, f, indent=4)
    save_config(plan.config, config_path=dst / "config.json", keep_vision_config=plan.keep_vision_config)
    plan.tokenizer.save_pretrained(dst)
    src_path = Path(base_model)
    for pattern in ("*.py", "generation_config.json"):
        for file in glob.glob(str(base_dir / pattern)):
            shutil.copy(file, dst)
    create_model_card(dst, None if src_path.exists() else base_model)
    progress(total + 1, total + 1, "fused")


def complete_tokenizer_files(fused_dir: Path, base_dir: Path) -> list[str]:
    """Copy the tokenizer files the save left out from the base; restore the dropped tokenizer_config keys."""
    restored = []
    for name in TOKENIZER_FILES:
        src, dst = base_dir / name, fused_dir / name
        if src.is_file() and not dst.exists():
            shutil.copy2(src, dst)
            restored.append(name)
    src_cfg, dst_cfg = base_dir / "tokenizer_config.json", fused_dir / "tokenizer_config.json"
    if src_cfg.is_file() and dst_cfg.is_file():
        base_cfg, saved_cfg = read_json(src_cfg), read_json(dst_cfg)
        missing = [k for k in TOKENIZER_CONFIG_KEYS if k in base_cfg and k not in saved_cfg]
        if missing:
            saved_cfg.update({k: base_cfg[k] for k in missing})
            dst_cfg.write_text(json.dumps(saved_cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            restored.extend(f"tokenizer_config.json:{k}" for k in missing)
    if not (fused_dir / "tokenizer.model").is_file() and not (fused_dir / "tokenizer.json").is_file():
        raise ExportError(
            f"neither {base_dir} nor the fused model has tokenizer.model or tokenizer.json; "
            "copy the base model's tokenizer files into the base model folder"
        )
    return restored


# -- checks ---------------------------------------------------------------------------------------


def greedy_tokens(model, tokenizer, prompt: str, max_tokens: int = 16) -> list[int]:
    """Greedy (argmax) continuation of `prompt` through the chat template, as token ids."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    ids = prompt_ids(tokenizer, prompt)
    out = []
    for token, _ in generate_step(mx.array(ids), model, max_tokens=max_tokens, sampler=lambda x: mx.argmax(x, axis=-1)):
        out.append(int(token))
        if int(token) in tokenizer.eos_token_ids:
            break
    return out


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    messages = [{"role": "user", "content": prompt}]
    if getattr(tokenizer, "chat_template", None):
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    return list(tokenizer.encode(prompt))


def compare_fused(base_model: str, adapter: AdapterRef, fused_dir: Path, prompts: list[str], max_tokens: int = 16):
    """[(prompt, adapted tokens, fused tokens)] for each prompt: greedy answers of base+adapter and of the fused model."""
    from mlx_lm.utils import load

    adapted, tokenizer, _ = load_adapted(base_model, adapter)
    expected = [greedy_tokens(adapted, tokenizer, p, max_tokens) for p in prompts]
    del adapted
    fused, fused_tokenizer = load(str(fused_dir))
    got = [greedy_tokens(fused, fused_tokenizer, p, max_tokens) for p in prompts]
    return list(zip(prompts, expected, got))


DEMO_PROMPTS = ("What happens if you crack your knuckles a lot?", "Can you see the Great Wall of China from space?")


def demo_step(workspace, state: dict) -> str:
    """Headless demo: fuse the adapter this job trained into exports/<name>/fused."""
    root = Path(workspace.root)
    if not state.get("adapter_dir"):
        # Never the newest adapter on disk: it may be an earlier attempt's.
        raise ExportError("no adapter from this job: run the train step first")
    adapter = resolve_adapter(root, state["adapter_dir"])
    base = base_model_of(root, adapter)
    name = default_export_name(adapter)
    dequantize, note = dequantize_for_gguf(base)  # the next step writes a GGUF: a quantized base is de-quantized
    result = fuse(base, adapter, root / "exports" / name / "fused", dequantize, force=True)
    state["fused_dir"] = str(result.fused_dir)
    state["export_name"] = name
    state["adapter_dir"] = str(adapter.adapter_dir)
    return result.summary() + (f"; {note}" if note else "")
