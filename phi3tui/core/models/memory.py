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
    activations: int  # with the config's grad_checkpoint setting, at `sequence` tokens per row
    activations_other: int  # with the opposite setting
    grad_checkpoint: bool
    machine: int  # what MLX can use on this machine
    in_use: int = 0  # memory already taken by something else (a loaded chat model, another run)
    sequence: int = 0  # tokens per row the activations are sized for
    max_sequence: int = 0  # tokens per row a record as long as max_seq_length would make
    activations_max: int = 0  # activations at max_sequence (the config's grad_checkpoint setting)
    from_data: bool = False  # sequence comes from the data's longest batched record

    @property
    def total(self) -> int:
        return self.weights + self.lora + self.optimizer + self.activations + self.in_use

    @property
    def total_other(self) -> int:
        return self.weights + self.lora + self.optimizer + self.activations_other + self.in_use

    @property
    def total_max(self) -> int:
        """The peak should a record as long as max_seq_length come (data added later, another data set)."""
        return self.weights + self.lora + self.optimizer + max(self.activations_max, self.activations) + self.in_use

    def summary(self) -> str:
        other = "without" if self.grad_checkpoint else "with"
        rows = (f"rows of {self.sequence} tokens, the data's longest batch" if self.from_data
                else f"rows of {self.sequence} tokens")
        used = f", already in use {human_bytes(self.in_use)}" if self.in_use else ""
        return (
            f"~{human_bytes(self.total)} of {human_bytes(self.machine)} (weights {human_bytes(self.weights)}, "
            f"LoRA+grads {human_bytes(self.lora)}, optimizer {human_bytes(self.optimizer)}, activations "
            f"{human_bytes(self.activations)} for {rows}{used}); {other} grad_checkpoint "
            f"~{human_bytes(self.total_other)}"
        )


def human_bytes(n: float) -> str:
    """Decimal units (1 GB = 10⁹ bytes), as PHI3TUI_WORKING_SET_GB, MemoryBudget.gb and bench/ count: a working set
    faked as 10.7 reads back as 10.7 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
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


# Measured with MLX's peak memory in LoRA runs (bench/memory_estimate.py, a least-squares fit of four configs):
# bytes per token.
ACTIVATION_HIDDEN = 62  # per trained block, times the hidden size, at 16 bits
ACTIVATION_INTERMEDIATE = 10  # per trained block, times the MLP's intermediate size, at 16 bits
ATTENTION_BYTES = 3.3  # per trained block, times heads x the row's length (the attention scores, float32)
LOGIT_BYTES = 4.2  # times the vocabulary and the weights' width in 16-bit units: the logits and their gradient
LOSS_BYTES = 4.2  # times the vocabulary: the loss's float32 copy of the logits
CHECKPOINT_LIVE_BLOCKS = 1.5  # with grad_checkpoint: blocks' worth of activations alive at once in the backward pass

PAD_TO = 32  # mlx_lm.tuner.trainer.iterate_batches pads each batch's rows to 1 + a multiple of this


def batch_sequence_length(longest: int, max_seq_length: int) -> int:
    """Tokens per row the model sees for a batch whose longest record has `longest` tokens, as mlx-lm batches:
    padded to one plus the next multiple of 32, capped at max_seq_length, and all but the last token fed in."""
    padded = min(1 + PAD_TO * -(-max(1, int(longest)) // PAD_TO), int(max_seq_length))
    return max(1, padded - 1)


def longest_batched(histogram: dict, batch_size: int) -> int:
    """The longest record mlx-lm will put in a batch, from a histogram (token count -> records): it sorts the
    records by length and makes full batches only, so the longest `records % batch_size` are never batched."""
    counts = {int(length): int(n) for length, n in histogram.items() if n > 0}
    records = sum(counts.values())
    if not records:
        return 0
    skip = records % batch_size if 0 < batch_size <= records else 0
    for length in sorted(counts, reverse=True):
        if counts[length] > skip:
            return length
        skip -= counts[length]
    return 0


def estimate_memory(config: dict, plan: LoraPlan, values: dict, machine_bytes: int | None = None,
                    longest_tokens: int | None = None, in_use: int = 0) -> MemoryEstimate:
    """A rough peak of MLX's memory: weights, trainable parameters (+ gradients, float32), optimizer state,
    activations, and `in_use` (memory something else holds already).

    Activations are sized for the rows mlx-lm will really batch: `longest_tokens` is the longest record it will
    put in a batch (longest_batched), padded as it pads (batch_sequence_length); None sizes them for
    max_seq_length. Per trained block and token they are ACTIVATION_HIDDEN·h + ACTIVATION_INTERMEDIATE·i bytes at
    16 bits plus the attention scores (ATTENTION_BYTES·heads·seq); with grad_checkpoint each block keeps its
    input (2·h bytes) and CHECKPOINT_LIVE_BLOCKS blocks' activations live at a time. The logits cost
    (LOGIT_BYTES·width + LOSS_BYTES)·vocab per token.
    Blocks below the trained ones keep nothing (nothing upstream is trained). The coefficients were measured
    with MLX's peak memory (bench/memory_estimate.py).
    """
    if machine_bytes is None:
        import psutil

        machine_bytes = psutil.virtual_memory().total
    info = ModelInfo(config)
    h = info.hidden_size or 0
    inter = info.setting("intermediate_size") or 4 * h
    heads = info.setting("num_attention_heads", "n_head") or 1
    vocab = info.vocab_size or 0
    width = BYTES_PER_DTYPE.get(info.dtype, 2) / 2
    batch = int(values.get("batch_size") or 1)
    max_seq = int(values.get("max_seq_length") or 2048)
    trained = plan.blocks if values.get("num_layers", 16) in (-1, 0) else min(plan.blocks, int(values.get("num_layers", 16)))

    def activations(seq: int) -> tuple[int, int]:
        """(without, with) grad_checkpoint, for rows of `seq` tokens."""
        tokens = batch * seq
        per_block = int(tokens * ((ACTIVATION_HIDDEN * h + ACTIVATION_INTERMEDIATE * inter) * width
                                  + ATTENTION_BYTES * heads * seq))
        logits = int(tokens * vocab * (LOGIT_BYTES * width + LOSS_BYTES))
        checkpointed = int(trained * tokens * h * 2 * width + CHECKPOINT_LIVE_BLOCKS * per_block)
        return trained * per_block + logits, checkpointed + logits

    max_sequence = batch_sequence_length(max_seq, max_seq)
    sequence = batch_sequence_length(longest_tokens, max_seq) if longest_tokens else max_sequence
    full, checkpointed = activations(sequence)
    full_max, checkpointed_max = activations(max_sequence)
    optimizer_name = str(values.get("optimizer") or "adam").lower()
    lora = plan.trainable * 4 * 2
    optimizer = plan.trainable * 4 * OPTIMIZERS.get(optimizer_name, OPTIMIZERS["adam"])[1]
    ckpt = bool(values.get("grad_checkpoint"))
    return MemoryEstimate(
        weight_bytes(config), lora, optimizer,
        checkpointed if ckpt else full, full if ckpt else checkpointed, ckpt, machine_bytes,
        in_use=int(in_use or 0), sequence=sequence, max_sequence=max_sequence,
        activations_max=checkpointed_max if ckpt else full_max, from_data=bool(longest_tokens),
    )

