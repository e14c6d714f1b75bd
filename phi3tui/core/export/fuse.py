"""Fuse a LoRA or DoRA adapter into its base model with mlx-lm's own functions.

The fused folder is complete: besides the weights and config it has tokenizer.model and every
tokenizer file the base model has (transformers 5's save_pretrained leaves tokenizer.model out),
so the GGUF step and other tools can read it on their own.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from phi3tui.core import models
from phi3tui.core.export import ExportError, Progress, no_progress
from phi3tui.core.export.paths import (
    EXPORT_RECORD,
    AdapterChoice,
    base_model_of,
    default_export_name,
    dequantize_for_gguf,
    local_model_dir,
    read_json,
    resolve_adapter,
)
from phi3tui.core.files import atomic_output_dir

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
    adapter: AdapterChoice
    dequantized: bool
    restored: tuple[str, ...]  # files or keys taken from the base model

    def summary(self) -> str:
        extra = f"; from the base: {', '.join(self.restored)}" if self.restored else ""
        return f"fused {self.adapter.label} into {self.base_model} -> {self.fused_dir}{extra}"


def is_quantized(config: dict) -> bool:
    return bool(config.get("quantization") or config.get("quantization_config"))


def _adapter_folder_for(adapter: AdapterChoice, scratch: Path) -> Path:
    """mlx-lm loads <dir>/adapters.safetensors; a numbered checkpoint gets a folder of its own."""
    if adapter.weights.name == "adapters.safetensors":
        return adapter.adapter_dir
    scratch.mkdir(parents=True, exist_ok=True)
    shutil.copy2(adapter.adapter_dir / "adapter_config.json", scratch / "adapter_config.json")
    shutil.copy2(adapter.weights, scratch / "adapters.safetensors")
    return scratch


def load_adapted(base_model: str, adapter: AdapterChoice):
    """(model, tokenizer, config) of the base with the adapter applied, as mlx-lm loads it."""
    from mlx_lm.utils import load

    problem = models.model_folder_problem(base_model) if Path(base_model).is_dir() else None
    if problem:
        raise ExportError(problem)
    with tempfile.TemporaryDirectory(prefix="phi3tui-adapter-") as scratch:
        folder = _adapter_folder_for(adapter, Path(scratch) / "adapter")
        try:
            return load(base_model, adapter_path=str(folder), return_config=True)
        except (ValueError, RuntimeError, KeyError) as exc:  # shapes of another model, a broken file
            raise ExportError(f"cannot apply the adapter {adapter.weights} to {base_model}: {exc} "
                              "(pick the adapter trained for this model, or the model it was trained on)") from None


def fuse(
    base_model: str,
    adapter: AdapterChoice,
    save_path: Path,
    dequantize: bool = False,
    force: bool = False,
    progress: Progress = no_progress,
) -> FuseResult:
    """Fuse `adapter` into `base_model` and save the result at `save_path` (atomically)."""
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import dequantize_model, save

    save_path = Path(save_path)
    base_dir = local_model_dir(base_model)
    base_config = read_json(base_dir / "config.json")
    if adapter.fine_tune_type not in ("lora", "dora", "full"):
        raise ExportError(f"{adapter.adapter_dir / 'adapter_config.json'}: unknown fine_tune_type {adapter.fine_tune_type!r}")
    progress(0, 4, "loading the base model and the adapter")
    with atomic_output_dir(save_path, force=force, error=ExportError) as tmp:
        model, tokenizer, config = load_adapted(base_model, adapter)
        progress(1, 4, "fusing the adapter into the base weights")
        fused = [(name, module.fuse(dequantize=dequantize)) for name, module in model.named_modules() if hasattr(module, "fuse")]
        if fused:
            model.update_modules(tree_unflatten(fused))
        if dequantize and is_quantized(config):
            model = dequantize_model(model)
            config.pop("quantization", None)
            config.pop("quantization_config", None)
        progress(2, 4, "saving the fused model")
        save(tmp, base_model, model, tokenizer, config, donate_model=False)
        progress(3, 4, "restoring tokenizer files")
        restored = complete_tokenizer_files(tmp, base_dir)
        record = {
            "base_model": base_model,
            "adapter_dir": str(adapter.adapter_dir),
            "adapter_weights": adapter.weights.name,
            "run_id": adapter.run_id,
            "fine_tune_type": adapter.fine_tune_type,
            "dequantized": bool(dequantize and is_quantized(base_config)),
            "max_seq_length": adapter.config.get("max_seq_length"),
        }
        (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    progress(4, 4, "fused")
    return FuseResult(save_path, base_model, adapter, record["dequantized"], tuple(restored))


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


def compare_fused(base_model: str, adapter: AdapterChoice, fused_dir: Path, prompts: list[str], max_tokens: int = 16):
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
