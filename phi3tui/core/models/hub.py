"""The local Hugging Face cache (huggingface_hub's scan) and downloads on request."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from phi3tui.core.models.catalog import known_model, known_models
from phi3tui.core.models.locate import REPO_ID_RE, ModelNotFound
from phi3tui.core.models.memory import human_bytes

def model_folder(model: str) -> Path:
    """A model's folder on disk: a local folder itself, or its Hugging Face snapshot (downloaded if needed,
    with mlx-lm's file patterns). Raises ModelNotFound."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    return download_model(model)


@dataclass(frozen=True)
class CachedModel:
    repo_id: str
    size_on_disk: int
    folder: Path  # the newest snapshot folder
    has_config: bool


def cached_models(cache_dir: Path | str | None = None) -> list[CachedModel]:
    """Model repos in the local Hugging Face cache (HF_HUB_CACHE), newest first; [] when there is none."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified)
        has_config = any(f.file_name == "config.json" for f in newest.files)
        found.append((repo.last_modified, CachedModel(repo.repo_id, repo.size_on_disk, newest.snapshot_path, has_config)))
    return [m for _, m in sorted(found, key=lambda x: x[0], reverse=True)]


def model_choices(workspace_root: Path) -> tuple[list[tuple[str, str]], str | None]:
    """(label, value for the config's `model`) for each model folder in the workspace, then each model in
    the Hugging Face cache, then each known Phi model not downloaded (its facts on a second line); and why
    the cache could not be read, if it could not."""
    choices = []
    for child in sorted(Path(workspace_root).iterdir()):
        if child.is_dir() and (child / "config.json").is_file():
            choices.append((f"{child.name}  (folder in this workspace)", child.name))
    problem = None
    try:
        cached = cached_models()
    except OSError as exc:
        cached, problem = [], f"cannot read the Hugging Face cache: {exc}"
    for m in cached:
        known = known_model(m.repo_id)
        facts = f"\n    {known.facts()}" if known else ""
        choices.append((f"{m.repo_id}  ({human_bytes(m.size_on_disk)} in the Hugging Face cache){facts}", m.repo_id))
    here = {m.repo_id.lower() for m in cached}
    for known in known_models():
        if known.repo.lower() not in here:
            choices.append((f"{known.repo}  (not downloaded)\n    {known.facts()}", known.repo))
    return choices, problem


class DownloadCancelled(Exception):
    pass


def download_model(
    repo_id: str,
    on_progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    config_only: bool = False,
) -> Path:
    """Download a model the way mlx-lm would (its file patterns) into the Hugging Face cache.

    Reports (bytes done, bytes total) through on_progress; setting `cancel` stops it with
    DownloadCancelled. Offline (HF_HUB_OFFLINE) or unreachable, it raises ModelNotFound with the reason.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import tqdm as hf_tqdm

    if not REPO_ID_RE.match(repo_id):
        raise ModelNotFound(f"{repo_id!r} is not a Hugging Face repo id (owner/name)")
    cancel = cancel or threading.Event()
    bars: list = []

    def report() -> None:
        # Bytes written when huggingface_hub reports them (its aggregated bar; its transfer bar counts the
        # same bytes again), else files fetched.
        byte_bars = [b for b in bars if b.p_unit == "B" and not b.p_desc.startswith("Downloading bytes")]
        chosen = [b for b in byte_bars if getattr(b, "total", None)] or [b for b in bars if b.p_unit != "B"]
        if on_progress and chosen:
            on_progress(int(sum(b.p_done for b in chosen)), int(sum(getattr(b, "total", 0) or 0 for b in chosen)))

    class Progress(hf_tqdm):
        """huggingface_hub's progress bar kept off the terminal (the app owns it), counting for on_progress
        and checking `cancel` at every step. A disabled tqdm counts nothing itself, hence p_done."""

        def __init__(self, *args, **kwargs):
            self.p_unit = kwargs.get("unit", "it")
            self.p_desc = str(kwargs.get("desc") or "")
            self.p_done = kwargs.get("initial", 0) or 0
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            bars.append(self)

        def update(self, n=1):
            if cancel.is_set():
                raise DownloadCancelled(f"download of {repo_id} cancelled")
            self.p_done += n or 0
            report()
            return super().update(n)

    if config_only:
        patterns = ["config.json"]
    else:
        from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

        patterns = list(DEFAULT_ALLOW_PATTERNS)
    try:
        folder = snapshot_download(repo_id, allow_patterns=patterns, tqdm_class=Progress)
    except DownloadCancelled:
        raise
    except Exception as exc:  # offline mode, no network, unknown repo, gated repo: all say why
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFound(f"cannot download {repo_id}: {reason}") from None
    if cancel.is_set():
        raise DownloadCancelled(f"download of {repo_id} cancelled")
    return Path(folder)
