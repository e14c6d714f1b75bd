"""Which keys `mlx_lm lora` accepts, read from the installed mlx-lm itself.

Top-level keys, defaults, help text, types and choices come from `mlx_lm.lora.CONFIG_DEFAULTS` and
`mlx_lm.lora.build_parser()`, so a newer mlx-lm's keys appear without code changes (in the "other"
group). Only the config-only nested keys (lora_parameters, lr_schedule, optimizer_config) and the
dataset feature keys read by `mlx_lm.tuner.datasets` need our own words. mlx_lm is imported lazily.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from phi3tui.core.config.probes import PROBE_HELP, PROBE_KEYS
from phi3tui.core.train_modes import TRAIN_MODES

# Groups in form order; a key mlx-lm adds later lands in "other".
GROUPS = (
    "model & data",
    "length & schedule",
    "LoRA",
    "evaluation",
    "saving",
    "memory",
    "logging",
    "preference",
    "other",
)

GROUP_OF = {
    "model": "model & data",
    "data": "model & data",
    "train": "model & data",
    "fine_tune_type": "model & data",
    "mask_prompt": "model & data",
    "seed": "model & data",
    "trust_remote_code": "model & data",
    "hf_dataset": "model & data",
    "text_feature": "model & data",
    "prompt_feature": "model & data",
    "completion_feature": "model & data",
    "chat_feature": "model & data",
    "iters": "length & schedule",
    "epochs": "length & schedule",
    "batch_size": "length & schedule",
    "learning_rate": "length & schedule",
    "optimizer": "length & schedule",
    "optimizer_config": "length & schedule",
    "lr_schedule": "length & schedule",
    "grad_accumulation_steps": "length & schedule",
    "num_layers": "LoRA",
    "lora_parameters": "LoRA",
    "val_batches": "evaluation",
    "steps_per_eval": "evaluation",
    "test": "evaluation",
    "test_batches": "evaluation",
    "adapter_path": "saving",
    "save_every": "saving",
    "resume_adapter_file": "saving",
    "max_seq_length": "memory",
    "grad_checkpoint": "memory",
    "clear_cache_threshold": "memory",
    "steps_per_report": "logging",
    "report_to": "logging",
    "project_name": "logging",
}

# Keys mlx-lm reads from a config file that have no command-line flag (so no help text there).
CONFIG_ONLY_HELP = {
    "lora_parameters.keys": (
        "Modules to adapt, as paths inside a block (self_attn.o_proj); empty means every linear layer of the "
        "trained blocks."
    ),
    "lora_parameters.rank": "LoRA rank: the inner size of the two small matrices.",
    "lora_parameters.scale": (
        "Multiplier of the LoRA output (mlx-lm has no alpha: scale plays the role of alpha / rank)."
    ),
    "lora_parameters.dropout": "Dropout on the LoRA input while training (0 to 1).",
    "lr_schedule.name": "An mlx.optimizers.schedulers function: cosine_decay, linear_schedule, ...; empty for none.",
    "lr_schedule.arguments": "That function's arguments, the initial learning rate first (e.g. 1e-5, 1000).",
    "lr_schedule.warmup": "Linear warm-up steps before the schedule starts (0 for none).",
    "lr_schedule.warmup_init": "Learning rate at the start of the warm-up.",
    "optimizer_config": "Extra arguments for the chosen optimizer, e.g. {weight_decay: 0.01} for adamw.",
    "hf_dataset": "Hugging Face dataset(s) with splits and feature names (instead of data).",
    "text_feature": "Key of the text field in each record (default text).",
    "prompt_feature": "Key of the prompt field in completion records (default prompt).",
    "completion_feature": "Key of the completion field in completion records (default completion).",
    "chat_feature": "Key of the message list in chat records (default messages).",
    "epochs": "Passes over the train split; sets iters from the split's size and the batch size.",
}

# Config-only keys mlx-lm reads (tuner/datasets.py) though CONFIG_DEFAULTS does not list them.
DATASET_KEYS = {"hf_dataset": None, "text_feature": "text", "prompt_feature": "prompt",
                "completion_feature": "completion", "chat_feature": "messages"}

# phi3tui's preference tuning (core/runs/preference.py), not mlx-lm's: named as mlx-lm-lora names them
# (train_mode, beta), except dpo_loss_type, which mlx-lm-lora calls dpo_cpo_loss_type (read as well).
# ORPO's weight of the odds-ratio term is beta too, as in mlx-lm-lora's orpo_loss.
PREFERENCE_KEYS = {"train_mode": "sft", "beta": 0.1, "dpo_loss_type": "sigmoid"}
# phi3tui's SFT data path (core/data/turns.py, core/runs/tasks.py), never read by mlx-lm: which assistant
# messages the loss learns from. Choices and help are spelled here, so the config package needs no data import.
TURNS_KEYS = {"assistant_turns": "last"}
TURNS_CHOICES = ("last", "all")
TURNS_HELP = (
    "Which assistant messages the loss learns from. last: mlx-lm's own behaviour (with mask_prompt, only the "
    "last message; without, every token). all: every assistant message of chat and completions records (its "
    "content, tool calls and the end marker after it), never the system, user or tool-result tokens.")
PREFERENCE_ALIASES = {"dpo_cpo_loss_type": "dpo_loss_type"}
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo")
# train_mode's choices are the one table of modes (core/train_modes.py), read when the fields are built.
PREFERENCE_FIELDS = (
    ("train_mode", "choice", TRAIN_MODES,
     "sft: supervised (mlx-lm's own loss, any data format); dpo or orpo: preference tuning on "
     "{prompt, chosen, rejected} records, the reference model being the same weights with the adapter off; "
     "grpo: sampled completions of {prompt, answer} records scored by reward_functions."),
    ("beta", "float", (),
     "DPO: how far the tuned model may move from the reference (higher keeps it closer); "
     "ORPO: the weight of the odds-ratio term beside the chosen answer's loss; "
     "GRPO: the weight of the KL to the reference (the adapter off). 0.1 is usual."),
    ("dpo_loss_type", "choice", DPO_LOSS_TYPES,
     "DPO's loss: sigmoid (the DPO paper), hinge (SLiC) or ipo (IPO: scores averaged per token)."),
)

def preference_settings(values: dict) -> dict:
    """train_mode, beta and dpo_loss_type of a config (defaults filled, mlx-lm-lora's dpo_cpo_loss_type
    read as dpo_loss_type). Raises ValueError naming the key and what to write when a value is wrong."""
    out = dict(PREFERENCE_KEYS)
    for alias, key in PREFERENCE_ALIASES.items():
        if values.get(alias) is not None and values.get(key) is None:
            out[key] = values[alias]
    out.update({k: values[k] for k in PREFERENCE_KEYS if values.get(k) is not None})
    if out["train_mode"] not in TRAIN_MODES:
        raise ValueError(f"train_mode is {out['train_mode']!r}; it must be one of {', '.join(TRAIN_MODES)}")
    if out["dpo_loss_type"] not in DPO_LOSS_TYPES:
        raise ValueError(f"dpo_loss_type is {out['dpo_loss_type']!r}; it must be one of {', '.join(DPO_LOSS_TYPES)}")
    beta = out["beta"]
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0 or not math.isfinite(beta):
        raise ValueError(f"beta is {beta!r}; it must be a positive number such as 0.1")
    out["beta"] = float(beta)
    return out


# GRPO (core/runs/grpo.py), with mlx-lm-lora's names; read only with train_mode: grpo (beta, the KL weight, is
# the preference key above). Reward function names are checked by core/rewards.py (a leaf) before a run.
GRPO_KEYS = {"group_size": 4, "max_completion_length": 64, "temperature": 0.8, "epsilon": 0.2,
             "reward_functions": ["any_correct"], "reward_weights": None}
GRPO_FIELDS = (
    ("group_size", "int", "GRPO: completions sampled per prompt; their rewards are compared within the group (2 or more)."),
    ("max_completion_length", "int", "GRPO: the most tokens sampled for one completion."),
    ("temperature", "float", "GRPO: sampling temperature of the completions (above 0; 0.8 is usual)."),
    ("epsilon", "float", "GRPO: clipping of the policy ratio to 1 ± epsilon (0.2 is usual)."),
    ("reward_functions", "yaml",
     "GRPO: the rewards, summed with reward_weights: exact, contains, any_correct (a record's correct_answers), "
     "length:MIN-MAX (characters), format:REGEX, or path/to/rewards.py:function (relative to the workspace)."),
    ("reward_weights", "yaml", "GRPO: one weight per reward function (empty: 1 each)."),
)


def grpo_problems(values: dict) -> list[tuple[str, str]]:
    """(key, what is wrong and what to write) for each bad GRPO setting of a config; [] when all are right.
    Reward function names are parsed here; whether a user file defines its function is core/rewards.py's."""
    from phi3tui.core.rewards import parse_reward_spec

    out = dict(GRPO_KEYS, **{k: values[k] for k in GRPO_KEYS if values.get(k) is not None})
    found = []

    def number(value, whole=False):
        kinds = (int,) if whole else (int, float)
        return not isinstance(value, bool) and isinstance(value, kinds) and math.isfinite(value)

    if not number(out["group_size"], whole=True) or out["group_size"] < 2:
        found.append(("group_size", f"is {out['group_size']!r}; it must be a whole number of 2 or more (GRPO "
                      "compares the completions of a group), e.g. 4"))
    if not number(out["max_completion_length"], whole=True) or out["max_completion_length"] < 1:
        found.append(("max_completion_length", f"is {out['max_completion_length']!r}; it must be a whole number "
                      "of tokens, at least 1, e.g. 64"))
    if not number(out["temperature"]) or not out["temperature"] > 0:
        found.append(("temperature", f"is {out['temperature']!r}; it must be a number above 0, e.g. 0.8"))
    if not number(out["epsilon"]) or not 0 < out["epsilon"] < 1:
        found.append(("epsilon", f"is {out['epsilon']!r}; it must be a number between 0 and 1, e.g. 0.2"))
    functions = out["reward_functions"]
    if isinstance(functions, str):
        functions = [functions]
    if not isinstance(functions, list) or not functions:
        found.append(("reward_functions", f"is {functions!r}; it must be a list of reward names, e.g. [any_correct]"))
        functions = []
    for spec in functions:
        try:
            parse_reward_spec(spec)
        except ValueError as exc:
            found.append(("reward_functions", str(exc)))
    weights = out["reward_weights"]
    if weights is not None:
        if not (isinstance(weights, list) and all(number(w) for w in weights)):
            found.append(("reward_weights", f"is {weights!r}; it must be a list of numbers, one per reward function"))
        elif functions and len(weights) != len(functions):
            found.append(("reward_weights", f"has {len(weights)} weight(s) for {len(functions)} reward function(s); "
                          "give one per function, or remove reward_weights for 1 each"))
    return found


def grpo_settings(values: dict) -> dict:
    """The GRPO settings of a config, defaults filled (reward_functions a list, reward_weights a list of floats).
    Raises ValueError naming the key and what to write when a value is wrong."""
    problems = grpo_problems(values)
    if problems:
        key, message = problems[0]
        raise ValueError(f"{key} {message}" if not message.startswith("'") else f"{key}: {message}")
    out = dict(GRPO_KEYS, **{k: values[k] for k in GRPO_KEYS if values.get(k) is not None})
    if isinstance(out["reward_functions"], str):
        out["reward_functions"] = [out["reward_functions"]]
    out["reward_functions"] = [str(s).strip() for s in out["reward_functions"]]
    n = len(out["reward_functions"])
    out["reward_weights"] = [float(w) for w in out["reward_weights"]] if out["reward_weights"] else [1.0] * n
    out["temperature"], out["epsilon"] = float(out["temperature"]), float(out["epsilon"])
    out["beta"] = preference_settings(values)["beta"]
    return out


LORA_PARAMETER_KINDS = {"keys": "list", "rank": "int", "scale": "float", "dropout": "float"}
LR_SCHEDULE_KINDS = {"name": "choice", "arguments": "floats", "warmup": "int", "warmup_init": "float"}

# Keys only the command line can set (not part of a config file).
CLI_ONLY = {"config"}


@dataclass(frozen=True)
class FieldSpec:
    """One editable key. `path` is ("batch_size",) or ("lora_parameters", "rank")."""

    path: tuple[str, ...]
    group: str
    kind: str  # int | float | bool | str | choice | list | floats | mapping | size | yaml (any value)
    default: Any
    help: str
    choices: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return ".".join(self.path)


@lru_cache(maxsize=1)
def mlx_lm_defaults() -> dict:
    from phi3tui.core.mlx_lm_private import lora_module

    return dict(lora_module().CONFIG_DEFAULTS)


def build_args(values: dict) -> SimpleNamespace:
    """The config's values merged with mlx-lm's defaults the way `mlx_lm lora --config` merges them."""
    args = dict(values)
    for key, default in mlx_lm_defaults().items():
        if args.get(key) is None:
            args[key] = default
    return SimpleNamespace(**args)


@lru_cache(maxsize=1)
def _parser_actions() -> dict:
    from phi3tui.core.mlx_lm_private import lora_parser_actions

    return {a.dest: a for a in lora_parser_actions() if a.dest not in ("help",)}


def known_top_level_keys() -> set[str]:

    return (set(mlx_lm_defaults()) | set(_parser_actions()) | set(DATASET_KEYS) | set(PREFERENCE_KEYS)
            | set(PREFERENCE_ALIASES) | set(PROBE_KEYS) | set(TURNS_KEYS) | set(GRPO_KEYS)) - CLI_ONLY


def _kind_of(action, default) -> tuple[str, tuple[str, ...]]:
    if action is not None and action.choices:
        return "choice", tuple(action.choices)
    if action is not None and action.nargs == 0:
        return "bool", ()
    typ = getattr(action, "type", None)
    if typ is int:
        return "int", ()
    if typ is float:
        return "float", ()
    if typ is not None and typ is not str and callable(typ):
        return "size", ()  # e.g. _parse_size: "1GB" or a number of bytes
    if isinstance(default, bool):
        return "bool", ()
    if isinstance(default, int):
        return "int", ()
    if isinstance(default, float):
        return "float", ()
    if isinstance(default, dict):
        return "mapping", ()
    return "str", ()


@lru_cache(maxsize=1)
def schedule_names() -> tuple[str, ...]:
    import inspect

    import mlx.optimizers.schedulers as schedulers

    return tuple(
        name for name, fn in inspect.getmembers(schedulers, inspect.isfunction)
        if not name.startswith("_") and name != "join_schedules" and fn.__module__ == schedulers.__name__
    )


def config_fields() -> list[FieldSpec]:
    """Every key the installed `mlx_lm lora` accepts, grouped, nested keys spelled out."""
    defaults = mlx_lm_defaults()
    actions = _parser_actions()
    specs: list[FieldSpec] = []
    keys = list(defaults) + [k for k in actions if k not in defaults] + [k for k in DATASET_KEYS if k not in defaults]
    for key in keys:
        if key in CLI_ONLY:
            continue
        action = actions.get(key)
        default = defaults.get(key, DATASET_KEYS.get(key))
        if key == "lora_parameters":
            lora_defaults = default or {}
            for sub, kind in LORA_PARAMETER_KINDS.items():
                specs.append(FieldSpec(("lora_parameters", sub), "LoRA", kind, lora_defaults.get(sub),
                                       CONFIG_ONLY_HELP[f"lora_parameters.{sub}"]))
            continue
        if key == "lr_schedule":
            sched_defaults = {"name": None, "arguments": None, "warmup": 0, "warmup_init": 0.0}
            for sub, kind in LR_SCHEDULE_KINDS.items():
                specs.append(FieldSpec(("lr_schedule", sub), GROUP_OF[key], kind, sched_defaults[sub],
                                       CONFIG_ONLY_HELP[f"lr_schedule.{sub}"],
                                       schedule_names() if sub == "name" else ()))
            continue
        kind, choices = _kind_of(action, default)
        if key == "optimizer_config":
            kind = "mapping"
        elif key == "hf_dataset":
            kind = "yaml"  # a mapping or a list of them
        help_text = (action.help if action is not None and action.help else CONFIG_ONLY_HELP.get(key, ""))
        specs.append(FieldSpec((key,), GROUP_OF.get(key, "other"), kind, default, help_text, choices))
        if key == "iters":
            specs.append(FieldSpec(("epochs",), "length & schedule", "float", None, CONFIG_ONLY_HELP["epochs"]))
    specs.append(FieldSpec(("assistant_turns",), "model & data", "choice", TURNS_KEYS["assistant_turns"],
                           TURNS_HELP, TURNS_CHOICES))
    for key, kind, choices, help_text in PREFERENCE_FIELDS:
        specs.append(FieldSpec((key,), "preference", kind, PREFERENCE_KEYS[key], help_text, tuple(choices)))
    for key, kind, help_text in GRPO_FIELDS:
        specs.append(FieldSpec((key,), "preference", kind, GRPO_KEYS[key], help_text))

    # phi3tui's runner answers these after each checkpoint; a path or a number, hence "yaml".
    for key, kind in (("probe_prompts", "yaml"), ("probe_max_tokens", "int")):
        specs.append(FieldSpec((key,), "evaluation", kind, PROBE_KEYS[key], PROBE_HELP[key]))
    order = {g: i for i, g in enumerate(GROUPS)}
    return sorted(specs, key=lambda s: order[s.group])  # stable: mlx-lm's order inside a group


# config_fields() costs importing mlx-lm (and transformers with it): seconds, on the Config screen's first visit.
# What it returns depends only on the installed mlx-lm and mlx and on this package's own tables, so it is kept on
# disk, keyed by those, and the form is built from the copy while the first check imports mlx-lm behind it.
FIELDS_CACHE_FILE = "config-fields.pickle"
_FIELDS_SOURCES = ("schema.py", "probes.py", "../train_modes.py", "../mlx_lm_private.py")


def _fields_cache_key() -> str:
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    here = Path(__file__).parent
    parts = []
    for dist in ("mlx-lm", "mlx"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} none")
    for name in _FIELDS_SOURCES:
        stat = (here / name).stat()
        parts.append(f"{name} {stat.st_mtime_ns} {stat.st_size}")
    return "; ".join(parts)


def saved_config_fields() -> list[FieldSpec] | None:
    """config_fields() as saved by save_config_fields for the installed mlx-lm and this phi3tui; None when there is
    none or it is stale or unreadable (then call config_fields() and save it)."""
    import pickle

    from phi3tui.core.settings import cache_dir

    try:
        with open(cache_dir() / FIELDS_CACHE_FILE, "rb") as handle:
            key, fields = pickle.load(handle)
        return fields if key == _fields_cache_key() and isinstance(fields, list) else None
    except Exception:  # missing, cut short, from another version: computed again
        return None


def save_config_fields(fields: list[FieldSpec]) -> None:
    """Keep config_fields() for the next first visit; a cache that cannot be written is skipped."""
    import pickle

    from phi3tui.core.files import atomic_write_bytes
    from phi3tui.core.settings import cache_dir

    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / FIELDS_CACHE_FILE, pickle.dumps((_fields_cache_key(), fields)))
    except OSError:
        pass


def iters_for_epochs(epochs: float, train_size: int, batch_size: int) -> int:
    """Iterations that make `epochs` passes over a train split of `train_size` records."""
    if train_size <= 0 or batch_size <= 0 or epochs <= 0:
        raise ValueError("epochs, the train split's size and batch_size must all be positive")
    return max(1, math.ceil(epochs * train_size / batch_size))


def epochs_for_iters(iters: int, train_size: int, batch_size: int) -> float:
    if train_size <= 0:
        return 0.0
    return iters * batch_size / train_size


# Starting points. Each is a set of values laid over the current file (other keys stay as they are).
PRESETS: dict[str, dict[str, Any]] = {
    "quick check": {
        "train": True,
        "iters": 5,
        "batch_size": 1,
        "val_batches": 2,
        "steps_per_report": 1,
        "steps_per_eval": 5,
        "save_every": 5,
        "max_seq_length": 512,
        "test": False,
        "num_layers": 2,
        "lora_parameters": {"rank": 4, "scale": 10.0, "dropout": 0.0},
    },
    "Phi-3-mini LoRA on a 16 GB Mac": {
        "model": "microsoft/Phi-3-mini-4k-instruct",
        "train": True,
        "fine_tune_type": "lora",
        "num_layers": -1,
        "batch_size": 1,
        "iters": 1000,
        "learning_rate": 1e-5,
        "max_seq_length": 1024,
        "grad_checkpoint": True,
        "lora_parameters": {"keys": ["self_attn.qkv_proj", "self_attn.o_proj"], "rank": 16, "scale": 2.0,
                            "dropout": 0.05},
    },
    "QLoRA on a 4-bit model": {
        "model": "mlx-community/Phi-3-mini-4k-instruct-4bit",
        "train": True,
        "fine_tune_type": "lora",
        "num_layers": -1,
        "batch_size": 2,
        "iters": 1000,
        "learning_rate": 1e-4,
        "max_seq_length": 2048,
        "grad_checkpoint": True,
        "lora_parameters": {
            "keys": ["self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"],
            "rank": 8, "scale": 2.0, "dropout": 0.0,
        },
    },
}
