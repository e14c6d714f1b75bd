"""Where adapters live: every run's adapters/ folder and its checkpoints, plus loose adapter folders.

Shared by the Chat and Export screens (and their CLI) to offer "a run and any of its checkpoints,
or an adapter folder".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^(\d+)_adapters\.safetensors$")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    iteration: int | None  # None for the latest adapters.safetensors

    @property
    def label(self) -> str:
        return "latest" if self.iteration is None else f"iteration {self.iteration}"


@dataclass(frozen=True)
class AdapterSource:
    label: str  # "run 20261128-0148-abc" or the folder name
    adapter_dir: Path
    run_id: str | None = None
    checkpoints: tuple[Checkpoint, ...] = field(default=())

    @property
    def config(self) -> dict:
        return json.loads((self.adapter_dir / "adapter_config.json").read_text())


def checkpoints_in(adapter_dir: Path) -> tuple[Checkpoint, ...]:
    """Numbered checkpoints by iteration, then the latest adapters.safetensors."""
    found = []
    for p in adapter_dir.glob("*_adapters.safetensors"):
        m = CHECKPOINT_RE.match(p.name)
        if m:
            found.append(Checkpoint(p, int(m.group(1))))
    found.sort(key=lambda c: c.iteration)
    latest = adapter_dir / "adapters.safetensors"
    if latest.is_file():
        found.append(Checkpoint(latest, None))
    return tuple(found)


def is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file() and any(checkpoints_in(path))


def find_adapters(workspace_root: Path) -> list[AdapterSource]:
    """Every run with adapters (newest first), then adapter folders at the top of the workspace."""
    sources = []
    runs = workspace_root / "runs"
    if runs.is_dir():
        for run_dir in sorted(runs.iterdir(), key=lambda p: p.name, reverse=True):
            adir = run_dir / "adapters"
            if adir.is_dir() and is_adapter_dir(adir):
                sources.append(AdapterSource(f"run {run_dir.name}", adir, run_dir.name, checkpoints_in(adir)))
    if workspace_root.is_dir():
        for child in sorted(workspace_root.iterdir()):
            if child.is_dir() and child.name not in ("runs", "data", "model", "exports") and is_adapter_dir(child):
                sources.append(AdapterSource(child.name, child, None, checkpoints_in(child)))
    return sources


def checkpoint_choices(workspace_root: Path) -> list[tuple[str, tuple[Path, Path]]]:
    """("run X: iteration 10", (adapter folder, checkpoint file)) for every checkpoint of every source,
    newest run first, latest checkpoint first: what the Export screen offers."""
    return [
        (f"{s.label}: {c.label}", (s.adapter_dir, c.path))
        for s in find_adapters(workspace_root)
        for c in reversed(s.checkpoints)
    ]


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
