"""`phi3tui export fuse | gguf | lora-gguf | verify | ollama | lmstudio | all`: the Export wizard's steps, headless.

The subcommands are core.export.steps.EXPORT_STEPS (plus `all`); each runs through the same job and prints the same
outcome lines as the wizard."""

from __future__ import annotations

import argparse
import sys
import time

from phi3tui.commands.progress import ProgressLine
from phi3tui.core.export import OLLAMA_QUANTIZE, OUT_TYPES  # the package face is light: no gguf or numpy


def _common(p: argparse.ArgumentParser, adapter: bool = True) -> None:
    p.add_argument("-w", "--workspace", default=".", metavar="DIR", help="the workspace folder (default: the current folder)")
    if adapter:
        p.add_argument("--adapter-path", metavar="PATH", help="adapter folder, or one checkpoint file in it (default: the newest run's adapters)")
        p.add_argument("--run", metavar="RUN_ID", help="take the adapters of this run (runs/RUN_ID/adapters)")
        p.add_argument("--checkpoint", type=int, metavar="ITER", help="use the checkpoint saved at this iteration instead of the latest")
    p.add_argument("--model", metavar="MODEL", help="base model folder or Hugging Face repo (default: the adapter's `model`, else lora_config.yaml's)")
    p.add_argument("--name", help="export name: the folder exports/NAME and the Ollama model name (default: phi3-<run id>)")
    p.add_argument("--output", metavar="DIR", help="output folder (default: WORKSPACE/exports/NAME)")
    p.add_argument("--force", action="store_true", help="replace existing output files / a non-empty fused folder")


def _gguf_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--outtype", choices=OUT_TYPES, default="f16", help="GGUF tensor type (default: f16; 1-D tensors stay f32)")
    p.add_argument("--tokenizer-model", metavar="PATH", help="tokenizer.model to use when the fused folder has none (default: the base model's)")


def _verify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-verify", action="store_true", help="skip the llama.cpp comparison (the read-back check always runs)")
    p.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt for the comparisons (repeatable; default: two built-in ones)")
    p.add_argument("--max-tokens", type=int, default=8, help="greedy tokens compared per prompt (default: 8)")


def _ollama_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-ctx", type=int, help="PARAMETER num_ctx (default: 4096, at least the training max_seq_length)")
    p.add_argument("--system", metavar="TEXT", help="a SYSTEM prompt for the Modelfile")
    p.add_argument("--quantize", choices=OLLAMA_QUANTIZE, help="let `ollama create` quantize the f16/f32 GGUF (e.g. q4_K_M)")
    p.add_argument("--yes", action="store_true", help="replace an Ollama model of the same name without asking")
    p.add_argument("--no-create", action="store_true", help="only write the Modelfile, do not run `ollama create`")
    p.add_argument("--adapter", action="store_true", help="FROM the base GGUF + ADAPTER the LoRA GGUF instead of the fused GGUF")


def _fuse_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--save-path", metavar="DIR", help="the fused model folder (default: exports/NAME/fused)")
    p.add_argument("--dequantize", action="store_true", help="de-quantize a quantized base (needed before GGUF)")
    p.add_argument("--check", action="store_true", help="compare greedy answers of the fused model with base + adapter")
    p.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt for --check (repeatable; default: two built-in ones)")


def _gguf_step_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", metavar="DIR", help="the fused model folder (default: exports/NAME/fused)")
    p.add_argument("--outfile", metavar="PATH", help="the GGUF file (default: exports/NAME/NAME-OUTTYPE.gguf)")
    _gguf_options(p)
    _verify_options(p)


def _lora_outtype(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--lora-outtype", choices=("f32", "f16"), default="f16", help=help)


def _lora_step_options(p: argparse.ArgumentParser) -> None:
    _lora_outtype(p, "LoRA tensor type (default: f16)")
    p.add_argument("--no-base", action="store_true", help="do not write the base model's GGUF")
    p.add_argument("--no-dequantize", action="store_true",
                   help="refuse an MLX-quantized base instead of de-quantizing it for its GGUF")
    _gguf_options(p)
    _verify_options(p)


def _verify_step_options(p: argparse.ArgumentParser) -> None:
    _gguf_options(p)
    _lora_outtype(p, "type of the LoRA GGUF to check (default: f16)")
    p.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeatable)")
    p.add_argument("--max-tokens", type=int, default=8, help="greedy tokens compared per prompt (default: 8)")


def _ollama_step_options(p: argparse.ArgumentParser) -> None:
    _gguf_options(p)
    _lora_outtype(p, "type of the LoRA GGUF for --adapter (default: f16)")
    _ollama_options(p)


def _lmstudio_step_options(p: argparse.ArgumentParser) -> None:
    _gguf_options(p)
    p.add_argument("--models-dir", metavar="DIR",
                   help="LM Studio's models folder (default: $LMSTUDIO_MODELS_DIR, else ~/.lmstudio/models)")
    p.add_argument("--publisher", default="phi3tui", help="the publisher folder LM Studio lists it under (default: phi3tui)")


# The built-in steps' own options; a step without an entry takes the common ones and the GGUF type (to find the
# export's files).
STEP_OPTIONS = {
    "fuse": _fuse_options,
    "gguf": _gguf_step_options,
    "lora-gguf": _lora_step_options,
    "verify": _verify_step_options,
    "ollama": _ollama_step_options,
    "lmstudio": _lmstudio_step_options,
}


def register(subparsers) -> None:
    from phi3tui.core.export import steps  # the registry: each step is a subcommand, in run-all order

    p = subparsers.add_parser(
        "export",
        help="fuse the adapter, write a phi3 GGUF (or GGUF LoRA), verify it in llama.cpp, package it for Ollama",
        description=(
            "Export a fine-tune: fuse the adapter into the base (mlx-lm), write a GGUF for llama.cpp's phi3 "
            "architecture (no llama.cpp clone needed), or the adapter alone as a GGUF LoRA, check it reads back and "
            "(with the `verify` extra) agrees with MLX in llama.cpp, and write an Ollama Modelfile. "
            "Files go to WORKSPACE/exports/NAME/."
        ),
    )
    sub = p.add_subparsers(title="steps", metavar="STEP", dest="step", required=True)

    for step in steps.EXPORT_STEPS:
        a = sub.add_parser(step.id, help=step.help)
        _common(a)
        STEP_OPTIONS.get(step.id, _gguf_options)(a)
        a.set_defaults(func=cmd_step)

    a = sub.add_parser("all", help="fuse, GGUF, verify and Ollama in one go")
    _common(a)
    dq = a.add_mutually_exclusive_group()
    dq.add_argument("--dequantize", action="store_true", help="de-quantize the base (the default when it is MLX-quantized)")
    dq.add_argument("--no-dequantize", action="store_true",
                    help="refuse an MLX-quantized base instead of de-quantizing it (a GGUF needs full weights)")
    _gguf_options(a)
    _verify_options(a)
    _ollama_options(a)
    a.set_defaults(func=cmd_all)


# -- helpers --------------------------------------------------------------------------------------


def _job(args, need_adapter: bool = False, **options):
    from pathlib import Path

    from phi3tui.core.export.job import ExportJob
    from phi3tui.core.export.paths import safe_name

    opts = dict(force=args.force)
    for key in ("outtype", "lora_outtype", "dequantize", "no_dequantize", "num_ctx", "quantize", "system", "max_tokens"):
        if getattr(args, key, None) is not None:
            opts[key] = getattr(args, key)
    if getattr(args, "tokenizer_model", None):
        opts["tokenizer_model"] = Path(args.tokenizer_model)
    if getattr(args, "prompt", None):
        opts["prompts"] = tuple(args.prompt)
    # Where the command puts or finds the fused folder and the GGUF, when not in exports/NAME/.
    folder = getattr(args, "save_path", None) or getattr(args, "model_dir", None)
    if folder:
        opts["model_dir"] = Path(folder).expanduser().resolve()
    if getattr(args, "outfile", None):
        opts["gguf_file"] = Path(args.outfile).expanduser().resolve()
    if hasattr(args, "no_base"):
        opts["lora_with_base"] = not args.no_base
    if hasattr(args, "yes"):
        opts["replace_model"], opts["ollama_create"] = args.yes, not args.no_create
        opts["use_adapter_in_ollama"] = args.adapter
    if getattr(args, "models_dir", None):
        opts["lmstudio_dir"] = Path(args.models_dir).expanduser().resolve()
    if getattr(args, "publisher", None):
        opts["lmstudio_publisher"] = safe_name(args.publisher)
    opts.update(options)
    return ExportJob.create(
        args.workspace, getattr(args, "adapter_path", None), getattr(args, "run", None), getattr(args, "checkpoint", None),
        args.model, args.name, args.output, need_adapter=need_adapter, **opts,
    )


def _run(command: str, fn) -> int:
    from phi3tui.core.export import ExportError

    try:
        return fn() or 0
    except ExportError as exc:
        print(f"phi3tui export {command}: {exc}", file=sys.stderr)
        return 2


def _print_step(job, step_id: str, place: str = "") -> None:
    """Run one step and print its outcome's lines; a failure ends the command with the reason. Its start, progress and
    end go to stderr (`place`: "[2/4] " within `export all`)."""
    from phi3tui.core.export import ExportError
    from phi3tui.core.export.steps import outcome_lines, run_step

    line = ProgressLine(percent=True)
    line.say(f"{place}{step_id}: started")
    started = time.monotonic()
    outcome = run_step(job, step_id, lambda done, total, message: line(step_id, done, total, message))
    line.say(f"{place}{step_id}: {'done' if outcome.ok else 'failed'} in {time.monotonic() - started:.1f} s")
    if not outcome.ok:
        raise ExportError("; ".join(outcome.lines))
    for text in outcome_lines(outcome):
        print(text, flush=True)


# -- the commands ---------------------------------------------------------------------------------

# The steps `phi3tui export STEP` finds no adapter for refuses at once (the others need none, or say so themselves).
NEEDS_ADAPTER = {"fuse", "lora-gguf"}
# After these the command verifies what it wrote, unless --no-verify.
VERIFIED_AFTER = {"gguf", "lora-gguf"}


def cmd_step(args) -> int:
    """`phi3tui export STEP`: one step of core.export.steps.EXPORT_STEPS, its outcome printed."""

    def go():
        # `export fuse` alone gives the fused MLX folder: no GGUF follows, so nothing is refused or de-quantized for one.
        only_mlx = {"fuse_for_gguf": False} if args.step == "fuse" else {}
        job = _job(args, need_adapter=args.step in NEEDS_ADAPTER and not getattr(args, "model_dir", None), **only_mlx)
        _print_step(job, args.step)
        if args.step == "fuse":
            return _fuse_check(args, job, job.fused_dir)
        if args.step in VERIFIED_AFTER and not args.no_verify:
            _print_step(job, "verify")
        return 0

    return _run(args.step, go)


def _fuse_check(args, job, fused_dir) -> int:
    if not args.check:
        return 0
    from phi3tui.core.export.fuse import compare_fused

    bad = 0
    for prompt, adapted, fused in compare_fused(job.require_base(), job.require_adapter(), fused_dir, list(job.prompts), 16):
        same = adapted == fused
        bad += not same
        print(f"{'same' if same else 'DIFFERENT'}: {prompt!r}: base+adapter {adapted} fused {fused}")
    return 1 if bad else 0


def cmd_all(args) -> int:
    """`phi3tui export all`: the steps the wizard's "run all" takes for these choices, in registry order."""

    def go():
        from phi3tui.core.export.steps import run_all_steps

        job = _job(args, need_adapter=True)
        chosen = [step for step in run_all_steps(job) if not (step.id == "verify" and args.no_verify)]
        for number, step in enumerate(chosen, 1):
            _print_step(job, step.id, f"[{number}/{len(chosen)}] ")
        return 0

    return _run("all", go)
