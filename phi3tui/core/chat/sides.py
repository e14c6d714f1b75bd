"""The sides a chat pane can run (the base model, or an adapter folder at a checkpoint) and the errors
a user can fix. Light: no mlx."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from phi3tui.core.adapters import ADAPTER_CONFIG, LATEST_WEIGHTS, NOT_AN_ADAPTER_DIR, AdapterNotFound, AdapterRef, adapter_at, every_checkpoint, find_adapters

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
    """What a chat pane runs: the base model (adapter None) or an adapter at one checkpoint."""

    adapter: AdapterRef | None = None

    @property
    def label(self) -> str:
        return "base" if self.adapter is None else self.adapter.label

    @property
    def adapter_dir(self) -> Path | None:
        return None if self.adapter is None else self.adapter.adapter_dir

    @property
    def weights_path(self) -> Path | None:
        return None if self.adapter is None else self.adapter.weights

    @property
    def is_base(self) -> bool:
        return self.adapter is None

    @property
    def run_dir(self) -> Path | None:
        """The run folder when the adapter is a run's (its run.json names it)."""
        return None if self.adapter is None else self.adapter.run_dir


BASE = Side()


def side_choices(workspace_root: Path) -> list[Side]:
    """Every side a pane can run: the base model, then each run's / folder's checkpoints, latest first."""
    return [BASE] + [Side(ref) for ref in every_checkpoint(workspace_root)]


def newest_adapter(workspace_root: Path) -> Side:
    found = find_adapters(workspace_root)
    if not found:
        raise ChatError(
            f"no adapters in {workspace_root}: train a run first (Train screen or `phi3tui train`), "
            f"or put an adapter folder ({ADAPTER_CONFIG} + {LATEST_WEIGHTS}) in the workspace"
        )
    return Side(found[0])


def side_for_path(path: Path, checkpoint: str | None = None) -> Side:
    """An adapter folder (or run folder) given on the command line, at `checkpoint` (an iteration number or 'latest')."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():  # Chat takes folders only (Export also takes one checkpoint file)
        raise ChatError(f"{path} is not an adapter folder ({NOT_AN_ADAPTER_DIR})")
    try:
        ref = adapter_at(path)
    except AdapterNotFound as exc:
        raise ChatError(str(exc)) from None
    if checkpoint in (None, "", "latest"):
        return Side(ref)
    wanted = str(checkpoint).strip()
    if wanted.isdigit():
        try:
            return Side(ref.at(int(wanted)))
        except AdapterNotFound:
            pass
    have = ", ".join(c.label for c in ref.checkpoints())
    raise ChatError(f"{ref.adapter_dir} has no checkpoint {checkpoint!r} (it has: {have})")
