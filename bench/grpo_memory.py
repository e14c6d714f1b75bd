"""GRPO's MLX peak memory ÷ an SFT run's on the same prompts, and its step time ÷ mlx-lm-lora's GRPO on the same
config, through phi3tui's runner (issue 27).

A random Phi-3 whose weights dominate (default 12 layers, hidden 1024: 267M parameters, float16) is built in a
temporary folder with the demo tokenizer, and the demo's questions are written twice: as prompt-answer records
(GRPO) and as {prompt, completion = answer} (SFT). Both phi3tui runs train LoRA (all blocks, rank 16), batch 1;
GRPO samples group_size completions of max_completion_length tokens per prompt, its reference being the same
weights with the adapter off. Memory: mlx's peak (mx.get_peak_memory, the runner's peak_mem) over the train
reports. Printed beside it: what a second copy of the weights as reference (mlx-lm-lora's way) would add.

Step time: the wall time of a run of --iters iterations minus that of a run of --short iterations, divided by the
difference (so loading, compiling, the first validation and the end's saving cancel out), for phi3tui's runner
and for `python -m mlx_lm_lora.train --train-mode grpo` on the same model, data and settings (mlx-lm-lora's own
default reward functions; their cost is negligible beside sampling). Its peak memory (its last "Memory:" line)
is printed too.

Usage: python bench/grpo_memory.py [--layers 12] [--hidden 1024] [--iters 6] [--short 2] [--group-size 4]
       [--max-completion-length 16] [--no-lora-lora]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LORA = {"rank": 16, "scale": 2.0, "dropout": 0.0}


def peak(run_dir: Path) -> float:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return max(r["peak_mem"] for r in lines if r["kind"] == "train")


def timed_run(ws, overrides: dict) -> tuple[float, Path]:
    from phi3tui.core import runs

    started = time.perf_counter()
    run_dir = runs.start_run(ws, overrides=overrides)
    info = runs.wait_for_run(run_dir, timeout=3600)
    if info.get("state") != "finished":
        raise SystemExit(f"run ended {info.get('state')}: {info.get('reason')}")
    return time.perf_counter() - started, run_dir


def lora_lora_run(root: Path, iters: int, settings: dict) -> tuple[float, float | None]:
    """(wall seconds, its last reported peak memory in GB) of mlx-lm-lora's GRPO on the same settings."""
    config = root / "mlx_lm_lora.yaml"
    config.write_text(json.dumps({"lora_parameters": LORA}))  # YAML reads JSON
    out = root / f"lora-lora-{iters}"
    command = [sys.executable, "-m", "mlx_lm_lora.train", "-c", str(config), "--model", str(root / "model"),
               "--train", "--data", str(root / "grpo"), "--train-mode", "grpo", "--train-type", "lora",
               "--num-layers", "-1", "--iters", str(iters), "--batch-size", "1",
               "--group-size", str(settings["group_size"]),
               "--max-completion-length", str(settings["max_completion_length"]),
               "--temperature", str(settings["temperature"]), "--beta", str(settings["beta"]),
               "--epsilon", str(settings["epsilon"]), "--learning-rate", str(settings["learning_rate"]),
               "--steps-per-report", str(iters), "--steps-per-eval", "100000", "--val-batches", "1",
               "--max-seq-length", str(settings["max_seq_length"]), "--adapter-path", str(out), "--seed", "0"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"mlx-lm-lora's GRPO failed: {(done.stdout + done.stderr)[-1500:]}")
    memory = re.findall(r"Memory: ([0-9.]+)GB", done.stdout + done.stderr)
    return seconds, float(memory[-1]) if memory else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--short", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--max-completion-length", type=int, default=16)
    parser.add_argument("--no-lora-lora", action="store_true", help="skip mlx-lm-lora's run (step time)")
    args = parser.parse_args()

    from bench.export_gguf import build_model
    from phi3tui.core.demo import build_demo, write_demo_grpo_data
    from phi3tui.core.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="phi3tui-bench-grpo-"))
    try:
        root = tmp / "ws"
        build_demo(root)
        shutil.rmtree(root / "model")
        f16 = build_model(root / "model", args.layers, args.hidden)
        write_demo_grpo_data(root / "grpo")
        (root / "sft").mkdir()
        for split in ("train", "valid", "test"):
            records = [json.loads(line) for line in (root / "grpo" / f"{split}.jsonl").read_text().splitlines()]
            (root / "sft" / f"{split}.jsonl").write_text(
                "".join(json.dumps({"prompt": r["prompt"], "completion": r["answer"]}) + "\n" for r in records))
        ws = Workspace.open(root)
        settings = dict(group_size=args.group_size, max_completion_length=args.max_completion_length,
                        temperature=0.8, beta=0.1, epsilon=0.2, learning_rate=1e-4, max_seq_length=64)
        common = dict(batch_size=1, max_seq_length=64, steps_per_report=100_000, steps_per_eval=100_000, val_batches=1,
                      save_every=100_000, test=False, num_layers=-1, grad_checkpoint=False, lora_parameters=LORA,
                      learning_rate=settings["learning_rate"])
        grpo = dict(common, data="grpo", train_mode="grpo", reward_functions=["any_correct"],
                    **{k: settings[k] for k in ("group_size", "max_completion_length", "temperature", "beta", "epsilon")})
        print(f"model: {f16 / 2 / 1e6:.0f}M parameters, float16 weights {f16 / 1e9:.2f} GB ({args.layers} layers, "
              f"hidden {args.hidden}); batch 1, group_size {args.group_size}, max_completion_length "
              f"{args.max_completion_length}, max_seq_length 64", flush=True)

        _, sft_dir = timed_run(ws, dict(common, data="sft", iters=args.iters))
        long_s, grpo_dir = timed_run(ws, dict(grpo, iters=args.iters))
        short_s, _ = timed_run(ws, dict(grpo, iters=args.short))
        sft, ours = peak(sft_dir), peak(grpo_dir)
        step = (long_s - short_s) / (args.iters - args.short)
        print(f"SFT peak {sft:.3f} GB, GRPO peak {ours:.3f} GB")
        print(f"a second copy of the weights as reference would add {f16 / 1e9:.3f} GB: "
              f"{(ours + f16 / 1e9) / sft:.2f}x the SFT peak")
        print(f"GRPO / SFT peak memory: {ours / sft:.3f}x (goal <= 1.3)")
        print(f"phi3tui GRPO step: {step:.2f} s (runs of {args.iters} and {args.short} iterations: "
              f"{long_s:.1f} s, {short_s:.1f} s)", flush=True)
        if args.no_lora_lora:
            return
        try:
            their_long, their_memory = lora_lora_run(root, args.iters, settings)
            their_short, _ = lora_lora_run(root, args.short, settings)
        except RuntimeError as exc:
            print(f"mlx-lm-lora's GRPO did not run here: {exc}")
            return
        theirs = (their_long - their_short) / (args.iters - args.short)
        print(f"mlx-lm-lora GRPO step: {theirs:.2f} s (runs: {their_long:.1f} s, {their_short:.1f} s); its peak "
              f"memory {their_memory} GB" + (f" = {their_memory / sft:.2f}x our SFT peak" if their_memory else ""))
        print(f"GRPO step time, phi3tui / mlx-lm-lora: {step / theirs:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
