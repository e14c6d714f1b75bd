"""An adapter at a checkpoint: the one reference Chat, Eval and Export pass around (AdapterRef), the names of
an adapter folder's files, and the listing of every run's and loose folder's checkpoints.

An adapter folder holds adapter_config.json (mlx-lm's: base model, fine_tune_type lora/dora/full), the
latest weights adapters.safetensors, and numbered checkpoints NNNNNNN_adapters.safetensors (a run's also have
NNNNNNN_optimizer.safetensors and NNNNNNN_state.json, for resuming). A run keeps its folder in runs/<id>/adapters;
the run id is read from the run's run.json, so a renamed or moved run folder still names its run.

The run folder's names (adapters/, run.json) are core/run_folder.py's: the run-folder contract is a leaf that both
this module and core/runs read, so neither imports the other's package.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from phi3tui.core.run_folder import ADAPTERS_DIR, RUN_FILE, RunJsonUnreadable, read_run_json

LATEST_WEIGHTS = "adapters.safetensors"  # the latest (or promoted) weights; what mlx-lm loads from a folder
ADAPTER_CONFIG = "adapter_config.json"
CHECKPOINT_SUFFIX = "_" + LATEST_WEIGHTS  # a numbered checkpoint: NNNNNNN_adapters.safetensors
CHECKPOINT_RE = re.compile(r"^(\d+)" + re.escape(CHECKPOINT_SUFFIX) + "$")
KINDS = ("lora", "dora", "full")  # mlx-lm's fine_tune_type values


def checkpoint_names(iteration: int) -> tuple[str, str, str]:
    """The files the runner saves at `iteration`: (adapter weights, optimizer state, random state / step)."""
    stem = f"{iteration:07d}"
    return f"{stem}{CHECKPOINT_SUFFIX}", f"{stem}_optimizer.safetensors", f"{stem}_state.json"


class AdapterNotFound(ValueError):
    """No adapter where one was asked for (no folder, no config, no such checkpoint). str() says what to do;
    Chat and Export re-raise it as their own user-facing error."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    iteration: int | None  # None for the latest adapters.safetensors

    @property
    def label(self) -> str:
        return "latest" if self.iteration is None else f"iteration {self.iteration}"


@dataclass(frozen=True)
class AdapterRef:
    """One adapter at one checkpoint: its folder, the weights file in it, and the run it belongs to (None for a
    loose adapter folder)."""

    adapter_dir: Path
    weights: Path  # adapters.safetensors or NNNNNNN_adapters.safetensors inside adapter_dir
    run_id: str | None = None

    @classmethod
    def latest_in(cls, adapter_dir: Path) -> "AdapterRef":
        """The folder's newest weights (adapters.safetensors, else its last numbered checkpoint), with its run."""
        adapter_dir = Path(adapter_dir)
        found = checkpoints_in(adapter_dir)
        weights = found[-1].path if found else adapter_dir / LATEST_WEIGHTS
        return cls(adapter_dir, weights, run_id_of(adapter_dir))

    # -- what it is ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.adapter_dir / ADAPTER_CONFIG

    @property
    def config(self) -> dict:
        """adapter_config.json's content (raises OSError / json.JSONDecodeError; callers say it their way)."""
        return json.loads(self.config_path.read_text(encoding="utf-8"))

    @property
    def kind(self) -> str:
        """lora, dora or full: adapter_config.json's fine_tune_type (older mlx-lm wrote use_dora instead)."""
        return kind_of(self.config)

    @property
    def base_model(self) -> str | None:
        """The base model as mlx-lm wrote it (relative to where the training ran), or None."""
        return self.config.get("model") or None

    @property
    def iteration(self) -> int | None:
        """The iteration in a numbered checkpoint's name; None for adapters.safetensors (see iteration_of)."""
        m = CHECKPOINT_RE.match(self.weights.name)
        return int(m.group(1)) if m else None

    @property
    def is_latest(self) -> bool:
        return self.weights.name == LATEST_WEIGHTS

    @property
    def run_dir(self) -> Path | None:
        """The run folder, when the adapter is a run's."""
        return self.adapter_dir.parent if self.run_id is not None else None

    # -- how it is named ----------------------------------------------------------------------
    @property
    def source_label(self) -> str:
        return f"run {self.run_id}" if self.run_id else self.adapter_dir.name

    @property
    def checkpoint_label(self) -> str:
        return "latest" if self.is_latest else f"iteration {self.iteration}"

    @property
    def label(self) -> str:
        """'run 20261128-0148-abc · iteration 10': how Chat and Eval name a side."""
        return f"{self.source_label} · {self.checkpoint_label}"

    @property
    def file_label(self) -> str:
        """'run 20261128-0148-abc, 0000010_adapters.safetensors': how Export names what it starts from."""
        where = f"run {self.run_id}" if self.run_id else str(self.adapter_dir)
        return f"{where}, {self.weights.name}"

    # -- its checkpoints ----------------------------------------------------------------------
    def checkpoints(self) -> tuple[Checkpoint, ...]:
        return checkpoints_in(self.adapter_dir)

    def at(self, iteration: int | None) -> "AdapterRef":
        """The same adapter at the checkpoint saved at `iteration` (None: the latest weights)."""
        found = self.checkpoints()
        if iteration is None:
            return AdapterRef(self.adapter_dir, found[-1].path, self.run_id) if found else self
        for c in found:
            if c.iteration == iteration:
                return AdapterRef(self.adapter_dir, c.path, self.run_id)
        have = ", ".join(str(c.iteration) for c in found if c.iteration is not None) or "none"
        raise AdapterNotFound(f"{self.adapter_dir} has no checkpoint for iteration {iteration} (checkpoints: {have})")


KIND_NAMES = {"lora": "LoRA", "dora": "DoRA", "full": "full"}  # how a sentence names each fine-tune kind


def kind_name(kind: str) -> str:
    """lora -> LoRA, dora -> DoRA: a fine-tune kind as prose writes it."""
    return KIND_NAMES.get(kind, kind)


def kind_of(config: dict) -> str:
    """An adapter_config.json's fine-tune kind: lora, dora or full."""
    return config.get("fine_tune_type", "dora" if config.get("use_dora") else "lora")


def run_adapter_dir(run_dir: Path) -> Path:
    """A run's adapter folder, runs/<id>/adapters."""

    return Path(run_dir) / ADAPTERS_DIR


def run_id_of(adapter_dir: Path) -> str | None:
    """The id in run.json of the run whose adapters/ folder this is; None for a loose adapter folder."""

    adapter_dir = Path(adapter_dir)
    run_dir = adapter_dir.parent
    if adapter_dir.name != ADAPTERS_DIR or not (run_dir / RUN_FILE).is_file():
        return None
    try:
        run_id = read_run_json(run_dir).get("id")
    except RunJsonUnreadable:
        return None
    return str(run_id) if run_id else None


def checkpoints_in(adapter_dir: Path) -> tuple[Checkpoint, ...]:
    """Numbered checkpoints by iteration, then the latest adapters.safetensors."""
    adapter_dir = Path(adapter_dir)
    found = []
    for p in adapter_dir.glob("*" + CHECKPOINT_SUFFIX):
        m = CHECKPOINT_RE.match(p.name)
        if m:
            found.append(Checkpoint(p, int(m.group(1))))
    found.sort(key=lambda c: c.iteration)
    latest = adapter_dir / LATEST_WEIGHTS
    if latest.is_file():
        found.append(Checkpoint(latest, None))
    return tuple(found)


def is_adapter_dir(path: Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file() and any(checkpoints_in(path))


NOT_AN_ADAPTER_DIR = f"it needs {ADAPTER_CONFIG} and {LATEST_WEIGHTS}"


def adapter_at(path: str | Path, iteration: int | None = None) -> AdapterRef:
    """The adapter a path names: a run folder (its adapters/), an adapter folder, or one weights file in one;
    at `iteration` (None: the file given, else the latest). AdapterNotFound says what is missing."""

    p = Path(path).expanduser()
    if p.is_file():
        if not (p.parent / ADAPTER_CONFIG).is_file():
            raise AdapterNotFound(f"{p.parent / ADAPTER_CONFIG} is missing: an adapter file needs its folder's config")
        ref = AdapterRef(p.parent, p, run_id_of(p.parent))
        return ref if iteration is None else ref.at(iteration)
    if (p / ADAPTERS_DIR).is_dir() and not (p / ADAPTER_CONFIG).exists():
        p = p / ADAPTERS_DIR  # a run folder
    if not p.is_dir():
        raise AdapterNotFound(f"adapter path {p} does not exist")
    if not is_adapter_dir(p):
        raise AdapterNotFound(f"{p} is not an adapter folder ({NOT_AN_ADAPTER_DIR})")
    return AdapterRef.latest_in(p).at(iteration)


def find_adapters(workspace_root: Path) -> list[AdapterRef]:
    """Every run with adapters (newest first), then adapter folders at the top of the workspace; each at its
    latest weights (ref.checkpoints() lists the rest)."""

    found = []
    runs = Path(workspace_root) / "runs"
    if runs.is_dir():
        for run_dir in sorted(runs.iterdir(), key=lambda p: p.name, reverse=True):
            adir = run_dir / ADAPTERS_DIR
            if adir.is_dir() and is_adapter_dir(adir):
                found.append(AdapterRef.latest_in(adir))
    if Path(workspace_root).is_dir():
        for child in sorted(Path(workspace_root).iterdir()):
            if child.is_dir() and child.name not in ("runs", "data", "model", "exports") and is_adapter_dir(child):
                found.append(AdapterRef.latest_in(child))
    return found


def every_checkpoint(workspace_root: Path) -> list[AdapterRef]:
    """Every checkpoint of every run and adapter folder: newest run first, latest checkpoint first."""
    return [
        AdapterRef(ref.adapter_dir, c.path, ref.run_id)
        for ref in find_adapters(workspace_root)
        for c in reversed(ref.checkpoints())
    ]


def checkpoint_choices(workspace_root: Path) -> list[tuple[str, AdapterRef]]:
    """("run X · iteration 10", adapter) for every checkpoint: what the Export screen's picker offers, named as
    Chat and Eval name a side (AdapterRef.label)."""
    return [(ref.label, ref) for ref in every_checkpoint(workspace_root)]


def iteration_of(weights: Path) -> int | None:
    """The iteration a weights file holds: its number, or for adapters.safetensors the numbered checkpoint
    it is a copy of (the newest equal one: the last saved, or the promoted one); None when none equals it."""
    weights = Path(weights)
    m = CHECKPOINT_RE.match(weights.name)
    if m:
        return int(m.group(1))
    try:
        data = weights.read_bytes()
    except OSError:
        return None
    for c in reversed(checkpoints_in(weights.parent)):
        if c.iteration is not None and c.path.stat().st_size == len(data) and c.path.read_bytes() == data:
            return c.iteration
    return None
