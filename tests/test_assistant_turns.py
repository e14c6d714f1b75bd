"""assistant_turns: last | all (core/data/turns.py): which tokens the loss counts, on the demo's real tokenizer,
through the Data screen's renderer, the data check's statistics and a real run of the runner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from phi3tui.core import runs
from phi3tui.core.config import config_fields
from phi3tui.core.data.folder import DataSettings
from phi3tui.core.data.render import load_tokenizer, render_record, tokens_and_offset
from phi3tui.core.data.turns import assistant_turn_mask, loss_flags
from phi3tui.core.runs.launcher import create_run
from phi3tui.core.workspace import Workspace
from tests.conftest import REPO

THREE_TURNS = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Is Earth round?"},
    {"role": "assistant", "content": "Nearly: it bulges at the equator."},
    {"role": "user", "content": "Do goldfish come from Japan?"},
    {"role": "assistant", "content": "No, from China."},
    {"role": "user", "content": "Thanks."},
    {"role": "assistant", "content": "You are welcome."},
]
ANSWERS = [m["content"] for m in THREE_TURNS if m["role"] == "assistant"]


@pytest.fixture(scope="module")
def tokenizer(demo_template):
    return load_tokenizer(demo_template / "model")


def spans(flags: list[bool]) -> list[tuple[int, int]]:
    out, start = [], None
    for n, flag in enumerate(flags + [False]):
        if flag and start is None:
            start = n
        elif not flag and start is not None:
            out.append((start, n))
            start = None
    return out


def test_all_puts_every_assistant_answer_and_its_end_marker_in_the_loss_and_nothing_else(tokenizer):
    settings = DataSettings(assistant_turns="all", max_seq_length=4096)
    ids, mask = tokens_and_offset({"messages": THREE_TURNS}, "chat", tokenizer, settings)
    assert ids == list(tokenizer.apply_chat_template(THREE_TURNS, return_dict=False))  # mlx-lm's tokens
    flags = loss_flags(len(ids), mask, settings.max_seq_length)
    runs_of_loss = [tokenizer.decode(ids[a:b]) for a, b in spans(flags)]
    # Each answer with the <|end|> the template puts after it; the conversation's final EOS with the last one.
    assert [text.replace("<|endoftext|>", "") for text in runs_of_loss] == [f"{a}<|end|>" for a in ANSWERS]
    assert runs_of_loss[-1].endswith("<|end|><|endoftext|>")
    # Nothing of the system prompt, the users' turns or the turn headers.
    outside = tokenizer.decode([i for i, f in zip(ids, flags) if not f])
    assert all(m["content"] in outside for m in THREE_TURNS if m["role"] != "assistant")
    assert not any(a in outside for a in ANSWERS)
    # Each span starts right after the template's generation prompt for the conversation before it.
    starts = [a for a, _ in spans(flags)]
    heads = [len(tokenizer.apply_chat_template(THREE_TURNS[:i], add_generation_prompt=True, return_dict=False))
             for i, m in enumerate(THREE_TURNS) if m["role"] == "assistant"]
    assert starts == heads


def test_last_is_mlx_lms_own_offset_and_all_agrees_with_it_on_the_last_turn(tokenizer):
    from mlx_lm.tuner.datasets import ChatDataset, CompletionsDataset

    record = {"messages": THREE_TURNS}
    last = DataSettings(mask_prompt=True, max_seq_length=4096)
    ids, offset = tokens_and_offset(record, "chat", tokenizer, last)
    assert (ids, offset) == tuple(ChatDataset([record], tokenizer, mask_prompt=True).process(record))
    last_flags = loss_flags(len(ids), offset, 4096)
    _, mask = assistant_turn_mask(THREE_TURNS, None, tokenizer)
    assert [f for n, f in enumerate(loss_flags(len(ids), mask, 4096)) if n >= offset] == last_flags[offset:]

    # A completions record has one assistant turn: `all` is mlx-lm's mask_prompt.
    pair = {"prompt": "Is Earth round?", "completion": "Nearly."}
    ids, offset = CompletionsDataset([pair], tokenizer, "prompt", "completion", True).process(pair)
    all_ids, all_mask = tokens_and_offset(pair, "completions", tokenizer, DataSettings(assistant_turns="all"))
    assert all_ids == ids and loss_flags(len(ids), all_mask, 4096) == loss_flags(len(ids), offset, 4096)


def test_tool_results_stay_out_of_the_loss_on_a_phi4_mini_template(tmp_path):
    from phi3tui.core.demo import write_phi4_mini_tokenizer

    write_phi4_mini_tokenizer(tmp_path)
    tok = load_tokenizer(tmp_path)
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Calling get_weather.",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "content": "sunny and mild"},
        {"role": "assistant", "content": "It is sunny."},
    ]
    ids, mask = assistant_turn_mask(messages, None, tok)
    flags = loss_flags(len(ids), mask, 4096)
    inside = [tok.decode(ids[a:b]) for a, b in spans(flags)]
    assert [s.replace("<|endoftext|>", "") for s in inside] == ["Calling get_weather.<|end|>", "It is sunny.<|end|>"]
    assert "sunny and mild" in tok.decode([i for i, f in zip(ids, flags) if not f])


def test_the_data_screens_view_and_statistics_follow_the_setting(tokenizer, tmp_path):
    from phi3tui.core.data.checks import check_folder

    record = {"messages": THREE_TURNS}
    last = render_record(record, "chat", tokenizer, DataSettings(mask_prompt=True))
    every = render_record(record, "chat", tokenizer, DataSettings(mask_prompt=True, assistant_turns="all"))
    _, mask = assistant_turn_mask(THREE_TURNS, None, tokenizer)
    assert [t.trained for t in every.tokens] == loss_flags(len(mask), mask, 4096)
    assert every.trained_count > last.trained_count
    assert every.offset == every.tokens.index(next(t for t in every.tokens if t.trained))

    for split in ("train", "valid"):
        (tmp_path / f"{split}.jsonl").write_text(json.dumps(record) + "\n")
    counted = {}
    for turns in ("last", "all"):
        report = check_folder(tmp_path, DataSettings(batch_size=1, mask_prompt=True, assistant_turns=turns),
                              tokenizer=tokenizer)
        counted[turns] = report.stats["train"].trained_tokens
    assert counted == {"last": last.trained_count, "all": every.trained_count}


def test_all_on_text_records_is_named(demo_template):
    from phi3tui.core.data.checks import check_folder

    report = check_folder(demo_template / "data", DataSettings(assistant_turns="all"))
    assert {p.location for p in report.problems if p.rule == "turns-text"} == {"train", "valid", "test"}
    assert not [p for p in check_folder(demo_template / "data", DataSettings()).problems if p.rule == "turns-text"]


def test_the_key_is_phi3tuis_with_its_choices():
    spec = next(s for s in config_fields() if s.key == "assistant_turns")
    assert (spec.kind, spec.choices, spec.default) == ("choice", ("last", "all"), "last")
    assert DataSettings.from_config({"assistant_turns": "all"}).assistant_turns == "all"
    assert DataSettings.from_config({}).assistant_turns == "last"


def chat_records(text_lines: list[str]) -> list[dict]:
    """The demo's question/answer records as three-turn conversations."""
    pairs = []
    for line in text_lines:
        text = json.loads(line)["text"]
        q, a = re.match(r"<\|user\|>\s*(.*?)\s*<\|end\|>\s*<\|assistant\|>\s*(.*?)\s*<\|end\|>", text, re.S).groups()
        pairs.append((q, a))
    out = []
    for i in range(0, len(pairs) - 2, 3):
        messages = [{"role": "system", "content": "Answer briefly."}]
        for q, a in pairs[i : i + 3]:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        out.append({"messages": messages})
    return out


def test_a_run_with_all_turns_trains_on_more_tokens_than_last_on_the_same_batches(demo_workspace):
    data = demo_workspace / "data"
    for split in ("train", "valid", "test"):
        path = data / f"{split}.jsonl"
        records = chat_records(path.read_text().splitlines())
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    first = {}
    for turns in ("last", "all"):
        run_dir = create_run(Workspace.open(demo_workspace), overrides=dict(
            iters=2, steps_per_report=1, steps_per_eval=2, save_every=2, val_batches=1, batch_size=2,
            mask_prompt=True, test=False))
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        (run_dir / "config.yaml").write_text(yaml.safe_dump(dict(config, assistant_turns=turns), sort_keys=False))
        proc = subprocess.run([sys.executable, "-m", "phi3tui.core.runs.runner", str(run_dir)], capture_output=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
        info = runs.wait_for_run(run_dir, timeout=60)
        assert proc.returncode == 0 and info["state"] == "finished", (info, proc.stdout[-2000:], proc.stderr[-2000:])
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in records if r["kind"] == "train"]
        assert [r["iteration"] for r in train] == [1, 2]
        assert any(r["kind"] == "val" for r in records)
        first[turns] = train[0]
    # The same records in the first batch (same seed, same order): three answers learned instead of one.
    assert first["all"]["trained_tokens"] > 2 * first["last"]["trained_tokens"]
    assert first["all"]["loss"] != first["last"]["loss"]


def test_tool_calling_records_are_checked_line_by_line(tmp_path):
    from phi3tui.core.data.checks import check_folder

    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}

    def call(name, arguments, id_="c1"):
        return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}

    def record(calls, tool_id="c1", tools=(weather,)):
        return {"messages": [{"role": "user", "content": "Weather in Paris?"},
                             {"role": "assistant", "content": "", "tool_calls": calls},
                             {"role": "tool", "tool_call_id": tool_id, "content": "sunny"},
                             {"role": "assistant", "content": "Sunny."}], "tools": list(tools)}

    lines = [
        record([call("get_weather", '{"city": "Paris"}')]),  # 1: fine
        record([call("get_time", '{"city": "Paris"}')]),  # 2: not in tools
        record([call("get_weather", "{city: Paris}")]),  # 3: arguments not JSON
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "sunny"},
                      {"role": "assistant", "content": "Hello."}], "tools": [weather]},  # 4: a result with no call
        record([call("get_weather", '{"city": "Paris"}')], tool_id="c9"),  # 5: answers a call nobody made
        record([call("get_weather", {"city": "Paris"})]),  # 6: arguments as an object: fine
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp_path / "valid.jsonl").write_text(json.dumps(lines[5]) + "\n")
    report = check_folder(tmp_path, DataSettings(batch_size=1))  # no tokenizer: the line checks only
    found = {(p.location, p.rule) for p in report.problems if p.rule.startswith("tool")}
    assert found == {("train:2", "tool-undefined"), ("train:3", "tool-arguments"),
                     ("train:4", "tool-without-call"), ("train:5", "tool-without-call")}
    undefined = next(p for p in report.problems if p.location == "train:2" and p.rule == "tool-undefined")
    assert "'get_time'" in undefined.message and "get_weather" in undefined.message and undefined.hint
    assert all(p.level == "error" and p.hint for p in report.problems if p.rule.startswith("tool"))
    assert not [p for p in report.problems if p.location in ("train:1", "valid:1")]  # empty content of a call: fine


def test_a_template_that_drops_tools_is_refused_with_the_reason(tokenizer, tmp_path):
    """The demo's Phi-3 template renders neither `tools`, tool_calls nor tool messages: the statistics pass
    names the record and what the template leaves out; a plain chat split gets no such finding."""
    from phi3tui.core.data.checks import check_folder
    from phi3tui.core.data.render import dropped_tool_parts

    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    tooled = {"messages": [{"role": "user", "content": "Weather in Paris?"},
                           {"role": "assistant", "content": "", "tool_calls": [
                               {"id": "c1", "type": "function",
                                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                           {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                           {"role": "assistant", "content": "Sunny."}], "tools": [weather]}
    assert dropped_tool_parts(tooled["messages"], tooled["tools"], tokenizer) == [
        "tool definitions", "tool calls", "tool results"]
    plain = {"messages": THREE_TURNS}
    (tmp_path / "train.jsonl").write_text(json.dumps(plain) + "\n" + json.dumps(tooled) + "\n" + json.dumps(tooled) + "\n")
    (tmp_path / "valid.jsonl").write_text(json.dumps(plain) + "\n")
    report = check_folder(tmp_path, DataSettings(batch_size=1), tokenizer=tokenizer)
    found = [p for p in report.problems if p.rule == "template-tools"]
    assert [(p.location, p.level) for p in found] == [("train:2", "error")]
    assert "tool definitions, tool calls, tool results" in found[0].message and found[0].hint
