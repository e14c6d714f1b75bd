"""Every use of mlx-lm's private parts, in one place (pyproject caps mlx-lm below the next minor release;
tests/test_private_apis.py pins what each one must do, so an upgrade that breaks one fails there first).

mlx-lm has no public way to do these: build a model's classes from a config.json without loading its
weights, list `mlx_lm lora`'s command-line options with their help and types, and import its tuner without
its reporting packages. And the runner leans on how `mlx_lm.tuner.trainer.train()` runs its loop (public
function, unwritten order): TRAIN_LOOP_CONTRACT below.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from contextlib import contextmanager

# What mlx_lm/tuner/callbacks.py imports as it loads (`try: import wandb` / `import swanlab`, kept as module
# globals its WandBCallback / SwanLabCallback use): config.checks.REPORTERS's modules.
REPORTER_MODULES = ("wandb", "swanlab")
_TUNER_LOCK = threading.Lock()


def model_classes(config: dict) -> tuple[type, type]:
    """(Model class, ModelArgs class) for a config.json, with mlx-lm's own model_type remapping.
    Raises ValueError when mlx-lm does not support the model_type."""
    from mlx_lm.utils import _get_classes

    return _get_classes(config)


def lora_parser_actions() -> list:
    """The argparse actions of `mlx_lm lora` (dest, help, type, choices, default), in its order.
    argparse has no public list of a parser's options; `_actions` is the one every tool reads."""
    return list(lora_module().build_parser()._actions)


def load_tuner() -> None:
    """Import mlx_lm.tuner (every import of mlx_lm.lora or mlx_lm.tuner.* runs it first) with its reporting
    packages left out. Importing wandb makes a temporary folder, so on a full disk it raises FileNotFoundError,
    which mlx-lm's `except ImportError` lets through: every command that reads the config schema, checks data,
    scores or fuses would stop with that traceback. It also costs every such process its import time. Only a
    run that reports needs them, and reporting_callbacks brings them in then."""
    with _TUNER_LOCK:
        if "mlx_lm.tuner.callbacks" in sys.modules:
            return
        hidden = [name for name in REPORTER_MODULES if name not in sys.modules]
        for name in hidden:
            sys.modules[name] = None  # `import wandb` raises ImportError: mlx-lm's own "not installed" path
        try:
            import mlx_lm.tuner.callbacks  # noqa: F401
        finally:
            for name in hidden:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]


def lora_module():
    """mlx_lm.lora (CONFIG_DEFAULTS, build_parser), imported without the reporting packages (load_tuner)."""
    load_tuner()
    import mlx_lm.lora

    return mlx_lm.lora


def reporting_callbacks(modules) -> dict:
    """mlx-lm's SUPPORT_CALLBACK (reporter name -> callback class), with the reporting packages named in
    `modules` imported into mlx_lm.tuner.callbacks, where its callbacks look them up (load_tuner left them
    out). One not installed stays None there, and its callback raises mlx-lm's own ImportError."""
    load_tuner()
    from mlx_lm.tuner import callbacks

    for name in modules:
        if getattr(callbacks, name, None) is None and importlib.util.find_spec(name) is not None:
            setattr(callbacks, name, importlib.import_module(name))
    return callbacks.SUPPORT_CALLBACK


# How the runner (core/runs/trainer.py) drives `mlx_lm.tuner.trainer.train()`: validation, stop requests,
# checkpoints and resume are injected through the `iterate_batches` generator it is given, which only works
# because train()'s loop behaves as follows (tests/test_private_apis.py::test_train_loop_contract pins each):
TRAIN_LOOP_CONTRACT = (
    # 1. The generator is called once, as iterate_batches(dataset=, batch_size=, max_seq_length=, loop=True,
    #    comm_group=) (no seed): the runner's Trainer.batches takes these keywords.
    "iterate_batches is called once with dataset, batch_size, max_seq_length, loop=True, comm_group",
    # 2. Batch i is pulled just before step i, after step i-1 and its train report (on_train_loss_report) are
    #    done: so when the generator resumes for batch i+1, iteration i is complete and its weights are final
    #    (Trainer.after_iteration checkpoints and stops there, Trainer.validate validates there).
    "batch i is pulled after step i-1 and its report, before step i",
    # 3. After the last iteration no batch is pulled (zip(range(1, iters + 1), batches) stops on the range): the
    #    runner checkpoints the last iteration itself, after train() returns.
    "no batch is pulled after the last iteration",
    # 4. A generator that returns early ends train() normally (the loop ends, adapter_file is saved): a stop.
    "a generator that returns ends train() without an error",
    # 5. val_dataset=None: train() never validates (never calls on_val_loss_report); validation is the runner's.
    "val_dataset None: no validation and no on_val_loss_report",
    # 6. Train reports come at it % steps_per_report == 0 and at the last iteration, numbered from 1 on every
    #    start, with the keys iteration, train_loss, learning_rate, iterations_per_second, tokens_per_second,
    #    trained_tokens, peak_memory (RunNumbering renumbers and merges them).
    "train reports every steps_per_report and at the end, with mlx-lm's keys",
    # 7. loss(model, *batch) -> (loss, token count): the batch as the generator yielded it (a task's tuple).
    "loss is called as loss(model, *batch)",
    # 8. steps_per_save above iters: train() saves no numbered checkpoint, only adapter_file at the end.
    "steps_per_save > iters: only adapter_file is saved, at the end",
)


def sort_key_of(dataset):
    """The key mlx-lm's iterate_batches sorts a dataset's indices by before cutting batches: for a CacheDataset
    its `itemlen` (in 0.32 the length of the raw record, not of its tokens), else the token count. The runner's
    masked batches (assistant_turns: all) sort the same way so they hold the records mlx-lm's would."""
    from mlx_lm.tuner.datasets import CacheDataset

    if isinstance(dataset, CacheDataset):
        return dataset.itemlen
    return lambda idx: len(dataset[idx][0])


@contextmanager
def run_numbered_train_log(first: int, total: int):
    """While open, train() prints its log (mlx_lm.cli_ui.TrainUI: a table of train reports and a progress bar)
    on the run's own numbering: the bar counts from `first` (a resume's checkpoint) to `total`, and the table
    gets no rows from train() (it numbers from 1 on every start and reports every gcd step after an off-grid
    resume); the runner adds them itself at the run's report points with TrainLog.row. Yields the TrainLog,
    whose `ui` is the TrainUI once train() made it (rank 0 prints; other ranks' rows are dropped by mlx-lm)."""
    import mlx_lm.tuner.trainer as trainer_module

    made = TrainLog()
    original = trainer_module.TrainUI

    class RunNumberedTrainUI(original):
        def __init__(self, total_iters: int, rank: int = 0):
            super().__init__(total, rank)
            self._progress.update(self._task, completed=first)
            made.ui = self

        def report_train(self, it, train_loss, tokens_sec, trained_tokens):
            pass  # rows come from TrainLog.row, numbered by the run

        def run_row(self, *figures) -> None:
            original.report_train(self, *figures)

    trainer_module.TrainUI = RunNumberedTrainUI
    try:
        yield made
    finally:
        trainer_module.TrainUI = original


class TrainLog:
    """The log table of one train() call (run_numbered_train_log)."""

    ui = None

    def row(self, iteration: int, train_loss: float, tokens_per_s: float, trained_tokens: int) -> None:
        if self.ui is not None:
            self.ui.run_row(iteration, train_loss, tokens_per_s, trained_tokens)


# Model classes whose __call__(inputs) is exactly `self.lm_head(self.model(inputs))`, or
# `self.model.embed_tokens.as_linear(self.model(inputs))` when args.tie_word_embeddings (mlx-lm 0.2x–0.3x):
# the Phi-3 family (Phi-3, Phi-3.5 and Phi-4 mini ship model_type phi3) and the Llama layout it copies.
BODY_AND_HEAD_MODULES = ("mlx_lm.models.phi3", "mlx_lm.models.llama")


def body_and_head(model):
    """(body, head) of a recognised mlx-lm model: body(inputs) the final-norm hidden states [B, L, H], head(h)
    their logits, so that head(body(x)) is model(x). None for a model this does not know (then call it whole)."""
    if type(model).__module__ not in BODY_AND_HEAD_MODULES or type(model).__name__ != "Model":
        return None
    body, args = getattr(model, "model", None), getattr(model, "args", None)
    if body is None or args is None:
        return None
    if getattr(args, "tie_word_embeddings", False):
        return body, body.embed_tokens.as_linear
    head = getattr(model, "lm_head", None)
    return None if head is None else (body, head)


def logits_from(model, inputs, start: int):
    """model(inputs)[:, start:] with the output head applied only to positions start.. where the model is
    recognised (body_and_head): the full-vocabulary logits of the positions before are never made, nor kept
    for a backward pass. Any other model is called whole and sliced."""
    parts = body_and_head(model)
    if parts is None:
        return model(inputs)[:, start:]
    body, head = parts
    return head(body(inputs)[:, start:])
