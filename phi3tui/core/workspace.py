"""A workspace folder: data/, lora_config.yaml, runs/, exports/.

`phi3tui [WORKSPACE]` opens one. This module decides what counts as a workspace and
explains, in one line, why a folder is not one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CONFIG_NAME = "lora_config.yaml"
DATA_NAME = "data"
RUNS_NAME = "runs"
EXPORTS_NAME = "exports"


class NotAWorkspace(Exception):
    """The folder lacks what a workspace needs. str() is the one-line explanation."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name or str(self.root)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def data_dir(self) -> Path:
        return self.root / DATA_NAME

    @property
    def runs_dir(self) -> Path:
        return self.root / RUNS_NAME

    @property
    def exports_dir(self) -> Path:
        return self.root / EXPORTS_NAME

    @property
    def writable(self) -> bool:
        return os.access(self.root, os.W_OK)

    def model_setting(self) -> str | None:
        """The `model:` value of lora_config.yaml, read without the heavy YAML machinery."""
        try:
            for line in self.config_path.read_text(encoding="utf-8").splitlines():
                if line.startswith("model:"):
                    value = line.split(":", 1)[1].split("#", 1)[0].strip().strip("\"'")
                    return value or None
        except (OSError, UnicodeDecodeError):
            return None
        return None

    def resolve(self, value: str | os.PathLike) -> Path:
        """A path from the config, relative to the workspace (mlx-lm runs with the workspace as cwd)."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p

    @classmethod
    def open(cls, path: Path | str) -> "Workspace":
        root = Path(path).expanduser()
        hint = (
            "run `phi3tui demo` to build a demo workspace, or create a folder with "
            f"{CONFIG_NAME} and {DATA_NAME}/train.jsonl"
        )
        if not root.exists():
            raise NotAWorkspace(f"{root} does not exist", hint)
        if not root.is_dir():
            raise NotAWorkspace(f"{root} is a file, not a workspace folder", hint)
        root = root.resolve()
        has_config = (root / CONFIG_NAME).is_file()
        has_data = (root / DATA_NAME / "train.jsonl").is_file()
        if not has_config and not has_data:
            raise NotAWorkspace(
                f"{root} is not a phi3tui workspace (no {CONFIG_NAME}, no {DATA_NAME}/train.jsonl)", hint
            )
        return cls(root)
