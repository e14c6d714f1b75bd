"""The export steps: one ExportStep protocol and ONE registry, EXPORT_STEPS, in run-all order.

The job (core/export/job.py), the Export wizard (widgets/export_steps.py, screens/export/), `phi3tui export STEP | all`
(commands/export.py) and the headless demo (core/pipeline.py) all read EXPORT_STEPS. A step says what it will do
(describe), what running it would replace (outputs), whether "run all" takes it for this job (in_run_all), and does it
(run), returning a StepOutcome whose lines the wizard's log and the CLI both show as they are.

A new export target is one module in core/export/ with a class that has these attributes and methods, plus one line in
EXPORT_STEPS. This module stays light (the CLI builds its parser from it on every command): the work's heavy imports
(mlx, numpy, gguf) happen inside run().
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from phi3tui.core.export import ExportError, Progress, StepOutcome, no_progress
from phi3tui.core.adapters import kind_name
from phi3tui.core.export.lmstudio import LmStudioStep
from phi3tui.core.export.paths import adapter_kind

# What the verify step established. Only AGREED earns the ✓: a read-back proves the file is well formed,
# not that llama.cpp runs it as MLX does.
VERIFY_AGREED = "agreed"
VERIFY_READ_BACK_ONLY = "read back; llama.cpp not installed"
VERIFY_NOTHING_TO_RUN = "read back; nothing llama.cpp could compare with MLX"
VERIFY_DISAGREES = "llama.cpp disagrees with MLX"
# The Ollama step's ✓ means the model is in Ollama; a Modelfile alone (Ollama absent or not answering) is short of it.
OLLAMA_NOT_CREATED = "Modelfile written; model not created"


class ExportStep(Protocol):
    """One export target. `job` is a core.export.job.ExportJob: its choices, paths and the results so far."""

    id: str  # the `phi3tui export ID` subcommand and the wizard's option id
    label: str  # the wizard's list label (10 characters at most)
    help: str  # one line for `phi3tui export --help`
    demo_title: str | None  # its title in `phi3tui demo --headless`; None: the demo skips it

    def describe(self, job) -> list[str]:
        """What running it will do, one line per action (the wizard's plan)."""

    def outputs(self, job) -> list[Path]:
        """Files or folders running it would replace (the wizard asks first; the CLI needs --force)."""

    def in_run_all(self, job) -> bool:
        """Whether "run all" (the wizard's `a`, `phi3tui export all`) runs it for this job."""

    def run(self, job, progress: Progress = no_progress) -> StepOutcome:
        """Do it; raise ExportError with what to do when it cannot. Store the result in job.results[self.id]."""

    # Only with a demo_title: demo(workspace, state) -> str, the headless demo's step (core/pipeline.py), which takes
    # its input from `state` (what this demo's earlier steps made), never from older files on disk.


# -- the built-in steps -------------------------------------------------------------------------------------------

NO_ADAPTER = "no adapter found: train first, or choose an adapter folder"


@dataclass(frozen=True)
class FuseReport:
    """fuse()'s result plus what this job decided around it (a de-quantized base), said in its summary."""

    result: object  # fuse.FuseResult
    notes: tuple[str, ...] = ()

    def __getattr__(self, name):
        return getattr(self.result, name)  # fused_dir, dequantized, ... as fuse() reports them

    def summary(self) -> str:
        return self.result.summary() + "".join(f"; {note}" for note in self.notes)


class FuseStep:
    id, label, demo_title = "fuse", "Fuse", "fuse"
    help = "fuse a LoRA/DoRA adapter into its base model (exports/NAME/fused)"

    def describe(self, job) -> list[str]:
        if job.adapter is None:
            return [NO_ADAPTER]
        lines = [
            f"load {job.rel(job.base_model or '?')} with the {kind_name(adapter_kind(job.adapter))} adapter",
            "fuse each adapted layer into its base weights (mlx-lm)",
        ]
        if job.no_dequantize:
            lines.append("refuse an MLX-quantized base (--no-dequantize): the GGUF needs full weights")
        else:
            lines.append("de-quantize the weights if the base is MLX-quantized (the GGUF needs full weights)")
        return lines + [f"save to {job.rel(job.fused_dir)} with tokenizer.model and every tokenizer file"]

    def outputs(self, job) -> list[Path]:
        return [job.fused_dir]

    def in_run_all(self, job) -> bool:
        return not job.use_adapter_in_ollama

    def run(self, job, progress: Progress = no_progress) -> StepOutcome:
        from phi3tui.core.export.fuse import fuse
        from phi3tui.core.export.paths import dequantize_for_gguf

        adapter = job.require_adapter()
        dequantize, note = False, ""
        if job.fuse_for_gguf:
            # The wizard, `export all` and the demo fuse for a GGUF: a base with no GGUF architecture is refused
            # first, a quantized one de-quantized, and said so. `export fuse` alone gives the MLX folder.
            dequantize, note = dequantize_for_gguf(job.require_base(), refuse=job.no_dequantize)
        fused = fuse(job.require_base(), adapter, job.fused_dir, dequantize or job.dequantize, job.force, progress)
        report = FuseReport(fused, (note,) if note else ())
        job.results[self.id] = report
        return StepOutcome(self.id, (report.summary(),), result=report)

    def demo(self, workspace, state: dict) -> str:
        from phi3tui.core.export.fuse import demo_step

        return demo_step(workspace, state)


class GgufStep:
    id, label, demo_title = "gguf", "GGUF", "write the GGUF"
    help = "write the fused model as a phi3 GGUF, read it back, compare it in llama.cpp"

    def describe(self, job) -> list[str]:
        return [
            f"read {job.rel(job.fused_dir)}: a Phi-3 with full (not MLX-quantized) weights",
            "vocabulary (SentencePiece with real scores, or byte-level BPE with merges), explicit add_bos, chat template",
            f"write {job.gguf_path.name} ({job.outtype}, llama.cpp phi3) tensor by tensor",
            "read it back: every tensor, shape, type and key",
        ]

    def outputs(self, job) -> list[Path]:
        return [job.gguf_path]

    def in_run_all(self, job) -> bool:
        return not job.use_adapter_in_ollama

    def run(self, job, progress: Progress = no_progress) -> StepOutcome:
        from phi3tui.core.export.gguf import write_gguf
        from phi3tui.core.export.verify import read_back

        if not (job.fused_dir / "config.json").is_file():
            if job.model_dir is not None:
                raise ExportError(f"{job.fused_dir} has no config.json: give a model folder (--model-dir)")
            raise ExportError(f"{job.fused_dir} has no fused model: run the fuse step first (`phi3tui export fuse`)")
        result = write_gguf(job.fused_dir, job.gguf_path, job.outtype, job.name, job.tokenizer_model, force=job.force, progress=progress)
        report = read_back(result.path, result)
        if not report.ok:
            raise ExportError(f"{result.path} does not read back: {'; '.join(report.problems)}")
        job.results[self.id] = (result, report)
        lines = [result.summary(), f"read back: {report.summary()}"] + [f"note: {note}" for note in result.notes]
        return StepOutcome(self.id, tuple(lines), result=(result, report))

    def demo(self, workspace, state: dict) -> str:
        from phi3tui.core.export.gguf import demo_step

        return demo_step(workspace, state)


class LoraGgufStep:
    id, label, demo_title = "lora-gguf", "LoRA GGUF", None
    help = "write the adapter alone as a GGUF LoRA (plus the base model's GGUF)"

    def describe(self, job) -> list[str]:
        if job.adapter is None:
            return [NO_ADAPTER]
        quantized = ("refuse an MLX-quantized base (--no-dequantize)" if job.no_dequantize else
                     "an MLX-quantized base is de-quantized for its GGUF first (then the copy is removed)")
        return [
            f"write the adapter alone as {job.lora_path.name} ({job.lora_outtype}), alpha = scale x rank",
            f"and the base model as {job.base_gguf_path.name}, for Ollama's ADAPTER; {quantized}",
            "read both back",
        ]

    def outputs(self, job) -> list[Path]:
        return [job.lora_path, job.base_gguf_path]

    def in_run_all(self, job) -> bool:
        return job.use_adapter_in_ollama

    def run(self, job, progress: Progress = no_progress) -> StepOutcome:
        from phi3tui.core.export.gguf import write_gguf
        from phi3tui.core.export.lora_gguf import write_lora_gguf
        from phi3tui.core.export.paths import dequantize_for_gguf, local_model_dir, refuse_gguf_architecture
        from phi3tui.core.export.verify import read_back
        from phi3tui.core.files import refuse_overwrite

        adapter = job.require_adapter()
        with_base = job.lora_with_base
        # Before anything is written: a base with no GGUF architecture is refused, a quantized one de-quantized.
        dequantize, note = dequantize_for_gguf(job.require_base(), refuse=job.no_dequantize) if with_base else (False, "")
        if not with_base and job.base_model:
            refuse_gguf_architecture(job.base_model)
        if with_base:
            refuse_overwrite(job.base_gguf_path, job.force, "the base GGUF", error=ExportError)
        lora = write_lora_gguf(adapter, job.lora_path, job.lora_outtype, force=job.force, progress=progress)
        report = read_back(lora.path, lora, kind="lora")
        if not report.ok:
            raise ExportError(f"{lora.path} does not read back: {'; '.join(report.problems)}")
        base = None
        if with_base and dequantize:
            import tempfile

            from phi3tui.core.export.fuse import dequantize_base

            # The de-quantized base is needed only to write its GGUF: it goes away afterwards.
            job.out_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".base-dequantized-", dir=job.out_dir) as scratch:
                folder = dequantize_base(job.require_base(), Path(scratch) / "base", progress=progress)
                base = write_gguf(folder, job.base_gguf_path, job.outtype, job.name + "-base",
                                  job.tokenizer_model, force=job.force, progress=progress)
            base.notes.append(note)
        elif with_base:
            base = write_gguf(local_model_dir(job.require_base()), job.base_gguf_path, job.outtype, job.name + "-base",
                              job.tokenizer_model, force=job.force, progress=progress)
        job.results[self.id] = (lora, report, base)
        lines = [lora.summary(), f"read back: {report.summary()}"]
        if base is not None:
            lines += [f"base: {base.summary()}"] + [f"note: {note}" for note in base.notes]
        return StepOutcome(self.id, tuple(lines), result=(lora, report, base))


class VerifyStep:
    id, label, demo_title = "verify", "Verify", None
    help = "read back the GGUFs in exports/NAME and compare them with MLX in llama.cpp"

    def describe(self, job) -> list[str]:
        return [
            "read each GGUF back with gguf's reader",
            f"in llama.cpp (with the verify extra): {len(job.prompts)} prompts, greedy tokens and logits vs MLX",
        ]

    def outputs(self, job) -> list[Path]:
        return []

    def in_run_all(self, job) -> bool:
        return True

    def run(self, job, progress: Progress = no_progress) -> StepOutcome:
        """Agreement lines for the GGUFs written so far (llama.cpp when installed); raises when any disagrees.

        job.results["verify"] is (lines, agreements, state): whether llama.cpp agreed or the files only read back."""
        from phi3tui.core.export.verify import (
            LLAMA_CPP_MISSING,
            check_tokenizer,
            llama_cpp_available,
            read_back,
            verify_gguf,
            verify_lora,
        )

        lines, agreements = [], []
        targets = [p for p in (job.gguf_path, job.lora_path, job.base_gguf_path) if p.is_file()]
        if not targets:
            raise ExportError(f"nothing to verify in {job.out_dir}: write a GGUF first")
        for path in targets:
            report = read_back(path, kind="lora" if path == job.lora_path else "model")
            lines.append(f"{path.name}: {report.summary()}" + (f": {'; '.join(report.problems)}" if report.problems else ""))
            if not report.ok:
                raise ExportError(lines[-1])
        if not llama_cpp_available():
            state = VERIFY_READ_BACK_ONLY
            lines += [state, LLAMA_CPP_MISSING]
        else:
            prompts = list(job.prompts)
            if job.gguf_path.is_file() and (job.fused_dir / "config.json").is_file():
                from phi3tui.core.export.vocab import find_tokenizer_model

                byte_level = read_back(job.gguf_path).metadata.get("tokenizer.ggml.model") == "gpt2"
                if byte_level or find_tokenizer_model(job.fused_dir, job.tokenizer_model) is not None:
                    # Tokens first: logits mean nothing if llama.cpp splits the text differently.
                    progress(0, 2, "llama.cpp: tokenizer")
                    tokens = check_tokenizer(job.fused_dir, job.gguf_path, tokenizer_model=job.tokenizer_model)
                    lines.append(f"{job.gguf_path.name}: {tokens.summary()}")
                    if not tokens.ok:
                        job.results[self.id] = (lines, agreements, VERIFY_DISAGREES)
                        raise ExportError("; ".join(lines))
                else:
                    # transformers 5's legacy=False Phi-3 tokenizer itself differs from SentencePiece on leading
                    # spaces (shared/reference/gguf-phi3.md 9.7a): without tokenizer.model there is no true reference.
                    lines.append(f"{job.gguf_path.name}: tokenizer not compared: no tokenizer.model (SentencePiece) "
                                 "here or in the base model to compare llama.cpp with (give --tokenizer-model)")
                progress(0, 2, "llama.cpp: fused GGUF")
                a = verify_gguf(job.fused_dir, job.gguf_path, job.outtype, prompts, job.max_tokens)
                agreements.append(a)
                lines.append(f"{job.gguf_path.name}: {a.summary()}")
            if job.lora_path.is_file() and job.base_gguf_path.is_file() and job.adapter is not None:
                progress(1, 2, "llama.cpp: base GGUF + LoRA GGUF")
                # The worse of the two types decides the tolerance.
                kind = job.outtype if job.outtype not in ("f32", "f16") else job.lora_outtype
                a = verify_lora(job.require_base(), job.adapter, job.base_gguf_path, job.lora_path, kind, prompts, job.max_tokens)
                agreements.append(a)
                lines.append(f"{job.base_gguf_path.name} + {job.lora_path.name}: {a.summary()}")
            progress(2, 2, "verified")
            if not agreements:
                state = VERIFY_NOTHING_TO_RUN
                lines.append(state)
            else:
                state = VERIFY_AGREED if all(a.ok for a in agreements) else VERIFY_DISAGREES
        job.results[self.id] = (lines, agreements, state)
        if any(not a.ok for a in agreements):
            raise ExportError("; ".join(lines))
        rows = [
            f"  {row.prompt[:40]!r}: {'same tokens' if row.same_tokens else 'different tokens'}, "
            f"cos {row.cosine:.6f}, argmax {row.argmax_agree:.0%}"
            for agreement in agreements for row in agreement.rows
        ]
        return StepOutcome(self.id, tuple(lines + rows), shortfall=None if state == VERIFY_AGREED else state,
                           result=(lines, agreements, state))


class OllamaStep:
    id, label, demo_title = "ollama", "Ollama", "write the Modelfile"
    help = "write the Modelfile; `ollama create` when Ollama runs, else print the commands"

    def describe(self, job) -> list[str]:
        src = f"{job.base_gguf_path.name} + ADAPTER {job.lora_path.name}" if job.use_adapter_in_ollama else job.gguf_path.name
        return [
            f"write {job.rel(job.modelfile)}: FROM {src}, TEMPLATE and stops from the model's chat template",
            f"lint it; `ollama create {job.name}` if Ollama runs, else show the commands",
        ]

    def outputs(self, job) -> list[Path]:
        return [job.modelfile]

    def in_run_all(self, job) -> bool:
        return True

    def run(self, job, progress: Progress = no_progress) -> StepOutcome:
        from phi3tui.core.export.ollama import package

        if job.use_adapter_in_ollama:
            source, adapter = job.base_gguf_path, job.lora_path
            if not adapter.is_file():
                raise ExportError(f"{adapter} is missing: run `phi3tui export lora-gguf` first")
        else:
            source, adapter = job.gguf_path, None
        if not source.is_file():
            raise ExportError(f"{source} is missing: run `phi3tui export gguf` first")
        result = package(
            job.out_dir, source, job.name, adapter, job.effective_num_ctx(), job.training_max_seq_length(),
            job.system, job.quantize, replace=job.replace_model, force=job.force, create=job.ollama_create,
            on_line=lambda line: progress(0, 1, line),
        )
        job.results[self.id] = result
        lines = [f"wrote {result.modelfile}"]
        if result.created:
            lines += [f"created Ollama model {result.name}", f"test answer: {result.answer}"]
            return StepOutcome(self.id, tuple(lines), result=result)
        lines += [f"not creating the model: {result.reason}", "run these commands:"] + [f"  {c}" for c in result.commands]
        return StepOutcome(self.id, tuple(lines), shortfall=f"{OLLAMA_NOT_CREATED} ({result.reason})", result=result)

    def demo(self, workspace, state: dict) -> str:
        from phi3tui.core.export.ollama import demo_step

        return demo_step(workspace, state)


# THE registry, in run-all order. A new export target: its module in core/export/ and one line here.
EXPORT_STEPS: tuple[ExportStep, ...] = (
    FuseStep(),
    GgufStep(),
    LoraGgufStep(),
    VerifyStep(),
    OllamaStep(),
    LmStudioStep(),
)


# -- reading the registry (at call time, so a step added to EXPORT_STEPS is seen everywhere) ----------------------

def find_step(step_id: str) -> ExportStep:
    for step in EXPORT_STEPS:
        if step.id == step_id:
            return step
    raise ValueError(f"no export step {step_id!r}: the steps are {', '.join(s.id for s in EXPORT_STEPS)}")


def run_all_steps(job) -> list[ExportStep]:
    """The steps "run all" runs for this job, in registry order (fused GGUF or base + LoRA GGUF for Ollama)."""
    return [step for step in EXPORT_STEPS if step.in_run_all(job)]


def run_step(job, step_id: str, progress: Progress = no_progress) -> StepOutcome:
    """Run one step; a problem the person can fix (ExportError) comes back as a failed outcome saying what to do."""
    from phi3tui.core.export.ollama import OllamaModelExists

    try:
        return job.run(step_id, progress)
    except ExportError as exc:
        return StepOutcome(step_id, (str(exc),), ok=False, ask_replace=isinstance(exc, OllamaModelExists))


def outcome_lines(outcome: StepOutcome) -> list[str]:
    """THE formatter of an outcome, for the wizard's log and the CLI's output: a failure's lines say so."""
    return list(outcome.lines) if outcome.ok else [f"failed: {line}" for line in outcome.lines]
