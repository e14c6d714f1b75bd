"""The sides a chat pane can run (the base model, or an adapter folder at a checkpoint) and the errors
a user can fix. Light: no mlx."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phi3tui.core.adapters import AdapterSource, Checkpoint, checkpoints_in, find_adapters, is_adapter_dir

END_TOKEN = "<|end|>"
USER_TAG, ASSISTANT_TAG = "<|user|>", "<|assistant|>"


class ChatError(Exception):
    """Something the user can fix (no adapter, an adapter for another model, a missing model).

    str() says what is wrong and what to do; the Chat screen shows it in the pane.
    """


def describe_error(exc: Exception) -> str:
    """The message a pane shows: ChatError says what to do; anything else is named as unexpected."""
    return str(exc) if isinstance(exc, ChatError) else f"unexpected error: {exc!r}"


# -- what a pane runs -------------------------------------------------------------
@dataclass(frozen=True)
class Side:
    """The base model (adapter_dir None) or an adapter folder at one checkpoint."""

    adapter_dir: Path | None = None
    checkpoint: Path | None = None  # a weights file inside adapter_dir; None means adapters.safetensors
    label: str = "base"

    @property
    def weights_path(self) -> Path | None:
        if self.adapter_dir is None:
            return None
        return self.checkpoint or self.adapter_dir / "adapters.safetensors"

    @property
    def is_base(self) -> bool:
        return self.adapter_dir is None

    @property
    def run_dir(self) -> Path | None:
        """The run folder when the adapter is a run's adapters/ folder."""
        if self.adapter_dir is not None and self.adapter_dir.name == "adapters" and self.adapter_dir.parent.parent.name == "runs":
            return self.adapter_dir.parent
        return None

    @classmethod
    def of(cls, source: AdapterSource, checkpoint: Checkpoint | None = None) -> "Side":
        checkpoint = checkpoint or (source.checkpoints[-1] if source.checkpoints else None)
        label = source.label if checkpoint is None else f"{source.label} · {checkpoint.label}"
        return cls(source.adapter_dir, checkpoint.path if checkpoint else None, label)


BASE = Side()


def side_choices(workspace_root: Path) -> list[Side]:
    """Every side a pane can run: the base model, then each run's / folder's checkpoints, latest first."""
    choices = [BASE]
    for source in find_adapters(workspace_root):
        for checkpoint in reversed(source.checkpoints):
            choices.append(Side.of(source, checkpoint))
    return choices


def newest_adapter(workspace_root: Path) -> Side:
    sources = find_adapters(workspace_root)
    if not sources:
        raise ChatError(
            f"no adapters in {workspace_root}: train a run first (Train screen or `phi3tui train`), "
            "or put an adapter folder (adapter_config.json + adapters.safetensors) in the workspace"
        )
    return Side.of(sources[0])


def side_for_path(path: Path, checkpoint: str | None = None) -> Side:
    """An adapter folder given on the command line, at `checkpoint` (an iteration number or 'latest')."""
    path = path.expanduser().resolve()
    if (path / "adapters").is_dir() and not (path / "adapter_config.json").exists():
        path = path / "adapters"  # a run folder
    if not is_adapter_dir(path):
        raise ChatError(f"{path} is not an adapter folder (it needs adapter_config.json and adapters.safetensors)")
    label = f"run {path.parent.name}" if path.name == "adapters" else path.name
    source = AdapterSource(label, path, None, checkpoints_in(path))
    if checkpoint in (None, "", "latest"):
        return Side.of(source)
    for c in source.checkpoints:
        if str(c.iteration) == str(checkpoint).lstrip("0") or (c.iteration == 0 and checkpoint.strip("0") == ""):
            return Side.of(source, c)
    have = ", ".join(c.label for c in source.checkpoints)
    raise ChatError(f"{path} has no checkpoint {checkpoint!r} (it has: {have})")
