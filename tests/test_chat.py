"""Chat: base and adapted answers side by side from one copy of the weights (core, CLI, screen).

Adapters are trained for real with `python -m mlx_lm lora` on the demo model (a few iterations with
numbered checkpoints), once per module.
"""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from phi3tui.core.chat.session import BASE, ChatError, ChatSession, GenerationSettings, ModelWorker, Side, batch_compare, demo_step, newest_adapter, read_prompts, side_for_path
from phi3tui.core.chat.sides import side_choices
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli
from tests.test_export_fixtures import record_run

QUESTIONS = ["Is the sun a star?", "Do ants carry fifty times their weight?", "Why is the sky blue?"]


def train(ws: Path, run_id: str, iters: int, rank: int = 16) -> Path:
    """A real mlx-lm LoRA run into runs/<run_id>/adapters, with a checkpoint every 10 iterations."""
    config = ws / f"lora_{run_id}.yaml"
    text = (ws / "lora_config.yaml").read_text().replace("rank: 16", f"rank: {rank}")
    config.write_text(text)
    adapters = ws / "runs" / run_id / "adapters"
    subprocess.run(
        [sys.executable, "-m", "mlx_lm", "lora", "--config", config.name, "--iters", str(iters),
         "--save-every", "10", "--steps-per-eval", "1000", "--val-batches", "1", "--adapter-path", str(adapters)],
        cwd=ws, check=True, capture_output=True, timeout=300,
    )
    record_run(adapters.parent)
    return adapters


def write_foreign_adapter(folder: Path, config_from: Path) -> Path:
    """An adapter folder made for another model: the demo's layer names with other sizes."""
    import mlx.core as mx

    folder.mkdir()
    shutil.copy(config_from / "adapter_config.json", folder)
    mx.save_safetensors(
        str(folder / "adapters.safetensors"),
        {"model.layers.0.mlp.down_proj.lora_a": mx.zeros((3072, 8)), "model.layers.0.mlp.down_proj.lora_b": mx.zeros((8, 96))},
    )
    return folder


@pytest.fixture(scope="module")
def trained(trained_r1_template, tmp_path_factory) -> Path:
    """A workspace with two runs: r1 (rank 16, checkpoints 10, 20, latest) and r2 (rank 4, other weights)."""
    ws = tmp_path_factory.mktemp("chat") / "ws"
    shutil.copytree(trained_r1_template, ws)  # r1, trained once per session
    train(ws, "20260101-0001-r2", 10, rank=4)
    return ws


@pytest.fixture(scope="module")
def chat_model(trained):
    from phi3tui.core.chat.model import ChatModel

    return ChatModel(str(trained / "model"))


def reference_tokens(model_dir: Path, prompt: list[int], max_tokens: int, adapter: Path | None = None,
                     checkpoint: Path | None = None, dtype=None, stop_at_end: bool = True) -> list[int]:
    """What plain mlx-lm generates (greedy), loading the model separately, up to <|end|>/EOS (or
    max_tokens exactly when stop_at_end is False)."""
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.generate import generate_step
    from mlx_lm.tuner.utils import load_adapters

    if dtype is None:
        model, tokenizer = load(str(model_dir), adapter_path=str(adapter) if adapter else None)
    else:  # cast the base first, then add the (float32) adapter, as a bfloat16 model would have it
        model, tokenizer = load(str(model_dir))
        model.set_dtype(dtype)
        if adapter is not None:
            load_adapters(model, str(adapter))
    if checkpoint is not None:
        model.load_weights(str(checkpoint), strict=False)
    tokenizer.add_eos_token("<|end|>")
    out = []
    for token, _ in generate_step(mx.array(prompt), model, max_tokens=max_tokens):
        if stop_at_end and token in tokenizer.eos_token_ids:
            break
        out.append(token)
    return out


def our_tokens(chat_model, prompts, settings) -> tuple[list[list[int]], list]:
    rows = [[] for _ in prompts]
    stats = []
    for events, stats in chat_model.generate(prompts, list(range(len(prompts))), settings):
        for event in events:
            if event.finish != "stop":
                rows[event.row].append(event.token)
    return rows, stats


def test_greedy_panes_equal_mlx_lm_without_and_with_the_adapter(trained, chat_model):
    adapter = newest_adapter(trained)
    assert adapter.run_dir.name == "20260101-0001-r2"
    r1 = side_for_path(trained / "runs" / "20260101-0000-r1")
    chat_model.set_sides([BASE, r1])
    settings = GenerationSettings(max_tokens=40)
    stopped_early = 0
    for question in QUESTIONS:
        prompt = chat_model.prompt_tokens([{"role": "user", "content": question}])
        (base, adapted), stats = our_tokens(chat_model, [prompt, prompt], settings)
        assert base == reference_tokens(trained / "model", prompt, 40)
        assert adapted == reference_tokens(trained / "model", prompt, 40, r1.adapter_dir)
        assert base != adapted
        assert all(s.prompt_tokens == len(prompt) and s.ttft_s > 0 for s in stats)
        stopped_early += stats[1].finish == "stop" and len(adapted) < 40
    assert stopped_early, "the trained adapter should end some answer with <|end|> before max_tokens"


def test_rows_of_different_lengths_and_checkpoints_equal_mlx_lm(trained, chat_model):
    """Two conversations of different lengths (a second turn), and two checkpoints of one run side by side."""
    run = trained / "runs" / "20260101-0000-r1" / "adapters"
    early, latest = side_for_path(run, "10"), side_for_path(run, "latest")
    assert early.weights_path.name == "0000010_adapters.safetensors"
    chat_model.set_sides([early, latest])
    short = chat_model.prompt_tokens([{"role": "user", "content": "Hi"}])
    long = chat_model.prompt_tokens(
        [{"role": "user", "content": QUESTIONS[1]}, {"role": "assistant", "content": "No."},
         {"role": "user", "content": QUESTIONS[2]}]
    )
    (left, right), _ = our_tokens(chat_model, [long, short], GenerationSettings(max_tokens=30))
    assert left == reference_tokens(trained / "model", long, 30, run, checkpoint=early.weights_path)
    assert right == reference_tokens(trained / "model", short, 30, run)


def test_two_runs_with_different_ranks_side_by_side(trained, chat_model):
    r1 = side_for_path(trained / "runs" / "20260101-0000-r1")
    r2 = side_for_path(trained / "runs" / "20260101-0001-r2")
    chat_model.set_sides([r1, r2])
    prompt = chat_model.prompt_tokens([{"role": "user", "content": QUESTIONS[0]}])
    (a, b), _ = our_tokens(chat_model, [prompt, prompt], GenerationSettings(max_tokens=20))
    assert a == reference_tokens(trained / "model", prompt, 20, r1.adapter_dir)
    assert b == reference_tokens(trained / "model", prompt, 20, r2.adapter_dir)


def test_long_answers_on_the_compiled_decode_path_equal_mlx_lm(trained):
    """300 tokens each (mlx-lm's KV cache grows in steps of 256), end tokens ignored: one-token steps run
    rope and rms_norm compiled on the CPU and the adapters on 2-D rows, and still give mlx-lm's tokens,
    both panes together and one pane alone; the model keeps mlx-lm's parameter names."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load

    from phi3tui.core.chat.model import ChatModel

    r1 = side_for_path(trained / "runs" / "20260101-0000-r1")
    chat = ChatModel(str(trained / "model"))
    # The demo model has 4 blocks: 4 RoPE layers and 9 RMSNorms (2 per block and the final one).
    assert chat.compiled_layers == (13 if mx.default_device() == mx.cpu else 0)
    plain, _ = load(str(trained / "model"))
    assert [k for k, _ in tree_flatten(chat.model.parameters())] == [k for k, _ in tree_flatten(plain.parameters())]
    chat.tokenizer.eos_token_ids = []
    prompt = chat.prompt_tokens([{"role": "user", "content": QUESTIONS[1]}])
    base_ref = reference_tokens(trained / "model", prompt, 300, stop_at_end=False)
    adapted_ref = reference_tokens(trained / "model", prompt, 300, r1.adapter_dir, stop_at_end=False)
    assert len(base_ref) == len(adapted_ref) == 300 and base_ref != adapted_ref
    chat.set_sides([BASE, r1])
    (base, adapted), _ = our_tokens(chat, [prompt, prompt], GenerationSettings(max_tokens=300))
    assert base == base_ref
    assert adapted == adapted_ref
    chat.set_sides([r1])
    (alone,), _ = our_tokens(chat, [prompt], GenerationSettings(max_tokens=300))
    assert alone == adapted_ref


def test_switching_adapters_keeps_one_copy_of_the_base_weights(trained):
    import mlx.core as mx
    from mlx_lm import load

    from phi3tui.core.chat.model import ChatModel

    r1 = side_for_path(trained / "runs" / "20260101-0000-r1")
    gc.collect()
    mx.clear_cache()
    before = mx.get_active_memory()
    plain, _ = load(str(trained / "model"), adapter_path=str(r1.adapter_dir))
    mx.eval(plain.parameters())
    one_model_with_adapter = mx.get_active_memory() - before
    del plain
    gc.collect()
    mx.clear_cache()

    before = mx.get_active_memory()
    model = ChatModel(str(trained / "model"))
    model.set_sides([BASE, r1])
    both_sides = mx.get_active_memory() - before
    assert both_sides <= 1.1 * one_model_with_adapter, (both_sides, one_model_with_adapter)

    # Switching checkpoints and runs loads adapter weights only: the base arrays stay the very same.
    layer = model.model.model.layers[0].self_attn.qkv_proj
    base_weight = layer.linear.weight
    for side in side_choices(trained)[1:]:
        model.set_sides([BASE, side])
    assert model.model.model.layers[0].self_attn.qkv_proj.linear.weight is base_weight
    assert mx.get_active_memory() - before <= 1.1 * one_model_with_adapter


def test_errors_are_messages(trained, chat_model, tmp_path):
    from phi3tui.core.chat.model import ChatModel

    other = write_foreign_adapter(tmp_path / "other-adapter", trained / "runs" / "20260101-0000-r1" / "adapters")
    r1 = side_for_path(trained / "runs" / "20260101-0000-r1")
    chat_model.set_sides([BASE, r1])
    with pytest.raises(ChatError, match="made for another model"):
        chat_model.set_sides([BASE, side_for_path(other)])
    assert chat_model.sides == (BASE, r1)  # nothing changed

    with pytest.raises(ChatError, match="cannot load the model"):
        ChatModel(str(tmp_path / "no-such-model"))
    with pytest.raises(ChatError, match="not an adapter folder"):
        side_for_path(tmp_path)
    with pytest.raises(ChatError, match="no checkpoint '15'"):
        side_for_path(r1.adapter_dir, "15")
    empty = tmp_path / "fresh"
    shutil.copytree(trained, empty, ignore=shutil.ignore_patterns("runs"))
    with pytest.raises(ChatError, match="no adapters in .*train a run first"):
        newest_adapter(empty)
    with pytest.raises(ChatError, match="temp: 'hot' is not a number"):
        GenerationSettings.from_text({"temp": "hot"})
    with pytest.raises(ChatError, match="top_p is 2.0"):
        GenerationSettings.from_text({"top_p": "2"})


def test_sampling_settings_reach_both_rows(trained, chat_model):
    """Same seed, same answers; a different seed changes them; max_tokens bounds each row."""
    r1 = side_for_path(trained / "runs" / "20260101-0000-r1")
    chat_model.set_sides([BASE, r1])
    prompt = chat_model.prompt_tokens([{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTIONS[2]}])
    settings = GenerationSettings(temp=1.0, top_p=0.9, min_p=0.05, repetition_penalty=1.3, max_tokens=12, seed=7)
    first, stats = our_tokens(chat_model, [prompt, prompt], settings)
    again, _ = our_tokens(chat_model, [prompt, prompt], settings)
    other, _ = our_tokens(chat_model, [prompt, prompt], GenerationSettings(**{**settings.__dict__, "seed": 8}))
    assert first == again and first != other
    assert all(len(row) <= 12 for row in first) and stats[0].finish in ("length", "stop")


def test_worker_thread_runs_jobs_in_order_and_stops_on_request(trained):
    worker = ModelWorker()
    seen = []
    done = threading.Event()
    first_token = threading.Event()

    def generate(w):
        model = w.chat_model(str(trained / "model"))
        seen.append(threading.current_thread().name)
        session = ChatSession(Workspace.open(trained), sides=[BASE, None])
        session.settings = GenerationSettings(max_tokens=100_000)
        for events, stats in session.ask(model, "Tell me everything", w.cancel):
            first_token.set()
            seen.append(stats[0].finish)
        done.set()

    worker.submit(generate)
    worker.submit(lambda w: seen.append("next job"))
    assert first_token.wait(60)
    worker.stop()
    assert done.wait(30)
    worker.close()
    assert seen[0] == "phi3tui-model"
    assert seen[-2] == "stopped" and seen[-1] == "next job"


def test_batch_compare_writes_one_line_per_prompt(trained, chat_model, tmp_path):
    ws = Workspace.open(trained)
    r1 = side_for_path(trained / "runs" / "20260101-0000-r1")
    out, records = batch_compare(chat_model, ws, [BASE, r1], GenerationSettings(max_tokens=16), limit=4)
    assert out.parent == trained / "runs" / "20260101-0000-r1" and out.suffix == ".jsonl"
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    test_split = read_prompts(trained / "data" / "test.jsonl")
    assert len(lines) == 4 == len(records)
    assert [r["prompt"] for r in lines] == [p.prompt for p in test_split[:4]]
    assert all(r["reference"] and r["left"]["side"] == "base" and r["right"]["side"] == r1.label for r in lines)
    # A second compare never overwrites the first.
    out2, _ = batch_compare(chat_model, ws, [BASE, r1], GenerationSettings(max_tokens=4), limit=1)
    assert out2 != out and len(out.read_text().splitlines()) == 4

    # Bad input names the file and line and writes nothing.
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt": "fine"}\n{not json\n')
    before = sorted(p.name for p in out.parent.iterdir())
    with pytest.raises(ChatError, match=r"prompts.jsonl:2: not valid JSON"):
        batch_compare(chat_model, ws, [BASE, r1], GenerationSettings(), bad)
    assert sorted(p.name for p in out.parent.iterdir()) == before


def test_cli_compare(trained, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Is the sun a star?\nWhy is the sky blue?\n")
    result = run_cli("chat", "compare", str(trained), "--prompts", str(prompts), "--max-tokens", "8",
                     "--adapter-path", str(trained / "runs" / "20260101-0000-r1"), "--checkpoint", "10")
    assert result.returncode == 0, result.stderr
    saved = Path(result.stdout.strip().splitlines()[-1].split("saved to ")[1])
    assert len(saved.read_text().splitlines()) == 2
    assert "#2 Why is the sky blue?" in result.stdout and "iteration 10" in result.stdout

    bad = run_cli("chat", "compare", str(trained), "--prompts", str(tmp_path / "missing.jsonl"))
    assert bad.returncode == 2 and "missing.jsonl does not exist" in bad.stderr
    help_text = run_cli("chat", "compare", "--help").stdout
    for option in ("--adapter-path", "--checkpoint", "--prompts", "--temp", "--top-p", "--min-p", "--max-tokens", "--seed", "--system-prompt"):
        assert option in help_text


def test_demo_step_uses_the_newest_run(trained):
    state: dict = {}
    line = demo_step(Workspace.open(trained), state)
    assert "3 test prompts" in line and "base vs run 20260101-0001-r2" in line
    assert len(Path(state["compare_path"]).read_text().splitlines()) == 3
    with pytest.raises(ChatError):
        demo_step(Workspace.open(trained), {"adapter_dir": str(trained / "data")})


def test_sides_offered(trained):
    choices = side_choices(trained)
    assert choices[0] == BASE
    labels = [c.label for c in choices]
    assert "run 20260101-0000-r1 · iteration 10" in labels and "run 20260101-0001-r2 · latest" in labels
    assert all(isinstance(c, Side) for c in choices)


def test_bfloat16_model_equal_mlx_lm(trained):
    """Phi-3 ships in bfloat16 while adapters are saved in float32: the mixed dtypes still match mlx-lm."""
    import mlx.core as mx

    from phi3tui.core.chat.model import ChatModel

    r1 = side_for_path(trained / "runs" / "20260101-0000-r1")
    chat = ChatModel(str(trained / "model"))
    chat.model.set_dtype(mx.bfloat16)
    chat.set_sides([BASE, r1])
    prompt = chat.prompt_tokens([{"role": "user", "content": QUESTIONS[0]}])
    (base, adapted), _ = our_tokens(chat, [prompt, prompt], GenerationSettings(max_tokens=30))
    assert base == reference_tokens(trained / "model", prompt, 30, dtype=mx.bfloat16)
    assert adapted == reference_tokens(trained / "model", prompt, 30, r1.adapter_dir, dtype=mx.bfloat16)
