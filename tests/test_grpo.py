"""GRPO (issue 27): the reward functions and their config check, the loss against mlx-lm-lora's own grpo_loss,
the reference from the same weights with the adapter off, and real runs on the demo model (rewards recorded,
an exact resume, an adapter mlx_lm.generate loads, a user reward that raises reported with its file and line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phi3tui.core.rewards import load_rewards, parse_reward_spec, reward_problem

RECORD = {"prompt": "Are bats blind?", "answer": "No, bats can see.", "correct_answers": ["No", "Bats can see"]}
QUICK = dict(train_mode="grpo", data="grpo", batch_size=2, group_size=2, max_completion_length=8, val_batches=1,
             reward_functions=["any_correct", "length:1-30"], learning_rate=1e-3)

BROKEN_REWARDS = '''\
def lengths(prompts, completions, answer, **kwargs):
    return [float(len(c)) for c in completions]


def broken(prompts, completions, answer, **kwargs):
    raise RuntimeError("no score for " + answer[0][:2])
'''


@pytest.fixture
def grpo_workspace(demo_workspace):
    """The demo workspace with prompt-answer data in grpo/ (checked line by line by the gate like any data)."""
    from phi3tui.core.demo import write_demo_grpo_data

    write_demo_grpo_data(demo_workspace / "grpo")
    return demo_workspace


# -- reward functions -------------------------------------------------------------------------------------


def test_built_in_rewards_and_their_spelling(tmp_path):
    completions = ["No, bats can see well.", "  no, BATS can see. ", "Yes.", "x" * 40]
    n = len(completions)
    rewards = {r.name: r([RECORD["prompt"]] * n, completions, [RECORD["answer"]] * n, [RECORD] * n)
               for r in load_rewards(["exact", "contains", "any_correct", "length:2-30", "format:^(yes|no)\\b"], tmp_path)}
    assert rewards["exact"] == [0.0, 1.0, 0.0, 0.0]
    assert rewards["contains"] == [0.0, 1.0, 0.0, 0.0]
    assert rewards["any_correct"] == [1.0, 1.0, 0.0, 0.0]
    assert rewards["length:2-30"] == [1.0, 1.0, 1.0, 0.0]
    assert rewards["format:^(yes|no)\\b"] == [0.0, 1.0, 0.0, 0.0]  # case-sensitive, on the stripped text
    # any_correct without correct_answers accepts the answer itself.
    (plain,) = load_rewards(["any_correct"], tmp_path)
    assert plain(["Q"], ["no, bats can see."], [RECORD["answer"]], [{}]) == [1.0]
    assert parse_reward_spec("length:-200").argument == "-200"
    # A user file that fails as it is imported is named with its line.
    from phi3tui.core.rewards import RewardError

    (tmp_path / "bad.py").write_text("import math\n\nVALUE = 1 / 0\n\ndef score(**kwargs):\n    return []\n")
    with pytest.raises(RewardError, match=r"bad\.py:3: ZeroDivisionError"):
        load_rewards(["bad.py:score"], tmp_path)
    for bad in ("lenght", "length:20", "length:9-3", "format:", "format:(", "exact:3", "rewards.txt:fn", ""):
        with pytest.raises(ValueError):
            parse_reward_spec(bad)


def test_reward_function_names_are_checked_before_a_run(grpo_workspace):
    from phi3tui.core.config import review_config

    (grpo_workspace / "rewards.py").write_text(BROKEN_REWARDS, encoding="utf-8")
    assert reward_problem("rewards.py:lengths", grpo_workspace) is None
    assert "does not exist" in reward_problem("missing.py:fn", grpo_workspace)
    assert "defines no function nothing" in reward_problem("rewards.py:nothing", grpo_workspace)
    text = "\n".join(line for line in (grpo_workspace / "lora_config.yaml").read_text().splitlines()
                     if not line.startswith("data:"))

    def errors(extra: str) -> dict:
        review = review_config(text + "\ntrain_mode: grpo\ndata: grpo\n" + extra, grpo_workspace)
        return {f.field: f.message for f in review.errors}

    assert errors("reward_functions: [any_correct, rewards.py:lengths]\nreward_weights: [1.0, 0.5]\n") == {}
    assert "does not exist" in errors("reward_functions: [missing.py:score]\n")["reward_functions"]
    assert "defines no function nothing" in errors("reward_functions: [rewards.py:nothing]\n")["reward_functions"]
    assert "neither a built-in" in errors("reward_functions: [exactly]\n")["reward_functions"]
    bad = errors("group_size: 1\ntemperature: 0\nepsilon: 2\nmax_completion_length: 0\n"
                 "reward_functions: [exact, contains]\nreward_weights: [1.0]\n")
    assert {"group_size", "temperature", "epsilon", "max_completion_length", "reward_weights"} <= bad.keys(), bad
    assert "fine_tune_type" in errors("fine_tune_type: full\n")
    # grpo reads prompt-answer records: the demo's text records are refused, naming train_mode.
    on_text = review_config(text + "\ntrain_mode: grpo\ndata: data\n", grpo_workspace)
    assert any(f.field == "train_mode" and "is grpo" in f.message for f in on_text.errors), on_text.errors
    # The memory estimate counts group_size rows per prompt.
    sft = review_config(text + "\ndata: data\n", grpo_workspace).memory
    grouped = review_config(text + "\ntrain_mode: grpo\ndata: data\ngroup_size: 8\n", grpo_workspace).memory
    assert grouped.activations > 7.9 * sft.activations
    # The keys are the form's, with their defaults; another mode does not look at them.
    from phi3tui.core.config import config_fields

    specs = {s.key: s for s in config_fields()}
    assert specs["group_size"].default == 4 and specs["reward_functions"].default == ["any_correct"]
    assert "grpo" in specs["train_mode"].choices
    assert "group_size" not in {f.field for f in review_config(text + "\ngroup_size: 1\n", grpo_workspace).errors}


# -- the loss and the reference -------------------------------------------------------------------------


def _adapted_model(model_dir: Path, seed: int = 3):
    """The demo model with LoRA layers whose lora_b is random (an adapter that changes the scores)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_unflatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, tokenizer = load(str(model_dir))
    model.freeze()
    linear_to_lora_layers(model, -1, {"rank": 4, "scale": 10.0, "dropout": 0.0})
    mx.random.seed(seed)
    model.update(tree_unflatten([(k, mx.random.normal(v.shape) * 0.05)
                                 for k, v in tree_flatten(model.trainable_parameters()) if k.endswith("lora_b")]))
    return model, tokenizer


def _sampled_batch(model, tokenizer, group_size=2, max_tokens=6):
    """Two prompts of different lengths and group_size sampled completions of each."""
    import mlx.core as mx
    from mlx_lm.sample_utils import make_sampler

    from phi3tui.core.runs import grpo

    prompts = [list(tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True))
               for q in ("Are bats blind?", "Do goldfish really have a memory of only three seconds?")]
    completions = []
    mx.random.seed(11)
    for ids in prompts:
        completions += grpo.sample_group(model, ids, group_size, max_tokens, make_sampler(1.0),
                                         set(tokenizer.eos_token_ids))
    return prompts, completions


def test_grpo_loss_equals_mlx_lm_lora(demo_model):
    lora = pytest.importorskip("mlx_lm_lora.trainer.grpo_trainer", reason="mlx-lm-lora (test extra) is not installed")
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm import load

    from phi3tui.core.runs import grpo
    from phi3tui.core.runs.preference import adapter_off

    model, tokenizer = _adapted_model(demo_model)
    base, _ = load(str(demo_model))  # mlx-lm-lora's reference: a second copy of the model
    prompts, completions = _sampled_batch(model, tokenizer)
    rows = [p for p in prompts for _ in range(2)]
    tokens, mask = grpo.completion_batch(rows, completions)
    advantages = mx.array(grpo.group_advantages([1.0, 0.0, 0.25, 0.75], 2), dtype=mx.float32)
    beta, epsilon = 0.1, 0.2

    policy = grpo.completion_logps(model, tokens, mask)
    with adapter_off(model):
        reference = grpo.completion_logps(model, tokens, mask)
    ours, metrics = grpo.grpo_objective(policy, reference, mask, advantages, beta, epsilon)
    # 1. The objective on the same per-token log-probabilities, advantages and mask: mlx-lm-lora's own.
    theirs, _, their_metrics = lora._grpo_objective(policy, reference, mask, advantages, beta, epsilon, epsilon,
                                                    6, "token", "grpo")
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    assert metrics["kl"].item() == pytest.approx(their_metrics["kl"].item(), rel=1e-6)
    assert metrics["clip_fraction"].item() == their_metrics["clip_ratio_total"].item()
    assert metrics["kl"].item() > 1e-4, "the adapter must move the policy off the reference, or this proves little"
    # 2. End to end: mlx-lm-lora's grpo_loss from the model and its separately loaded reference model.
    batch = (prompts, None, None, None, None)
    their_loss, their_tokens, their_all = lora.grpo_loss(
        model, base, batch, completions=[mx.array(c) for c in completions], batch_indices=[0, 0, 1, 1],
        advantages=advantages, beta=beta, epsilon=epsilon, max_tokens=6)
    assert ours.item() == pytest.approx(their_loss.item(), rel=1e-5)
    assert mask.sum().item() == their_tokens.item() == sum(len(c) for c in completions)
    assert metrics["kl"].item() == pytest.approx(their_all["kl"].item(), rel=1e-4)
    # 3. The same gradient for the adapter.
    task = grpo.GrpoTask.__new__(grpo.GrpoTask)
    task.beta, task.epsilon = beta, epsilon
    ours_grad = nn.value_and_grad(model, task.loss)(model, tokens, mask, reference, advantages)[1]

    def their_value(m):
        loss, toks, _ = lora.grpo_loss(m, base, batch, completions=[mx.array(c) for c in completions],
                                       batch_indices=[0, 0, 1, 1], advantages=advantages, beta=beta,
                                       epsilon=epsilon, max_tokens=6)
        return loss, toks

    their_grad = nn.value_and_grad(model, their_value)(model)[1]
    from mlx.utils import tree_flatten

    ours_flat, theirs_flat = dict(tree_flatten(ours_grad)), dict(tree_flatten(their_grad))
    assert ours_flat.keys() == theirs_flat.keys() and ours_flat
    for key, value in ours_flat.items():
        assert mx.allclose(value, theirs_flat[key], rtol=1e-3, atol=1e-6).item(), key
    print(f"GRPO loss: ours {ours.item():.9f}, mlx-lm-lora objective {theirs.item():.9f}, "
          f"grpo_loss {their_loss.item():.9f}; kl {metrics['kl'].item():.9f}")


def test_reference_is_the_base_model_exactly_from_the_same_weights(demo_model):
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load

    from phi3tui.core.runs import grpo

    model, tokenizer = _adapted_model(demo_model)
    prompts, completions = _sampled_batch(model, tokenizer)
    tokens, mask = grpo.completion_batch([p for p in prompts for _ in range(2)], completions)
    task = grpo.GrpoTask.__new__(grpo.GrpoTask)
    task.reference_weights = None
    model.train()
    arrays = {id(v) for _, v in tree_flatten(model.parameters())}
    reference = task.reference(model, tokens, mask)
    base, _ = load(str(demo_model))  # a second copy, only to compare against
    expected = grpo.completion_logps(base, tokens, mask)
    adapted = grpo.completion_logps(model, tokens, mask)
    assert mx.array_equal(reference, expected).item()
    assert not mx.allclose(adapted, expected).item(), "the adapter must change the scores, or this proves nothing"
    # The adapter is back on, the training mode kept, and no weight was replaced.
    assert model.training and {id(v) for _, v in tree_flatten(model.parameters())} == arrays
    assert mx.array_equal(grpo.completion_logps(model, tokens, mask), adapted).item()
    # Only completion tokens are scored: the mask covers exactly the sampled tokens of each row.
    assert mask.sum(axis=1).tolist() == [len(c) for c in completions]


def test_group_sampling_is_reproducible_from_its_key_and_leaves_the_global_key(demo_model):
    import mlx.core as mx
    from mlx_lm.sample_utils import make_sampler

    from phi3tui.core.runs import grpo

    model, tokenizer = _adapted_model(demo_model)
    ids = list(tokenizer.apply_chat_template([{"role": "user", "content": "Is Earth round?"}], add_generation_prompt=True))
    mx.random.seed(99)
    before = mx.random.state[0].tolist()
    draws = []
    for _ in range(2):
        with grpo.sampling_key(1234):
            draws.append(grpo.sample_group(model, ids, 3, 8, make_sampler(1.0), set(tokenizer.eos_token_ids)))
    assert draws[0] == draws[1] and len(draws[0]) == 3
    assert len({tuple(c) for c in draws[0]}) > 1, "a group at temperature 1 should differ"
    assert mx.random.state[0].tolist() == before
    # Greedy, each row of the group is what mlx-lm's own generate_step makes of the prompt (the shared prompt
    # cache repeated for the rows decodes as a fresh cache would).
    from mlx_lm.generate import generate_step

    eos = set(tokenizer.eos_token_ids)
    greedy = grpo.sample_group(model, ids, 2, 12, make_sampler(0.0), eos)
    expected = []
    for token, _ in generate_step(mx.array(ids), model, max_tokens=12, sampler=make_sampler(0.0)):
        expected.append(int(token))
        if int(token) in eos:
            break
    assert greedy == [expected, expected]


# -- real runs --------------------------------------------------------------------------------------------


def flat(rows: list[tuple]) -> list[float]:
    return [float(x) for row in rows for x in row]


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == kind]


def test_grpo_run_records_rewards_resumes_exactly_and_its_adapter_loads_in_mlx_lm(grpo_workspace):
    from mlx_lm import generate, load

    from phi3tui.core import runs
    from phi3tui.core.run_folder import read_latest_samples
    from phi3tui.core.workspace import Workspace
    from tests.test_runner import straight_and_stopped_runs

    ws = Workspace.open(grpo_workspace)
    quick = dict(QUICK, iters=20, steps_per_report=5, steps_per_eval=5, save_every=10)
    straight, stopped, at = straight_and_stopped_runs(ws, quick)
    assert runs.resume_run(stopped) == at
    for run_dir in (stopped, straight):
        info = runs.wait_for_run(run_dir, timeout=600)
        assert info["state"] == "finished", (info, (run_dir / "log.txt").read_text()[-2000:])

    train = _records(straight, "train")
    keys = {"loss", "reward_mean", "reward_std", "kl", "clip_fraction", "completion_length",
            "reward/any_correct", "reward_std/any_correct", "reward/length:1-30"}
    assert [r["iteration"] for r in train] == [5, 10, 15, 20] and all(keys <= r.keys() for r in train)
    assert all(0.0 <= r["reward/any_correct"] <= 1.0 and 1.0 <= r["completion_length"] <= 8 for r in train)
    assert any(r["kl"] > 0 for r in train)
    val = _records(straight, "val")
    assert val[0]["iteration"] == 0 and val[0]["kl"] == 0.0  # the adapter starts at zero: policy == reference

    def curve(run_dir):
        return [(r["iteration"], r["loss"], r["reward_mean"], r["kl"]) for r in _records(run_dir, "val")]

    # Weights, optimizer state, data order and the sampled groups all continue where the stop left them.
    assert [v[0] for v in curve(stopped)] == [v[0] for v in curve(straight)] == [0, 4, 9, 14, 19]
    assert flat(curve(stopped)) == pytest.approx(flat(curve(straight)), rel=1e-5, abs=1e-6)
    # Train reports whose window lies wholly after the resume (the first one after it averages only the steps
    # since the resume) have the same loss and rewards.
    def after(records):
        return [(r["iteration"], r["loss"], r["reward_mean"], r["kl"]) for r in records if r["iteration"] - 5 >= at]

    assert flat(after(_records(stopped, "train"))) == pytest.approx(flat(after(train)), rel=1e-5, abs=1e-6)
    assert after(train), "the stop must leave a whole report window after the resume"

    def samples(run_dir):
        lines = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
        return {s["iteration"]: [c["text"] for c in s["completions"]] for s in lines}

    assert samples(stopped) == samples(straight) and 20 in samples(straight)
    # The groups sampled after the checkpoint by the stopped attempt are not kept beside the resumed ones.
    def iterations(run_dir):
        return [json.loads(line)["iteration"] for line in (run_dir / "samples.jsonl").read_text().splitlines()]

    assert iterations(stopped) == iterations(straight)
    latest = read_latest_samples(straight)
    assert latest["iteration"] == 20 and len(latest["completions"]) == 2
    assert set(latest["completions"][0]["rewards"]) == {"any_correct", "length:1-30"}

    model, tokenizer = load(str(grpo_workspace / "model"), adapter_path=str(straight / "adapters"))
    assert isinstance(generate(model, tokenizer, "Are bats blind?", max_tokens=4), str)


def test_user_reward_that_raises_fails_the_run_with_its_file_and_line(grpo_workspace):
    from phi3tui.core import runs
    from phi3tui.core.workspace import Workspace

    (grpo_workspace / "rewards.py").write_text(BROKEN_REWARDS, encoding="utf-8")
    run_dir = runs.start_run(Workspace.open(grpo_workspace), overrides=dict(
        QUICK, iters=2, steps_per_report=1, steps_per_eval=10, save_every=2, val_batches=0,
        reward_functions=["rewards.py:lengths", "rewards.py:broken"]))
    info = runs.wait_for_run(run_dir, timeout=300)
    assert info["state"] == "failed", info
    where = f"{(grpo_workspace / 'rewards.py').resolve()}:6"
    assert where in info["reason"] and "RuntimeError: no score for" in info["reason"], info["reason"]
    assert "reward function rewards.py:broken" in info["reason"]
    assert where in (run_dir / "log.txt").read_text()


# -- the headless demo ----------------------------------------------------------------------------------


def test_headless_demo_runs_grpo_after_sft_from_its_adapter(grpo_workspace):
    import io

    from phi3tui.core.pipeline import GRPO_STEP, run_pipeline, steps_with_grpo, steps_with_preference
    from phi3tui.core.workspace import Workspace

    steps = steps_with_grpo()
    titles = [s[0] for s in steps]
    assert titles.index(GRPO_STEP[0]) == titles.index("train") + 1
    assert all(needs != "train" for title, _m, needs in steps if title != GRPO_STEP[0] and needs)
    both = [s[0] for s in steps_with_grpo(steps_with_preference())]
    assert both.index(GRPO_STEP[0]) == both.index("preference-tune (DPO)") + 1
    out = io.StringIO()
    upto = steps[: titles.index(GRPO_STEP[0]) + 1]
    assert run_pipeline(Workspace.open(grpo_workspace), out, steps=upto) == 0, out.getvalue()
    text = out.getvalue()
    assert f"{GRPO_STEP[0]}: ok" in text and "reward" in text and "KL" in text, text
    sft, grpo_run = sorted(p for p in (grpo_workspace / "runs").iterdir() if (p / "run.json").is_file())
    config = (grpo_run / "config.yaml").read_text()
    assert "train_mode: grpo" in config and f"{sft.name}/adapters/adapters.safetensors" in config
    assert "the GRPO reference is the starting adapter" in (grpo_run / "log.txt").read_text()


def test_demo_headless_grpo_through_the_cli(tmp_path):
    from tests.conftest import run_cli

    assert "--grpo" in run_cli("demo", "--help").stdout
    done = run_cli("demo", str(tmp_path / "demo"), "--headless", "--grpo", timeout=1500)
    assert "reinforce (GRPO): ok" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
