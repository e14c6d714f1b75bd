"""DPO's MLX peak memory ÷ an SFT run's, same model, same pairs, through phi3tui's runner (issue 17).

A random Phi-3 whose weights dominate (default 12 layers, hidden 1024: 267M parameters, float16) is built
in a temporary folder with the demo tokenizer. Both runs train LoRA on the demo's pairs, batch 1, sequences
of at most 64 tokens: SFT on {prompt, completion = chosen}, DPO on {prompt, chosen, rejected} with the
reference from the same weights (adapter off). The figure is mlx's peak memory (mx.get_peak_memory, the
runner's peak_mem) at the last report. Printed beside it: what a second copy of the weights as reference
(mlx-lm-lora's way) would add, (SFT peak + weights) ÷ SFT peak.

Usage: python bench/preference_memory.py [--layers 12] [--hidden 1024] [--iters 6] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def peak(run_dir: Path) -> float:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return max(r["peak_mem"] for r in lines if r["kind"] == "train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from bench.export_gguf import build_model
    from phi3tui.core import runs
    from phi3tui.core.demo import build_demo, write_demo_preference_data
    from phi3tui.core.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="phi3tui-bench-pref-"))
    try:
        root = tmp / "ws"
        build_demo(root)
        shutil.rmtree(root / "model")
        f16 = build_model(root / "model", args.layers, args.hidden)
        write_demo_preference_data(root / "pairs")
        (root / "sft").mkdir()
        for split in ("train", "valid", "test"):
            pairs = [json.loads(line) for line in (root / "pairs" / f"{split}.jsonl").read_text().splitlines()]
            (root / "sft" / f"{split}.jsonl").write_text(
                "".join(json.dumps({"prompt": p["prompt"], "completion": p["chosen"]}) + "\n" for p in pairs))
        ws = Workspace.open(root)
        common = dict(iters=args.iters, batch_size=1, max_seq_length=64, steps_per_report=args.iters,
                      steps_per_eval=10_000, val_batches=1, save_every=10_000, test=False, num_layers=-1,
                      grad_checkpoint=False)
        print(f"model: {f16 / 2 / 1e6:.0f}M parameters, float16 weights {f16 / 1e9:.2f} GB "
              f"({args.layers} layers, hidden {args.hidden}); batch 1, max_seq_length 64, {args.iters} iterations")
        figures = {"sft": [], "dpo": []}
        for _ in range(args.repeats):
            for kind, extra in (("sft", dict(data="sft")), ("dpo", dict(data="pairs", train_mode="dpo"))):
                run_dir = runs.start_run(ws, overrides=dict(common, **extra))
                info = runs.wait_for_run(run_dir, timeout=3600)
                if info.get("state") != "finished":
                    raise SystemExit(f"{kind} run ended {info.get('state')}: {info.get('reason')}")
                figures[kind].append(peak(run_dir))
        sft, dpo = statistics.median(figures["sft"]), statistics.median(figures["dpo"])
        print(f"SFT peak {sft:.3f} GB, DPO peak {dpo:.3f} GB (medians of {args.repeats})")
        print(f"a second copy of the weights as reference would add {f16 / 1e9:.3f} GB: "
              f"{(sft + f16 / 1e9) / sft:.2f}x the SFT peak")
        print(f"DPO / SFT peak memory: {dpo / sft:.3f}x (goal <= 1.15)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
