"""Preference tuning (issue 17): the preference data format, its import from TruthfulQA, the config keys,
DPO/ORPO losses against mlx-lm-lora's own, the reference from the same weights with the adapter off, and
a real DPO run on the demo model whose adapter Chat loads."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from phi3tui.core.data import DataSettings, check_folder
from tests.conftest import run_cli

PAIR = {"prompt": "Are bats blind?", "chosen": "No, bats can see.", "rejected": "Yes, bats are blind."}


def write_split(folder: Path, name: str, records: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


# -- data ------------------------------------------------------------------------------------------------


def test_preference_records_are_recognised_and_each_bad_line_named(tmp_path):
    data = tmp_path / "data"
    write_split(data, "train", [
        PAIR,
        dict(PAIR, rejected=PAIR["chosen"]),                        # 2: equal answers
        dict(PAIR, prompt="  "),                                     # 3: empty prompt
        {"prompt": "Q?", "chosen": "A."},                            # 4: no rejected
        {"chosen": "A.", "rejected": "B."},                          # 5: no prompt
        dict(PAIR, chosen=3),                                        # 6: not a string
    ])
    write_split(data, "valid", [dict(PAIR, prompt="Can bats see?")])
    report = check_folder(data, DataSettings(batch_size=1))
    assert report.formats["train"] == "preference" and report.formats["valid"] == "preference"
    found = {(p.location, p.rule, p.level) for p in report.problems}
    assert ("train:2", "equal-answers", "warning") in found
    assert ("train:3", "empty-field", "error") in found
    assert ("train:4", "missing-field", "error") in found
    assert ("train:5", "missing-field", "error") in found
    assert ("train:6", "field-type", "error") in found
    assert not any(p.location == "train:1" for p in report.problems)
    messages = {p.location: p.message for p in report.problems}
    assert "'rejected'" in messages["train:4"] and "'prompt'" in messages["train:5"]


def test_preview_and_token_counts_put_both_answers_through_the_chat_template(demo_model, tmp_path):
    from phi3tui.core.data import load_tokenizer, render_record

    tokenizer = load_tokenizer(demo_model)
    settings = DataSettings()
    rendered = render_record(PAIR, "preference", tokenizer, settings)
    prompt_only = tokenizer.apply_chat_template([{"role": "user", "content": PAIR["prompt"]}], add_generation_prompt=True)
    for side, answer in ((rendered, PAIR["chosen"]), (rendered.rejected, PAIR["rejected"])):
        expected = tokenizer.apply_chat_template([{"role": "user", "content": PAIR["prompt"]},
                                                  {"role": "assistant", "content": answer}])
        assert [t.id for t in side.tokens] == list(expected)
        assert "<|assistant|>" in side.text and answer in side.text
        # Only the answer counts: everything up to the assistant's header is the prompt.
        assert side.offset == len(prompt_only) and side.trained_count == len(expected) - len(prompt_only)
    data = tmp_path / "data"
    write_split(data, "train", [PAIR])
    report = check_folder(data, DataSettings(batch_size=1), tokenizer=tokenizer)
    st = report.stats["train"]
    assert st.records == 1 and st.max == max(len(rendered.tokens), len(rendered.rejected.tokens))
    assert st.trained_tokens == rendered.trained_count + rendered.rejected.trained_count


def test_truthfulqa_import_makes_pairs_split_by_question(shared_data, tmp_path):
    source = shared_data / "TruthfulQA.csv"
    out = tmp_path / "pairs"
    done = run_cli("data", "import", str(source), str(out), "--format", "preference", "--pairs-per-question", "2")
    assert done.returncode == 0, done.stderr
    with open(source, encoding="utf-8-sig", newline="") as f:
        rows = {r["Question"].strip(): r for r in csv.DictReader(f)}
    seen: dict[str, str] = {}
    per_question: dict[str, int] = {}
    for split in ("train", "valid", "test"):
        for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            row = rows[r["prompt"]]
            assert r["chosen"] == row["Best Answer"].strip()
            assert r["rejected"] in [a.strip() for a in row["Incorrect Answers"].split(";")]
            assert r["rejected"] != r["chosen"]
            assert seen.setdefault(r["prompt"], split) == split, "a question's pairs must stay in one split"
            per_question[r["prompt"]] = per_question.get(r["prompt"], 0) + 1
    assert max(per_question.values()) == 2 and len(per_question) == len(rows)
    # 10% of the questions each for valid and test, as the text import splits records.
    assert sum(1 for s in seen.values() if s == "valid") == round(0.1 * len(rows))
    assert check_folder(out, DataSettings()).errors == 0
    # Again without --force: refused, nothing changed.
    before = (out / "train.jsonl").read_bytes()
    again = run_cli("data", "import", str(source), str(out), "--format", "preference")
    assert again.returncode == 2 and "--force" in again.stderr
    assert (out / "train.jsonl").read_bytes() == before


def test_preference_import_refuses_files_without_incorrect_answers(tmp_path):
    source = tmp_path / "qa.csv"
    source.write_text("Question,Best Answer\nQ?,A.\n", encoding="utf-8")
    done = run_cli("data", "import", str(source), str(tmp_path / "out"), "--format", "preference")
    assert done.returncode == 2 and "'Incorrect Answers'" in done.stderr
    assert not (tmp_path / "out").exists()


# -- config ----------------------------------------------------------------------------------------------


def _review(workspace: Path, extra: str):
    """The demo config with the keys in `extra` replaced."""
    from phi3tui.core.config import review_config

    keys = {line.split(":")[0] for line in extra.splitlines() if line}
    text = (workspace / "lora_config.yaml").read_text()
    kept = [line for line in text.splitlines() if line.split(":")[0] not in keys]
    return review_config("\n".join(kept) + "\n" + extra, workspace)


def test_train_mode_must_match_the_data_format(demo_workspace):
    from phi3tui.core.demo import write_demo_preference_data

    text_data = _review(demo_workspace, "train_mode: dpo\n")
    assert any(f.field == "train_mode" and "preference pairs" in f.message for f in text_data.errors), text_data.findings
    write_demo_preference_data(demo_workspace / "pref")
    sft_on_pairs = _review(demo_workspace, "data: pref\n")
    assert any(f.field == "train_mode" and "is sft" in f.message for f in sft_on_pairs.errors), sft_on_pairs.findings
    dpo_on_pairs = _review(demo_workspace, "data: pref\ntrain_mode: dpo\nbeta: 0.2\ndpo_loss_type: ipo\n")
    assert not dpo_on_pairs.errors, dpo_on_pairs.errors
    assert not [f for f in dpo_on_pairs.findings if f.field in ("train_mode", "beta", "dpo_loss_type")]
    bad = _review(demo_workspace, "data: pref\ntrain_mode: dpo\nbeta: -1\ndpo_loss_type: square\n")
    fields = {f.field for f in bad.errors}
    assert {"beta", "dpo_loss_type"} <= fields
    # The memory estimate counts the chosen and the rejected sequence of each pair.
    sft = _review(demo_workspace, "").memory
    assert dpo_on_pairs.memory.activations > 1.9 * sft.activations


def test_preference_keys_are_in_the_form_with_help_and_defaults():
    from phi3tui.core.config import config_fields

    specs = {s.key: s for s in config_fields()}
    assert specs["train_mode"].choices == ("sft", "dpo", "orpo", "grpo") and specs["train_mode"].default == "sft"
    assert specs["dpo_loss_type"].choices == ("sigmoid", "hinge", "ipo") and specs["dpo_loss_type"].default == "sigmoid"
    assert specs["beta"].default == 0.1 and "ORPO" in specs["beta"].help


# -- losses ----------------------------------------------------------------------------------------------


def test_losses_equal_mlx_lm_lora(demo_model):
    lora = pytest.importorskip("mlx_lm_lora.trainer.dpo_trainer", reason="mlx-lm-lora (test extra) is not installed")
    orpo = pytest.importorskip("mlx_lm_lora.trainer.orpo_trainer", reason="mlx-lm-lora (test extra) is not installed")
    import mlx.core as mx
    from mlx_lm import load

    from phi3tui.core.runs import preference

    model, tokenizer = load(str(demo_model))
    items = [(*preference_tokens_of(tokenizer, f"Question {i}?", f"Answer {i}.", f"Wrong {i * i} answer."),)
             for i in range(4)]
    tokens, mask = preference.pair_batch(items, 512)
    rows = 4
    # Policy scores from the model; reference scores shifted so that the loss is not at a special point.
    scores, counts = preference.answer_logps(model, tokens, mask)
    theirs = lora.get_token_scores(model, tokens, mask).sum(-1)
    assert mx.allclose(scores, theirs, atol=1e-4).item()
    reference = scores + mx.array([0.3, -0.2, 0.5, -0.7, 0.1, 0.4, -0.3, 0.2])
    masks = (mask[:rows], mask[rows:])
    for loss_type in ("sigmoid", "hinge", "ipo"):
        ours_s, ours_r = scores, reference
        if loss_type == "ipo":
            ours_s, ours_r = scores / counts, reference / counts
        loss, metrics = preference.dpo_loss(ours_s[:rows], ours_s[rows:], ours_r[:rows], ours_r[rows:], 0.1, loss_type)
        their_loss, reward, _, their_metrics = lora.dpo_loss(
            ours_s[:rows], ours_s[rows:], ours_r[:rows], ours_r[rows:], *masks, beta=0.1, delta=50.0, loss_type=loss_type)
        assert loss.item() == pytest.approx(their_loss.item(), rel=1e-6), loss_type
        assert metrics["chosen_reward"].item() == pytest.approx(reward[0].item(), rel=1e-6)
        assert metrics["rejected_reward"].item() == pytest.approx(reward[1].item(), rel=1e-6)
        assert metrics["reward_margin"].item() == pytest.approx(their_metrics["margins"].item(), rel=1e-5)
    average = scores / counts
    their_logps, _ = orpo.get_logps(model, tokens, mask)
    assert mx.allclose(average, their_logps, atol=1e-4).item()
    loss, metrics = preference.orpo_loss(average[:rows], average[rows:], 0.25)
    their_loss, reward, _, _ = orpo.orpo_loss(average[:rows], mx.array(0.0), average[rows:], mx.array(0.0), *masks,
                                              preference_scores=1.0, beta=0.25)
    assert loss.item() == pytest.approx(their_loss.item(), rel=1e-6)
    assert metrics["chosen_reward"].item() == pytest.approx(reward[0].item(), rel=1e-6)
    assert metrics["rejected_reward"].item() == pytest.approx(reward[1].item(), rel=1e-6)


def preference_tokens_of(tokenizer, prompt, chosen, rejected):
    from phi3tui.core.data import preference_tokens

    return preference_tokens({"prompt": prompt, "chosen": chosen, "rejected": rejected}, tokenizer, DataSettings())


def test_reference_is_the_base_model_exactly_with_one_copy_of_the_weights(demo_model):
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_unflatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from phi3tui.core.runs import preference

    model, tokenizer = load(str(demo_model))
    model.freeze()
    linear_to_lora_layers(model, -1, {"rank": 4, "scale": 10.0, "dropout": 0.0})
    mx.random.seed(3)
    # A trained-looking adapter: lora_b is zero at the start, which would make any switch look right.
    lora_b = [(k, mx.random.normal(v.shape) * 0.05) for k, v in tree_flatten(model.trainable_parameters())
              if k.endswith("lora_b")]
    model.update(tree_unflatten(lora_b))
    base, _ = load(str(demo_model))  # a second copy, only to compare against
    tokens, mask = preference.pair_batch([preference_tokens_of(tokenizer, "Are bats blind?", "No.", "Yes.")], 512)
    adapted, _ = preference.answer_logps(model, tokens, mask)
    adapted_arrays = {id(v) for _, v in tree_flatten(model.parameters())}
    base_bytes = sum(v.nbytes for k, v in tree_flatten(model.parameters()) if "lora_" not in k)
    mx.eval(model.parameters())
    before = mx.get_active_memory()
    with preference.adapter_off(model):
        inside = tree_flatten(model.parameters())
        grown = mx.get_active_memory() - before
        off, _ = preference.answer_logps(model, tokens, mask)
    expected, _ = preference.answer_logps(base, tokens, mask)
    # One copy: with the adapter off, every weight is the very array the adapted model holds, and nothing was
    # allocated for the switch (a copy of the base would be base_bytes).
    assert inside and not any("lora_" in k for k, _ in inside)
    assert all(id(v) in adapted_arrays for _, v in inside), [k for k, v in inside if id(v) not in adapted_arrays][:3]
    assert grown < 0.01 * base_bytes, (grown, base_bytes)
    assert mx.array_equal(off, expected).item()
    assert not mx.allclose(adapted, expected).item(), "the adapter must change the scores, or the test proves nothing"
    # Switched back on afterwards, and no weight was copied.
    again, _ = preference.answer_logps(model, tokens, mask)
    assert mx.array_equal(again, adapted).item()
    assert preference.has_adapter(model)


# -- a real run ------------------------------------------------------------------------------------------


def test_dpo_run_on_the_demo_model_records_rewards_and_its_adapter_loads_in_chat(demo_workspace):
    from phi3tui.core import runs
    from phi3tui.core.chat.generation import GenerationSettings
    from phi3tui.core.chat.model import ChatModel
    from phi3tui.core.chat.sides import Side, side_for_path
    from phi3tui.core.demo import write_demo_preference_data
    from phi3tui.core.workspace import Workspace

    write_demo_preference_data(demo_workspace / "pref")
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(train_mode="dpo", data="pref", iters=10, steps_per_report=5,
                                                 steps_per_eval=5, save_every=10, val_batches=2))
    info = runs.wait_for_run(run_dir, timeout=300)
    assert info["state"] == "finished", (info, (run_dir / "log.txt").read_text()[-2000:])
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = {"loss", "chosen_reward", "rejected_reward", "reward_margin", "accuracy"}
    train = [r for r in lines if r["kind"] == "train"]
    val = [r for r in lines if r["kind"] == "val"]
    assert [r["iteration"] for r in train] == [5, 10] and all(keys <= r.keys() for r in train + val)
    # Before the first update the adapter is zero: policy == reference, so the rewards are 0 and the
    # sigmoid loss is log 2 — the reference really is the same weights with the adapter off.
    assert val[0]["iteration"] == 0
    assert val[0]["chosen_reward"] == 0.0 and val[0]["rejected_reward"] == 0.0
    assert val[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert any(r["reward_margin"] != 0.0 for r in train)

    side = side_for_path(run_dir)
    chat = ChatModel(str(demo_workspace / "model"))
    chat.set_sides([Side(), side])
    prompt = chat.prompt_tokens([{"role": "user", "content": "Are bats blind?"}])
    answers = [[], []]
    for events, _stats in chat.generate([prompt, prompt], [0, 1], GenerationSettings(max_tokens=8)):
        for event in events:
            answers[event.row].append(event.token)
    assert all(answers)


def test_orpo_run_on_the_demo_model_end_to_end(demo_workspace):
    """train_mode: orpo through the real runner: no reference model (its rewards are beta x the answers' mean
    log-probabilities, never 0 as DPO's start), an NLL term in the loss (far above DPO's log 2 at the start),
    checkpoints, and an adapter that loads and changes the model's scores."""
    from phi3tui.core import runs
    from phi3tui.core.demo import write_demo_preference_data
    from phi3tui.core.workspace import Workspace

    write_demo_preference_data(demo_workspace / "pref")
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(train_mode="orpo", data="pref", iters=10, steps_per_report=5,
                                                 steps_per_eval=5, save_every=10, val_batches=2, learning_rate=1e-3))
    info = runs.wait_for_run(run_dir, timeout=300)
    assert info["state"] == "finished", (info, (run_dir / "log.txt").read_text()[-2000:])
    assert "train_mode: orpo" in (run_dir / "config.yaml").read_text()
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    keys = {"loss", "chosen_reward", "rejected_reward", "reward_margin", "accuracy"}
    train = [r for r in lines if r["kind"] == "train"]
    val = [r for r in lines if r["kind"] == "val"]
    assert [r["iteration"] for r in train] == [5, 10] and all(keys <= r.keys() for r in train + val)
    assert val[0]["iteration"] == 0
    assert val[0]["chosen_reward"] < 0 and val[0]["rejected_reward"] < 0  # beta x mean log p: no reference
    assert val[0]["loss"] > 2 * math.log(2)  # the NLL of the chosen answers is in it
    assert val[-1]["loss"] < val[0]["loss"], val  # it learns
    assert (run_dir / "adapters" / "0000010_adapters.safetensors").is_file()
    assert (run_dir / "adapters" / "adapters.safetensors").is_file()


def test_dpo_run_stopped_and_resumed_equals_the_straight_run(demo_workspace):
    from phi3tui.core import runs
    from phi3tui.core.demo import write_demo_preference_data
    from phi3tui.core.workspace import Workspace
    from tests.test_runner import straight_and_stopped_runs

    from phi3tui.core.workspace import load_config_values

    write_demo_preference_data(demo_workspace / "pref")
    # From an SFT adapter: its weights, kept aside as the reference, must come back on resume too.
    lora = load_config_values(demo_workspace / "lora_config.yaml")["lora_parameters"]
    _random_adapter(demo_workspace / "model", lora, demo_workspace / "sft" / "adapters.safetensors")
    ws = Workspace.open(demo_workspace)
    quick = dict(train_mode="dpo", data="pref", iters=20, steps_per_report=5, steps_per_eval=5, save_every=10,
                 val_batches=3, learning_rate=1e-3, resume_adapter_file="sft/adapters.safetensors")
    straight, stopped, at = straight_and_stopped_runs(ws, quick)
    assert runs.resume_run(stopped) == at
    assert runs.wait_for_run(stopped, timeout=180)["state"] == "finished"
    assert runs.wait_for_run(straight, timeout=180)["state"] == "finished"

    def val(run_dir):
        lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return [(r["iteration"], r["loss"], r["reward_margin"], r["accuracy"]) for r in lines if r["kind"] == "val"]

    # Weights, optimizer state, data order and the reference (the starting adapter) all continue.
    resumed, expected = val(stopped), val(straight)
    assert [v[0] for v in resumed] == [v[0] for v in expected] == [0, 4, 9, 14, 19]
    assert resumed == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_headless_demo_with_preference_runs_dpo_after_sft_and_compares_its_adapter(demo_workspace):
    import io

    from phi3tui.core.pipeline import run_pipeline, steps_with_preference
    from phi3tui.core.workspace import Workspace

    steps = steps_with_preference()
    titles = [s[0] for s in steps]
    assert titles.index("preference-tune (DPO)") == titles.index("train") + 1
    upto_score = steps[: titles.index("score base and adapted (MC1/MC2, test loss)") + 1]
    out = io.StringIO()
    state: dict = {}
    assert run_pipeline(Workspace.open(demo_workspace), out, steps=upto_score, state=state) == 0, out.getvalue()
    text = out.getvalue()
    assert "preference-tune (DPO): ok" in text and "reward margin" in text
    runs_dir = demo_workspace / "runs"
    done = sorted(p for p in runs_dir.iterdir() if (p / "run.json").is_file())
    assert len(done) == 2
    sft, dpo = done
    config = (dpo / "config.yaml").read_text()
    assert "train_mode: dpo" in config and f"{sft.name}/adapters/adapters.safetensors" in config
    assert f"base vs run {dpo.name}" in text
    # MC1/MC2 of base, SFT and SFT+DPO side by side, each the figure of that model scored on its own.
    import re

    from phi3tui.core.chat import BASE, side_for_path
    from phi3tui.core.chat.model import ChatModel
    from phi3tui.core.eval.scoring import evaluate_sides
    from phi3tui.core.eval.items import split_items

    line = next(line for line in text.splitlines() if "score base and adapted" in line)
    shown = re.findall(r"(base|SFT|SFT\+DPO) MC1 ([0-9.]+) MC2 ([0-9.]+)", line)
    assert [name for name, _, _ in shown] == ["base", "SFT", "SFT+DPO"], line
    ws = Workspace.open(demo_workspace)
    items = split_items(ws.data_dir / "test.jsonl")
    chat = ChatModel(str(demo_workspace / "model"))
    for (name, mc1, mc2), side in zip(shown, (BASE, side_for_path(sft), side_for_path(dpo))):
        alone = evaluate_sides(chat, ws, [side], items, answers=False, loss=False)["left"]
        assert (mc1, mc2) == (f"{alone['mc1']:.3f}", f"{alone['mc2']:.3f}"), name


def test_full_fine_tune_dpo_precomputes_the_reference_once_and_says_so(demo_workspace):
    from phi3tui.core import runs
    from phi3tui.core.demo import write_demo_preference_data
    from phi3tui.core.workspace import Workspace

    write_demo_preference_data(demo_workspace / "pref")
    run_dir = runs.start_run(Workspace.open(demo_workspace), overrides=dict(
        train_mode="dpo", data="pref", fine_tune_type="full", iters=4, steps_per_report=2, steps_per_eval=2,
        save_every=4, val_batches=2, learning_rate=1e-4))
    info = runs.wait_for_run(run_dir, timeout=300)
    log = (run_dir / "log.txt").read_text()
    assert info["state"] == "finished", log[-2000:]
    assert "computing the reference log-probabilities once, before training" in log
    val = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in val if r["kind"] == "val"]
    # The precomputed reference is the weights as loaded: before the first update the rewards are 0.
    assert val[0]["iteration"] == 0 and val[0]["chosen_reward"] == 0.0 and val[0]["rejected_reward"] == 0.0
    assert any(r["reward_margin"] != 0.0 for r in val[1:])


def _random_adapter(model_dir: Path, lora_parameters: dict, target: Path, seed: int = 5) -> None:
    """An adapter file as an SFT run leaves it (lora_b non-zero, so it changes the model)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, _ = load(str(model_dir))
    model.freeze()
    linear_to_lora_layers(model, -1, lora_parameters)
    mx.random.seed(seed)
    weights = {k: (mx.random.normal(v.shape) * 0.05 if k.endswith("lora_b") else v)
               for k, v in tree_flatten(model.trainable_parameters())}
    target.parent.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(target), weights)


def test_reference_is_the_starting_adapter_kept_aside_while_the_policy_trains(demo_model, tmp_path):
    import mlx.core as mx
    from mlx.utils import tree_flatten, tree_unflatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from phi3tui.core.runs import preference

    lora = {"rank": 4, "scale": 10.0, "dropout": 0.1}
    sft = tmp_path / "sft" / "adapters.safetensors"
    _random_adapter(demo_model, lora, sft)
    model, tokenizer = load(str(demo_model))
    model.freeze()
    linear_to_lora_layers(model, -1, lora)
    model.load_weights(str(sft), strict=False)
    model.train()
    kept = preference.starting_adapter(model, sft)
    assert kept and all(k.endswith(("lora_a", "lora_b")) for k in kept)
    # The policy moves on (as training replaces its arrays); the reference must not.
    moved = [(k, v + 0.1) for k, v in tree_flatten(model.trainable_parameters())]
    model.update(tree_unflatten(moved))
    task = preference.PreferenceTask.__new__(preference.PreferenceTask)
    task.mode, task.reference_weights = "dpo", kept
    tokens, mask = preference.pair_batch([preference_tokens_of(tokenizer, "Are bats blind?", "No.", "Yes.")], 512)
    reference = task.reference(model, tokens, mask)
    # Expected: base + the SFT adapter loaded separately, without dropout.
    sft_model, _ = load(str(demo_model), adapter_path=None)
    sft_model.freeze()
    linear_to_lora_layers(sft_model, -1, lora)
    sft_model.load_weights(str(sft), strict=False)
    sft_model.eval()
    expected, _ = preference.answer_logps(sft_model, tokens, mask)
    base, _ = load(str(demo_model))
    bare, _ = preference.answer_logps(base, tokens, mask)
    assert mx.array_equal(reference, expected).item()
    assert not mx.allclose(expected, bare).item(), "the SFT adapter must change the scores, or this proves nothing"
    # The policy's own weights and training mode are back afterwards.
    assert model.training
    after = dict(tree_flatten(model.trainable_parameters()))
    assert all(mx.array_equal(after[k], v).item() for k, v in moved)


def test_dpo_run_from_an_sft_adapter_starts_at_its_reference_and_writes_no_perplexity(demo_workspace):
    from phi3tui.core import runs
    from phi3tui.core.demo import write_demo_preference_data
    from phi3tui.core.workspace import Workspace, load_config_values

    write_demo_preference_data(demo_workspace / "pref")
    lora = load_config_values(demo_workspace / "lora_config.yaml")["lora_parameters"]
    _random_adapter(demo_workspace / "model", lora, demo_workspace / "sft" / "adapters.safetensors")
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=dict(
        train_mode="dpo", data="pref", iters=4, steps_per_report=2, steps_per_eval=2, save_every=4, val_batches=2,
        resume_adapter_file="sft/adapters.safetensors", test=True, test_batches=2))
    info = runs.wait_for_run(run_dir, timeout=300)
    log = (run_dir / "log.txt").read_text()
    assert info["state"] == "finished", log[-2000:]
    assert "the DPO reference is the starting adapter" in log
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in lines if r["kind"] == "val"]
    # Before the first update the policy is the SFT adapter: equal to the reference, rewards 0, loss log 2
    # (with the bare base as reference the SFT adapter's own difference would show here).
    assert val[0]["iteration"] == 0 and val[0]["chosen_reward"] == 0.0 and val[0]["rejected_reward"] == 0.0
    assert val[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    test = [r for r in lines if r["kind"] == "test"]
    assert len(test) == 1 and "ppl" not in test[0] and "reward_margin" in test[0]
    assert "test_ppl" not in runs.run_info(run_dir)
    shown = run_cli("runs", "attach", run_dir.name, cwd=demo_workspace, timeout=120)
    assert shown.returncode == 0 and "test loss" in shown.stdout and "perplexity" not in shown.stdout, shown.stdout
