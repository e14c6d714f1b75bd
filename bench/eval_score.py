"""Evaluate's multiple-choice scoring against a plain mlx-lm log-likelihood loop over the same items.

Both sides (base and adapted) score every answer of N questions of the demo's test split:
  - ours: one ChatModel (one copy of the weights), one forward pass per question with every answer as
    both sides (per-row adapters), as `phi3tui eval` runs it
  - plain: mlx_lm.load without and with adapter_path (two copies), one forward pass per answer each,
    the log-probabilities of the answer's tokens summed
Alternating A/B, medians. Printed: time ours / plain (goal <= 1.2) and the loaded MLX memory ours / plain.
The scores themselves are checked to agree (tests/test_eval.py checks them exactly).

    python bench/eval_score.py [--items 40] [--repeats 3] [--sizes demo[,27m]]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_compare import build  # noqa: E402  (the same demo / 27M workspace and random adapter)


def plain_scores(model, tokenizer, items) -> list[float]:
    import mlx.core as mx

    from phi3tui.core.eval.scoring import continuation, mc_prompt

    out = []
    for item in items:
        prompt = mc_prompt(tokenizer, item.question)
        for answer in list(item.correct) + list(item.incorrect):
            whole, start = continuation(tokenizer, prompt, answer)
            logits = model(mx.array([whole[:-1]]))[0].astype(mx.float32)
            logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            picked = mx.take_along_axis(logprobs[start - 1 :], mx.array(whole[start:])[:, None], axis=-1)
            out.append(mx.sum(picked).item())
    return out


def ours_scores(chat, items) -> list[list[float]]:
    from phi3tui.core.eval.scoring import score_item

    return [score_item(chat, item, 2) for item in items]


def bench(size: str, root: Path, n_items: int, repeats: int) -> dict:
    import mlx.core as mx
    from mlx_lm import load

    from phi3tui.core.chat import BASE, side_for_path
    from phi3tui.core.chat.model import ChatModel
    from phi3tui.core.eval import split_items

    model_dir, adapter = build(root, size)
    items = split_items(model_dir.parent / "data" / "test.jsonl")[:n_items]
    answers = sum(len(i.correct) + len(i.incorrect) for i in items)
    mx.clear_cache()
    before = mx.get_active_memory()
    chat = ChatModel(model_dir)
    chat.set_sides([BASE, side_for_path(adapter)])
    ours_memory = mx.get_active_memory() - before
    plain = [load(str(model_dir)), load(str(model_dir), adapter_path=str(adapter))]
    plain_memory = mx.get_active_memory() - before - ours_memory
    ours_times, plain_times = [], []
    ours_scores(chat, items[:2]), [plain_scores(m, t, items[:2]) for m, t in plain]  # warm up
    for _ in range(repeats):
        start = time.perf_counter()
        ours = ours_scores(chat, items)
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference = [plain_scores(m, t, items) for m, t in plain]
        plain_times.append(time.perf_counter() - start)
    for side in range(2):  # same numbers, or the timing means nothing
        got = [s for r in ours for s in r[side]["scores"]]
        assert all(abs(a - b) <= 1e-3 + 1e-4 * abs(b) for a, b in zip(got, reference[side])), size
    ours_t, plain_t = statistics.median(ours_times), statistics.median(plain_times)
    print(f"{size}: {len(items)} questions, {answers} answers × 2 sides: ours {ours_t:.3f} s, plain mlx-lm {plain_t:.3f} s; "
          f"loaded MLX memory ours {ours_memory / 2**20:.1f} MiB, plain {plain_memory / 2**20:.1f} MiB")
    del chat, plain
    gc.collect()
    return {"time": ours_t / plain_t, "memory": ours_memory / plain_memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="demo", help="demo,27m adds a ~27M-parameter Phi-3 (minutes on a slow CPU)")
    args = parser.parse_args()
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="phi3tui-bench-eval-") as tmp:
        for size in args.sizes.split(","):
            ratios[size] = bench(size, Path(tmp), args.items, args.repeats)
    print()
    print("scoring time ours / plain mlx-lm loop ratio: " + ", ".join(f"{s} {r['time']:.2f}" for s, r in ratios.items()) + " (goal <= 1.2)")
    print("loaded MLX memory ours / plain ratio: " + ", ".join(f"{s} {r['memory']:.2f}" for s, r in ratios.items()) + " (one copy of the weights: about 0.5)")


if __name__ == "__main__":
    main()
