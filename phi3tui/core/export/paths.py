"""What an export starts from and where it goes: the adapter, its base model, the output paths.

The write guards every step uses (never overwrite unasked, never leave half a file) are core.files'.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from phi3tui.core import models
from phi3tui.core.adapters import AdapterNotFound, AdapterRef, adapter_at, find_adapters, kind_of
from phi3tui.core.export import ExportError

EXPORT_RECORD = "phi3tui-export.json"  # written into a fused folder: what it was made from


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path} is missing; check the folder (or re-download it)") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); fix or re-download it") from None


def resolve_adapter(
    workspace_root: Path,
    adapter_path: str | os.PathLike | None = None,
    run_id: str | None = None,
    checkpoint: int | None = None,
) -> AdapterRef:
    """The adapter to export: an explicit folder or checkpoint file, a run, or the newest run's adapters."""
    root = Path(workspace_root)
    try:
        if adapter_path is not None:
            p = Path(adapter_path).expanduser()
            return adapter_at(p if p.is_absolute() else root / p, checkpoint)
        found = find_adapters(root)
        if run_id is not None:
            found = [ref for ref in found if ref.run_id == run_id]
            if not found:
                raise ExportError(f"run {run_id} has no adapters under {root / 'runs'}; `phi3tui runs` lists the runs")
        if not found:
            raise ExportError(
                f"no adapters in {root}: train first (`phi3tui train`) or give --adapter-path DIR"
            )
        return found[0].at(checkpoint)
    except AdapterNotFound as exc:
        raise ExportError(str(exc)) from None


def adapter_config(adapter: AdapterRef) -> dict:
    """adapter_config.json's content, or an ExportError that names the file and what is wrong."""
    return read_json(adapter.config_path)


def adapter_kind(adapter: AdapterRef) -> str:
    """lora, dora or full (AdapterRef.kind, with export's error for a missing or damaged config)."""
    return kind_of(adapter_config(adapter))


def base_model_of(workspace_root: Path, adapter: AdapterRef | None, override: str | None = None) -> str:
    """The base model the adapter was trained on: --model, else adapter_config.json's `model`, else lora_config.yaml's.
    A local folder comes back as an absolute path, a Hugging Face model as its repo id (core.models finds both)."""
    root = Path(workspace_root)
    try:
        if override:
            return models.model_to_load(override, root)
        trained_on = adapter_config(adapter).get("model") if adapter is not None else None
        if trained_on:
            # mlx-lm stores the path as given on its command line: relative to where it ran (the run folder or the workspace).
            return models.model_to_load(str(trained_on), root, search=(adapter.adapter_dir.parent,))
        from phi3tui.core.workspace import Workspace

        return models.workspace_model(Workspace(root))
    except models.ModelNotFound as exc:
        raise ExportError(f"base model: {exc}" + ("" if override else "; or give --model")) from None


def local_model_dir(model: str) -> Path:
    """A base model's folder on disk: the folder itself, or its Hugging Face snapshot (downloaded if needed)."""
    try:
        return models.model_folder(model)
    except models.ModelNotFound as exc:
        raise ExportError(str(exc)) from None


def default_export_name(adapter: AdapterRef | None) -> str:
    """A name for the export folder and the Ollama model: phi3-<run id>, lowercase, Ollama-safe."""
    stem = adapter.run_id if adapter and adapter.run_id else (adapter.adapter_dir.name if adapter else "model")
    if adapter and adapter.iteration is not None:
        stem += "-" + str(adapter.iteration)
    return "phi3-" + safe_name(stem)


def safe_name(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return cleaned or "model"


def quantization_label(config: dict) -> str | None:
    """'4-bit', '8-bit' or 'mixed 4/6-bit' (per-layer bits) for an MLX-quantized config.json; None for full weights."""
    q = config.get("quantization") or config.get("quantization_config")
    if not isinstance(q, dict):
        return None
    bits = {q["bits"]} if "bits" in q else set()
    bits |= {v["bits"] for v in q.values() if isinstance(v, dict) and "bits" in v}
    if len(bits) > 1:
        return f"mixed {'/'.join(str(b) for b in sorted(bits))}-bit"
    return f"{next(iter(bits))}-bit" if bits else "quantized"


# Phi models mlx-lm trains whose GGUF this export does not write, and why (said instead of a bare "not supported").
REFUSED_MODEL_TYPES = {
    "phi3small": (
        "Phi-3-small (phi3small) cannot be exported to GGUF: llama.cpp has no phi3small architecture (its blocksparse "
        "attention and tiktoken cl100k vocabulary are not implemented there), so no llama.cpp or Ollama build could run "
        "the file; train and chat with it in phi3tui (mlx-lm), and keep the adapter or the fused MLX folder"
    ),
    "phimoe": (
        "Phi-3.5-MoE (phimoe) is not exported yet: llama.cpp's phimoe architecture needs the 16 experts' weights stacked "
        "into ffn_*_exps tensors and a router, which this exporter does not write; fuse the adapter (`phi3tui export "
        "fuse`) and convert the fused folder with llama.cpp's convert_hf_to_gguf.py"
    ),
}


def refuse_gguf_architecture(base_model: str) -> None:
    """ExportError with llama.cpp's reason when no GGUF of this base's architecture can be written: said before
    anything is fused or written, not after minutes of fusing."""
    where = local_model_dir(base_model) / "config.json"
    model_type = read_json(where).get("model_type")
    if model_type in REFUSED_MODEL_TYPES:
        raise ExportError(f"{where}: {REFUSED_MODEL_TYPES[model_type]}")


def dequantize_for_gguf(base_model: str, refuse: bool = False) -> tuple[bool, str]:
    """(de-quantize while fusing?, what to tell the person) for an export whose target needs full weights (GGUF).

    A base whose architecture has no GGUF is refused first (refuse_gguf_architecture). An MLX-quantized base
    (the usual QLoRA on a -4bit repo) is de-quantized without being asked, and said so; with refuse
    (`--no-dequantize`) it is an ExportError instead."""
    refuse_gguf_architecture(base_model)
    label = quantization_label(read_json(local_model_dir(base_model) / "config.json"))
    if label is None:
        return False, ""
    if refuse:
        raise ExportError(
            f"{base_model}: the base model is MLX-quantized ({label}) and --no-dequantize was given, but a GGUF needs full "
            "weights: drop --no-dequantize to de-quantize while fusing"
        )
    return True, f"the base model is MLX-quantized ({label}): de-quantized while fusing, since the GGUF needs full weights"
