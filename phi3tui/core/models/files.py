"""Is a local model folder safe and whole to load: checked before mlx-lm loads it, so a folder holding only
pickle weights is refused (unpickling runs code: it is never done) and a truncated safetensors file is named
instead of failing deep inside MLX. Files only: nothing is imported or unpickled."""

from __future__ import annotations

import json
import struct
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be read whole (truncated, not safetensors), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"{path} is {size} bytes: not a safetensors file (re-download or re-save it)"
            (length,) = struct.unpack("<Q", head)
            if length > size - 8 or length > 100_000_000:
                return (f"{path} is truncated: its header says {length} bytes but the file has {size} "
                        "(an incomplete download? re-download it)")
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as exc:
        return f"{path} cannot be read as safetensors: {exc} (re-download or re-save it)"
    if not isinstance(header, dict):
        return f"{path} has no safetensors header (re-download or re-save it)"
    end = max((v.get("data_offsets", [0, 0])[1] for k, v in header.items()
               if k != "__metadata__" and isinstance(v, dict)), default=0)
    if 8 + length + end > size:
        return (f"{path} is truncated: its tensors need {8 + length + end} bytes but the file has {size} "
                "(an incomplete download? re-download it)")
    return None


def model_folder_problem(folder: Path | str) -> str | None:
    """What stops mlx-lm from loading this local model folder safely, or None when it looks loadable.

    Looks at files only (config.json, the weight files' headers): nothing is imported or unpickled.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder; point model at an mlx-lm model folder or a Hugging Face repo id"
    config = folder / "config.json"
    if not config.is_file():
        return f"{config} is missing: not a Hugging Face model folder (download the model again)"
    try:
        values = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{config} is not valid JSON: {exc} (fix or re-download it)"
    if not isinstance(values, dict):
        return f"{config} is not a JSON object (re-download it)"
    model_type = values.get("model_type")
    if not model_type:
        return f"{config} has no model_type (re-download the model)"
    if not _mlx_lm_knows(str(model_type)):
        return (f"{config}: model_type {model_type!r} is not supported by the installed mlx-lm "
                "(use a Phi-3 model, or upgrade mlx-lm)")
    safetensors = sorted(folder.glob("*.safetensors"))
    if not safetensors:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            return (f"{folder} holds only pickle weights ({', '.join(pickles[:3])}): phi3tui never loads them "
                    "(unpickling can run any code); use the model's .safetensors release or convert it "
                    "with `mlx_lm convert`")
        return f"{folder} has no .safetensors weights (download the model again)"
    for path in safetensors:
        problem = safetensors_problem(path)
        if problem:
            return problem
    return None


def _mlx_lm_knows(model_type: str) -> bool:
    import importlib.util

    try:
        from mlx_lm.utils import MODEL_REMAPPING
    except ImportError:  # a future mlx-lm moved it: trust the loader to say
        return True
    name = MODEL_REMAPPING.get(model_type, model_type).replace("-", "_")
    return importlib.util.find_spec(f"mlx_lm.models.{name}") is not None
