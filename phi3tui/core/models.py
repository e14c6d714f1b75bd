"""The model a config names: where it is, what it is, what LoRA would train in it, what memory it needs.
The only code that finds a model (a folder relative to the workspace, the Hugging Face cache, a repo id):
chat, training checks, data checks and export all ask `workspace_model` / `model_to_load` / `locate_model`.

The structure comes from config.json alone: mlx arrays are lazy, so building an mlx-lm model without
evaluating it allocates nothing (Phi-3-mini's 3.8 B parameters build in milliseconds), and mlx-lm's own
`linear_to_lora_layers` on it gives the exact trainable parameter count a run would print.
Also: the local Hugging Face cache (huggingface_hub's scan) and downloads on request.
"""

from __future__ import annotations

import json
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

BYTES_PER_DTYPE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


class ModelNotFound(Exception):
    """The model setting names nothing usable. str() says what was tried and what to do."""


@dataclass(frozen=True)
class ModelLocation:
    value: str  # the config's `model:` value
    folder: Path | None  # a folder with config.json; None when it is a repo not in the cache
    kind: str  # "local folder" | "Hugging Face cache" | "not downloaded"

    @property
    def available(self) -> bool:
        return self.folder is not None


def locate_model(value: str, workspace_root: Path | str, search: tuple[Path | str, ...] = ()) -> ModelLocation:
    """A local folder (relative to the workspace, or first to one of the `search` folders), or a Hugging Face
    repo id looked up in the cache."""
    if not isinstance(value, str) or not value.strip():
        raise ModelNotFound("model is empty; give a local model folder or a Hugging Face repo id")
    given = Path(value).expanduser()
    path = given if given.is_absolute() else Path(workspace_root) / given
    for base in search:  # e.g. the run folder: mlx-lm records the path as given where it ran
        candidate = given if given.is_absolute() else Path(base) / given
        if candidate.is_dir():
            path = candidate
            break
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"model folder {path} has no config.json; point model at an mlx-lm model folder")
        return ModelLocation(value, path.resolve(), "local folder")
    if path.exists():
        raise ModelNotFound(f"model {path} is a file; point model at a model folder or a Hugging Face repo id")
    if not REPO_ID_RE.match(value):
        raise ModelNotFound(
            f"model {value!r} is neither a folder (looked for {path}) nor a Hugging Face repo id (owner/name)"
        )
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(value, "config.json")
    if isinstance(cached, str):
        return ModelLocation(value, Path(cached).parent, "Hugging Face cache")
    return ModelLocation(value, None, "not downloaded")


def model_to_load(value: str, workspace_root: Path | str, search: tuple[Path | str, ...] = ()) -> str:
    """What mlx-lm's load (and the export) takes for a `model:` value: the local folder as an absolute path,
    or the repo id (mlx-lm finds it in the Hugging Face cache or downloads it). Raises ModelNotFound."""
    location = locate_model(value, workspace_root, search)
    return str(location.folder) if location.kind == "local folder" else location.value


def workspace_model(workspace) -> str:
    """The workspace's base model, from lora_config.yaml's `model:` (read as mlx-lm reads it: YAML, so a
    `#` inside a quoted value is part of it), ready for mlx-lm's load. Raises ModelNotFound."""
    setting = workspace.model_setting()
    if not setting:
        raise ModelNotFound(
            f"{workspace.config_path}: no readable `model:`; name the base model there (Config screen)"
        )
    try:
        return model_to_load(setting, workspace.root)
    except ModelNotFound as exc:
        raise ModelNotFound(f"{workspace.config_path}: {exc}") from None


def model_folder(model: str) -> Path:
    """A model's folder on disk: a local folder itself, or its Hugging Face snapshot (downloaded if needed,
    with mlx-lm's file patterns). Raises ModelNotFound."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    return download_model(model)


def model_file(model: str, name: str) -> Path | None:
    """The file `name` of a model: in its folder, or in the Hugging Face cache for a repo id (never
    downloaded); None when it is not there."""
    path = Path(model).expanduser() / name
    if path.is_file():
        return path
    if not REPO_ID_RE.match(str(model)):
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(str(model), name)
    return Path(cached) if isinstance(cached, str) else None


def read_model_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"{path} cannot be read as JSON ({exc}); re-download or repair the model") from None


def is_phi3_model(model: str | Path | None) -> bool:
    """Phi-3 by its config.json model_type, or by name when the model is a repo id."""
    if not model:
        return False
    config = Path(model) / "config.json"
    if config.is_file():
        try:
            return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "phi3"
        except (OSError, ValueError):
            return False
    # A local folder is judged by its own name, a repo id ("microsoft/Phi-3-mini-4k-instruct") by all of it.
    name = (Path(model).name if Path(model).is_dir() else str(model)).lower()
    return "phi-3" in name or "phi3" in name


# -- is a local model folder safe and whole to load ---------------------------------------------
# A model folder is checked before mlx-lm loads it, so a folder holding only pickle weights is refused
# (unpickling runs code: it is never done) and a truncated safetensors file is named instead of failing
# deep inside MLX. Files only: nothing is imported or unpickled.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be read whole (truncated, not safetensors), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"{path} is {size} bytes: not a safetensors file (re-download or re-save it)"
            (length,) = struct.unpack("<Q", head)
            if length > size - 8 or length > 100_000_000:
                return (f"{path} is truncated: its header says {length} bytes but the file has {size} "
                        "(an incomplete download? re-download it)")
            header = json.loads(handle.read(length))
    except (OSError, ValueError) as exc:
        return f"{path} cannot be read as safetensors: {exc} (re-download or re-save it)"
    if not isinstance(header, dict):
        return f"{path} has no safetensors header (re-download or re-save it)"
    end = max((v.get("data_offsets", [0, 0])[1] for k, v in header.items()
               if k != "__metadata__" and isinstance(v, dict)), default=0)
    if 8 + length + end > size:
        return (f"{path} is truncated: its tensors need {8 + length + end} bytes but the file has {size} "
                "(an incomplete download? re-download it)")
    return None


def model_folder_problem(folder: Path | str) -> str | None:
    """What stops mlx-lm from loading this local model folder safely, or None when it looks loadable.

    Looks at files only (config.json, the weight files' headers): nothing is imported or unpickled.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} is not a folder; point model at an mlx-lm model folder or a Hugging Face repo id"
    config = folder / "config.json"
    if not config.is_file():
        return f"{config} is missing: not a Hugging Face model folder (download the model again)"
    try:
        values = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{config} is not valid JSON: {exc} (fix or re-download it)"
    if not isinstance(values, dict):
        return f"{config} is not a JSON object (re-download it)"
    model_type = values.get("model_type")
    if not model_type:
        return f"{config} has no model_type (re-download the model)"
    if not _mlx_lm_knows(str(model_type)):
        return (f"{config}: model_type {model_type!r} is not supported by the installed mlx-lm "
                "(use a Phi-3 model, or upgrade mlx-lm)")
    safetensors = sorted(folder.glob("*.safetensors"))
    if not safetensors:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            return (f"{folder} holds only pickle weights ({', '.join(pickles[:3])}): phi3tui never loads them "
                    "(unpickling can run any code); use the model's .safetensors release or convert it "
                    "with `mlx_lm convert`")
        return f"{folder} has no .safetensors weights (download the model again)"
    for path in safetensors:
        problem = safetensors_problem(path)
        if problem:
            return problem
    return None


def _mlx_lm_knows(model_type: str) -> bool:
    import importlib.util

    try:
        from mlx_lm.utils import MODEL_REMAPPING
    except ImportError:  # a future mlx-lm moved it: trust the loader to say
        return True
    name = MODEL_REMAPPING.get(model_type, model_type).replace("-", "_")
    return importlib.util.find_spec(f"mlx_lm.models.{name}") is not None



@dataclass(frozen=True)
class ModelInfo:
    """What the Config screen shows about a model, from its config.json."""

    config: dict
    location: ModelLocation | None = None

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", "?"))

    @property
    def architecture(self) -> str:
        arch = self.config.get("architectures") or [self.model_type]
        return arch[0] if isinstance(arch, list) else str(arch)

    def setting(self, *keys):
        """The first of `keys` set in config.json (or in its text_config, for multimodal models)."""
        for source in (self.config, self.config.get("text_config") or {}):
            for k in keys:
                if k in source:
                    return source[k]
        return None

    @property
    def num_blocks(self) -> int | None:
        return self.setting("num_hidden_layers", "n_layer", "num_layers")

    @property
    def hidden_size(self) -> int | None:
        return self.setting("hidden_size", "n_embd", "d_model")

    @property
    def vocab_size(self) -> int | None:
        return self.setting("vocab_size")

    @property
    def attention_heads(self) -> int | None:
        return self.setting("num_attention_heads", "n_head")

    @property
    def kv_heads(self) -> int | None:
        return self.setting("num_key_value_heads") or self.attention_heads

    @property
    def intermediate_size(self) -> int | None:
        return self.setting("intermediate_size", "ff_intermediate_size")

    @property
    def context(self) -> int | None:
        return self.setting("max_position_embeddings")

    @property
    def rope_kind(self) -> str:
        scaling = self.setting("rope_scaling")
        kind = scaling.get("type") or scaling.get("rope_type") if isinstance(scaling, dict) else None
        return {"su": "longrope"}.get(kind, kind) or "plain"

    @property
    def experts(self) -> int | None:
        return self.setting("num_local_experts", "num_experts")

    @property
    def precision(self) -> str:
        q = self.quantization
        return f"{q.get('bits', '?')}-bit (group {q.get('group_size', '?')})" if q else self.dtype

    @property
    def quantization(self) -> dict | None:
        q = self.config.get("quantization") or self.config.get("quantization_config")
        return q if isinstance(q, dict) else None

    @property
    def dtype(self) -> str:
        return str(self.setting("torch_dtype", "dtype") or "float16")

    def summary(self) -> str:
        return (
            f"{self.architecture} · {self.num_blocks} blocks · hidden {self.hidden_size} · "
            f"vocab {self.vocab_size} · {self.precision}"
        )


# -- the Phi models known before any download ---------------------------------------------------
KNOWN_MODELS_FILE = Path(__file__).with_name("known_models.json")


@dataclass(frozen=True)
class KnownModel:
    """A Phi repo from phi3tui's table: its config.json values that decide the structure, offline."""

    repo: str
    config: dict  # config.json as published (plus `quantization` for an mlx-community build)
    tokenizer: str  # "SentencePiece BPE" | "byte-level BPE" ...
    base: str  # the microsoft repo it is (or was converted from)

    @property
    def name(self) -> str:
        return self.repo.split("/", 1)[1]

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.config)

    def structure_config(self) -> dict:
        """config.json good enough to build the structure: the LongRoPE factor lists (no shape depends on them)
        filled with 1.0 at the length mlx-lm checks."""
        config = dict(self.config)
        scaling = config.get("rope_scaling")
        if isinstance(scaling, dict) and "long_factor" not in scaling:
            head_dim = config["hidden_size"] // config["num_attention_heads"]
            half = int(head_dim * config.get("partial_rotary_factor", 1.0)) // 2
            config["rope_scaling"] = dict(scaling, long_factor=[1.0] * half, short_factor=[1.0] * half,
                                          long_mscale=1.0, short_mscale=1.0)
        return config

    def size_on_disk(self) -> int:
        """Its safetensors' size, from the structure: packed quantized weights plus scales, the rest bf16."""
        return _known_size(self.repo)

    def facts(self) -> str:
        info = self.info
        experts = f" · {info.experts} experts ({info.setting('num_experts_per_tok')} per token)" if info.experts else ""
        return (f"{info.model_type} · {info.num_blocks} blocks · hidden {info.hidden_size} · heads "
                f"{info.attention_heads}/{info.kv_heads} KV · ctx {info.context // 1024}k{experts} · {self.tokenizer}"
                f" · {info.precision} · {human_bytes(self.size_on_disk())}")


def known_models() -> list[KnownModel]:
    """Every known repo: each microsoft base, then its mlx-community builds."""
    return list(_known_table())


def known_model(value: str | None) -> KnownModel | None:
    """The table's entry for a repo id (any letter case), or None."""
    wanted = str(value or "").strip().lower()
    return next((m for m in _known_table() if m.repo.lower() == wanted), None)


_KNOWN: list[KnownModel] | None = None
_KNOWN_SIZES: dict[str, int] = {}


def _known_table() -> list[KnownModel]:
    global _KNOWN
    if _KNOWN is None:
        table = json.loads(KNOWN_MODELS_FILE.read_text(encoding="utf-8"))
        found = []
        for entry in table["models"]:
            found.append(KnownModel(entry["repo"], entry["config"], entry["tokenizer"], entry["repo"]))
            for repo, bits in entry["builds"].items():
                config = dict(entry["config"], quantization={"group_size": 64, "bits": bits})
                found.append(KnownModel(repo, config, entry["tokenizer"], entry["repo"]))
        _KNOWN = found
    return _KNOWN


def _known_size(repo: str) -> int:
    if repo not in _KNOWN_SIZES:
        # Blocks are alike: one- and two-block models give the rest and a block (a whole MoE builds slowly).
        config = known_model(repo).structure_config()
        one, two = (weight_bytes(dict(config, num_hidden_layers=n)) for n in (1, 2))
        _KNOWN_SIZES[repo] = one + (config["num_hidden_layers"] - 1) * (two - one)
    return _KNOWN_SIZES[repo]


_MODULES: dict[str, tuple[list[str], list[str]]] = {}


def known_model_modules(model: KnownModel) -> tuple[list[str], list[str]]:
    """(modules inside a block, modules outside the blocks) LoRA can adapt in this architecture; the names
    depend on the architecture alone, so a one-block model of it is built."""
    key = json.dumps({k: v for k, v in model.config.items() if k != "quantization"}, sort_keys=True)
    if key not in _MODULES:
        with _cpu_stream():
            structure = _build_structure(dict(model.structure_config(), num_hidden_layers=1))
            _MODULES[key] = (adaptable_modules(structure), top_level_modules(structure))
    return _MODULES[key]


def unsuited_reasons(model: KnownModel, num_layers, max_seq_length, lora_keys) -> list[str]:
    """Why settings (num_layers, max_seq_length, lora_parameters.keys) would not work on a known model; []
    when they would."""
    info = model.info
    reasons = []
    if isinstance(num_layers, int) and not isinstance(num_layers, bool) and num_layers > info.num_blocks:
        reasons.append(f"num_layers {num_layers} > its {info.num_blocks} blocks")
    if isinstance(max_seq_length, int) and not isinstance(max_seq_length, bool) and max_seq_length > info.context:
        reasons.append(f"max_seq_length {max_seq_length} > its context {info.context}")
    if isinstance(lora_keys, list):
        block, top = known_model_modules(model)
        missing = [k for k in lora_keys if isinstance(k, str) and k not in block and k not in top]
        if missing:
            reasons.append(f"no {', '.join(missing)} in its {info.model_type} blocks")
    return reasons


def release_thread_streams() -> None:
    """Call at the end of a worker thread that used MLX: MLX requires its thread's streams to be cleared
    before the thread (and later the interpreter) ends, or the process may abort at exit with
    "terminate called without an active exception" (mx.clear_streams; ml-explore/mlx#3126)."""
    import sys

    if "mlx.core" in sys.modules:
        sys.modules["mlx.core"].clear_streams()


def _cpu_stream():
    """Build structures on the CPU stream: nothing is evaluated, and on Metal a worker thread has no GPU
    stream of its own (see reference/mlx-lm.md)."""
    import mlx.core as mx

    return mx.stream(mx.cpu)


def build_structure(config: dict):
    """The mlx-lm model for this config.json, its weights unallocated (never evaluated), quantized as the
    config says. Raises ModelNotFound when mlx-lm does not support the architecture."""
    with _cpu_stream():
        return _build_structure(config)


def _build_structure(config: dict):
    import mlx.nn as nn

    from phi3tui.core.mlx_lm_private import model_classes

    if config.get("model_file"):
        raise ModelNotFound("this model needs its own code (model_file); it cannot be checked without running it")
    try:
        model_class, args_class = model_classes(config)
        model = model_class(args_class.from_dict(config))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelNotFound(f"mlx-lm cannot build model_type {config.get('model_type')!r}: {exc}") from None
    q = config.get("quantization")
    if isinstance(q, dict) and "bits" in q:
        group = q.get("group_size", 64)

        def predicate(path, module):
            if path in q:  # per-layer settings, as mlx-lm writes them
                return q[path]
            weight = getattr(module, "weight", None)
            return hasattr(module, "to_quantized") and weight is not None and weight.shape[-1] % group == 0

        nn.quantize(model, group_size=group, bits=q["bits"], mode=q.get("mode", "affine"), class_predicate=predicate)
    return model


def adaptable_modules(model) -> list[str]:
    """Module paths inside a block that LoRA can wrap (the names `lora_parameters.keys` must use)."""
    import mlx.nn as nn
    from mlx_lm.models.switch_layers import QuantizedSwitchLinear, SwitchLinear

    kinds = (nn.Linear, nn.QuantizedLinear, SwitchLinear, QuantizedSwitchLinear, nn.Embedding, nn.QuantizedEmbedding)
    names: dict[str, None] = {}
    for block in model.layers:
        for name, module in block.named_modules():
            if name and (hasattr(module, "to_lora") or isinstance(module, kinds)):
                names[name] = None
    return sorted(names)


def top_level_modules(model) -> list[str]:
    """Adaptable modules outside the blocks (mlx-lm also matches keys such as lm_head there)."""
    import mlx.nn as nn

    return sorted(
        name for name, m in model.named_modules()
        if name and not name.startswith("layers.") and not name.startswith("model.layers.")
        and isinstance(m, (nn.Linear, nn.QuantizedLinear, nn.Embedding, nn.QuantizedEmbedding))
    )


@dataclass(frozen=True)
class LoraPlan:
    trainable: int
    total: int
    adapted: tuple[str, ...]  # full module paths that became LoRA layers
    blocks: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def summary(self) -> str:
        # The same figures, formatted as mlx-lm prints them ("Trainable parameters: X% (aM/bM)").
        return f"{self.percent:.3f}% ({self.trainable / 1e6:.3f}M/{self.total / 1e6:.3f}M)"


def plan_lora(config: dict, num_layers: int, lora_parameters: dict | None, fine_tune_type: str = "lora") -> LoraPlan:
    """What training would adapt: mlx-lm's own LoRA conversion applied to the unallocated structure."""
    with _cpu_stream():
        model = _build_structure(config)
        model.freeze()
        return _plan(model, num_layers, lora_parameters, fine_tune_type)


def _plan(model, num_layers: int, lora_parameters: dict | None, fine_tune_type: str) -> LoraPlan:
    from mlx.utils import tree_flatten

    from phi3tui.core.mlx_lm_private import load_tuner

    load_tuner()
    from mlx_lm.tuner.dora import DoRAEmbedding, DoRALinear
    from mlx_lm.tuner.lora import LoRAEmbedding, LoRALinear, LoRASwitchLinear
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import get_total_parameters

    blocks = len(model.layers)
    if fine_tune_type == "full":
        for block in model.layers[-max(num_layers, 0):]:
            block.unfreeze()
        adapted: tuple[str, ...] = ()
    else:
        linear_to_lora_layers(model, num_layers, dict(lora_parameters or {}), use_dora=fine_tune_type == "dora")
        kinds = (LoRALinear, LoRASwitchLinear, LoRAEmbedding, DoRALinear, DoRAEmbedding)
        adapted = tuple(n for n, m in model.named_modules() if isinstance(m, kinds))
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    return LoraPlan(trainable, get_total_parameters(model), adapted, blocks)


def weight_bytes(config: dict) -> int:
    """Bytes of the weights as loaded: quantized layers packed, the rest at the config's dtype."""
    from mlx.utils import tree_flatten

    model = build_structure(config)
    info = ModelInfo(config)
    per = BYTES_PER_DTYPE.get(info.dtype, 2)
    total = 0
    for name, array in tree_flatten(model.parameters()):
        if str(array.dtype).endswith("uint32"):
            total += array.size * 4  # packed quantized weights
        else:
            total += array.size * per
    return total


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    lora: int  # adapter weights + their gradients
    optimizer: int
    activations: int  # with the config's grad_checkpoint setting
    activations_other: int  # with the opposite setting
    grad_checkpoint: bool
    machine: int  # this machine's memory

    @property
    def total(self) -> int:
        return self.weights + self.lora + self.optimizer + self.activations

    @property
    def total_other(self) -> int:
        return self.weights + self.lora + self.optimizer + self.activations_other

    def summary(self) -> str:
        other = "without" if self.grad_checkpoint else "with"
        return (
            f"~{human_bytes(self.total)} of {human_bytes(self.machine)} (weights {human_bytes(self.weights)}, "
            f"LoRA+grads {human_bytes(self.lora)}, optimizer {human_bytes(self.optimizer)}, activations "
            f"{human_bytes(self.activations)}); {other} grad_checkpoint ~{human_bytes(self.total_other)}"
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "muon": 1, "sgd": 0, "adafactor": 1}


def estimate_memory(config: dict, plan: LoraPlan, values: dict, machine_bytes: int | None = None) -> MemoryEstimate:
    """A rough peak: weights, trainable parameters (+ gradients, float32), optimizer state and activations.

    Activations follow Korthikanti et al. (2022): per block and token about (34·h + 5·heads·seq) bytes at
    16 bits without checkpointing; with grad_checkpoint each block keeps only its input (2·h bytes) and
    one block's full activations live at a time. Plus the logits (batch·seq·vocab, float32, about 3 copies).
    """
    if machine_bytes is None:
        import psutil

        machine_bytes = psutil.virtual_memory().total
    info = ModelInfo(config)
    h = info.hidden_size or 0
    heads = info.setting("num_attention_heads", "n_head") or 1
    vocab = info.vocab_size or 0
    batch = int(values.get("batch_size") or 1)
    seq = int(values.get("max_seq_length") or 2048)
    tokens = batch * seq
    per_block = tokens * (34 * h + 5 * heads * seq)
    trained = plan.blocks if values.get("num_layers", 16) in (-1, 0) else min(plan.blocks, int(values.get("num_layers", 16)))
    logits = tokens * vocab * 4 * 3
    # Blocks below the trained ones need no saved activations (nothing upstream is trained).
    full = trained * per_block + logits
    checkpointed = trained * tokens * h * 2 + per_block + logits
    optimizer_name = str(values.get("optimizer") or "adam").lower()
    lora = plan.trainable * 4 * 2
    optimizer = plan.trainable * 4 * OPTIMIZER_STATES.get(optimizer_name, 2)
    ckpt = bool(values.get("grad_checkpoint"))
    return MemoryEstimate(
        weight_bytes(config), lora, optimizer,
        checkpointed if ckpt else full, full if ckpt else checkpointed, ckpt, machine_bytes,
    )


# -- the local Hugging Face cache and downloads -------------------------------------------------
@dataclass(frozen=True)
class CachedModel:
    repo_id: str
    size_on_disk: int
    folder: Path  # the newest snapshot folder
    has_config: bool


def cached_models(cache_dir: Path | str | None = None) -> list[CachedModel]:
    """Model repos in the local Hugging Face cache (HF_HUB_CACHE), newest first; [] when there is none."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified)
        has_config = any(f.file_name == "config.json" for f in newest.files)
        found.append((repo.last_modified, CachedModel(repo.repo_id, repo.size_on_disk, newest.snapshot_path, has_config)))
    return [m for _, m in sorted(found, key=lambda x: x[0], reverse=True)]


def model_choices(workspace_root: Path) -> tuple[list[tuple[str, str]], str | None]:
    """(label, value for the config's `model`) for each model folder in the workspace, then each model in
    the Hugging Face cache, then each known Phi model not downloaded (its facts on a second line); and why
    the cache could not be read, if it could not."""
    choices = []
    for child in sorted(Path(workspace_root).iterdir()):
        if child.is_dir() and (child / "config.json").is_file():
            choices.append((f"{child.name}  (folder in this workspace)", child.name))
    problem = None
    try:
        cached = cached_models()
    except OSError as exc:
        cached, problem = [], f"cannot read the Hugging Face cache: {exc}"
    for m in cached:
        known = known_model(m.repo_id)
        facts = f"\n    {known.facts()}" if known else ""
        choices.append((f"{m.repo_id}  ({human_bytes(m.size_on_disk)} in the Hugging Face cache){facts}", m.repo_id))
    here = {m.repo_id.lower() for m in cached}
    for known in known_models():
        if known.repo.lower() not in here:
            choices.append((f"{known.repo}  (not downloaded)\n    {known.facts()}", known.repo))
    return choices, problem


class DownloadCancelled(Exception):
    pass


def download_model(
    repo_id: str,
    on_progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    config_only: bool = False,
) -> Path:
    """Download a model the way mlx-lm would (its file patterns) into the Hugging Face cache.

    Reports (bytes done, bytes total) through on_progress; setting `cancel` stops it with
    DownloadCancelled. Offline (HF_HUB_OFFLINE) or unreachable, it raises ModelNotFound with the reason.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import tqdm as hf_tqdm

    if not REPO_ID_RE.match(repo_id):
        raise ModelNotFound(f"{repo_id!r} is not a Hugging Face repo id (owner/name)")
    cancel = cancel or threading.Event()
    bars: list = []

    def report() -> None:
        # Bytes written when huggingface_hub reports them (its aggregated bar; its transfer bar counts the
        # same bytes again), else files fetched.
        byte_bars = [b for b in bars if b.p_unit == "B" and not b.p_desc.startswith("Downloading bytes")]
        chosen = [b for b in byte_bars if getattr(b, "total", None)] or [b for b in bars if b.p_unit != "B"]
        if on_progress and chosen:
            on_progress(int(sum(b.p_done for b in chosen)), int(sum(getattr(b, "total", 0) or 0 for b in chosen)))

    class Progress(hf_tqdm):
        """huggingface_hub's progress bar kept off the terminal (the app owns it), counting for on_progress
        and checking `cancel` at every step. A disabled tqdm counts nothing itself, hence p_done."""

        def __init__(self, *args, **kwargs):
            self.p_unit = kwargs.get("unit", "it")
            self.p_desc = str(kwargs.get("desc") or "")
            self.p_done = kwargs.get("initial", 0) or 0
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            bars.append(self)

        def update(self, n=1):
            if cancel.is_set():
                raise DownloadCancelled(f"download of {repo_id} cancelled")
            self.p_done += n or 0
            report()
            return super().update(n)

    if config_only:
        patterns = ["config.json"]
    else:
        from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

        patterns = list(DEFAULT_ALLOW_PATTERNS)
    try:
        folder = snapshot_download(repo_id, allow_patterns=patterns, tqdm_class=Progress)
    except DownloadCancelled:
        raise
    except Exception as exc:  # offline mode, no network, unknown repo, gated repo: all say why
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFound(f"cannot download {repo_id}: {reason}") from None
    if cancel.is_set():
        raise DownloadCancelled(f"download of {repo_id} cancelled")
    return Path(folder)
