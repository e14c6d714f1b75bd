"""What a model is, from its config.json alone (architecture, sizes, precision)."""

from __future__ import annotations

from dataclasses import dataclass

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
