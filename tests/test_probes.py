"""Probes during training: the real runner on the demo model answers probe_prompts greedily right after
each checkpoint, with the weights it holds, into the run folder; probing changes nothing about training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from phi3tui.core import runs
from phi3tui.core.eval import read_probes
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli

# Dropout on: a probe that left dropout on or drew from MLX's random state would change the weights.
LORA = {"keys": ["self_attn.o_proj", "self_attn.qkv_proj", "mlp.gate_up_proj", "mlp.down_proj"], "rank": 8,
        "scale": 2.0, "dropout": 0.1}
QUICK = dict(iters=20, steps_per_report=5, steps_per_eval=10, save_every=10, val_batches=2, lora_parameters=LORA)


def greedy_answer(model_dir, adapter_dir, prompt: str, max_tokens: int) -> str:
    """The answer plain mlx-lm gives for this checkpoint: load with adapter_path, greedy generate."""
    from mlx_lm import generate, load

    model, tokenizer = load(str(model_dir), adapter_path=str(adapter_dir))
    tokens = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    tokenizer.add_eos_token("<|end|>")
    return generate(model, tokenizer, tokens, max_tokens=max_tokens).strip()


@pytest.fixture(scope="module")
def probed(demo_template, tmp_path_factory):
    """A workspace with one finished run of the real runner that probed 2 test prompts at each checkpoint."""
    ws = tmp_path_factory.mktemp("probes") / "ws"
    shutil.copytree(demo_template, ws)
    run_dir = runs.start_run(Workspace.open(ws), overrides=dict(QUICK, probe_prompts=2, probe_max_tokens=8))
    info = runs.wait_for_run(run_dir, timeout=300)
    assert info["state"] == "finished", (run_dir / "log.txt").read_text()[-2000:]
    return ws, run_dir


def test_probes_after_each_checkpoint_and_identical_training(probed, tmp_path):
    import mlx.core as mx

    ws_root, run_dir = probed
    copy = tmp_path / "ws"
    shutil.copytree(ws_root, copy, ignore=shutil.ignore_patterns("runs"))
    plain = runs.start_run(Workspace.open(copy), overrides=QUICK)  # the same config without probes
    probes = read_probes(run_dir)
    assert sorted(probes) == [10, 20]  # one file per checkpoint
    test_prompts = [json.loads(line) for line in (ws_root / "data" / "test.jsonl").read_text().splitlines()[:2]]
    for iteration, answers in probes.items():
        assert [a["iteration"] for a in answers] == [iteration, iteration]
        assert [a["prompt"] for a in answers] == [runs_prompt(r) for r in test_prompts]

    # The answer is the checkpoint's own: plain mlx-lm, loading that checkpoint, says the same.
    check = tmp_path / "ckpt10"
    check.mkdir()
    shutil.copy(run_dir / "adapters" / "adapter_config.json", check)
    shutil.copy(run_dir / "adapters" / "0000010_adapters.safetensors", check / "adapters.safetensors")
    first = probes[10][0]
    assert first["answer"] == greedy_answer(ws_root / "model", check, first["prompt"], 8)

    # Probing leaves training exactly as it was: the same final weights, bit for bit.
    assert runs.wait_for_run(plain, timeout=300)["state"] == "finished"
    assert not (plain / "probes").exists()
    a = mx.load(str(run_dir / "adapters" / "adapters.safetensors"))
    b = mx.load(str(plain / "adapters" / "adapters.safetensors"))
    assert a.keys() == b.keys()
    assert max(mx.max(mx.abs(a[k] - b[k])).item() for k in a) == 0.0

    # The CLI prints them, newest checkpoint first.
    out = run_cli("runs", "probes", run_dir.name, str(ws_root))
    assert out.returncode == 0, out.stderr
    assert out.stdout.index("iteration 20") < out.stdout.index("iteration 10")
    assert first["prompt"] in out.stdout and first["answer"] in out.stdout


async def test_train_screen_shows_newest_probes_and_steps_through_checkpoints(probed):
    from phi3tui.app import Phi3App

    ws_root, run_dir = probed
    probes = read_probes(run_dir)
    app = Phi3App(Workspace.open(ws_root), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        screen.attach(run_dir)
        await pilot.pause()

        def panel() -> str:
            return str(screen.query_one("#run-probes").render())

        assert screen.query_one("#run-probes").display and not screen.query_one("#run-log").display
        assert "iteration 20 (2/2)" in panel()
        assert all(a["prompt"][:30] in panel() for a in probes[20])
        await pilot.press("[")
        assert "iteration 10 (1/2)" in panel()
        assert probes[10][0]["answer"][:30] in panel()
        await pilot.press("[")  # already the earliest
        assert "iteration 10 (1/2)" in panel()
        await pilot.press("]")
        assert "iteration 20 (2/2)" in panel()
        changed = probes[10][0]["answer"] != probes[20][0]["answer"]
        assert ("A≠" in panel().splitlines()[2]) == changed  # a changed answer is marked
        await pilot.press("a")  # back to the log
        await pilot.pause()
        assert screen.query_one("#run-log").display and not screen.query_one("#run-probes").display


def runs_prompt(record: dict) -> str:
    from phi3tui.core.chat import prompt_from_record

    return prompt_from_record(record)[0]


@pytest.mark.parametrize(
    "value, said",
    [("missing.txt", "missing.txt does not exist"), (0, "at least 1"), (True, "a file of prompts or a whole number")],
)
def test_bad_probe_prompts_are_refused_before_a_run_starts(demo_workspace, value, said):
    config = demo_workspace / "lora_config.yaml"
    config.write_text(config.read_text() + f"probe_prompts: {json.dumps(value)}\n")
    before = sorted(p.name for p in demo_workspace.rglob("*"))
    out = run_cli("train", "-w", str(demo_workspace))
    assert out.returncode != 0
    assert "probe_prompts" in out.stderr and said in out.stderr, out.stderr
    assert sorted(p.name for p in demo_workspace.rglob("*")) == before  # no run folder


def test_probe_file_one_prompt_a_line_or_jsonl(demo_workspace):
    from phi3tui.core.eval import EvalError, read_probe_prompts

    (demo_workspace / "probes.txt").write_text("What is 2+2?\n\nName a colour.\n")
    (demo_workspace / "probes.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "Hi?"}]}) + "\n"
                                                 + json.dumps({"prompt": "Why?"}) + "\n")
    data = demo_workspace / "data"
    assert [p.prompt for p in read_probe_prompts("probes.txt", demo_workspace, data)] == ["What is 2+2?", "Name a colour."]
    assert [p.prompt for p in read_probe_prompts("probes.jsonl", demo_workspace, data)] == ["Hi?", "Why?"]
    assert len(read_probe_prompts(3, demo_workspace, data)) == 3
    (demo_workspace / "bad.jsonl").write_text('{"prompt": "ok"}\n{"nothing": 1}\n')
    with pytest.raises(EvalError, match=r"probe_prompts: .*bad.jsonl:2"):
        read_probe_prompts("bad.jsonl", demo_workspace, data)


async def test_scores_per_checkpoint_in_the_train_screen_and_promote_by_score(probed, tmp_path):
    from textual.widgets import DataTable

    from phi3tui.app import Phi3App
    from phi3tui.core.adapters import iteration_of
    from phi3tui.core.eval import checkpoint_scores
    from phi3tui.core.run_folder import read_run_json

    ws_root, probed_run = probed
    ws = tmp_path / "ws"
    shutil.copytree(ws_root, ws)
    run = ws / "runs" / probed_run.name
    adapters = run / "adapters"
    latest = (adapters / "adapters.safetensors").read_bytes()
    out = run_cli("runs", "promote", run.name, "--by", "mc2", "-w", str(ws))
    assert out.returncode == 1 and "no evaluated checkpoint with mc2" in out.stderr, out.stderr
    assert (adapters / "adapters.safetensors").read_bytes() == latest  # refused: nothing changed

    results = {}
    for n in (10, 20):
        r = run_cli("eval", str(ws), "--run", run.name, "--checkpoint", str(n), "--limit", "3", "--max-tokens", "4", "--json")
        assert r.returncode == 0, r.stderr
        results[n] = json.loads(r.stdout)["right"]
    scores = checkpoint_scores(adapters)
    assert {n: [s[k] for k in ("mc1", "mc2", "test_loss")] for n, s in scores.items()} == {
        n: [results[n][k] for k in ("mc1", "mc2", "test_loss")] for n in (10, 20)}
    # The demo model scores MC1 = 0 and MC2 ~ 1e-11 at every checkpoint: cells of "0.00" cannot show a swapped column
    # or a wrong best. A newer evaluation of each checkpoint (the newest counts), the real file with distinct known
    # numbers, can: mc1 != mc2 in each row, and the best by mc2 (10) is not the best by test loss (20) nor the latest.
    known = {10: {"mc1": 0.25, "mc2": 0.75, "test_loss": 2.5}, 20: {"mc1": 0.5, "mc2": 0.375, "test_loss": 2.0}}
    for n, numbers in known.items():
        saved = json.loads(Path(scores[n]["file"]).read_text())
        saved["right"].update(numbers)
        (run / f"eval-99990101-000000-{n}.json").write_text(json.dumps(saved))
        results[n] = {**results[n], **numbers}
    assert {n: {k: s[k] for k in known[n]} for n, s in checkpoint_scores(adapters).items()} == known

    # The Train screen's checkpoint table and runs list show them; p offers each score, and promotes by it.
    best = max((10, 20), key=lambda n: (results[n]["mc2"], -n))  # the earliest wins a tie
    app = Phi3App(Workspace.open(ws), start_mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        screen = app.screen
        screen.attach(run)
        await pilot.pause()
        table_text = str(screen.query_one("#run-checkpoints").render())
        assert "mc2" in table_text
        for n in (10, 20):
            row = next(line for line in table_text.splitlines() if line.split()[:1] == [str(n)])
            assert row.split()[2:4] == [f"{results[n]['mc1']:.2f}", f"{results[n]['mc2']:.2f}"]
        await pilot.press("l")
        await pilot.pause()
        runs_table = app.screen.query_one(DataTable)
        cells = [str(c) for c in runs_table.get_row_at(0)]
        shown_at = int(cells[-1])  # adapters.safetensors holds iteration 20, which was evaluated
        assert shown_at == 20 and cells[-4:-1] == [f"{results[20]['mc1']:.2f}", f"{results[20]['mc2']:.2f}",
                                                   f"{results[20]['test_loss']:.3f}"]
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("p")
        await pilot.pause()
        picker = app.screen
        labels = [label for label, _ in picker.choices]
        assert [value for _, value in picker.choices] == ["val_loss", "mc2", "mc1", "test_loss"]
        assert labels[1] == f"by mc2: iteration {best} ({results[best]['mc2']:.4f})"
        await pilot.press("down", "enter")
        await pilot.pause()
    assert (adapters / "adapters.safetensors").read_bytes() == (adapters / f"{best:07d}_adapters.safetensors").read_bytes()
    assert read_run_json(run)["promoted"]["by"] == "mc2" and iteration_of(adapters / "adapters.safetensors") == best

    best_loss = min((10, 20), key=lambda n: (results[n]["test_loss"], n))
    out = run_cli("runs", "promote", run.name, "--by", "test_loss", "-w", str(ws))
    assert out.returncode == 0 and f"iteration {best_loss} (test loss" in out.stdout, out.stderr
    assert (adapters / "adapters.safetensors").read_bytes() == (adapters / f"{best_loss:07d}_adapters.safetensors").read_bytes()
