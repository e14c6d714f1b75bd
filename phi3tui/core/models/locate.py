"""Finding a model: a folder relative to the workspace, the Hugging Face cache, a repo id. The only code that
finds one: chat, training checks, data checks and export all ask `workspace_model` / `model_to_load` /
`locate_model`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotFound(Exception):
    """The model setting names nothing usable. str() says what was tried and what to do."""


@dataclass(frozen=True)
class ModelLocation:
    value: str  # the config's `model:` value
    folder: Path | None  # a folder with config.json; None when it is a repo not in the cache
    kind: str  # "local folder" | "Hugging Face cache" | "not downloaded"

    @property
    def available(self) -> bool:
        return self.folder is not None


def locate_model(value: str, workspace_root: Path | str, search: tuple[Path | str, ...] = ()) -> ModelLocation:
    """A local folder (relative to the workspace, or first to one of the `search` folders), or a Hugging Face
    repo id looked up in the cache."""
    local = _local_folder(value, workspace_root, search)
    if local is not None:
        return local
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(value, "config.json")
    if isinstance(cached, str):
        return ModelLocation(value, Path(cached).parent, "Hugging Face cache")
    return ModelLocation(value, None, "not downloaded")


def _local_folder(value: str, workspace_root: Path | str, search: tuple[Path | str, ...]) -> ModelLocation | None:
    """locate_model's local folder; None for a well-formed repo id (not looked up). Raises ModelNotFound."""
    if not isinstance(value, str) or not value.strip():
        raise ModelNotFound("model is empty; give a local model folder or a Hugging Face repo id")
    given = Path(value).expanduser()
    path = given if given.is_absolute() else Path(workspace_root) / given
    for base in search:  # e.g. the run folder: mlx-lm records the path as given where it ran
        candidate = given if given.is_absolute() else Path(base) / given
        if candidate.is_dir():
            path = candidate
            break
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"model folder {path} has no config.json; point model at an mlx-lm model folder")
        return ModelLocation(value, path.resolve(), "local folder")
    if path.exists():
        raise ModelNotFound(f"model {path} is a file; point model at a model folder or a Hugging Face repo id")
    if not REPO_ID_RE.match(value):
        raise ModelNotFound(
            f"model {value!r} is neither a folder (looked for {path}) nor a Hugging Face repo id (owner/name)"
        )
    return None


def model_to_load(value: str, workspace_root: Path | str, search: tuple[Path | str, ...] = ()) -> str:
    """What mlx-lm's load (and the export) takes for a `model:` value: the local folder as an absolute path,
    or the repo id (mlx-lm finds it in the Hugging Face cache or downloads it). Raises ModelNotFound.
    Whether a repo is in the cache does not change the answer, so it is not looked up: the Data screen asks
    before the first paint, and importing huggingface_hub for the lookup costs ~0.1 s."""
    local = _local_folder(value, workspace_root, search)
    return str(local.folder) if local is not None else value


def workspace_model(workspace) -> str:
    """The workspace's base model, from lora_config.yaml's `model:` (read as mlx-lm reads it: YAML, so a
    `#` inside a quoted value is part of it), ready for mlx-lm's load. Raises ModelNotFound."""
    setting = workspace.model_setting()
    if not setting:
        raise ModelNotFound(
            f"{workspace.config_path}: no readable `model:`; name the base model there (Config screen)"
        )
    try:
        return model_to_load(setting, workspace.root)
    except ModelNotFound as exc:
        raise ModelNotFound(f"{workspace.config_path}: {exc}") from None


def model_file(model: str, name: str) -> Path | None:
    """The file `name` of a model: in its folder, or in the Hugging Face cache for a repo id (never
    downloaded); None when it is not there."""
    path = Path(model).expanduser() / name
    if path.is_file():
        return path
    if not REPO_ID_RE.match(str(model)):
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(str(model), name)
    return Path(cached) if isinstance(cached, str) else None


def read_model_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"{path} cannot be read as JSON ({exc}); re-download or repair the model") from None


def is_phi3_model(model: str | Path | None) -> bool:
    """Phi-3 by its config.json model_type, or by name when the model is a repo id."""
    if not model:
        return False
    config = Path(model) / "config.json"
    if config.is_file():
        try:
            return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "phi3"
        except (OSError, ValueError):
            return False
    # A local folder is judged by its own name, a repo id ("microsoft/Phi-3-mini-4k-instruct") by all of it.
    name = (Path(model).name if Path(model).is_dir() else str(model)).lower()
    return "phi-3" in name or "phi3" in name
