"""Checks of a (migrated) lora_config.yaml against the model, the data and this machine, before any run.

Every check names the key it is about and says what to do. Nothing here writes to disk.
"""

from __future__ import annotations

import difflib
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phi3tui.core.adapters import ADAPTER_CONFIG, LATEST_WEIGHTS
from phi3tui.core.config.probes import probe_problem

NUMBER_TYPES = (int, float)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning" | "info"
    field: str  # the config key it is about ("" for the whole file)
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.level}: {where}{self.message}" + (f" ({self.hint})" if self.hint else "")


@dataclass
class ModelContext:
    """What the checks know about the model: where it is, its config.json, its blocks' modules."""

    value: str
    location: Any = None  # models.ModelLocation
    info: Any = None  # models.ModelInfo
    block_modules: list[str] | None = None
    top_modules: list[str] = field(default_factory=list)
    problem: str = ""  # why the model could not be inspected
    fatal: bool = False  # True when a run could not load it either (not merely not downloaded yet)
    known: Any = None  # models.KnownModel when the model is not downloaded but in phi3tui's table


def model_context(value: Any, workspace_root: Path) -> ModelContext:
    from phi3tui.core import models

    ctx = ModelContext(str(value))
    try:
        ctx.location = models.locate_model(str(value), workspace_root)
        if not ctx.location.available:
            ctx.known = models.known_model(str(value))
            if ctx.known is None:
                ctx.problem = (f"{value} is not in the local Hugging Face cache; download it on the Config screen "
                               "(or let the run download it) to check keys, layers and memory")
                return ctx
            # Known before any download: its published config.json builds the same weightless structure.
            config = ctx.known.structure_config()
        else:
            config = models.read_model_config(ctx.location.folder)
        ctx.info = models.ModelInfo(config, ctx.location)
        structure = models.build_structure(config)
        ctx.block_modules = models.adaptable_modules(structure)
        ctx.top_modules = models.top_level_modules(structure)
    except models.ModelNotFound as exc:
        ctx.problem, ctx.fatal = str(exc), True
    return ctx


# -- data: sizes, format and longest records (through the Data screen's core) -----------------
_TOKEN_CACHE: dict = {}
_TOKEN_LOCK = threading.Lock()


@dataclass
class DataContext:
    folder: Path
    sizes: dict[str, int] = field(default_factory=dict)
    formats: dict[str, str | None] = field(default_factory=dict)
    lengths: dict[str, Any] = field(default_factory=dict)  # split -> Counter(token count -> records)
    note: str = ""  # why token lengths are missing


def data_context(values: dict, workspace_root: Path, model_folder: Path | None) -> DataContext | None:
    """None when `data` is not a local folder (a Hugging Face dataset id: not checked here)."""
    from phi3tui.core.data import DataFolder, DataSettings, split_sizes

    folder = Path(str(values.get("data") or "data")).expanduser()
    if not folder.is_absolute():
        folder = Path(workspace_root) / folder
    if not folder.is_dir():
        return None
    ctx = DataContext(folder, split_sizes(folder))
    settings = DataSettings.from_config(values)
    opened = DataFolder.open(folder, settings)
    ctx.formats = {name: info.format for name, info in opened.splits.items()}
    if model_folder is None:
        ctx.note = "the model's tokenizer is not available"
        return ctx
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.glob("*.jsonl")))
    key = (str(folder), stamp, str(model_folder), settings.text_feature, settings.chat_feature,
           settings.prompt_feature, settings.completion_feature, settings.mask_prompt)
    with _TOKEN_LOCK:
        cached = _TOKEN_CACHE.get(key)
    if cached is None:
        try:
            from phi3tui.core.data import token_statistics
            from phi3tui.core.data import load_tokenizer

            stats = token_statistics(opened, load_tokenizer(model_folder))
            cached = {split: s.histogram for split, s in stats.items()}
        except Exception as exc:  # a broken tokenizer or record: the Data screen reports the details
            ctx.note = f"token lengths not measured ({type(exc).__name__}: {exc})"
            return ctx
        with _TOKEN_LOCK:
            _TOKEN_CACHE.clear()
            _TOKEN_CACHE[key] = cached
    ctx.lengths = cached
    return ctx


# -- the checks --------------------------------------------------------------------------------
def _value(values: dict, key: str, defaults: dict):
    v = values.get(key)
    return defaults.get(key) if v is None else v


def check_duplicate_keys(text: str) -> list[Finding]:
    """A key written twice in one mapping: mlx-lm silently trains with the last one, so it is an error."""
    from phi3tui.core.config.document import duplicate_keys

    findings = []
    for key, lines in duplicate_keys(text):
        where = ", ".join(map(str, lines[:-1])) + f" and {lines[-1]}"
        findings.append(Finding("error", key, f"written {len(lines)} times (lines {where}); mlx-lm would use only "
                                f"the last one (line {lines[-1]}) and ignore the others",
                                "remove all but one of them in the file"))
    return findings


def check_types(values: dict) -> list[Finding]:
    """Unknown keys, wrong types and choices, as mlx-lm would (fail to) use them."""
    from phi3tui.core.config.schema import (
        LORA_PARAMETER_KINDS,
        LR_SCHEDULE_KINDS,
        config_fields,
        known_top_level_keys,
        schedule_names,
    )
    from phi3tui.core.config.sweep import SWEEP_KEY, SweepError, sweep_block

    found: list[Finding] = []
    known = known_top_level_keys()
    for key in values:
        if key == SWEEP_KEY:  # phi3tui's own block (core/config/sweep.py): checked below, never passed to mlx-lm
            continue
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"did you mean {close[0]}?" if close else "remove it, or check the spelling against mlx-lm's keys"
            found.append(Finding("warning", str(key), "unknown to mlx-lm: it is ignored silently", hint))
    try:
        sweep_block(values, "sweep")
    except SweepError as exc:
        found.append(Finding("error", SWEEP_KEY, str(exc).removeprefix("sweep: "),
                             "e.g. sweep: {lora_parameters.rank: [8, 16], learning_rate: [1e-5, 1e-4]}"))
    for section, subkeys in (("lora_parameters", LORA_PARAMETER_KINDS), ("lr_schedule", LR_SCHEDULE_KINDS)):
        nested = values.get(section)
        if isinstance(nested, dict):
            for key in nested:
                if key not in subkeys and not (section == "lora_parameters" and key == "alpha"):
                    close = difflib.get_close_matches(str(key), sorted(subkeys), n=1)
                    found.append(Finding("warning", f"{section}.{key}", "unknown to mlx-lm: it is ignored silently",
                                         f"did you mean {close[0]}?" if close else "one of " + ", ".join(subkeys)))
    for spec in config_fields():
        if spec.path == ("epochs",) or spec.kind == "yaml":
            continue
        parent = values.get(spec.path[0]) if len(spec.path) > 1 else values
        if len(spec.path) > 1 and not isinstance(parent, dict):
            continue
        value = parent.get(spec.path[-1]) if isinstance(parent, dict) else None
        if value is None:
            continue
        key = spec.key
        kind = spec.kind
        bad = None
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            bad = "a whole number"
        elif kind == "float" and (isinstance(value, bool) or not isinstance(value, NUMBER_TYPES)):
            bad = "a number (write 1e-5, not \"1e-5\")"
        elif kind == "bool" and not isinstance(value, bool):
            bad = "true or false"
        elif kind == "choice" and value not in spec.choices:
            bad = "one of " + ", ".join(spec.choices)
        elif kind == "list" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            bad = "a list of module paths, e.g. [self_attn.q_proj]"
        elif kind == "floats" and not (isinstance(value, list) and all(isinstance(v, NUMBER_TYPES) for v in value)):
            bad = "a list of numbers, e.g. [1e-5, 1000]"
        elif kind == "mapping" and not isinstance(value, dict):
            bad = "a mapping"
        elif kind == "str" and not isinstance(value, str):
            bad = "text"
        if bad:
            found.append(Finding("error", key, f"is {value!r}; it must be {bad}"))
    beta = values.get("beta")
    if isinstance(beta, NUMBER_TYPES) and not isinstance(beta, bool) and not beta > 0:
        found.append(Finding("error", "beta", f"is {beta!r}; it must be above 0", "0.1 is usual"))
    lr = values.get("lr_schedule")
    if isinstance(lr, dict):
        if lr.get("name") not in schedule_names():
            found.append(Finding("error", "lr_schedule.name", f"{lr.get('name')!r} is not an mlx.optimizers schedule",
                                 "one of " + ", ".join(schedule_names())))
        if not isinstance(lr.get("arguments"), list) or not lr.get("arguments"):
            found.append(Finding("error", "lr_schedule.arguments", "is missing; the schedule needs its arguments",
                                 "e.g. [1e-5, 1000] for cosine_decay (initial rate, steps)"))
    elif lr is not None:
        found.append(Finding("error", "lr_schedule", "must be a mapping with name and arguments"))
    lora_parameters = values.get("lora_parameters")
    if lora_parameters is not None and not isinstance(lora_parameters, dict):
        found.append(Finding("error", "lora_parameters", f"is {lora_parameters!r}; it must be a mapping",
                             "e.g. {keys: [self_attn.qkv_proj, self_attn.o_proj], rank: 8, scale: 20.0, dropout: 0.0}"))
    if values.get("trust_remote_code") is True:  # phi3tui's runner honours it (mlx_lm lora would not)
        found.append(Finding("warning", "trust_remote_code", "is on: loading the model runs Python code from its "
                             "folder or Hugging Face repo", "turn it on only for a model whose code you trust; "
                             "Phi-3 needs no remote code"))
    for key in ("clear_cache_threshold",):
        if key in values:
            found.append(Finding("warning", key, "is ignored when set in a config file: `mlx_lm lora` fills it from "
                                 "its command-line default first", f"pass --{key.replace('_', '-')} on the command line"))
    return found


def check_schedule(values: dict, defaults: dict) -> list[Finding]:
    found = []
    train, test = values.get("train"), values.get("test")
    if not train and not test:
        found.append(Finding("error", "train", "train and test are both false: mlx-lm refuses "
                             "(\"Must provide at least one of --train or --test\")", "set train: true"))
    for key in ("iters", "batch_size", "steps_per_report", "steps_per_eval", "save_every", "grad_accumulation_steps"):
        v = _value(values, key, defaults)
        if isinstance(v, int) and not isinstance(v, bool) and v <= 0:
            found.append(Finding("error", key, f"is {v}; it must be at least 1"))
    lr = values.get("learning_rate")
    if isinstance(lr, NUMBER_TYPES) and not isinstance(lr, bool) and lr <= 0:
        found.append(Finding("error", "learning_rate", f"is {lr}; it must be above 0"))
    return found


def check_model(values: dict, defaults: dict, ctx: ModelContext) -> tuple[list[Finding], Any]:
    """num_layers, LoRA keys and the trainable parameter count (returns the LoraPlan too)."""
    from phi3tui.core import models

    found: list[Finding] = []
    if ctx.info is None:
        found.append(Finding("error" if ctx.fatal else "warning", "model",
                             ctx.problem or f"{ctx.value} cannot be inspected"))
        return found, None
    folder = getattr(ctx.location, "folder", None)
    if folder is not None:  # pickle-only or truncated weights: a run would fail (or run code) loading them
        from phi3tui.core.models import model_folder_problem

        problem = model_folder_problem(folder)
        if problem:
            found.append(Finding("error", "model", problem))
    blocks = ctx.info.num_blocks
    num_layers = _value(values, "num_layers", defaults)
    ftype = _value(values, "fine_tune_type", defaults)
    lora = values.get("lora_parameters")
    if lora is None:
        lora = defaults.get("lora_parameters") or {}
    if isinstance(num_layers, int) and not isinstance(num_layers, bool):
        if blocks is not None and num_layers > blocks:
            unset = " (mlx-lm's default: the file does not set it)" if values.get("num_layers") is None else ""
            found.append(Finding("error", "num_layers", f"is {num_layers}{unset} but the model has {blocks} blocks",
                                 f"use {blocks} or -1 for all"))
            return found, None
        if num_layers < -1:
            found.append(Finding("error", "num_layers", f"is {num_layers}; use a block count or -1 for all"))
            return found, None
        if num_layers == 0:
            found.append(Finding("warning", "num_layers", "0 trains every block in mlx-lm (like -1)",
                                 "use -1 to say all, or the number of blocks to train"))
    else:
        return found, None
    max_seq = _value(values, "max_seq_length", defaults)
    context = ctx.info.context
    if isinstance(max_seq, int) and not isinstance(max_seq, bool) and isinstance(context, int) and max_seq > context:
        found.append(Finding("warning", "max_seq_length", f"is {max_seq} but the model's context is {context} "
                             "(max_position_embeddings): it was never trained on longer sequences",
                             f"use {context} or less, or a long-context (128k) model"))
    if ftype != "full" and lora is not None and not isinstance(lora, dict):
        return found, None  # reported by check_types; mlx-lm's KeyError would only repeat it
    if ftype != "full" and isinstance(lora, dict):
        missing = [k for k in ("rank", "scale", "dropout") if k not in lora]
        if missing:
            hint = "mlx-lm calls it scale; migrate alpha" if "alpha" in lora and "scale" in missing else \
                "add them (mlx-lm's defaults: rank 8, scale 20.0, dropout 0.0)"
            found.append(Finding("error", "lora_parameters", f"lacks {', '.join(missing)}: mlx-lm stops with KeyError", hint))
            return found, None
        # A wrong type is reported on its own line by the schema check; mlx-lm's raw error would only repeat it.
        if not all(isinstance(lora[k], (int, float)) and not isinstance(lora[k], bool) for k in ("rank", "scale", "dropout")):
            return found, None
        keys = lora.get("keys")
        if isinstance(keys, list):
            valid = ctx.block_modules or []
            for key in keys:
                if key not in valid and key not in ctx.top_modules:
                    found.append(Finding("error", "lora_parameters.keys", f"{key!r} matches no module in the model's blocks",
                                         "use one of: " + ", ".join(valid)))
    try:
        plan = models.plan_lora(ctx.info.config, num_layers, lora if isinstance(lora, dict) else {}, ftype)
    except Exception as exc:  # mlx-lm's own refusal (bad rank, unknown layer type): say it as it says it
        found.append(Finding("error", "lora_parameters", f"mlx-lm cannot apply it: {type(exc).__name__}: {exc}"))
        return found, None
    if plan.trainable == 0:
        found.append(Finding("error", "lora_parameters.keys", "trains 0 parameters: training would stop with "
                             "\"[grad] Must specify at least one argument.\"", "pick keys from the model's modules"))
    else:
        trained_blocks = plan.blocks if num_layers in (-1, 0) else num_layers
        found.append(Finding("info", "lora_parameters", f"trainable parameters: {plan.summary()} in "
                             f"{trained_blocks} of {plan.blocks} blocks"))
    return found, plan


def check_known_models(values: dict, defaults: dict, ctx: ModelContext) -> list[Finding]:
    """Which of the known Phi models (phi3tui's table) this file's num_layers, max_seq_length and LoRA keys
    suit, and why not the others; and, for a known model not downloaded yet, that the check used the table."""
    from phi3tui.core import models

    found = []
    if ctx.known is not None:
        found.append(Finding("info", "model", f"{ctx.value} is not downloaded yet: checked against phi3tui's table "
                             f"of known models ({ctx.known.facts()})",
                             "ctrl+y on the Config screen downloads it, or the run will"))
    num_layers = _value(values, "num_layers", defaults)
    max_seq = _value(values, "max_seq_length", defaults)
    lora = values.get("lora_parameters")
    keys = lora.get("keys") if isinstance(lora, dict) else None
    if _value(values, "fine_tune_type", defaults) == "full":
        keys = None
    suited, unsuited = [], []
    for model in models.known_models():
        if model.repo != model.base:
            continue  # an mlx-community build has its base's blocks, context and modules
        reasons = models.unsuited_reasons(model, num_layers, max_seq, keys)
        (unsuited.append(f"{model.name} ({'; '.join(reasons)})") if reasons else suited.append(model.name))
    message = "known models these settings suit: " + (", ".join(suited) or "none")
    if unsuited:
        message += "; not: " + ", ".join(unsuited)
    # About num_layers, max_seq_length and the keys together: the whole file's finding.
    found.append(Finding("info", "", message + " (their mlx-community 4/8-bit builds alike)"))
    return found


def check_data(values: dict, defaults: dict, data: DataContext | None, workspace_root: Path) -> list[Finding]:
    found: list[Finding] = []
    data_value = values.get("data") or defaults.get("data")
    if data is None:
        local = Path(str(data_value)).expanduser()
        local = local if local.is_absolute() else Path(workspace_root) / local
        if values.get("hf_dataset"):
            return found
        if "/" in str(data_value) and not str(data_value).startswith((".", "/", "~")):
            found.append(Finding("info", "data", f"{data_value} is not a local folder: mlx-lm will load it as a "
                                 "Hugging Face dataset; its splits are not checked here"))
        else:
            found.append(Finding("error", "data", f"{local} does not exist", "point data at the folder with train.jsonl"))
        return found
    if values.get("train", False) and data.sizes.get("train") is None:
        found.append(Finding("error", "data", f"{data.folder} has no train.jsonl", "put the training records in train.jsonl"))
    batch = _value(values, "batch_size", defaults)
    if isinstance(batch, int) and batch > 0:
        needed = {"train": bool(values.get("train")), "valid": _value(values, "val_batches", defaults) != 0
                  and bool(values.get("train")), "test": bool(values.get("test"))}
        for split, used in needed.items():
            n = data.sizes.get(split)
            if used and n is not None and n < batch:
                found.append(Finding("error", "batch_size", f"is {batch} but {split}.jsonl has {n} records: mlx-lm "
                                     "stops (\"Dataset must have at least batch_size examples\")",
                                     f"lower batch_size to {n} or add records"))
    if values.get("mask_prompt") and "text" in data.formats.values():
        found.append(Finding("error", "mask_prompt", "is on but the data is in the text format: mlx-lm stops "
                             "(\"Prompt masking not supported for text dataset.\")",
                             "turn mask_prompt off, or use chat or completions records"))
    found += _check_data_mode(values, data)
    max_len = _value(values, "max_seq_length", defaults)
    for split, histogram in data.lengths.items():
        if not histogram or not isinstance(max_len, int):
            continue
        longest = max(histogram)
        over = sum(c for length, c in histogram.items() if length > max_len)
        if over:
            found.append(Finding("warning", "max_seq_length", f"is {max_len} but {over} {split} record(s) are longer "
                                 f"(longest {longest} tokens): mlx-lm truncates them",
                                 f"raise max_seq_length to {longest} or shorten those records"))
    return found


def _check_data_mode(values: dict, data: DataContext) -> list[Finding]:
    """Preference records need train_mode dpo or orpo; those modes need preference records in every split."""
    from phi3tui.core.config.schema import preference_settings

    try:
        mode = preference_settings(values)["train_mode"]
    except ValueError:
        return []  # the wrong value is reported by the type check
    formats = {s: f for s, f in data.formats.items() if f}
    if mode == "sft" and "prompt-answer" in formats.values():  # GRPO's records, as preference pairs are DPO's
        splits = ", ".join(s for s, f in formats.items() if f == "prompt-answer")
        return [Finding("error", "train_mode", f"is sft but {splits} hold{'s' if ',' not in splits else ''} "
                        "prompt-answer records (prompt, answer), which mlx-lm's supervised training cannot read",
                        "set train_mode: grpo, or import the data in the text, chat or completions format")]
    if mode == "sft" and "preference" in formats.values():
        splits = ", ".join(s for s, f in formats.items() if f == "preference")
        return [Finding("error", "train_mode", f"is sft but {splits} hold{'s' if ',' not in splits else ''} "
                        "preference pairs (prompt, chosen, rejected), which mlx-lm's supervised training cannot read",
                        "set train_mode: dpo or orpo, or import the data in the text, chat or completions format")]
    needed = MODE_FORMATS.get(mode)
    other = {s: f for s, f in formats.items() if f != needed}
    if mode == "grpo" and other:
        listed = ", ".join(f"{s}.jsonl is {f}" for s, f in other.items())
        return [Finding("error", "train_mode", f"is grpo but {listed}: grpo samples answers to prompt-answer "
                        "records ({prompt, answer})", "import them (phi3tui data import TruthfulQA.csv DIR "
                        "--format prompt-answer), or set train_mode: sft")]
    if mode != "sft" and other:
        listed = ", ".join(f"{s}.jsonl is {f}" for s, f in other.items())
        return [Finding("error", "train_mode", f"is {mode} but {listed}: {mode} trains on preference pairs",
                        "import pairs (phi3tui data import TruthfulQA.csv DIR --format preference), "
                        "or set train_mode: sft")]
    return []


# The data format each training mode other than sft reads (core/data's format names).
MODE_FORMATS = {"dpo": "preference", "orpo": "preference", "grpo": "prompt-answer"}


def check_grpo(values: dict, workspace_root: Path) -> list[Finding]:
    """With train_mode: grpo, its settings (core/config/schema.py grpo_problems) and each reward function a run
    would load: a built-in's spelling, a user file that exists and defines the function (read, not run)."""
    from phi3tui.core.config.schema import grpo_problems
    from phi3tui.core.rewards import reward_problem

    if values.get("train_mode") != "grpo":
        return []
    problems = grpo_problems(values)
    found = [Finding("error", key, message) for key, message in problems]
    if values.get("fine_tune_type") == "full":
        found.append(Finding("error", "fine_tune_type", "is full, but GRPO's reference is the model with its adapter "
                             "switched off (one copy of the weights), and a full fine-tune has no adapter",
                             "use lora or dora for train_mode: grpo"))
    if not any(key == "reward_functions" for key, _ in problems):
        functions = values.get("reward_functions") or []
        for spec in [functions] if isinstance(functions, str) else functions:
            problem = reward_problem(spec, workspace_root)
            if problem:
                found.append(Finding("error", "reward_functions", problem,
                                     "the path is relative to the workspace; the function must be defined at the "
                                     "file's top level"))
    return found


def check_adapters(values: dict, defaults: dict, workspace_root: Path) -> list[Finding]:
    found = []
    path = Path(str(_value(values, "adapter_path", defaults))).expanduser()
    path = path if path.is_absolute() else Path(workspace_root) / path
    resume = values.get("resume_adapter_file")
    rpath = None
    if resume:
        rpath = Path(str(resume)).expanduser()
        rpath = rpath if rpath.is_absolute() else Path(workspace_root) / rpath
        if not rpath.is_file():
            found.append(Finding("error", "resume_adapter_file", f"{rpath} does not exist",
                                 f"point it at an {LATEST_WEIGHTS} file, or set it to null"))
    if (path / LATEST_WEIGHTS).is_file() or (path / ADAPTER_CONFIG).is_file():
        resuming = rpath is not None and rpath.resolve().is_relative_to(path.resolve())
        if not resuming:
            found.append(Finding("warning", "adapter_path", f"{path} already holds another run's adapters: "
                                 "training would overwrite them", "choose a new adapter_path, or resume from them "
                                 "with resume_adapter_file"))
    return found


def check_probes(values: dict, workspace_root: Path) -> list[Finding]:
    """probe_prompts / probe_max_tokens: phi3tui's runner reads them (answers after each checkpoint)."""

    problem = probe_problem(values.get("probe_prompts"), values.get("probe_max_tokens"), workspace_root)
    return [Finding("error", *problem)] if problem else []


def check_memory(values: dict, defaults: dict, ctx: ModelContext, plan, data: DataContext | None = None,
                 in_use: int = 0) -> tuple[list[Finding], Any]:
    """The estimated peak against what MLX can use here, for the rows the run will really batch (the train
    split's longest batched record, padded as mlx-lm pads) plus `in_use` (memory something else holds already:
    the app's loaded chat model, another run). An error only when even the real data cannot fit; a warning when
    a record as long as max_seq_length could not."""
    from phi3tui.core import models

    if ctx.info is None or plan is None:
        return [], None
    merged = {k: _value(values, k, defaults) for k in ("batch_size", "max_seq_length", "num_layers",
                                                       "grad_checkpoint", "optimizer")}
    # A wrong type is reported on its own line by the schema check; no estimate can be made from it.
    if any(merged[k] is not None and (type(merged[k]) is not int) for k in ("batch_size", "max_seq_length", "num_layers")):
        return [], None
    from phi3tui.core.config.schema import preference_settings

    try:
        preference = preference_settings(values)["train_mode"] != "sft"
    except ValueError:
        preference = False
    histogram = data.lengths.get("train") if data is not None else None
    longest = models.longest_batched(histogram, merged["batch_size"] or 1) if histogram else None
    if preference and merged["batch_size"]:
        # DPO/ORPO run the chosen and the rejected sequence of each pair in one batch: twice the rows; GRPO runs
        # group_size completions of each prompt.
        group = values.get("group_size") if values.get("train_mode") == "grpo" else 2
        merged["batch_size"] *= group if isinstance(group, int) and not isinstance(group, bool) and group > 0 else 4
    from phi3tui.core.machine import memory_budget

    # On a Mac, what MLX can use is Metal's recommended working set, well under the total RAM.
    budget = memory_budget()
    estimate = models.estimate_memory(ctx.info.config, plan, merged, machine_bytes=budget.bytes,
                                      longest_tokens=longest or None, in_use=in_use)
    used = (f", with {models.human_bytes(in_use)} already in use; this run alone "
            f"~{models.human_bytes(estimate.total - in_use)}") if in_use else ""
    if estimate.total > estimate.machine:
        hint = ("turn on grad_checkpoint" if not estimate.grad_checkpoint and estimate.total_other <= estimate.machine
                else "lower batch_size or max_seq_length, train fewer blocks, or use a quantized (4-bit) model")
        if in_use:
            hint += "; or free the memory in use (unload the chat model, wait for the other run)"
        return [Finding("error", "memory", f"estimate {estimate.summary()} is above what MLX can use on this "
                        f"machine ({budget.source}{used}): the run would run out of memory", hint)], estimate
    if estimate.from_data and estimate.total_max > estimate.machine:
        return [Finding("warning", "memory", f"estimate {estimate.summary()} fits this data, but a record as long "
                        f"as max_seq_length ({merged['max_seq_length']}) would need "
                        f"~{models.human_bytes(estimate.total_max)}, above what MLX can use on this machine "
                        f"({budget.source}{used})",
                        "fine for this data; lower max_seq_length to be safe should longer records be added")], estimate
    return [Finding("info", "memory", f"estimate {estimate.summary()}")], estimate


# reporter -> (module it imports, phi3tui extra that installs it): mlx_lm.tuner.callbacks.SUPPORT_CALLBACK's keys
REPORTERS = {"wandb": ("wandb", "wandb"), "swanlab": ("swanlab", "swanlab")}


def reporter_names(report_to) -> list[str]:
    """`report_to` split the way mlx-lm splits it (comma-separated, case-insensitive)."""
    if not report_to or not isinstance(report_to, str):
        return []
    return [item.strip().lower() for item in report_to.split(",") if item.strip()]


def check_reporters(values: dict) -> list[Finding]:
    """Each reporter report_to names must be one mlx-lm knows, with its package installed (found, not imported)."""
    found = []
    for name in reporter_names(values.get("report_to")):
        if name not in REPORTERS:
            found.append(Finding("error", "report_to", f"{name!r} is not a reporter mlx-lm knows: the run would "
                                 "stop at its start", "use " + " or ".join(REPORTERS) + " (comma-separated for both)"))
            continue
        module, extra = REPORTERS[name]
        if importlib.util.find_spec(module) is None:
            found.append(Finding("error", "report_to", f"{name} needs the {module} package, which is not installed",
                                 f"pip install 'phi3tui[{extra}]', or remove report_to"))
    return found
