"""GGUF f16 export: phi3tui's streaming writer against MLX's own `mx.save_gguf` of the same weights.

Builds a random Phi-3 (~270M parameters, f16 safetensors, the demo tokenizer padded to Phi-3's 32064
rows) in a temporary folder, then alternates, in fresh child processes:
  - baseline: `mx.save_gguf(out, {k: v.astype(float16) for k, v in mx.load(model.safetensors)})`
    (weights only: no phi3 metadata, no vocabulary)
  - phi3tui:  `write_gguf(model_dir, out, "f16")` (full phi3 GGUF: metadata, vocabulary, chat template)
Each child reports the wall time of the export call and its memory: peak RSS (ru_maxrss) minus the RSS
just before the export. Prints medians, then the two ratios last.

    python bench/export_gguf.py [--repeats 3] [--layers 12] [--hidden 1024] [--dtype float16|bfloat16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
import psutil
kind, model_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "mlx":
    import mlx.core as mx
else:
    sys.path.insert(0, sys.argv[4])
    from phi3tui.core.export.gguf import write_gguf
    import gguf, numpy, sentencepiece  # imported before the baseline RSS, like mlx on the other side
before = psutil.Process().memory_info().rss
t0 = time.perf_counter()
if kind == "mlx":
    weights = {k: v.astype(mx.float16) for k, v in mx.load(model_dir + "/model.safetensors").items()}
    mx.save_gguf(out, weights)
    del weights
else:
    write_gguf(__import__("pathlib").Path(model_dir), __import__("pathlib").Path(out), "f16", name="bench")
seconds = time.perf_counter() - t0
sys.path.insert(0, sys.argv[4] + "/bench")
from peak_rss import peak_rss
peak = peak_rss()
print(json.dumps({"seconds": seconds, "peak_growth": max(0, peak - before)}))
"""


def build_model(target: Path, layers: int, hidden: int, dtype: str = "float16") -> int:
    """A random Phi-3 stored as `dtype` at `target`; returns its f16 size in bytes."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import phi3

    sys.path.insert(0, str(REPO))
    from phi3tui.core.demo import DEMO_MODEL_CONFIG, write_demo_tokenizer

    ids = write_demo_tokenizer(target)
    config = dict(DEMO_MODEL_CONFIG)
    config.update(
        hidden_size=hidden, num_hidden_layers=layers, intermediate_size=4 * hidden, num_attention_heads=hidden // 64,
        num_key_value_heads=hidden // 64, vocab_size=32064, torch_dtype=dtype,
        eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
    )
    model = phi3.Model(phi3.ModelArgs.from_dict(config))
    model.set_dtype(getattr(mx, dtype))
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    mx.save_safetensors(str(target / "model.safetensors"), weights, metadata={"format": "mlx"})
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return sum(v.size * 2 for v in weights.values())


def run_child(kind: str, model_dir: Path, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(model_dir), str(out), str(REPO)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["size"] = out.stat().st_size
    out.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16",
                        help="dtype of the source safetensors (Phi-3 ships bfloat16: the export then converts)")
    parser.add_argument("--build-only", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        print(build_model(Path(args.build_only), args.layers, args.hidden, args.dtype))
        return
    tmp = Path(tempfile.mkdtemp(prefix="phi3tui-bench-export-"))
    try:
        model_dir = tmp / "model"
        # Built in a child so this process stays small while it starts the measured children.
        build = subprocess.run(
            [sys.executable, __file__, "--build-only", str(model_dir), "--layers", str(args.layers), "--hidden", str(args.hidden), "--dtype", args.dtype],
            capture_output=True, text=True, check=False,
        )
        if build.returncode != 0:
            raise SystemExit(build.stderr[-2000:])
        f16_size = int(build.stdout.strip().splitlines()[-1])
        print(f"model: {f16_size / 2 / 1e6:.0f}M parameters, {args.dtype} safetensors, f16 {f16_size / 1e6:.0f} MB ({args.layers} layers, hidden {args.hidden})")
        runs: dict[str, list[dict]] = {"mlx": [], "phi3tui": []}
        for i in range(args.repeats):
            for kind in ("mlx", "phi3tui") if i % 2 == 0 else ("phi3tui", "mlx"):
                r = run_child(kind, model_dir, tmp / f"{kind}.gguf")
                runs[kind].append(r)
                print(f"  {kind:8s} run {i + 1}: {r['seconds']:.2f} s, peak +{r['peak_growth'] / 1e6:.0f} MB, file {r['size'] / 1e6:.0f} MB", flush=True)
        med = {k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "peak_growth")} for k, v in runs.items()}
        for kind in runs:
            print(f"{kind:8s} median {med[kind]['seconds']:.2f} s, peak memory +{med[kind]['peak_growth'] / 1e6:.0f} MB")
        mem_ratio = med["phi3tui"]["peak_growth"] / f16_size
        time_ratio = med["phi3tui"]["seconds"] / med["mlx"]["seconds"]
        print(f"export peak memory / f16 model size {mem_ratio:.2f} (phi3tui +{med['phi3tui']['peak_growth'] / 1e6:.0f} MB / {f16_size / 1e6:.0f} MB; goal <= 0.5)")
        print(f"GGUF f16 export time ratio {time_ratio:.2f} (phi3tui {med['phi3tui']['seconds']:.2f} s / mx.save_gguf {med['mlx']['seconds']:.2f} s, median of {args.repeats}; goal <= 1.5)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
