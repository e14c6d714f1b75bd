"""What an export starts from and where it goes: the adapter, its base model, the output paths.

Also the two write guards every step uses: never overwrite without being told to, and never leave
a half-written file at the destination (write beside it, rename at the end).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from phi3tui.core.adapters import checkpoints_in, find_adapters, is_adapter_dir
from phi3tui.core.export import ExportError
from phi3tui.core.safety import disk_error_message

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
        raise ExportError(f"{path} is missing; check the folder (or re-download it)") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); fix or re-download it") from None


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


# -- write guards ---------------------------------------------------------------------------------


def is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def refuse_overwrite(path: Path, force: bool, what: str = "") -> None:
    """Raise unless `path` is free (or an empty folder), or force is set."""
    if force:
        return
    if path.is_file() or is_nonempty_dir(path):
        kind = "folder is not empty" if path.is_dir() else "file exists"
        raise ExportError(f"{path}: {what + ' ' if what else ''}{kind}; pass --force to replace it (or choose another output)")


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it made (deepest last), so a failed write can take them back."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _remove_empty(made: list[Path]) -> None:
    # A failed export leaves no empty exports/NAME folders behind: nothing on disk changes.
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            break


@contextlib.contextmanager
def atomic_output_file(dest: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it becomes `dest`, on any failure it is removed."""
    dest = Path(dest)
    refuse_overwrite(dest, force)
    try:
        made = _make_parents(dest.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    except OSError as exc:
        raise ExportError(disk_error_message(exc, dest)) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        _remove_empty(made)
        if isinstance(exc, OSError):  # disk full, read-only: the destination is untouched; say so
            raise ExportError(disk_error_message(exc, dest)) from None
        raise


@contextlib.contextmanager
def atomic_output_dir(dest: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `dest`; on success it replaces `dest`, on failure it is removed."""
    dest = Path(dest)
    refuse_overwrite(dest, force)
    try:
        made = _make_parents(dest.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    except OSError as exc:
        raise ExportError(disk_error_message(exc, dest)) from None
    try:
        yield tmp
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made)
        if isinstance(exc, OSError):  # disk full, read-only: the destination is untouched; say so
            raise ExportError(disk_error_message(exc, dest)) from None
        raise
