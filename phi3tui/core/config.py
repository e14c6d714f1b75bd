"""The LoRA config (lora_config.yaml): load, check, migrate, save.

Foundation version: loading with mlx-lm's own semantics and the run-preparation entry point that
the Train screen uses. Issue 4 (the Config screen) grows this module; keep these two signatures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml


class _MlxLmLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader plus the float resolver mlx-lm adds (so `1e-6` is a float, as in mlx_lm lora)."""


_MlxLmLoader.add_implicit_resolver(
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


class ConfigError(Exception):
    """A config that cannot be read. str() names the file (and line) and says what to do."""


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning" | "info"
    field: str  # the config key it is about ("" for the whole file)
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.level}: {where}{self.message}" + (f" ({self.hint})" if self.hint else "")


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
    try:
        values = yaml.load(text, Loader=_MlxLmLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: YAML syntax error: {problem}; fix the line and try again") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values, not {type(values).__name__}")
    return values


def prepare_run_config(path: Path | str, workspace_root: Path | str) -> tuple[dict, list[Finding]]:
    """The values a run should use (old keys migrated) and what the checks found.

    A run must not start when any finding has level "error".
    """
    values = load_config_values(path)
    return values, []
