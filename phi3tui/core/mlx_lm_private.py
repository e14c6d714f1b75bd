"""Every use of mlx-lm's private parts, in one place (pyproject caps mlx-lm below the next minor release;
tests/test_private_apis.py pins what each one must do, so an upgrade that breaks one fails there first).

mlx-lm has no public way to do these: build a model's classes from a config.json without loading its
weights, list `mlx_lm lora`'s command-line options with their help and types, and import its tuner without
its reporting packages.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading

# What mlx_lm/tuner/callbacks.py imports as it loads (`try: import wandb` / `import swanlab`, kept as module
# globals its WandBCallback / SwanLabCallback use): config.checks.REPORTERS's modules.
REPORTER_MODULES = ("wandb", "swanlab")
_TUNER_LOCK = threading.Lock()


def model_classes(config: dict) -> tuple[type, type]:
    """(Model class, ModelArgs class) for a config.json, with mlx-lm's own model_type remapping.
    Raises ValueError when mlx-lm does not support the model_type."""
    from mlx_lm.utils import _get_classes

    return _get_classes(config)


def lora_parser_actions() -> list:
    """The argparse actions of `mlx_lm lora` (dest, help, type, choices, default), in its order.
    argparse has no public list of a parser's options; `_actions` is the one every tool reads."""
    return list(lora_module().build_parser()._actions)


def load_tuner() -> None:
    """Import mlx_lm.tuner (every import of mlx_lm.lora or mlx_lm.tuner.* runs it first) with its reporting
    packages left out. Importing wandb makes a temporary folder, so on a full disk it raises FileNotFoundError,
    which mlx-lm's `except ImportError` lets through: every command that reads the config schema, checks data,
    scores or fuses would stop with that traceback. It also costs every such process its import time. Only a
    run that reports needs them, and reporting_callbacks brings them in then."""
    with _TUNER_LOCK:
        if "mlx_lm.tuner.callbacks" in sys.modules:
            return
        hidden = [name for name in REPORTER_MODULES if name not in sys.modules]
        for name in hidden:
            sys.modules[name] = None  # `import wandb` raises ImportError: mlx-lm's own "not installed" path
        try:
            import mlx_lm.tuner.callbacks  # noqa: F401
        finally:
            for name in hidden:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]


def lora_module():
    """mlx_lm.lora (CONFIG_DEFAULTS, build_parser), imported without the reporting packages (load_tuner)."""
    load_tuner()
    import mlx_lm.lora

    return mlx_lm.lora


def reporting_callbacks(modules) -> dict:
    """mlx-lm's SUPPORT_CALLBACK (reporter name -> callback class), with the reporting packages named in
    `modules` imported into mlx_lm.tuner.callbacks, where its callbacks look them up (load_tuner left them
    out). One not installed stays None there, and its callback raises mlx-lm's own ImportError."""
    load_tuner()
    from mlx_lm.tuner import callbacks

    for name in modules:
        if getattr(callbacks, name, None) is None and importlib.util.find_spec(name) is not None:
            setattr(callbacks, name, importlib.import_module(name))
    return callbacks.SUPPORT_CALLBACK
