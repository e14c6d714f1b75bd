"""`phi3tui export fuse | gguf | lora-gguf | verify | ollama | all`: the Export wizard's steps, headless."""

from __future__ import annotations

import argparse
import sys
import time

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


def register(subparsers) -> None:
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

    a = sub.add_parser("fuse", help="fuse a LoRA/DoRA adapter into its base model (exports/NAME/fused)")
    _common(a)
    a.add_argument("--save-path", metavar="DIR", help="the fused model folder (default: exports/NAME/fused)")
    a.add_argument("--dequantize", action="store_true", help="de-quantize a quantized base (needed before GGUF)")
    a.add_argument("--check", action="store_true", help="compare greedy answers of the fused model with base + adapter")
    a.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt for --check (repeatable; default: two built-in ones)")
    a.set_defaults(func=cmd_fuse)

    a = sub.add_parser("gguf", help="write the fused model as a phi3 GGUF, read it back, compare it in llama.cpp")
    _common(a)
    a.add_argument("--model-dir", metavar="DIR", help="the fused model folder (default: exports/NAME/fused)")
    a.add_argument("--outfile", metavar="PATH", help="the GGUF file (default: exports/NAME/NAME-OUTTYPE.gguf)")
    _gguf_options(a)
    _verify_options(a)
    a.set_defaults(func=cmd_gguf)

    a = sub.add_parser("lora-gguf", help="write the adapter alone as a GGUF LoRA (plus the base model's GGUF)")
    _common(a)
    a.add_argument("--lora-outtype", choices=("f32", "f16"), default="f16", help="LoRA tensor type (default: f16)")
    a.add_argument("--no-base", action="store_true", help="do not write the base model's GGUF")
    a.add_argument("--no-dequantize", action="store_true",
                   help="refuse an MLX-quantized base instead of de-quantizing it for its GGUF")
    _gguf_options(a)
    _verify_options(a)
    a.set_defaults(func=cmd_lora)

    a = sub.add_parser("verify", help="read back the GGUFs in exports/NAME and compare them with MLX in llama.cpp")
    _common(a)
    _gguf_options(a)
    a.add_argument("--lora-outtype", choices=("f32", "f16"), default="f16", help="type of the LoRA GGUF to check (default: f16)")
    a.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeatable)")
    a.add_argument("--max-tokens", type=int, default=8, help="greedy tokens compared per prompt (default: 8)")
    a.set_defaults(func=cmd_verify)

    a = sub.add_parser("ollama", help="write the Modelfile; `ollama create` when Ollama runs, else print the commands")
    _common(a)
    _gguf_options(a)
    a.add_argument("--lora-outtype", choices=("f32", "f16"), default="f16", help="type of the LoRA GGUF for --adapter (default: f16)")
    _ollama_options(a)
    a.set_defaults(func=cmd_ollama)

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


class _Bar:
    """A one-line progress display on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str):
        self.label, self.last, self.tty = label, 0.0, sys.stderr.isatty()

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        pct = 100 * done / total if total else 100
        line = f"{self.label}: {pct:5.1f}% {message}"
        if self.tty:
            print("\r" + line[:100].ljust(100), end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif done >= total:
            print(line, file=sys.stderr)


def _job(args, need_adapter: bool = True, **options):
    from phi3tui.core.export.job import ExportJob

    opts = dict(force=args.force)
    for key in ("outtype", "lora_outtype", "dequantize", "no_dequantize", "num_ctx", "quantize", "system", "max_tokens"):
        if getattr(args, key, None) is not None:
            opts[key] = getattr(args, key)
    if getattr(args, "tokenizer_model", None):
        from pathlib import Path

        opts["tokenizer_model"] = Path(args.tokenizer_model)
    if getattr(args, "prompt", None):
        opts["prompts"] = tuple(args.prompt)
    opts.update(options)
    return ExportJob.create(
        args.workspace, getattr(args, "adapter_path", None), getattr(args, "run", None), getattr(args, "checkpoint", None),
        args.model, args.name, args.output, need_adapter=need_adapter, **opts,
    )


def _run(step: str, fn) -> int:
    from phi3tui.core.export import ExportError

    try:
        return fn() or 0
    except ExportError as exc:
        print(f"phi3tui export {step}: {exc}", file=sys.stderr)
        return 2


# -- the steps ------------------------------------------------------------------------------------


def cmd_fuse(args) -> int:
    def go():
        from pathlib import Path

        from phi3tui.core.export.fuse import fuse

        job = _job(args)
        target = Path(args.save_path).expanduser().resolve() if args.save_path else job.fused_dir
        result = fuse(job.require_base(), job.require_adapter(), target, job.dequantize, job.force, _Bar("fuse"))
        print(result.summary())
        return _fuse_check(args, job, target)

    return _run("fuse", go)


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


def _verify_lines(args, job) -> int:
    if getattr(args, "no_verify", False):
        return 0
    for line in job.run_verify(_Bar("verify")):
        print(line)
    return 0


def cmd_gguf(args) -> int:
    def go():
        from pathlib import Path

        from phi3tui.core.export.gguf import write_gguf
        from phi3tui.core.export.verify import read_back

        job = _job(args, need_adapter=not args.model_dir)
        if args.model_dir or args.outfile:
            model_dir = Path(args.model_dir).expanduser().resolve() if args.model_dir else job.fused_dir
            outfile = Path(args.outfile).expanduser().resolve() if args.outfile else job.gguf_path
            result = write_gguf(model_dir, outfile, job.outtype, args.name or job.name, job.tokenizer_model, force=job.force, progress=_Bar("gguf"))
            report = read_back(result.path, result)
            print(result.summary())
            print(f"read back: {report.summary()}")
            for note in result.notes:
                print(f"note: {note}")
            if not report.ok:
                print("\n".join(report.problems), file=sys.stderr)
                return 1
            if not args.no_verify:
                from phi3tui.core.export.verify import LLAMA_CPP_MISSING, llama_cpp_available, verify_gguf

                if not llama_cpp_available():
                    print(LLAMA_CPP_MISSING)
                    return 0
                agreement = verify_gguf(model_dir, outfile, job.outtype, list(job.prompts), job.max_tokens)
                print(agreement.summary())
                return 0 if agreement.ok else 1
            return 0
        result, report = job.run_gguf(_Bar("gguf"))
        print(result.summary())
        print(f"read back: {report.summary()}")
        for note in result.notes:
            print(f"note: {note}")
        return _verify_lines(args, job)

    return _run("gguf", go)


def cmd_lora(args) -> int:
    def go():
        job = _job(args)
        lora, report, base = job.run_lora(_Bar("lora-gguf"), with_base=not args.no_base)
        print(lora.summary())
        print(f"read back: {report.summary()}")
        if base is not None:
            print(f"base: {base.summary()}")
            for note in base.notes:
                print(f"note: {note}")
        return _verify_lines(args, job)

    return _run("lora-gguf", go)


def cmd_verify(args) -> int:
    return _run("verify", lambda: _verify_lines(args, _job(args, need_adapter=False)))


def cmd_ollama(args) -> int:
    def go():
        job = _job(args, need_adapter=False, use_adapter_in_ollama=args.adapter)
        result = job.run_ollama(replace=args.yes, create=not args.no_create, on_line=lambda line: print(f"  ollama: {line}", file=sys.stderr))
        print(f"wrote {result.modelfile}")
        if result.created:
            print(f"created Ollama model {result.name}; test answer: {result.answer}")
        else:
            print(f"not creating the Ollama model: {result.reason}")
            print("run these commands:")
            for command in result.commands:
                print(f"  {command}")
        return 0

    return _run("ollama", go)


def cmd_all(args) -> int:
    def go():
        job = _job(args, use_adapter_in_ollama=args.adapter)
        print(job.run_fuse(_Bar("fuse")).summary())
        result, report = job.run_gguf(_Bar("gguf"))
        print(result.summary())
        print(f"read back: {report.summary()}")
        if args.adapter:
            lora, _, base = job.run_lora(_Bar("lora-gguf"))
            print(lora.summary())
            print(f"base: {base.summary()}" + "".join(f"; {note}" for note in base.notes))
        code = _verify_lines(args, job)
        if code:
            return code
        ollama = job.run_ollama(replace=args.yes, create=not args.no_create, on_line=lambda line: print(f"  ollama: {line}", file=sys.stderr))
        print(ollama.summary())
        return 0

    return _run("all", go)
