"""The Phi models known before any download (known_models.json beside this module): their structure-deciding
config.json values, offline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from phi3tui.core.mlx_thread import mlx_thread
from phi3tui.core.models.info import ModelInfo
from phi3tui.core.models.memory import human_bytes, weight_bytes
from phi3tui.core.models.plan import adaptable_modules, build_structure, top_level_modules

KNOWN_MODELS_FILE = Path(__file__).with_name("known_models.json")  # packaged with phi3tui (inside the package)


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
        with mlx_thread():
            structure = build_structure(dict(model.structure_config(), num_hidden_layers=1))
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
