"""Fuse: phi3tui's streaming fuse against the real `mlx_lm fuse`, same model, same adapter.

Builds a random bf16 Phi-3 (~160M parameters: Phi-3-mini's shapes scaled down — head size 96, MLP 8/3 of
the hidden size, vocab 32064 — with the demo tokenizer) and a rank-16 LoRA adapter with random non-zero
weights on every layer's qkv_proj and o_proj, in a temporary folder. Then alternates, in fresh child processes:
  - mlx_lm:  `mlx_lm.fuse.main()` with `--model M --adapter-path A --save-path OUT` (the `mlx_lm fuse` command)
  - phi3tui: `phi3tui.core.export.fuse.fuse(M, adapter, OUT)`
Each child reports the wall time of the fuse and its memory: peak RSS (VmHWM) minus the RSS of the idle
process once mlx-lm (and phi3tui's fuse module) are imported. The two outputs are checked tensor by tensor.
Prints medians, then the two ratios last.

    python bench/fuse_memory.py [--repeats 3] [--layers 16] [--hidden 768]
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
kind, model_dir, adapter_dir, out, repo = sys.argv[1:6]
sys.path.insert(0, repo)
import mlx_lm.fuse
if kind == "phi3tui":
    from pathlib import Path
    from phi3tui.core.export.fuse import fuse
    from phi3tui.core.export.paths import resolve_adapter
    adapter = resolve_adapter(Path(adapter_dir).parent, adapter_dir)
before = psutil.Process().memory_info().rss
t0 = time.perf_counter()
if kind == "mlx_lm":
    sys.argv = ["mlx_lm.fuse", "--model", model_dir, "--adapter-path", adapter_dir, "--save-path", out]
    mlx_lm.fuse.main()
else:
    fuse(model_dir, adapter, Path(out))
seconds = time.perf_counter() - t0
sys.path.insert(0, repo + "/bench")
from peak_rss import peak_rss
peak = peak_rss()
print(json.dumps({"seconds": seconds, "peak_growth": max(0, peak - before)}))
"""


def build(target: Path, layers: int, hidden: int) -> int:
    """A random bf16 Phi-3 at target/model and a LoRA adapter at target/adapters; returns the model's size in bytes."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import phi3
    from mlx_lm.tuner.utils import linear_to_lora_layers

    sys.path.insert(0, str(REPO))
    from phi3tui.core.demo import DEMO_MODEL_CONFIG, write_demo_tokenizer

    model_dir, adapter_dir = target / "model", target / "adapters"
    ids = write_demo_tokenizer(model_dir)
    config = dict(DEMO_MODEL_CONFIG)
    config.update(
        hidden_size=hidden, num_hidden_layers=layers, intermediate_size=hidden * 8 // 3, num_attention_heads=hidden // 96,
        num_key_value_heads=hidden // 96, vocab_size=32064, torch_dtype="bfloat16",
        eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
    )
    model = phi3.Model(phi3.ModelArgs.from_dict(config))
    model.set_dtype(mx.bfloat16)
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    mx.save_safetensors(str(model_dir / "model.safetensors"), weights, metadata={"format": "mlx"})
    (model_dir / "config.json").write_text(json.dumps(config, indent=2))
    size = sum(v.nbytes for v in weights.values())

    lora = {"rank": 16, "scale": 2.0, "dropout": 0.0, "keys": ["self_attn.qkv_proj", "self_attn.o_proj"]}
    model.freeze()
    linear_to_lora_layers(model, layers, lora)
    adapter = {k: mx.random.normal(v.shape, scale=0.02).astype(v.dtype) for k, v in tree_flatten(model.trainable_parameters())}
    adapter_dir.mkdir()
    mx.save_safetensors(str(adapter_dir / "adapters.safetensors"), adapter)
    (adapter_dir / "adapter_config.json").write_text(json.dumps(
        {"fine_tune_type": "lora", "num_layers": layers, "lora_parameters": lora, "model": str(model_dir)}, indent=2))
    return size


def run_child(kind: str, tmp: Path, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(tmp / "model"), str(tmp / "adapters"), str(out), str(REPO)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def same_tensors(a: Path, b: Path) -> bool:
    import mlx.core as mx

    x, y = mx.load(str(a / "model.safetensors")), mx.load(str(b / "model.safetensors"))
    return sorted(x) == sorted(y) and all(x[k].dtype == y[k].dtype and mx.array_equal(x[k], y[k]).item() for k in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=768, help="a multiple of 96 (Phi-3's head size)")
    parser.add_argument("--build-only", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        print(build(Path(args.build_only), args.layers, args.hidden))
        return
    tmp = Path(tempfile.mkdtemp(prefix="phi3tui-bench-fuse-"))
    try:
        # Built in a child so this process stays small while it starts the measured children.
        proc = subprocess.run(
            [sys.executable, __file__, "--build-only", str(tmp), "--layers", str(args.layers), "--hidden", str(args.hidden)],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        size = int(proc.stdout.strip().splitlines()[-1])
        print(f"model: {size / 2 / 1e6:.0f}M parameters, bf16 {size / 1e6:.0f} MB ({args.layers} layers, hidden {args.hidden}); "
              "LoRA rank 16 on qkv_proj and o_proj of every layer")
        runs: dict[str, list[dict]] = {"mlx_lm": [], "phi3tui": []}
        for i in range(args.repeats):
            for kind in ("mlx_lm", "phi3tui") if i % 2 == 0 else ("phi3tui", "mlx_lm"):
                out = tmp / f"out-{kind}"
                shutil.rmtree(out, ignore_errors=True)
                r = run_child(kind, tmp, out)
                runs[kind].append(r)
                print(f"  {kind:8s} run {i + 1}: {r['seconds']:.2f} s, peak +{r['peak_growth'] / 1e6:.0f} MB", flush=True)
        if not same_tensors(tmp / "out-mlx_lm", tmp / "out-phi3tui"):
            raise SystemExit("the two fused models differ")
        print("outputs: the same tensors, bit for bit")
        med = {k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "peak_growth")} for k, v in runs.items()}
        for kind in runs:
            print(f"{kind:8s} median {med[kind]['seconds']:.2f} s, peak memory +{med[kind]['peak_growth'] / 1e6:.0f} MB "
                  f"({med[kind]['peak_growth'] / size:.2f}x the model)")
        mem_ratio = med["phi3tui"]["peak_growth"] / size
        time_ratio = med["phi3tui"]["seconds"] / med["mlx_lm"]["seconds"]
        print(f"fuse peak memory / model size {mem_ratio:.2f} (phi3tui +{med['phi3tui']['peak_growth'] / 1e6:.0f} MB / {size / 1e6:.0f} MB; "
              f"mlx_lm fuse {med['mlx_lm']['peak_growth'] / size:.2f}; goal <= 0.3)")
        print(f"fuse time ratio {time_ratio:.2f} (phi3tui {med['phi3tui']['seconds']:.2f} s / mlx_lm fuse {med['mlx_lm']['seconds']:.2f} s, "
              f"median of {args.repeats}; goal <= 1.1)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
