"""Tool-calling records on a tiny Phi-4-mini-style model (core/demo.py write_phi4_mini_model(tool_calling=True)):
`{"messages", "tools"}` render through its template (tools in the system message between <|tool|> and <|/tool|>,
calls between <|tool_call|> and <|/tool_call|>), the token view puts the call in the loss and the result out of it,
the memory estimate sizes rows with the tools rendered, and such a dataset trains with assistant_turns: all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from phi3tui.cli import main
from phi3tui.core import models, runs
from phi3tui.core.runs.launcher import create_run
from phi3tui.core.workspace import Workspace
from tests.conftest import CITIES, REPO, WEATHER, tool_record


@pytest.fixture(scope="module")
def tokenizer(tools_template):
    from phi3tui.core.data.render import load_tokenizer

    return load_tokenizer(tools_template / "model")


def test_records_render_tools_in_the_system_message_and_calls_between_markers(tokenizer):
    record = tool_record("Paris", "sunny and mild")
    text = tokenizer.apply_chat_template(record["messages"], tools=record["tools"], tokenize=False)
    assert text.startswith('<|system|>Use the tools when they help.<|tool|>[{"type": "function"')
    assert '"name": "get_weather"' in text.split("<|/tool|>")[0]
    assert ('<|assistant|><|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]<|/tool_call|><|end|>'
            '<|tool|>sunny and mild<|end|><|assistant|>In Paris it is sunny and mild today.<|end|>') in text
    # Marker tokens are single special tokens, as in Phi-4-mini.
    ids = tokenizer.encode(text)
    for marker in ("<|tool|>", "<|/tool|>", "<|tool_call|>", "<|/tool_call|>"):
        assert tokenizer.convert_tokens_to_ids(marker) in ids
    # Without a system message the tools open one; a system message's own `tools` string (Phi-4-mini's way) is kept.
    bare = tokenizer.apply_chat_template(record["messages"][1:2], tools=record["tools"], tokenize=False)
    assert bare.startswith("<|system|><|tool|>[") and "<|/tool|><|end|><|user|>" in bare
    own = [{"role": "system", "content": "Hi.", "tools": '[{"name": "f"}]'}, {"role": "user", "content": "x"}]
    assert tokenizer.apply_chat_template(own, tokenize=False).startswith('<|system|>Hi.<|tool|>[{"name": "f"}]<|/tool|>')

    from phi3tui.core.data.render import dropped_tool_parts

    assert dropped_tool_parts(record["messages"], record["tools"], tokenizer) == []


def test_token_view_has_the_call_in_the_loss_and_the_result_and_tools_out(tools_template, capsys):
    assert main(["data", "tokens", str(tools_template), "--line", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    inside = "".join(r["text"] for r in rows if r["loss"])
    outside = "".join(r["text"] for r in rows if not r["loss"])
    assert inside.replace("<|endoftext|>", "") == (
        '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]<|/tool_call|><|end|>'
        "In Paris it is sunny and mild today.<|end|>")
    assert "<|tool|>sunny and mild<|end|>" in outside and '"description": "Today' in outside
    assert "What is the weather in Paris?" in outside


def test_the_check_accepts_the_records_and_the_memory_estimate_uses_their_length_with_tools(tools_template, tokenizer):
    from phi3tui.core.config import review_config
    from phi3tui.core.data.checks import check_folder
    from phi3tui.core.data.folder import DataSettings

    report = check_folder(tools_template / "data", DataSettings(batch_size=2, mask_prompt=True, assistant_turns="all"),
                          tokenizer=tokenizer)
    assert not report.errors, [p.message for p in report.errors]

    review = review_config((tools_template / "lora_config.yaml").read_text(), tools_template)
    with_tools = [len(tokenizer.apply_chat_template(tool_record(c, w)["messages"], tools=[WEATHER],
                                                    return_dict=False)) for c, w in CITIES[:6]]
    without = [len(tokenizer.apply_chat_template(tool_record(c, w)["messages"], return_dict=False))
               for c, w in CITIES[:6]]
    assert sorted(review.data.lengths["train"].elements()) == sorted(with_tools)
    assert min(with_tools) > max(without) + 20  # the tool definitions in the system message
    estimate = review.memory
    assert estimate.from_data
    assert estimate.sequence == models.batch_sequence_length(models.longest_batched(
        review.data.lengths["train"], 2), 1024)


def test_a_tool_calling_dataset_trains_with_every_assistant_turn(tools_template, tokenizer, tmp_path):
    import shutil
    from itertools import combinations

    from phi3tui.core.data.folder import DataSettings
    from phi3tui.core.data.render import tokens_and_offset
    from phi3tui.core.data.turns import loss_flags

    ws = tmp_path / "ws"
    shutil.copytree(tools_template, ws)
    run_dir = create_run(Workspace.open(ws), overrides=dict(test=False))
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["assistant_turns"] == "all"
    proc = subprocess.run([sys.executable, "-m", "phi3tui.core.runs.runner", str(run_dir)], capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    info = runs.wait_for_run(run_dir, timeout=60)
    assert proc.returncode == 0 and info["state"] == "finished", (info, proc.stdout[-2000:], proc.stderr[-2000:])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["iteration"] for r in train] == [1, 2] and all(r["loss"] > 0 for r in train)
    assert any(r["kind"] == "val" for r in records)
    # Each batch of two trains on both records' calls and answers (the count the token view shows), not on the
    # last answer only.
    counted = []
    for city, weather in CITIES[:6]:
        ids, mask = tokens_and_offset(tool_record(city, weather), "chat", tokenizer,
                                      DataSettings(mask_prompt=True, assistant_turns="all", max_seq_length=1024))
        counted.append(sum(loss_flags(len(ids), mask, 1024)))
    assert {r["trained_tokens"] - (train[n - 1]["trained_tokens"] if n else 0) for n, r in enumerate(train)} <= {
        a + b for a, b in combinations(counted, 2)}
