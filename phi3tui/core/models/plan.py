"""A model's structure and what fine-tuning would train in it. The structure comes from config.json alone:
mlx arrays are lazy, so building an mlx-lm model without evaluating it allocates nothing (Phi-3-mini's 3.8 B
parameters build in milliseconds), and mlx-lm's own `linear_to_lora_layers` on it gives the exact trainable
parameter count a run would print. `apply_fine_tune` is the one recipe of lora/dora/full: the runner trains
with it, `plan_lora` counts with it."""

from __future__ import annotations

from dataclasses import dataclass

from phi3tui.core.mlx_thread import mlx_thread
from phi3tui.core.models.locate import ModelNotFound

def build_structure(config: dict):
    """The mlx-lm model for this config.json, its weights unallocated (never evaluated), quantized as the
    config says. Raises ModelNotFound when mlx-lm does not support the architecture."""
    with mlx_thread():
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
    with mlx_thread():
        model = _build_structure(config)
        return _plan(model, num_layers, lora_parameters, fine_tune_type)


FINE_TUNE_TYPES = ("lora", "dora", "full")


def adapter_layer_kinds() -> tuple:
    """mlx-lm's adapter layer classes (LoRA and DoRA, linear, switch and embedding)."""
    with mlx_thread(tuner=True):
        from mlx_lm.tuner.dora import DoRAEmbedding, DoRALinear
        from mlx_lm.tuner.lora import LoRAEmbedding, LoRALinear, LoRASwitchLinear

    return (LoRALinear, LoRASwitchLinear, LoRAEmbedding, DoRALinear, DoRAEmbedding)


def apply_fine_tune(model, fine_tune_type: str, num_layers: int, lora_parameters: dict | None) -> tuple[str, ...]:
    """The one recipe of a fine-tune type, as `mlx_lm lora` applies it: the model frozen, then `full` unfreezes
    its last `num_layers` blocks, `lora`/`dora` wrap their layers in adapters (mlx-lm's linear_to_lora_layers).
    Returns the module paths that became adapter layers (none for full). Raises ValueError for an unknown
    type or more layers than the model has."""
    if fine_tune_type not in FINE_TUNE_TYPES:
        raise ValueError(f"fine_tune_type {fine_tune_type!r}: use lora, dora or full")
    if num_layers > len(model.layers):
        raise ValueError(
            f"num_layers is {num_layers} but the model has only {len(model.layers)} layers; "
            "lower num_layers (-1 means all)"
        )
    model.freeze()
    if fine_tune_type == "full":
        for block in model.layers[-max(num_layers, 0):]:
            block.unfreeze()
        return ()
    with mlx_thread(tuner=True):
        from mlx_lm.tuner.utils import linear_to_lora_layers

    linear_to_lora_layers(model, num_layers, dict(lora_parameters or {}), use_dora=fine_tune_type == "dora")
    kinds = adapter_layer_kinds()
    return tuple(n for n, m in model.named_modules() if isinstance(m, kinds))


def _plan(model, num_layers: int, lora_parameters: dict | None, fine_tune_type: str) -> LoraPlan:
    from mlx.utils import tree_flatten
    from mlx_lm.utils import get_total_parameters

    blocks = len(model.layers)
    adapted = apply_fine_tune(model, fine_tune_type, num_layers, lora_parameters)
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    return LoraPlan(trainable, get_total_parameters(model), adapted, blocks)
