"""The training process itself: `python -m phi3tui.core.runs.runner RUN_DIR`.

Started detached by core/runs.py (its own session, stdout/stderr into log.txt), directly or through
`mlx.launch` for data-parallel training on several machines. It trains with mlx-lm's own functions
(load, load_dataset, linear_to_lora_layers, build_schedule, trainer.train, trainer.evaluate) and
records through a TrainingCallback, never by reading console output. Only rank 0 writes the run folder.

Working directory: the workspace (RUN_DIR/../..), so the config's relative paths (model, data)
mean what they mean to `mlx_lm lora` run in the workspace.

Resume: every checkpoint NNNNNNN_adapters.safetensors has NNNNNNN_optimizer.safetensors (the
optimizer state, its step, which drives the LR schedule, and MLX's random key) and NNNNNNN_state.json
beside it. A resumed run restores them, replays the data order up to the checkpoint and numbers
its iterations, reports and checkpoints from there, so the curve continues where it stopped.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

from phi3tui.core.files import atomic_copy, atomic_write_text, replacing
from phi3tui.core.workspace import load_config_values
from phi3tui.core.runs.folder import (
    ADAPTERS_DIR,
    CONFIG_FILE,
    LOG_FILE,
    METRICS_FILE,
    QUEUE_FILE,
    STOP_FILE,
    append_alarm,
    log_tail,
    metrics_line,
    read_run_json,
    update_run_json,
)
from phi3tui.core.runs.state import LIVE_STATES, RunState, transition

OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "muon": "Muon", "sgd": "SGD", "adafactor": "Adafactor"}
RANDOM_KEY = "phi3tui.mx_random_state"
OVERFIT_EVALS = 3  # validation loss rising this many evaluations in a row warns of overfitting
SLOWDOWN_RATIO = 0.3  # tokens/s below this share of the run's median so far warns
MEMORY_SHARE = 0.9  # peak memory above this share of the machine's memory warns
MEMORY_LIMIT_ENV = "PHI3TUI_MEMORY_LIMIT_GB"  # cap MLX's memory for this run (mx.set_memory_limit; enforced here too)
OOM_KILL_SHARE = 0.8  # a SIGKILLed runner that had reached this share of the memory MLX can use died of memory
MEMORY_MESSAGES = ("[metal::malloc]", "bad_alloc", "unable to allocate", "out of memory", "insufficient memory")


def checkpoint_names(iteration: int) -> tuple[str, str, str]:
    stem = f"{iteration:07d}"
    return f"{stem}_adapters.safetensors", f"{stem}_optimizer.safetensors", f"{stem}_state.json"


class Diverged(Exception):
    pass


class RunRecorder:
    """Everything the runner writes; a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, writer: bool):
        self.run_dir = run_dir
        self.writer = writer
        self.metrics = open(run_dir / METRICS_FILE, "a", encoding="utf-8") if writer else None
        self.val_history: list[float] = []
        self.tps_history: list[float] = []
        self.warned: set[str] = set()
        self.last_iteration = 0
        best = read_run_json(run_dir).get("best_val_loss")
        self.best_val: float | None = float(best) if isinstance(best, (int, float)) else None

    def record(self, record: dict) -> None:
        self.last_iteration = record.get("iteration", self.last_iteration)
        if self.writer:
            record.setdefault("time", time.time())
            self.metrics.write(metrics_line(record))
            self.metrics.flush()  # a reader attached now sees it at once

    def update(self, **changes) -> None:
        if self.writer:
            state = changes.pop("state", None)  # a state change goes through transition, which checks it
            if state:
                transition(self.run_dir, state, **changes)
            else:
                update_run_json(self.run_dir, **changes)

    def alarm(self, kind: str, message: str, iteration: int, once: bool = True) -> None:
        if once and kind in self.warned:
            return
        self.warned.add(kind)
        print(f"phi3tui runner: ALARM {kind} at iteration {iteration}: {message}", flush=True)
        if self.writer:
            append_alarm(
                self.run_dir, {"kind": kind, "message": message, "iteration": iteration, "time": time.time()}
            )

    # -- health checks -------------------------------------------------------
    def check_val(self, iteration: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise Diverged(f"validation loss is {loss} at iteration {iteration}")
        self.val_history.append(loss)
        if self.best_val is None or loss < self.best_val:
            self.best_val = loss
            self.update(best_val_loss=loss, best_val_iteration=iteration)
        recent = self.val_history[-(OVERFIT_EVALS + 1) :]
        rising = len(recent) == OVERFIT_EVALS + 1 and all(b > a for a, b in zip(recent, recent[1:]))
        if rising:
            self.alarm(
                "overfitting",
                f"validation loss rose {OVERFIT_EVALS} evaluations in a row "
                f"({recent[0]:.3f} → {recent[-1]:.3f}); consider the best checkpoint",
                iteration,
            )

    def check_train(self, info: dict, memory_limit_gb: float, memory_source: str = "") -> None:
        it = info["iteration"]
        if not math.isfinite(info["loss"]):
            raise Diverged(f"training loss is {info['loss']} at iteration {it}")
        tps = info["tokens_per_s"]
        if len(self.tps_history) >= 3:
            median = sorted(self.tps_history)[len(self.tps_history) // 2]
            if tps < SLOWDOWN_RATIO * median:
                self.alarm(
                    "slow",
                    f"tokens/s fell to {tps:,.0f} from a median of {median:,.0f} "
                    "(another program using the machine, or memory swapping?)",
                    it,
                )
        self.tps_history.append(tps)
        if memory_limit_gb and info["peak_mem"] > MEMORY_SHARE * memory_limit_gb:
            self.alarm(
                "memory",
                f"peak memory {info['peak_mem']:.1f} GB is near the {memory_limit_gb:.1f} GB MLX can use here "
                f"({memory_source}); "
                "lower batch_size or max_seq_length, or turn on grad_checkpoint",
                it,
            )


def _memory_limit_gb() -> tuple[float, str]:
    """What MLX can use here (Metal's recommended working set on a Mac), and which figure it is."""
    from phi3tui.core.machine import memory_budget

    try:
        budget = memory_budget()
    except Exception:  # the alarm is advisory; no limit known means no alarm
        return 0.0, "unknown"
    return budget.gb, budget.source


def is_memory_failure(exc: BaseException) -> bool:
    """An allocation that failed: MemoryError, or MLX's RuntimeError saying so ([metal::malloc], bad_alloc)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in MEMORY_MESSAGES)


def memory_cap_bytes() -> int | None:
    """PHI3TUI_MEMORY_LIMIT_GB, when set: the most memory this run's MLX may hold."""
    raw = os.environ.get(MEMORY_LIMIT_ENV)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{MEMORY_LIMIT_ENV}={raw!r} is not a number of GB; unset it or give e.g. 16") from None
    if value <= 0:
        raise ValueError(f"{MEMORY_LIMIT_ENV}={raw!r} must be above 0")
    return int(value * 1e9)


def build_args(values: dict) -> SimpleNamespace:
    """The config's values merged with mlx-lm's defaults the way `mlx_lm lora --config` merges them."""
    from phi3tui.core.config import mlx_lm_defaults

    args = dict(values)
    for key, default in mlx_lm_defaults().items():
        if args.get(key) is None:
            args[key] = default
    return SimpleNamespace(**args)


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
        self.memory_limit_gb, self.memory_source = _memory_limit_gb()
        self.memory_cap = memory_cap_bytes()
        self.task = None  # train_mode dpo/orpo: its data, batches, loss and metrics (preference.py)
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
        _save_file(mx.save_safetensors, self.adapter_dir / "adapters.safetensors", weights)
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

        if self.memory_cap is not None and mx.get_peak_memory() > self.memory_cap:
            # MLX's CPU build does not enforce set_memory_limit (Metal does, with "[metal::malloc]"): say it the same way.
            raise MemoryError(f"MLX needed {mx.get_peak_memory() / 1e9:.3f} GB, over the {self.memory_cap / 1e9:.3f} GB "
                              f"allowed by {MEMORY_LIMIT_ENV}")
        stop = self.stop_requested or (self.world.rank() == 0 and self.stop_file.exists())
        if self.world.size() > 1:
            # Every rank must end at the same step, or the others wait forever in all_sum.
            stop = mx.distributed.all_sum(mx.array(int(stop)), stream=mx.cpu).item() > 0
        if stop:
            self.stopped_at = iteration
            self.save_checkpoint(iteration)
            return True
        if iteration % self.args.save_every == 0:
            self.save_checkpoint(iteration)
        return False

    def measure(self, dataset, num_batches: int) -> tuple[float, dict]:
        """The mean loss over `dataset` (mlx-lm's evaluate), with a preference run's reward metrics."""
        from mlx_lm.tuner.trainer import evaluate

        a = self.args
        if self.task is not None:
            return self.task.evaluate(self.model, dataset, a.batch_size, num_batches, a.max_seq_length)
        loss = evaluate(model=self.model, dataset=dataset, batch_size=a.batch_size, num_batches=num_batches,
                        max_seq_length=a.max_seq_length)
        return loss, {}

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
        iteration is complete. The order of random draws is mlx-lm's: training batch first, then
        the validation made at that iteration.
        """
        import numpy as np
        from mlx_lm.tuner.trainer import iterate_batches

        inner = (self.task.iterate_batches if self.task else iterate_batches)(dataset, batch_size, max_seq_length, loop=loop, seed=seed, comm_group=comm_group)
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
            yield self.task.complete(self.model, batch) if self.task else batch

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
        if self.task is not None:
            record.update(self.task.train_metrics(self.model))
        self.recorder.record(record)
        self.recorder.update(iteration=record["iteration"], trained_tokens=record["trained_tokens"])
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

        from phi3tui.core.mlx_lm_private import load_tuner

        load_tuner()  # without wandb/swanlab: reporting_chain brings in those the run reports to
        from mlx_lm.tuner.datasets import CacheDataset, load_dataset
        from mlx_lm.tuner.trainer import TrainingArgs, train
        from mlx_lm.tuner.utils import build_schedule, linear_to_lora_layers
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
        if (getattr(args, "train_mode", None) or "sft") == "sft":
            train_set, valid_set, test_set = load_dataset(args, tokenizer)
        else:  # DPO/ORPO on the same trainer: the data, batches, loss and metrics are preference.py's
            from phi3tui.core.runs.preference import PreferenceTask

            self.task = PreferenceTask(args, tokenizer)
            train_set, valid_set, test_set = self.task.datasets
        if self.world.rank() == 0:  # read before training, so a bad probe file fails the run at once
            from phi3tui.core.eval import CheckpointProbes

            self.probes = CheckpointProbes.from_config(vars(args), self.run_dir, Path.cwd(), tokenizer)
        mx.random.seed(args.seed)
        model.freeze()
        if args.num_layers > len(model.layers):
            raise ValueError(
                f"num_layers is {args.num_layers} but the model has only {len(model.layers)} layers; "
                "lower num_layers (-1 means all)"
            )
        if args.fine_tune_type == "full":
            for layer in model.layers[-max(args.num_layers, 0) :]:
                layer.unfreeze()
            args.lora_parameters = None
        elif args.fine_tune_type in ("lora", "dora"):
            linear_to_lora_layers(
                model, args.num_layers, args.lora_parameters, use_dora=args.fine_tune_type == "dora"
            )
        else:
            raise ValueError(f"fine_tune_type {args.fine_tune_type!r}: use lora, dora or full")
        if args.resume_adapter_file is not None:  # a resumed run's checkpoint replaces it below (restore)
            model.load_weights(args.resume_adapter_file, strict=False)
        if self.task is not None:  # the reference is the model as it starts: before restore
            self.task.prepare(model, args.fine_tune_type, args.max_seq_length, args.resume_adapter_file)

        self.adapter_dir.mkdir(parents=True, exist_ok=True)
        if self.world.rank() == 0:
            save_config(vars(args), self.adapter_dir / "adapter_config.json")

        lr = build_schedule(args.lr_schedule) if args.lr_schedule else args.learning_rate
        name = args.optimizer.lower()
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer {args.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        self.optimizer = getattr(optim, OPTIMIZERS[name])(learning_rate=lr, **args.optimizer_config.get(name, {}))
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
                adapter_file=self.adapter_dir / "adapters.safetensors",
                max_seq_length=args.max_seq_length,
                grad_checkpoint=args.grad_checkpoint,
                grad_accumulation_steps=args.grad_accumulation_steps,
                clear_cache_threshold=args.clear_cache_threshold,
            ),
            iterate_batches=self.batches,
            training_callback=RunNumbering(self),
            **({"loss": self.task.loss} if self.task else {}),
        )
        if self.stopped_at is not None:
            return "stopped"
        # The last iteration is not followed by a batch pull: checkpoint it here (resume, promote).
        self.save_checkpoint(self.total)
        if args.test and len(test_set):
            loss, extra = self.measure(CacheDataset(test_set), args.test_batches)
            record = {"kind": "test", "iteration": self.total, "loss": loss, **extra}
            if self.task is None:  # a perplexity of a DPO/ORPO loss means nothing
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
    latest = adapter_dir / "adapters.safetensors"
    if not numbered:
        latest.unlink(missing_ok=True)
        return None
    atomic_copy(numbered[-1].path, latest)
    return numbered[-1].iteration


def hand_on_queue(run_dir: Path) -> None:
    """As this run ends, start the next queued one (core/runs/queue.py) with nobody attached. In a
    process of its own, detached: this one still holds its model's memory and is about to exit."""
    import subprocess

    queue_file = run_dir.parent / QUEUE_FILE
    try:
        if queue_file.stat().st_size == 0:
            return
        with open(run_dir / LOG_FILE, "ab") as log:
            # -c, not -m: the package's __init__ imports queue, which -m would run a second time.
            start = "import sys; from phi3tui.core.runs.queue import main; sys.exit(main(sys.argv[1:]))"
            subprocess.Popen([sys.executable, "-c", start, str(run_dir.parent.parent)],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError:  # no queue, or it cannot start now: the next `phi3tui` starts it
        return


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m phi3tui.core.runs.runner RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0]).resolve()
    os.chdir(run_dir.parent.parent)  # the workspace: the config's paths are relative to it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal never ends a run
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()  # before MLX: the parent stays light and outlives a trainer the OS kills
    if child:
        return supervise(run_dir, child)
    try:
        code = train_main(run_dir)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _oom_kills() -> int | None:
    """The kernel's count of OOM kills in this process's memory cgroup (Linux), None where unknown."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for base, name in (("/sys/fs/cgroup", "memory.events"), ("/sys/fs/cgroup/memory", "memory.oom_control")):
            if (controllers == "" and name == "memory.events") or "memory" in controllers.split(","):
                try:
                    text = Path(base + path.rstrip("/"), name).read_text()
                except OSError:
                    continue
                for row in text.splitlines():
                    key, _, value = row.partition(" ")
                    if key == "oom_kill":
                        return int(value)
    return None


def died_of_memory(signal_number: int, peak_bytes: int, budget_bytes: float, kills_before, kills_after) -> bool:
    """Whether a trainer that ended by `signal_number` was killed by the OS for memory: SIGKILL and either
    the kernel counted an OOM kill meanwhile, or it had reached most of the memory MLX can use
    (macOS's jetsam leaves no count to read)."""
    if signal_number != signal.SIGKILL:
        return False
    if kills_before is not None and kills_after is not None and kills_after > kills_before:
        return True
    return bool(budget_bytes) and peak_bytes >= OOM_KILL_SHARE * budget_bytes


def supervise(run_dir: Path, child: int) -> int:
    """The runner's parent: keeps the machine awake while the trainer lives, passes a polite stop on,
    and records how a trainer ended that could not say so itself (killed by the OS, crashed)."""
    from phi3tui.core.runs.awake import keep_awake_plan, start_keep_awake

    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGTERM))
    kills_before = _oom_kills()
    info = read_run_json(run_dir)
    writer = int(os.environ.get("MLX_RANK", "0") or 0) == 0
    plan = keep_awake_plan(os.getpid(), info.get("keep_awake") or "auto", why=f"phi3tui training run {run_dir.name}")
    holder, how = start_keep_awake(plan)
    if writer:
        update_run_json(run_dir, awake=how, supervisor_pid=os.getpid())
    print(f"phi3tui runner: keeping awake: {how}", flush=True)
    try:
        while True:
            try:
                _, status, usage = os.wait4(child, 0)
                break
            except ChildProcessError:
                return 1
    finally:
        if holder is not None:
            holder.terminate()
            holder.wait()
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    number = os.WTERMSIG(status)
    info = read_run_json(run_dir)
    if not writer or info.get("state") not in LIVE_STATES:
        return 128 + number
    # ru_maxrss: kilobytes on Linux, bytes on macOS.
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    budget = float(info.get("memory_budget_gb") or 0) * 1e9
    name = signal.Signals(number).name
    at = info.get("iteration", 0)
    if died_of_memory(number, peak, budget, kills_before, _oom_kills()):
        reason = (f"out of memory: the OS killed the runner ({name}) at iteration {at}, having reached "
                  f"{peak / 1e9:.2f} GB of the {budget / 1e9:.2f} GB MLX can use; "
                  f"`phi3tui runs resume {run_dir.name} --smaller` halves the batch")
        transition(run_dir, RunState.OUT_OF_MEMORY, expect=LIVE_STATES, ended=time.time(), reason=reason, error=reason,
                   peak_memory_gb=peak / 1e9, log_tail=log_tail(run_dir))
    else:
        reason = (f"the runner (pid {child}) was ended by {name} without recording a result "
                  f"at iteration {at}; resume it from its last checkpoint")
        transition(run_dir, RunState.FAILED, expect=LIVE_STATES, ended=time.time(), reason=reason, error=reason,
                   log_tail=log_tail(run_dir))
    print(f"phi3tui runner: {reason}", flush=True)
    hand_on_queue(run_dir)  # the trainer could not: the next queued run starts all the same
    return 128 + number


def train_main(run_dir: Path) -> int:
    import mlx.core as mx
    from phi3tui.core.machine import host_name, machine_id

    world = mx.distributed.init()
    writer = world.rank() == 0
    if world.size() > 1 and not writer:
        from phi3tui.core.runs.hosts import write_rank_pid

        write_rank_pid(run_dir, world.rank())  # on this rank's machine: kill_run reaches it there over ssh
    recorder = RunRecorder(run_dir, writer)
    trainer = Trainer(run_dir, recorder, world)
    signal.signal(signal.SIGTERM, trainer.request_stop)  # a polite kill stops at the next step
    info = read_run_json(run_dir)
    recorder.update(
        state="running",
        runner_pid=os.getpid(),
        host=info.get("host") or host_name(),
        machine_id=info.get("machine_id") or machine_id(),
        world_size=world.size(),
        started=time.time(),
        ended=None,
        reason=None,
        error=None,
    )
    print(f"phi3tui runner: rank {world.rank()} of {world.size()}, run {run_dir.name}", flush=True)
    try:
        state = trainer.run(info)
        trainer.finish_reporters(failed=False)  # before the end state: a reader then finds the reporters' runs whole
        reason = {"finished": "all iterations done", "stopped": f"stopped at iteration {trainer.stopped_at}"}[state]
        recorder.update(state=state, ended=time.time(), reason=reason)
        (run_dir / STOP_FILE).unlink(missing_ok=True) if writer else None
        print(f"phi3tui runner: {state}: {reason}", flush=True)
        return 0
    except Diverged as exc:
        trainer.finish_reporters(failed=True)
        good = restore_last_good(run_dir / ADAPTERS_DIR) if writer else None
        keep = f"; kept the checkpoint of iteration {good}" if good else "; no checkpoint was saved before it"
        print(f"phi3tui runner: diverged: {exc}{keep}", flush=True)
        recorder.alarm("diverged", f"{exc}{keep}", recorder.last_iteration)
        recorder.update(state="diverged", ended=time.time(), reason=f"{exc}{keep}", last_good_checkpoint=good)
        return 1
    except BaseException as exc:  # every failure ends the run as failed, with the error and the log's tail
        traceback.print_exc()
        trainer.finish_reporters(failed=True)
        sys.stdout.flush()
        sys.stderr.flush()
        error = f"{type(exc).__name__}: {exc}"
        if is_memory_failure(exc):
            peak = mx.get_peak_memory() / 1e9
            reason = (f"out of memory at iteration {recorder.last_iteration}: peak {peak:.3f} GB "
                      f"(MLX can use {trainer.memory_limit_gb:.2f} GB here, {trainer.memory_source}); "
                      f"`phi3tui runs resume {run_dir.name} --smaller` halves the batch ({error})")
            recorder.update(state="out of memory", ended=time.time(), reason=reason, error=error,
                            peak_memory_gb=peak, log_tail=log_tail(run_dir))
            return 1
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            error = (f"the disk is full ({exc}); the last saved checkpoint is kept: free some space, "
                     "then resume the run")
        recorder.update(state="failed", ended=time.time(), reason=error, error=error, log_tail=log_tail(run_dir))
        return 1
    finally:
        if writer:
            hand_on_queue(run_dir)


if __name__ == "__main__":
    sys.exit(main())
