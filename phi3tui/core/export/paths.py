"""What an export starts from and where it goes: the adapter, its base model, the output paths.

The write guards every step uses (never overwrite unasked, never leave half a file) are core.files'.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from phi3tui.core.adapters import checkpoints_in, find_adapters, is_adapter_dir
from phi3tui.core.export import ExportError

EXPORT_RECORD = "phi3tui-export.json"  # written into a fused folder: what it was made from


@dataclass(frozen=True)
class AdapterChoice:
    """One adapter to export: a folder, and the checkpoint file inside it to use."""

    adapter_dir: Path
    weights: Path  # adapters.safetensors or NNNNNNN_adapters.safetensors
    run_id: str | None = None

    @property
    def config(self) -> dict:
        return read_json(self.adapter_dir / "adapter_config.json")

    @property
    def fine_tune_type(self) -> str:
        return self.config.get("fine_tune_type", "lora")

    @property
    def label(self) -> str:
        where = f"run {self.run_id}" if self.run_id else str(self.adapter_dir)
        return f"{where}, {self.weights.name}"


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path} is missing") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None


def resolve_adapter(
    workspace_root: Path,
    adapter_path: str | os.PathLike | None = None,
    run_id: str | None = None,
    checkpoint: int | None = None,
) -> AdapterChoice:
    """The adapter to export: an explicit folder or checkpoint file, a run, or the newest run's adapters."""
    root = Path(workspace_root)
    if adapter_path is not None:
        p = Path(adapter_path).expanduser()
        p = p if p.is_absolute() else root / p
        if p.is_file():
            if not (p.parent / "adapter_config.json").is_file():
                raise ExportError(f"{p.parent / 'adapter_config.json'} is missing: an adapter file needs its folder's config")
            return AdapterChoice(p.parent, p, _run_id_of(p.parent))
        if not p.is_dir():
            raise ExportError(f"adapter path {p} does not exist")
        if not is_adapter_dir(p):
            raise ExportError(f"{p} is not an adapter folder (it needs adapter_config.json and adapters.safetensors)")
        return AdapterChoice(p, _pick_checkpoint(p, checkpoint), _run_id_of(p))
    sources = find_adapters(root)
    if run_id is not None:
        sources = [s for s in sources if s.run_id == run_id]
        if not sources:
            raise ExportError(f"run {run_id} has no adapters under {root / 'runs'}; `phi3tui runs` lists the runs")
    if not sources:
        raise ExportError(
            f"no adapters in {root}: train first (`phi3tui train`) or give --adapter-path DIR"
        )
    source = sources[0]
    return AdapterChoice(source.adapter_dir, _pick_checkpoint(source.adapter_dir, checkpoint), source.run_id)


def _run_id_of(adapter_dir: Path) -> str | None:
    return adapter_dir.parent.name if adapter_dir.name == "adapters" and adapter_dir.parent.parent.name == "runs" else None


def _pick_checkpoint(adapter_dir: Path, iteration: int | None) -> Path:
    checkpoints = checkpoints_in(adapter_dir)
    if iteration is None:
        return checkpoints[-1].path
    for c in checkpoints:
        if c.iteration == iteration:
            return c.path
    have = ", ".join(str(c.iteration) for c in checkpoints if c.iteration is not None) or "none"
    raise ExportError(f"{adapter_dir} has no checkpoint for iteration {iteration} (checkpoints: {have})")


def base_model_of(workspace_root: Path, adapter: AdapterChoice | None, override: str | None = None) -> str:
    """The base model the adapter was trained on: --model, else adapter_config.json's `model`, else lora_config.yaml's."""
    if override:
        return _local_or_repo(workspace_root, override)
    if adapter is not None:
        model = adapter.config.get("model")
        if model:
            # mlx-lm stores the path as given on its command line: relative to where it ran (the run folder or the workspace).
            for base in (adapter.adapter_dir.parent, Path(workspace_root)):
                candidate = Path(model).expanduser()
                candidate = candidate if candidate.is_absolute() else base / candidate
                if candidate.is_dir():
                    return str(candidate.resolve())
            return _local_or_repo(workspace_root, model)
    from phi3tui.core.workspace import Workspace

    model = Workspace(Path(workspace_root)).model_setting()
    if not model:
        raise ExportError(f"no base model: give --model, or set `model:` in {Path(workspace_root) / 'lora_config.yaml'}")
    return _local_or_repo(workspace_root, model)


def _local_or_repo(workspace_root: Path, model: str) -> str:
    p = Path(model).expanduser()
    p = p if p.is_absolute() else Path(workspace_root) / p
    if p.is_dir():
        return str(p.resolve())
    if model.count("/") == 1 and not model.startswith((".", "/", "~")):
        return model  # a Hugging Face repo id
    raise ExportError(f"base model {model} is neither a folder nor a Hugging Face repo id (owner/name)")


def local_model_dir(model: str) -> Path:
    """A base model's folder on disk: the folder itself, or its Hugging Face snapshot (downloaded if needed)."""
    p = Path(model)
    if p.is_dir():
        return p
    from mlx_lm.utils import _download

    return Path(_download(model))


def default_export_name(adapter: AdapterChoice | None) -> str:
    """A name for the export folder and the Ollama model: phi3-<run id>, lowercase, Ollama-safe."""
    stem = adapter.run_id if adapter and adapter.run_id else (adapter.adapter_dir.name if adapter else "model")
    if adapter and adapter.weights.name != "adapters.safetensors":
        stem += "-" + str(int(adapter.weights.name.split("_", 1)[0]))
    return "phi3-" + safe_name(stem)


def safe_name(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return cleaned or "model"
