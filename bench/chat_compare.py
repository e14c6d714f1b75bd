"""Chat side by side: two panes from one copy of the weights against plain mlx-lm generation.

Measures, on the demo model and on a ~27M-parameter Phi-3 (same tokenizer), alternating A/B, medians:
  - time for both panes (base + adapted, one batch of two rows) to produce N tokens, over the time of
    one pane (the adapted side alone) producing N tokens              goal <= 1.3
  - each pane's decode tokens/s in compare mode over mlx_lm.stream_generate's on the same model
    (base pane vs the plain model, adapted pane vs the model loaded with --adapter-path)   goal >= 0.85
  - peak MLX memory (mx.get_peak_memory) and peak RSS of a child process in compare mode, over a child
    that loads the model with its adapter through mlx_lm.load and generates N tokens    goal <= 1.1
End-of-text is switched off on both sides so every run produces exactly N tokens.

    python bench/chat_compare.py [--tokens 200] [--repeats 3] [--sizes demo,27m]   (27m: a quarter of --tokens)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BIG = {"hidden_size": 512, "num_hidden_layers": 8, "intermediate_size": 1408,
       "num_attention_heads": 8, "num_key_value_heads": 8}
PROMPT = "Do ants carry fifty times their weight in every species?"


def build(root: Path, size: str) -> tuple[Path, Path]:
    """A demo workspace (model resized for '27m') and a LoRA adapter with non-zero random weights."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import phi3
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from phi3tui.core.demo import build_demo

    ws = build_demo(root / size).workspace.root
    model_dir = ws / "model"
    config = json.loads((model_dir / "config.json").read_text())
    if size != "demo":
        config.update(BIG)
        (model_dir / "config.json").write_text(json.dumps(config, indent=2))
    mx.random.seed(1)
    model = phi3.Model(phi3.ModelArgs.from_dict(config))
    if size != "demo":
        mx.eval(model.parameters())
        mx.save_safetensors(str(model_dir / "model.safetensors"), dict(tree_flatten(model.parameters())),
                            metadata={"format": "mlx"})
    model.freeze()
    lora = {"keys": ["self_attn.o_proj", "self_attn.qkv_proj", "mlp.gate_up_proj", "mlp.down_proj"],
            "rank": 16, "scale": 2.0, "dropout": 0.0}
    linear_to_lora_layers(model, config["num_hidden_layers"], lora)
    weights = {k: (v if k.endswith("lora_a") else mx.random.normal(v.shape) * 0.02)
               for k, v in tree_flatten(model.trainable_parameters())}
    adapter = ws / "adapters"
    adapter.mkdir(exist_ok=True)
    mx.save_safetensors(str(adapter / "adapters.safetensors"), weights)
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"fine_tune_type": "lora", "num_layers": config["num_hidden_layers"], "lora_parameters": lora, "model": "model"}))
    return model_dir, adapter


def decode_rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def plain_run(model, tokenizer, prompt, n):
    from mlx_lm import stream_generate

    start, cpu, stamps = time.perf_counter(), time.process_time(), []
    for _ in stream_generate(model, tokenizer, prompt, max_tokens=n):
        stamps.append(time.perf_counter())
    assert len(stamps) == n, len(stamps)
    return stamps[-1] - start, decode_rate(stamps), time.process_time() - cpu


def ours_run(chat, prompts, rows, n):
    from phi3tui.core.chat.session import GenerationSettings

    start, cpu, stamps = time.perf_counter(), time.process_time(), []
    for _ in chat.generate(prompts, rows, GenerationSettings(max_tokens=n)):
        stamps.append(time.perf_counter())
    assert len(stamps) == n, len(stamps)
    return stamps[-1] - start, decode_rate(stamps), time.process_time() - cpu


def child(mode: str, model_dir: str, adapter: str, n: int) -> None:
    """Load and generate N tokens one way, then print peak MLX memory and peak RSS (bytes)."""
    import mlx.core as mx

    from phi3tui.core.chat.session import BASE, side_for_path

    if mode == "plain":
        from mlx_lm import load

        model, tokenizer = load(model_dir, adapter_path=adapter)
        tokenizer.eos_token_ids = []
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
        mx.eval(model.parameters())
        loaded = mx.get_active_memory()
        plain_run(model, tokenizer, prompt, n)
    else:
        from phi3tui.core.chat.model import ChatModel

        chat = ChatModel(model_dir)
        chat.tokenizer.eos_token_ids = []
        chat.set_sides([BASE, side_for_path(Path(adapter))])
        prompt = chat.prompt_tokens([{"role": "user", "content": PROMPT}])
        mx.eval(chat.model.parameters())
        loaded = mx.get_active_memory()
        ours_run(chat, [prompt, prompt], [0, 1], n)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    print(json.dumps({"loaded_mlx": loaded, "peak_mlx": mx.get_peak_memory(), "peak_rss": rss}))


def memory(mode: str, model_dir: Path, adapter: Path, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(model_dir), str(adapter), str(n)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(size: str, root: Path, n: int, repeats: int) -> dict:
    from mlx.utils import tree_flatten
    from mlx_lm import load

    from phi3tui.core.chat.session import BASE, side_for_path
    from phi3tui.core.chat.model import ChatModel

    model_dir, adapter = build(root, size)
    base_model, tokenizer = load(str(model_dir))
    adapted_model, _ = load(str(model_dir), adapter_path=str(adapter))
    tokenizer.eos_token_ids = []
    chat = ChatModel(str(model_dir))
    chat.tokenizer.eos_token_ids = []
    chat.set_sides([BASE, side_for_path(adapter)])
    prompt = chat.prompt_tokens([{"role": "user", "content": PROMPT}])
    results = {k: [] for k in ("plain_base", "plain_adapted", "one_pane", "two_panes")}
    ours_run(chat, [prompt, prompt], [0, 1], 8)  # warm-up (ratios below are of medians)
    plain_run(base_model, tokenizer, prompt, 8)
    for _ in range(repeats):
        results["plain_base"].append(plain_run(base_model, tokenizer, prompt, n))
        results["two_panes"].append(ours_run(chat, [prompt, prompt], [0, 1], n))
        results["plain_adapted"].append(plain_run(adapted_model, tokenizer, prompt, n))
        results["one_pane"].append(ours_run(chat, [prompt], [1], n))
    med = {k: tuple(statistics.median(run[i] for run in v) for i in range(3)) for k, v in results.items()}
    mem_plain = memory("plain", model_dir, adapter, n)
    mem_ours = memory("compare", model_dir, adapter, n)
    params = sum(v.size for _, v in tree_flatten(base_model.parameters()))
    print(f"\n[{size}: {params / 1e6:.1f}M parameters, {n} tokens, median of {repeats}]")
    for key, (seconds, rate, cpu) in med.items():
        print(f"  {key:<14} {seconds:7.3f} s   decode {rate:8.1f} tok/s   CPU time {cpu:7.3f} s")
    print(f"  MLX memory after loading: plain {mem_plain['loaded_mlx'] / 1e6:.1f} MB, both sides {mem_ours['loaded_mlx'] / 1e6:.1f} MB")
    print(f"  peak MLX memory: plain {mem_plain['peak_mlx'] / 1e6:.1f} MB, compare {mem_ours['peak_mlx'] / 1e6:.1f} MB")
    print(f"  peak RSS:        plain {mem_plain['peak_rss'] / 1e6:.1f} MB, compare {mem_ours['peak_rss'] / 1e6:.1f} MB")
    return {
        "two/one pane time": med["two_panes"][0] / med["one_pane"][0],
        "two/one pane CPU time": med["two_panes"][2] / med["one_pane"][2],
        "adapted pane tok/s / mlx_lm with adapter": med["two_panes"][1] / med["plain_adapted"][1],
        "base pane tok/s / mlx_lm base model": med["two_panes"][1] / med["plain_base"][1],
        # The same N tokens: CPU seconds of the plain side over ours (steadier than wall time on a shared box).
        "base pane tokens per CPU second / mlx_lm base model": med["plain_base"][2] / med["two_panes"][2],
        "one pane alone tokens per CPU second / mlx_lm with adapter": med["plain_adapted"][2] / med["one_pane"][2],
        "loaded MLX memory compare / plain": mem_ours["loaded_mlx"] / mem_plain["loaded_mlx"],
        "peak MLX memory compare / plain": mem_ours["peak_mlx"] / mem_plain["peak_mlx"],
        "peak RSS compare / plain": mem_ours["peak_rss"] / mem_plain["peak_rss"],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="demo,27m")
    args = parser.parse_args()
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="phi3tui-bench-chat-") as tmp:
        for size in args.sizes.split(","):
            tokens = args.tokens if size == "demo" else max(20, args.tokens // 4)  # the 27M model is ~20x slower here
            ratios[size] = bench(size, Path(tmp), tokens, args.repeats)
    print()
    goals = {"two/one pane time": "<= 1.3", "two/one pane CPU time": "<= 1.3", "adapted pane tok/s / mlx_lm with adapter": ">= 0.85",
             "base pane tok/s / mlx_lm base model": ">= 0.85",
             "base pane tokens per CPU second / mlx_lm base model": ">= 0.85",
             "one pane alone tokens per CPU second / mlx_lm with adapter": ">= 0.85",
             "loaded MLX memory compare / plain": "<= 1.1", "peak MLX memory compare / plain": "<= 1.1",
             "peak RSS compare / plain": "<= 1.1"}
    for name, goal in goals.items():
        print(f"{name} ratio: " + ", ".join(f"{size} {r[name]:.2f}" for size, r in ratios.items()) + f" (goal {goal})")


if __name__ == "__main__":
    main()
