"""The trainer: one run on mlx-lm's setup and `train()` loop, its checkpoints (with the optimizer state and
MLX's random key, so a resume continues the curve) and the run's global iteration numbering around mlx-lm's,
which counts from 0 on every start (RunNumbering). The training mode (SFT, DPO, ORPO: core/runs/tasks.py)
supplies the data, batches, loss and extra metrics; mlx-lm's loop contract it relies on is written down in
core/mlx_lm_private.py (TRAIN_LOOP_CONTRACT).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import time
import traceback
from pathlib import Path

from phi3tui.core.adapters import ADAPTER_CONFIG, LATEST_WEIGHTS, checkpoint_names
from phi3tui.core.config import build_args
from phi3tui.core.files import atomic_copy, atomic_write_text, replacing
from phi3tui.core.mlx_lm_private import TrainLog, run_numbered_train_log
from phi3tui.core.workspace import load_config_values
from phi3tui.core.run_folder import ADAPTERS_DIR, CONFIG_FILE, STOP_FILE
from phi3tui.core.runs.failures import MEMORY_MESSAGES, inject_fault, is_memory_failure  # noqa: F401 (re-exported)
from phi3tui.core.runs.gate import MEMORY_LIMIT_ENV, memory_cap_bytes  # parsed where the gate checks it
from phi3tui.core.runs.recorder import Diverged, RunRecorder
from phi3tui.core.runs.tasks import task_class

RANDOM_KEY = "phi3tui.mx_random_state"


def _memory_limit_gb() -> tuple[float, str]:
    """What MLX can use here (Metal's recommended working set on a Mac), and which figure it is."""
    from phi3tui.core.machine import memory_budget

    try:
        budget = memory_budget()
    except Exception:  # the alarm is advisory; no limit known means no alarm
        return 0.0, "unknown"
    return budget.gb, budget.source




def _save_file(save, path: Path, data: dict) -> None:
    # Write beside, then rename: a kill mid-write never leaves a half checkpoint under the real name.
    with replacing(path, keep_suffix=True) as tmp:  # mx.save_safetensors wants the .safetensors ending
        try:
            save(str(tmp), data)
        except Exception as exc:  # a full disk: replacing drops the partial file, the previous checkpoint stays
            # MLX reports a short write as RuntimeError; a disk with (almost) no room left says why. Looked at
            # before the partial file is removed, which frees its room again.
            full = shutil.disk_usage(path.parent).free < (1 << 16)
            if full and not isinstance(exc, OSError):
                raise OSError(errno.ENOSPC, f"no space left on the disk to save {path.name}", str(path.parent)) from exc
            raise


class DataError(ValueError):
    """mlx-lm could not read the data; str() names the split and line (from the gate's data check) and what to do."""


def data_error(values: dict, exc: BaseException) -> DataError:
    """mlx-lm's own data-loading error (a JSONDecodeError with no file and the wrong line, a KeyError, …)
    mapped back to `split:line` by the gate's data check; its words kept when the check finds nothing."""
    from phi3tui.core.runs.gate import first_data_error

    words = " ".join(f"{type(exc).__name__}: {exc}".split())
    try:
        found = first_data_error(values, Path.cwd())  # the runner's working folder is the workspace
    except Exception:  # the backstop must not hide the error it explains
        found = None
    if found is None:
        return DataError(f"the data could not be read ({words}); run `phi3tui data check` on it")
    where = f"{found.field}: " if found.field else ""
    return DataError(f"{where}{found.message}" + (f" ({found.hint})" if found.hint else "") + f" [{words}]")


class RunNumbering:
    """mlx-lm's trainer counts from 0 on every start; a resumed run's reports are numbered from its checkpoint
    before the reporters (a wandb step must only grow) and the trainer's recorder see them. A run resumed off
    the report grid gets the trainer's reports every gcd(gap, steps_per_report) steps (Trainer.report_steps),
    added up here into one report per point of the grid: the first averages only the steps since the resume."""

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.window = self.open(trainer.start, 0)

    @staticmethod
    def open(since: int, tokens: int) -> dict:
        return {"since": since, "tokens_open": tokens, "tokens_at": tokens, "parts": 0, "loss": 0.0, "steps": 0,
                "seconds": 0.0}

    def on_train_loss_report(self, info: dict) -> None:
        t, w = self.trainer, self.window
        it = info["iteration"] + t.start
        steps = it - w["since"]
        tokens = info["trained_tokens"] - w["tokens_at"]
        tps, ips = info["tokens_per_second"], info["iterations_per_second"]
        w["seconds"] += tokens / tps if tps else steps / ips
        w["parts"] += 1
        w["loss"] += info["train_loss"] * steps
        w["steps"] += steps
        w["since"], w["tokens_at"] = it, info["trained_tokens"]
        if it % t.args.steps_per_report and it != t.total:
            return  # between two points of the grid
        if w["parts"] > 1:  # else mlx-lm's one report covers the window: its own figures, unchanged
            info = dict(info, train_loss=w["loss"] / w["steps"], iterations_per_second=w["steps"] / w["seconds"],
                        tokens_per_second=(info["trained_tokens"] - w["tokens_open"]) / w["seconds"])
        self.window = self.open(it, info["trained_tokens"])
        info = dict(info, iteration=it, trained_tokens=info["trained_tokens"] + t.tokens_before)
        t.train_log.row(it, info["train_loss"], info["tokens_per_second"], info["trained_tokens"])
        t.reporters.on_train_loss_report(info)

    def on_val_loss_report(self, info: dict) -> None:  # not called: val_dataset is None (see Trainer.batches)
        self.trainer.reporters.on_val_loss_report(info)


class Trainer:
    """One run: mlx-lm's setup and trainer, with phi3tui's global iteration numbering around it."""

    def __init__(self, run_dir: Path, recorder: RunRecorder, world):
        self.run_dir = run_dir
        self.recorder = recorder
        self.world = world
        self.adapter_dir = run_dir / ADAPTERS_DIR
        self.stop_file = run_dir / STOP_FILE
        self.stop_requested = False
        self.stopped_at: int | None = None
        self.train_log = TrainLog()  # the log table while train() runs (run_numbered_train_log)
        self.memory_limit_gb, self.memory_source = _memory_limit_gb()
        self.memory_cap = memory_cap_bytes()
        self.task = None  # the run's train_mode (core/train_modes.py): its data, batches, loss and metrics
        self.probes = None  # probe_prompts: answered after each checkpoint (core/eval/probes.py)
        self.reporters = self  # what reports go to: mlx-lm's reporters around this trainer (run)

    def request_stop(self, *_):
        self.stop_requested = True

    def finish_reporters(self, failed: bool) -> None:
        if self.reporters is self:
            return
        from phi3tui.core.runs.reporters import finish_reporters

        try:
            finish_reporters(self.args.report_to, failed)
        except Exception:  # a reporter that cannot close never changes how the run ended
            traceback.print_exc()
        self.reporters = self

    # -- checkpoints -----------------------------------------------------------
    def save_checkpoint(self, iteration: int) -> None:
        import mlx.core as mx
        from mlx.utils import tree_flatten

        weights = dict(tree_flatten(self.model.trainable_parameters()))
        finite = all(bool(mx.isfinite(w).all().item()) for w in weights.values())
        if not finite:
            raise Diverged(f"the adapter weights hold NaN or infinite values at iteration {iteration}")
        if self.world.rank() != 0:
            return
        adapters, optimizer, state = checkpoint_names(iteration)
        opt_state = dict(tree_flatten(self.optimizer.state))
        opt_state[RANDOM_KEY] = mx.random.state[0]
        _save_file(mx.save_safetensors, self.adapter_dir / adapters, weights)
        _save_file(mx.save_safetensors, self.adapter_dir / optimizer, opt_state)
        _save_file(mx.save_safetensors, self.adapter_dir / LATEST_WEIGHTS, weights)
        atomic_write_text(
            self.adapter_dir / state,
            json.dumps({"iteration": iteration, "optimizer": self.args.optimizer, "time": time.time()}) + "\n",
        )
        self.recorder.update(last_checkpoint=iteration)
        print(f"phi3tui runner: saved checkpoint at iteration {iteration}", flush=True)
        if self.probes is not None:
            self.probes(self.model, iteration)

    def restore(self, iteration: int) -> None:
        import mlx.core as mx
        from mlx.utils import tree_unflatten

        adapters, optimizer, _ = checkpoint_names(iteration)
        self.model.load_weights(str(self.adapter_dir / adapters), strict=False)
        saved = mx.load(str(self.adapter_dir / optimizer))
        key = saved.pop(RANDOM_KEY, None)
        self.optimizer.state = tree_unflatten(list(saved.items()))
        if key is not None:
            current = mx.random.state[0]
            current[:] = key  # the state holds this array; assign into it (the holder has no setter)
        print(f"phi3tui runner: resumed from iteration {iteration} (weights, optimizer state, step)", flush=True)

    # -- the step hook -----------------------------------------------------------
    def after_iteration(self, iteration: int) -> bool:
        """Called once `iteration` is complete (weights updated, reports made). True: end the run here."""
        import mlx.core as mx

        inject_fault(iteration)
        if self.memory_cap is not None and mx.get_peak_memory() > self.memory_cap:
            # mx.set_memory_limit is not enforced: the CPU build ignores it, and Metal's allocator in mlx 0.32 only
            # waits for buffers to be freed, then allocates past it ("[metal::malloc]" is raised only when Metal
            # itself refuses a buffer). The runner checks the cap itself and says it as an allocator would.
            raise MemoryError(f"MLX needed {mx.get_peak_memory() / 1e9:.3f} GB, over the {self.memory_cap / 1e9:.3f} GB "
                              f"allowed by {MEMORY_LIMIT_ENV}")
        stop = self.stop_requested or (self.world.rank() == 0 and self.stop_file.exists())
        if self.world.size() > 1:
            # Every rank must end at the same step, or the others wait forever in all_sum.
            stop = mx.distributed.all_sum(mx.array(int(stop)), stream=mx.cpu).item() > 0
        if stop:
            self.stopped_at = iteration
            # One number for the stop: the header's progress says the checkpoint's iteration, not the last report's.
            self.recorder.update(iteration=iteration)
            self.save_checkpoint(iteration)
            return True
        if iteration % self.args.save_every == 0:
            self.save_checkpoint(iteration)
        return False

    def measure(self, dataset, num_batches: int) -> tuple[float, dict]:
        """The mean loss over `dataset` (the task's evaluate: mlx-lm's for SFT), with the task's extra metrics."""
        a = self.args
        return self.task.evaluate(self.model, dataset, a.batch_size, num_batches, a.max_seq_length)

    def validate(self, iteration: int) -> None:
        tic = time.perf_counter()
        loss, extra = self.measure(self.val_set, self.args.val_batches)
        self.model.train()
        val_time = time.perf_counter() - tic
        # mlx-lm numbers a validation made before iteration `it` as it - 1 (the weights it saw). Reported the
        # way mlx-lm's trainer reports it, so the reporters log it too before on_val_loss_report records it.
        self.reporters.on_val_loss_report({"iteration": iteration - 1, "val_loss": loss, "val_time": val_time, **extra})

    def is_val_point(self, it: int) -> bool:
        return self.val_set is not None and (it == 1 or it % self.args.steps_per_eval == 0 or it == self.total)

    def batches(self, dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None):
        """mlx-lm's iterate_batches with our per-iteration hook, validation and resume around it.

        The trainer pulls the batch of iteration `it` just before running it, so here the previous
        iteration is complete (mlx_lm_private.TRAIN_LOOP_CONTRACT). The order of random draws is mlx-lm's:
        training batch first, then the validation made at that iteration.
        """
        import numpy as np

        inner = self.task.iterate_batches(dataset, batch_size, max_seq_length, loop=loop, seed=seed, comm_group=comm_group)
        if not loop:  # evaluation
            yield from inner
            return
        it = 0
        val_batches = len(range(0, len(self.val_set) - batch_size + 1, batch_size)) if self.val_set else 0
        while it < self.start:  # replay the data order (and validation's draws) up to the checkpoint
            next(inner)
            it += 1
            if self.is_val_point(it):
                np.random.permutation(val_batches)
        for batch in inner:
            if it > self.start and self.after_iteration(it):
                return
            it += 1
            if self.is_val_point(it):
                self.validate(it)
            yield self.task.complete(self.model, batch)

    # -- the run ---------------------------------------------------------------------
    def report_steps(self) -> int:
        """How often mlx-lm's trainer reports. A run resumed off the report grid (stopped at 72, reports
        every 5) must still report at 75, 80, …: the trainer counts from the resume, so it reports every
        gcd(gap, steps_per_report) steps and RunNumbering adds those up to the grid's points."""
        every = int(self.args.steps_per_report)
        return math.gcd((-self.start) % every, every)

    def on_train_loss_report(self, info: dict) -> None:  # numbered by the run (RunNumbering)
        record = {
            "kind": "train",
            "iteration": info["iteration"],
            "loss": info["train_loss"],
            "lr": info["learning_rate"],
            "it_per_s": info["iterations_per_second"],
            "tokens_per_s": info["tokens_per_second"],
            "trained_tokens": info["trained_tokens"],
            "peak_mem": info["peak_memory"],
        }
        record.update(self.task.train_metrics(self.model))
        self.recorder.record(record)
        self.recorder.update(iteration=record["iteration"], trained_tokens=record["trained_tokens"],
                             slowest_step_s=self.recorder.slowest_step_s)
        self.recorder.check_train(record, self.memory_limit_gb, self.memory_source)

    def on_val_loss_report(self, info: dict) -> None:  # from self.validate (validation is ours, see batches)
        extra = {k: v for k, v in info.items() if k not in ("iteration", "val_loss", "val_time")}
        record = {"kind": "val", "iteration": info["iteration"], "loss": info["val_loss"], "val_time": info["val_time"]}
        self.recorder.record({**record, **extra})
        self.recorder.check_val(info["iteration"], info["val_loss"])

    def run(self, info: dict) -> str:
        import mlx.core as mx
        import mlx.optimizers as optim
        import numpy as np

        from phi3tui.core.models import OPTIMIZERS, apply_fine_tune
        from phi3tui.core.mlx_thread import mlx_thread

        with mlx_thread(tuner=True):  # without wandb/swanlab: reporting_chain brings in those the run reports to
            from mlx_lm.tuner.datasets import CacheDataset
            from mlx_lm.tuner.trainer import TrainingArgs, train
            from mlx_lm.tuner.utils import build_schedule
            from mlx_lm.utils import load, save_config

        args = self.args = build_args(load_config_values(self.run_dir / CONFIG_FILE))
        self.start = int(info.get("resume_from") or 0)
        self.tokens_before = int(info.get("trained_tokens_at_resume") or 0)
        self.total = int(args.iters)
        if self.start >= self.total:
            raise ValueError(f"nothing to resume: the checkpoint is at iteration {self.start} of {self.total}")
        if not args.train:
            raise ValueError(f"{CONFIG_FILE}: train is false; set `train: true` to train")

        # The order of mlx_lm.lora.run / train_model, so the same config and seed give the same losses.
        np.random.seed(args.seed)
        print(f"phi3tui runner: loading {args.model}", flush=True)
        try:
            model, tokenizer = load(
                args.model,
                tokenizer_config={"trust_remote_code": args.trust_remote_code},
                trust_remote_code=args.trust_remote_code,
            )
        except Exception as exc:
            raise RuntimeError(
                f"model {args.model!r} could not be loaded (not a model folder in the workspace, "
                f"nor a downloadable Hugging Face repo): {type(exc).__name__}: {exc}"
            ) from exc
        # SFT, DPO, ORPO, … on the same trainer: the data, batches, loss and metrics are the task's.
        task = task_class(getattr(args, "train_mode", None))
        try:  # the task loads the data as it is made (mlx-lm's load_dataset, or the preference pairs)
            self.task = task(args, tokenizer)
        except Exception as exc:
            raise data_error(vars(args), exc) from exc
        train_set, valid_set, test_set = self.task.datasets
        if self.world.rank() == 0:  # read before training, so a bad probe file fails the run at once
            from phi3tui.core.eval import CheckpointProbes

            self.probes = CheckpointProbes.from_config(vars(args), self.run_dir, Path.cwd(), tokenizer)
        mx.random.seed(args.seed)
        apply_fine_tune(model, args.fine_tune_type, args.num_layers, args.lora_parameters)
        if args.fine_tune_type == "full":
            args.lora_parameters = None  # as mlx_lm lora writes adapter_config.json for a full fine-tune
        if args.resume_adapter_file is not None:  # a resumed run's checkpoint replaces it below (restore)
            model.load_weights(args.resume_adapter_file, strict=False)
        # The task's starting point (DPO's reference is the model as it starts): before restore.
        self.task.prepare(model, args.fine_tune_type, args.max_seq_length, args.resume_adapter_file)

        self.adapter_dir.mkdir(parents=True, exist_ok=True)
        if self.world.rank() == 0:
            save_config(vars(args), self.adapter_dir / ADAPTER_CONFIG)

        lr = build_schedule(args.lr_schedule) if args.lr_schedule else args.learning_rate
        name = args.optimizer.lower()
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer {args.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        optimizer_class = getattr(optim, OPTIMIZERS[name][0])
        self.optimizer = optimizer_class(learning_rate=lr, **args.optimizer_config.get(name, {}))
        self.model = model
        self.val_set = CacheDataset(valid_set) if len(valid_set) else None
        if self.start:
            self.restore(self.start)

        # mlx-lm's reporters (report_to) around this trainer, as `mlx_lm lora` wraps them; only rank 0 reports.
        self.reporters = self
        if self.world.rank() == 0:
            from phi3tui.core.runs.reporters import reporting_chain

            self.reporters, changes = reporting_chain(args, self.run_dir, self, info)
            self.recorder.update(**changes)
        self.recorder.update(iters=self.total, iteration=self.start,
                             memory_budget_gb=self.memory_limit_gb, memory_budget_source=self.memory_source)
        if self.memory_cap is not None:
            mx.set_memory_limit(self.memory_cap)
        # mlx-lm's log (table and bar) on the run's own numbering: a resumed run's log goes on where it stopped.
        with run_numbered_train_log(self.start, self.total) as self.train_log:
            train(
                model=model,
                optimizer=self.optimizer,
                train_dataset=CacheDataset(train_set),
                val_dataset=None,  # validated in self.batches, numbered from the run's first iteration
                args=TrainingArgs(
                    batch_size=args.batch_size,
                    iters=self.total - self.start,
                    val_batches=args.val_batches,
                    steps_per_report=self.report_steps(),
                    steps_per_eval=args.steps_per_eval,
                    steps_per_save=self.total + 1,  # checkpoints are ours, numbered by the run's iteration
                    adapter_file=self.adapter_dir / LATEST_WEIGHTS,
                    max_seq_length=args.max_seq_length,
                    grad_checkpoint=args.grad_checkpoint,
                    grad_accumulation_steps=args.grad_accumulation_steps,
                    clear_cache_threshold=args.clear_cache_threshold,
                ),
                iterate_batches=self.batches,
                training_callback=RunNumbering(self),
                loss=self.task.loss,
            )
        if self.stopped_at is not None:
            return "stopped"
        # The last iteration is not followed by a batch pull: checkpoint it here (resume, promote).
        self.save_checkpoint(self.total)
        if args.test and len(test_set):
            loss, extra = self.measure(CacheDataset(test_set), args.test_batches)
            record = {"kind": "test", "iteration": self.total, "loss": loss, **extra}
            if self.task.perplexity:  # a perplexity of a DPO/ORPO loss means nothing
                record["ppl"] = math.exp(loss) if loss < 700 else math.inf
            self.recorder.record(record)
            self.recorder.update(test_loss=loss, **({"test_ppl": record["ppl"]} if "ppl" in record else {}))
            print(f"phi3tui runner: test loss {loss:.3f}"
                  + (f", perplexity {record['ppl']:.3f}" if "ppl" in record else ""), flush=True)
        return "finished"


def restore_last_good(adapter_dir: Path) -> int | None:
    """After divergence: adapters.safetensors becomes the last checkpoint saved before it."""
    from phi3tui.core.adapters import checkpoints_in

    numbered = [c for c in checkpoints_in(adapter_dir) if c.iteration is not None]
    latest = adapter_dir / LATEST_WEIGHTS
    if not numbered:
        latest.unlink(missing_ok=True)
        return None
    atomic_copy(numbered[-1].path, latest)
    return numbered[-1].iteration
