"""Training modes: what each `train_mode` of a config provides to the runner, and the one table that picks it.

The runner (trainer.py) drives mlx-lm's `train()` the same way for every mode; a mode only supplies its data, its
batches, its loss and what it measures. Adding a mode is one new module with a class that has what `TrainTask`
lists, plus one line in the table of modes, core/train_modes.py TRAIN_MODES (its `train_mode` value → the class's
import path), which the Config screen's choices and the config check read too. The Train screen plots the series
the run's task names (`plotted_series`), so a new mode's metrics show without touching the store or the screens.

Light at import: mlx and mlx_lm are imported inside the methods (only the runner process calls them).
"""

from __future__ import annotations

import importlib
from typing import ClassVar, Protocol

from phi3tui.core.mlx_thread import mlx_thread
from phi3tui.core.train_modes import TRAIN_MODES


class TrainTask(Protocol):
    """What a training mode provides. Built once per run, after the model and tokenizer are loaded."""

    # The metric series the Train screen plots instead of the loss (key w): keys of its train/val records → their
    # legend labels; and what the plot's title calls them.
    plotted: ClassVar[dict[str, str]]
    plotted_title: ClassVar[str]
    perplexity: ClassVar[bool]  # whether a loss of this mode has a perplexity (the test record's ppl)
    datasets: tuple  # (train, valid, test), each sized and indexable as mlx-lm's CacheDataset wants

    def __init__(self, args, tokenizer) -> None:
        """Load the datasets from the run's arguments (build_args: the config merged with mlx-lm's defaults)."""

    def prepare(self, model, fine_tune_type: str, max_seq_length: int, adapter_file=None) -> None:
        """Once the model is set up (adapters added, a starting adapter loaded), before a resume restores."""

    def iterate_batches(self, dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
        """mlx-lm's iterate_batches signature: batches drawn with NumPy's global generator (a resume replays it)."""

    def complete(self, model, batch):
        """A batch as the trainer gets it (e.g. with reference scores), just before its training step."""

    def loss(self, model, *batch):
        """mlx-lm's loss signature: (mean loss, token count); compiled into the training step."""

    def train_metrics(self, model) -> dict:
        """The extra figures each train report records (floats by name); {} for none."""

    def evaluate(self, model, dataset, batch_size, num_batches, max_seq_length) -> tuple[float, dict]:
        """(mean loss, extra figures by name) over `dataset`: validation and test."""


class SftTask:
    """Supervised fine-tuning, exactly as `mlx_lm lora` trains: its datasets, batches, loss and evaluate.
    With `assistant_turns: all` (core/data/turns.py) the same records train on every assistant turn: each item
    carries a per-token loss mask, batched by `iterate_masked_batches` and scored by `masked_loss`."""

    plotted: ClassVar[dict[str, str]] = {}
    plotted_title: ClassVar[str] = ""
    perplexity: ClassVar[bool] = True

    def __init__(self, args, tokenizer):
        with mlx_thread(tuner=True):
            from mlx_lm.tuner.datasets import load_dataset

        self.datasets = load_dataset(args, tokenizer)
        self.all_turns = getattr(args, "assistant_turns", None) == "all"
        if self.all_turns:
            from phi3tui.core.data import DataSettings

            settings = DataSettings.from_config(vars(args))
            self.datasets = tuple(TurnsDataset(d, tokenizer, settings) for d in self.datasets)

    def prepare(self, model, fine_tune_type: str, max_seq_length: int, adapter_file=None) -> None:
        return None

    def iterate_batches(self, dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
        if self.all_turns:
            return iterate_masked_batches(dataset, batch_size, max_seq_length, loop=loop, seed=seed,
                                          comm_group=comm_group)
        from mlx_lm.tuner.trainer import iterate_batches

        return iterate_batches(dataset, batch_size, max_seq_length, loop=loop, seed=seed, comm_group=comm_group)

    def complete(self, model, batch):
        return batch

    def loss(self, model, *batch):
        if self.all_turns:
            return masked_loss(model, *batch)
        from mlx_lm.tuner.trainer import default_loss

        return default_loss(model, *batch)

    def train_metrics(self, model) -> dict:
        return {}

    def evaluate(self, model, dataset, batch_size, num_batches, max_seq_length) -> tuple[float, dict]:
        from mlx_lm.tuner.trainer import evaluate

        if self.all_turns:
            loss = evaluate(model=model, dataset=dataset, batch_size=batch_size, num_batches=num_batches,
                            max_seq_length=max_seq_length, loss=masked_loss, iterate_batches=iterate_masked_batches)
        else:
            loss = evaluate(model=model, dataset=dataset, batch_size=batch_size, num_batches=num_batches,
                            max_seq_length=max_seq_length)
        return loss, {}


class TurnsDataset:
    """One split of mlx-lm's datasets (its records, in its order) processed with `assistant_turns: all`: each
    item becomes (token ids, per-token loss mask), the mask core/data/render.py shows. Text records keep
    mlx-lm's tokens and train on every token (they have no turns). mlx-lm's CacheDataset calls `process`."""

    def __init__(self, records, tokenizer, settings):
        self.records = records  # mlx-lm's dataset: records[i] is the raw record, as its CacheDataset reads it
        self.tokenizer = tokenizer
        self.settings = settings

    def __getitem__(self, idx: int):
        return self.records[idx]

    def __len__(self) -> int:
        return len(self.records)

    def process(self, record):
        from phi3tui.core.data import loss_flags, processor

        fmt = self.settings.detect_format(record)
        tokens, offset_or_mask = processor(fmt, self.tokenizer, self.settings)(record)
        return list(tokens), loss_flags(len(tokens), offset_or_mask, len(tokens))


def shuffled_batches(dataset, batch_size, length, loop=False, seed=None, comm_group=None):
    """mlx-lm's iterate_batches order for any dataset: its indices sorted by `length` (a key function), cut into
    batches of batch_size, each rank taking its share of every batch, the batches shuffled with NumPy's global
    generator on every pass (so the runner's resume replays it). Yields each batch's items, as a list."""
    import numpy as np

    if len(dataset) < batch_size:
        raise ValueError(f"Dataset must have at least batch_size={batch_size} examples but only has {len(dataset)}.")
    offset, step = (comm_group.rank(), comm_group.size()) if comm_group is not None else (0, 1)
    if batch_size % step != 0:
        raise ValueError("The batch size must be divisible by the number of workers")
    idx = sorted(range(len(dataset)), key=length)
    batch_idx = [idx[i + offset : i + offset + batch_size : step] for i in range(0, len(idx) - batch_size + 1, batch_size)]
    if seed is not None:
        np.random.seed(seed)
    while True:
        for i in np.random.permutation(len(batch_idx)):
            yield [dataset[j] for j in batch_idx[i]]
        if not loop:
            break


def iterate_masked_batches(dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
    """mlx-lm's iterate_batches for (tokens, per-token mask) items: the same order (sorted as mlx-lm sorts a
    CacheDataset, cut into batches, shuffled with NumPy's global generator so a resume replays it), the same
    padding, each rank taking its share. Yields (tokens [B, L] int32, loss mask [B, L] bool)."""
    import mlx.core as mx
    import numpy as np

    from phi3tui.core.mlx_lm_private import sort_key_of

    for batch in shuffled_batches(dataset, batch_size, sort_key_of(dataset), loop, seed, comm_group):
        longest = max(len(tokens) for tokens, _ in batch)
        pad_to = 32  # mlx-lm's padding: one plus the next multiple of 32, at most max_seq_length
        width = min(1 + pad_to * ((longest + pad_to - 1) // pad_to), max_seq_length)
        tokens = np.zeros((len(batch), width), np.int32)
        mask = np.zeros((len(batch), width), bool)
        for r, (ids, flags) in enumerate(batch):
            n = min(len(ids), width)
            tokens[r, :n] = ids[:n]
            mask[r, :n] = flags[:n]
        yield mx.array(tokens), mx.array(mask)


def masked_loss(model, tokens, mask):
    """mlx-lm's default_loss with a per-token mask: the mean cross-entropy over the targets the mask keeps
    (token i is predicted from the tokens before it), and their count."""
    import mlx.core as mx
    import mlx.nn as nn

    logits = model(tokens[:, :-1])
    kept = mask[:, 1:]
    ntoks = kept.sum()
    ce = nn.losses.cross_entropy(logits, tokens[:, 1:]) * kept
    return ce.astype(mx.float32).sum() / mx.maximum(ntoks, 1), ntoks


def task_class(train_mode: str | None) -> type:
    """The task of a config's train_mode (unset: sft), imported from where TRAIN_MODES says. Raises ValueError
    naming the mode and the known ones."""
    mode = train_mode or "sft"
    try:
        module, _, name = TRAIN_MODES[mode].partition(":")
    except KeyError:
        raise ValueError(f"train_mode {mode!r} names no training mode; use one of {', '.join(TRAIN_MODES)}") from None
    return getattr(importlib.import_module(module), name)


def plotted_series(train_mode: str | None) -> tuple[dict[str, str], str]:
    """(record key → legend label, the plot title's name for them) of the series the Train screen plots for a
    run of this train_mode: ({}, "") for none, or for a mode this process does not know."""
    try:
        task = task_class(train_mode)
    except ValueError:
        return {}, ""
    return dict(task.plotted), task.plotted_title


def plotted_metrics(train_mode: str | None) -> tuple[str, ...]:
    """The record keys of the series the Train screen plots for a run of this train_mode ((): none, or unknown)."""
    return tuple(plotted_series(train_mode)[0])
