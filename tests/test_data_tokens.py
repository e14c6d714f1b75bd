"""`phi3tui data tokens DIR --split S --line N [--config C] [--json]`: one record's tokens with the mask the runner
trains with (core/data/render.py token_rows over the Data screen's render_record), on the demo's real tokenizer."""

from __future__ import annotations

import json

import yaml

from phi3tui.cli import main
from phi3tui.core.data.folder import DataSettings
from phi3tui.core.data.render import load_tokenizer, tokens_and_offset
from phi3tui.core.data.turns import loss_flags
from tests.test_assistant_turns import THREE_TURNS  # system + three user/assistant turns


def chat_workspace(root, turns: str):
    """The demo workspace with a second train line that is a three-turn chat, and the config's mask settings."""
    data = root / "data"
    first = (data / "train.jsonl").read_text().splitlines()[0]
    (data / "train.jsonl").write_text(first + "\n" + json.dumps({"messages": THREE_TURNS}) + "\n")
    config = yaml.safe_load((root / "lora_config.yaml").read_text())
    (root / "other.yaml").write_text(yaml.safe_dump(dict(config, mask_prompt=True, assistant_turns=turns)))
    return root


def tokens_json(capsys, *argv) -> list[dict]:
    assert main(["data", "tokens", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_rows_are_the_runners_tokens_and_mask_for_last_and_all(demo_workspace, capsys):
    ws = chat_workspace(demo_workspace, "all")
    tokenizer = load_tokenizer(ws / "model")
    record = {"messages": THREE_TURNS}
    every = tokens_json(capsys, str(ws / "data"), "--line", "2", "--config", str(ws / "other.yaml"))
    ids, mask = tokens_and_offset(record, "chat", tokenizer, DataSettings(mask_prompt=True, assistant_turns="all"))
    assert [r["id"] for r in every] == ids
    assert [r["loss"] for r in every] == loss_flags(len(ids), mask, 256)
    assert "".join(r["text"] for r in every) == tokenizer.decode(ids)
    in_loss = "".join(r["text"] for r in every if r["loss"])
    assert "bulges at the equator" in in_loss and "from China" in in_loss and "goldfish" not in in_loss

    # The workspace's own config (mask_prompt off, assistant_turns last): mlx-lm's ChatDataset and its offset.
    from mlx_lm.tuner.datasets import ChatDataset

    plain = tokens_json(capsys, str(ws), "--split", "train", "--line", "2")
    ids, offset = ChatDataset([record], tokenizer, mask_prompt=False).process(record)
    assert [r["id"] for r in plain] == list(ids)
    assert [r["loss"] for r in plain] == loss_flags(len(ids), offset, 256)
    (ws / "last.yaml").write_text((ws / "other.yaml").read_text().replace("assistant_turns: all", "assistant_turns: last"))
    last = tokens_json(capsys, str(ws / "data"), "--line", "2", "--config", str(ws / "last.yaml"))
    ids, offset = ChatDataset([record], tokenizer, mask_prompt=True).process(record)
    assert [r["loss"] for r in last] == loss_flags(len(ids), offset, 256)
    assert "bulges" not in "".join(r["text"] for r in last if r["loss"])


def test_readable_form_marks_the_loss_and_text_records_work(demo_workspace, capsys):
    assert main(["data", "tokens", str(demo_workspace), "--line", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("train:1 · text · ") and "in the loss (+)" in out[0]
    assert len(out) - 1 == int(out[0].split(" · ")[2].split()[0])  # a line per token
    assert all(" + " in line for line in out[2:])  # text records: every token after the first is learned


def test_bad_line_split_and_record_are_named(demo_workspace, capsys):
    ws = str(demo_workspace)
    assert main(["data", "tokens", ws, "--line", "9999"]) == 2
    err = capsys.readouterr().err
    assert "train:9999: no such line" in err and "train.jsonl has" in err
    assert main(["data", "tokens", ws, "--line", "0"]) == 2
    assert "train:0: no such line" in capsys.readouterr().err
    assert main(["data", "tokens", ws, "--split", "dev", "--line", "1"]) == 2
    err = capsys.readouterr().err
    assert "no dev.jsonl" in err and "train, valid, test" in err
    (demo_workspace / "data" / "valid.jsonl").write_text("{not json\n")
    assert main(["data", "tokens", ws, "--split", "valid", "--line", "1"]) == 1
    assert "valid:1: invalid JSON" in capsys.readouterr().err
