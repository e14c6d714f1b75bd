"""What memory a model and a training run need (a rough peak), and the optimizer table."""

from __future__ import annotations

from dataclasses import dataclass

from phi3tui.core.models.info import ModelInfo
from phi3tui.core.models.plan import LoraPlan, build_structure

BYTES_PER_DTYPE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


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


# The optimizers a config may name: its mlx.optimizers class, and how many state tensors (each the size of the
# parameter) it keeps per trained parameter. The runner builds from it, the memory estimate counts from it.
OPTIMIZERS: dict[str, tuple[str, int]] = {
    "adam": ("Adam", 2),
    "adamw": ("AdamW", 2),
    "muon": ("Muon", 1),
    "sgd": ("SGD", 0),
    "adafactor": ("Adafactor", 1),
}


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
    optimizer = plan.trainable * 4 * OPTIMIZERS.get(optimizer_name, OPTIMIZERS["adam"])[1]
    ckpt = bool(values.get("grad_checkpoint"))
    return MemoryEstimate(
        weight_bytes(config), lora, optimizer,
        checkpointed if ckpt else full, full if ckpt else checkpointed, ckpt, machine_bytes,
    )
