"""A workspace folder: data/, lora_config.yaml, runs/, exports/.

`phi3tui [WORKSPACE]` opens one. This module decides what counts as a workspace and
explains, in one line, why a folder is not one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from phi3tui.core.kept_yaml import kept_parse

CONFIG_NAME = "lora_config.yaml"
DATA_NAME = "data"
RUNS_NAME = "runs"

# The loaders below subclass PyYAML's, so they are made on first use (`from phi3tui.core.workspace import
# MlxLmLoader` still works): the first paint reads the config through kept_parse, without importing PyYAML.
_LOADERS: dict[str, type] = {}


def _loaders() -> dict[str, type]:
    """MlxLmLoader: PyYAML's SafeLoader plus the float resolver mlx-lm adds (so `1e-6` is a float, as in mlx_lm
    lora). FastMlxLmLoader: the same over libyaml's C parser when PyYAML has it: the values are the same (tags are
    resolved by the same Python resolver), read about ten times faster; the header and the Data screen read the
    config before the first paint."""
    if not _LOADERS:
        import yaml

        mlx_float = (
            "tag:yaml.org,2002:float",
            re.compile(
                r"""^(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
                re.X,
            ),
            list("-+0123456789."),
        )
        loaders = {
            "MlxLmLoader": type("MlxLmLoader", (yaml.SafeLoader,), {"__module__": __name__}),
            "FastMlxLmLoader": type("FastMlxLmLoader", (getattr(yaml, "CSafeLoader", yaml.SafeLoader),),
                                    {"__module__": __name__}),
        }
        for loader in loaders.values():
            loader.add_implicit_resolver(*mlx_float)
        _LOADERS.update(loaders)
    return _LOADERS


def __getattr__(name: str):
    if name in ("MlxLmLoader", "FastMlxLmLoader"):
        return _loaders()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ConfigError(Exception):
    """A config that cannot be read. str() names the file (and line) and says what to do."""


def load_config_values(path: Path | str) -> dict:
    """The config's values exactly as `mlx_lm lora --config` loads them."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder, not a YAML file; point to the lora_config.yaml file") from None
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; create it on the Config screen or with `phi3tui demo`") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    values = kept_parse(text, "mlx-lm config", lambda text: _parse_config(text, path))
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values, not {type(values).__name__}")
    return values


def _parse_config(text: str, path: Path):
    import yaml

    loaders = _loaders()
    try:
        try:
            return yaml.load(text, Loader=loaders["FastMlxLmLoader"])
        except yaml.YAMLError:  # read again by the Python parser, whose messages name the problem
            return yaml.load(text, Loader=loaders["MlxLmLoader"])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: YAML syntax error: {problem}; fix the line and try again") from None


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
    def writable(self) -> bool:
        return os.access(self.root, os.W_OK)

    def model_setting(self) -> str | None:
        """The `model:` value of lora_config.yaml as mlx-lm reads it (YAML: quotes, `#` inside a value);
        None when the file is missing or unreadable."""
        try:
            value = load_config_values(self.config_path).get("model")
        except ConfigError:
            return None
        return str(value) if value not in (None, "") else None

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
