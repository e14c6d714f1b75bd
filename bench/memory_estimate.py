"""The memory check's estimate ÷ the MLX peak a real run reaches, for several configs (issue 23).

Builds random Phi-3s (vocabulary 32064 like Phi-3's, float16, the demo tokenizer) in a temporary workspace with the
demo's records and, for longer rows, the same records joined four at a time. Each config trains a few iterations
through phi3tui's runner; the measured figure is MLX's own peak (mx.get_peak_memory, the runner's peak_mem in
metrics.jsonl, the largest report). The estimate is what `review_config` (the check every run passes) says for the
run's own config.yaml: sized from the data's longest batched record, as the check now does. Goal: 0.85–1.15.

Usage: python bench/memory_estimate.py [--iters 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# (name, model (layers, hidden), data folder, overrides)
CONFIGS = [
    ("h256 L4, batch 4, all blocks", (4, 256), "data", dict(batch_size=4, num_layers=-1)),
    ("h256 L4, batch 8, grad_checkpoint", (4, 256), "data", dict(batch_size=8, num_layers=-1, grad_checkpoint=True)),
    ("h256 L4, batch 2, long rows, 2 blocks", (4, 256), "long", dict(batch_size=2, num_layers=2)),
    ("h384 L6, batch 4, long rows, adamw", (6, 384), "long", dict(batch_size=4, num_layers=4, optimizer="adamw")),
]


def peak_gb(run_dir: Path) -> float:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return max(r["peak_mem"] for r in lines if r["kind"] == "train")


def join_records(source: Path, target: Path, per: int = 4) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        texts = [json.loads(line)["text"] for line in (source / f"{split}.jsonl").read_text().splitlines()]
        joined = ["\n".join(texts[i:i + per]) for i in range(0, len(texts) - per + 1, per)] or ["\n".join(texts)]
        (target / f"{split}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in joined))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()

    from bench.export_gguf import build_model
    from phi3tui.core import runs
    from phi3tui.core.config import review_config
    from phi3tui.core.demo import build_demo
    from phi3tui.core.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="phi3tui-bench-memory-"))
    try:
        root = tmp / "ws"
        build_demo(root)
        join_records(root / "data", root / "long")
        built = {}
        print(f"{'config':40} {'rows':>5} {'estimate':>10} {'measured':>10} {'ratio':>7}")
        ratios = []
        for name, (layers, hidden), data, overrides in CONFIGS:
            model = f"model-{layers}x{hidden}"
            if model not in built:
                built[model] = build_model(root / model, layers, hidden)
            ws = Workspace.open(root)
            common = dict(model=model, data=data, iters=args.iters, steps_per_report=1, steps_per_eval=10_000,
                          val_batches=1, save_every=10_000, test=False, max_seq_length=2048)
            run_dir = runs.start_run(ws, overrides=dict(common, **overrides), keep_awake="off")
            info = runs.wait_for_run(run_dir, timeout=3600)
            if info.get("state") != "finished":
                raise SystemExit(f"{name}: the run ended {info.get('state')}: {info.get('reason')}")
            review = review_config((run_dir / "config.yaml").read_text(), root)
            estimate = review.memory.total / 1e9
            measured = peak_gb(run_dir)
            ratios.append(estimate / measured)
            print(f"{name:40} {review.memory.sequence:>5} {estimate:>8.3f}GB {measured:>8.3f}GB {estimate / measured:>7.2f}")
        print(f"estimate / measured MLX peak: {min(ratios):.2f}–{max(ratios):.2f} (goal 0.85–1.15)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
