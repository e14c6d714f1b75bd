"""Sweeps: a grid of configs, each the base config with some keys set.

Written on the command line as `lora_parameters.rank=8,16 learning_rate=1e-5,1e-4` (dotted keys,
comma-separated values, each value a YAML scalar read as `mlx_lm lora --config` reads it) or as a
`sweep:` block in lora_config.yaml with the same meaning:

    sweep:
      lora_parameters.rank: [8, 16]
      learning_rate: [1e-5, 1e-4]

The block is phi3tui's, never mlx-lm's: a run's frozen config.yaml has it removed.
"""

from __future__ import annotations

import copy
import itertools

import yaml

SWEEP_KEY = "sweep"
# Keys a sweep may not set: each run's adapter folder is its own, and a sweep inside a sweep means nothing.
NOT_SWEPT = {"adapter_path", "train", SWEEP_KEY}


class SweepError(ValueError):
    """A sweep spec or block that cannot be used; str() names the bad part and what to write."""


def _check_key(key: str, where: str) -> None:
    from phi3tui.core.config.schema import LORA_PARAMETER_KINDS, LR_SCHEDULE_KINDS, known_top_level_keys

    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise SweepError(f"{where}: {key!r} is not a config key; write dotted keys such as lora_parameters.rank")
    top = parts[0]
    if top in NOT_SWEPT:
        raise SweepError(f"{where}: {key} cannot be swept (phi3tui sets it for each run)")
    if top not in known_top_level_keys():
        raise SweepError(f"{where}: {top!r} is not an mlx-lm config key; check the spelling (e.g. learning_rate)")
    nested = {"lora_parameters": LORA_PARAMETER_KINDS, "lr_schedule": LR_SCHEDULE_KINDS}
    if len(parts) > 1 and top in nested and (len(parts) > 2 or parts[1] not in nested[top]):
        raise SweepError(f"{where}: {key!r} is not a key of {top}; use one of "
                         + ", ".join(f"{top}.{k}" for k in nested[top]))


def _scalar(text: str, where: str):
    from phi3tui.core.workspace import MlxLmLoader

    if not text.strip():
        raise SweepError(f"{where}: an empty value; write comma-separated values such as 8,16")
    try:
        value = yaml.load(text, Loader=MlxLmLoader)
    except yaml.YAMLError:
        raise SweepError(f"{where}: {text!r} is not a YAML scalar") from None
    if isinstance(value, (dict, list)):
        raise SweepError(f"{where}: {text!r} is not a single value (a number, true/false or a word)")
    return value


def parse_sweep_spec(spec: str) -> dict[str, list]:
    """`key=v1,v2 key2=v3,v4` → {key: [v1, v2], key2: [v3, v4]} (keys in the order written)."""
    out: dict[str, list] = {}
    words = spec.split()
    if not words:
        raise SweepError("--sweep is empty; write e.g. \"lora_parameters.rank=8,16 learning_rate=1e-5,1e-4\"")
    for word in words:
        key, eq, values = word.partition("=")
        if not eq:
            raise SweepError(f"--sweep: {word!r} has no '='; write KEY=V1,V2 (e.g. learning_rate=1e-5,1e-4)")
        where = f"--sweep {key}"
        _check_key(key, where)
        if key in out:
            raise SweepError(f"{where}: the key is given twice; list all its values once, comma-separated")
        out[key] = [_scalar(v, where) for v in values.split(",")]
    return out


def sweep_block(values: dict, where: str = "lora_config.yaml") -> dict[str, list] | None:
    """The config's `sweep:` block as {key: [values]}, or None when it has none."""
    block = values.get(SWEEP_KEY)
    if block is None:
        return None
    if not isinstance(block, dict) or not block:
        raise SweepError(f"{where}: sweep must be a mapping of dotted keys to lists of values, "
                         "e.g. sweep: {lora_parameters.rank: [8, 16]}")
    out = {}
    for key, listed in block.items():
        field = f"{where}: sweep.{key}"
        _check_key(str(key), field)
        listed = listed if isinstance(listed, list) else [listed]
        if not listed:
            raise SweepError(f"{field}: no values; list at least one, e.g. [8, 16]")
        for v in listed:
            if isinstance(v, (dict, list)):
                raise SweepError(f"{field}: {v!r} is not a single value (a number, true/false or a word)")
        out[str(key)] = list(listed)
    return out


def sweep_grid(sweep: dict[str, list]) -> list[dict]:
    """Every combination (the cartesian product), the first key changing slowest."""
    keys = list(sweep)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sweep[k] for k in keys))]


def set_dotted(values: dict, point: dict) -> dict:
    """A copy of `values` with each dotted key of `point` set (nested mappings made as needed)."""
    out = copy.deepcopy(values)
    for key, value in point.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def point_label(point: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items())
