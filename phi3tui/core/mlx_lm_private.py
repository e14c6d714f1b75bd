"""Every use of mlx-lm's private parts, in one place (pyproject caps mlx-lm below the next minor release;
tests/test_private_apis.py pins what each one must do, so an upgrade that breaks one fails there first).

mlx-lm has no public way to do these: build a model's classes from a config.json without loading its
weights, and list `mlx_lm lora`'s command-line options with their help and types.
"""

from __future__ import annotations


def model_classes(config: dict) -> tuple[type, type]:
    """(Model class, ModelArgs class) for a config.json, with mlx-lm's own model_type remapping.
    Raises ValueError when mlx-lm does not support the model_type."""
    from mlx_lm.utils import _get_classes

    return _get_classes(config)


def lora_parser_actions() -> list:
    """The argparse actions of `mlx_lm lora` (dest, help, type, choices, default), in its order.
    argparse has no public list of a parser's options; `_actions` is the one every tool reads."""
    from mlx_lm.lora import build_parser

    return list(build_parser()._actions)
