"""`phi3tui data import SOURCE OUT --format chat`: OpenAI chat JSONL, ShareGPT and a CSV column of conversations
become `{"messages": [...]}` records (tools and tool calls kept); what cannot be mapped is named `file:line`."""

from __future__ import annotations

import csv
import json

import pytest

from phi3tui.cli import main
from phi3tui.core.data.importers import DataImportError, ImportOptions, import_any

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
OPENAI = {"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Oslo?"}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "snow"},
    {"role": "assistant", "content": "Snow."}], "tools": [WEATHER]}
SHAREGPT = {"system": "Be brief.", "conversations": [
    {"from": "human", "value": "Weather in Oslo?"},
    {"from": "function_call", "value": "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}"},
    {"from": "observation", "value": "snow"},
    {"from": "gpt", "value": "Snow."}], "tools": json.dumps([WEATHER])}


def lines(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def written(out) -> list[dict]:
    return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]


def test_openai_chat_jsonl_keeps_every_turn_tool_calls_and_tools(tmp_path, capsys):
    source = tmp_path / "chat.jsonl"
    source.write_text(lines(OPENAI, OPENAI))
    out = tmp_path / "out"
    assert main(["data", "import", str(source), str(out), "--format", "chat", "--valid", "0", "--test", "0"]) == 0
    assert "wrote train 2 records" in capsys.readouterr().out
    (record, _) = written(out)
    assert record["tools"] == [WEATHER]
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert record["messages"][1]["content"] == "Weather in Oslo?"  # text parts joined
    assert record["messages"][2] == {"role": "assistant", "content": "", "tool_calls": OPENAI["messages"][2]["tool_calls"]}
    assert record["messages"][3] == {"role": "tool", "content": "snow", "tool_call_id": "c1"}


def test_sharegpt_maps_speakers_system_function_calls_and_tools(tmp_path):
    source = tmp_path / "sharegpt.jsonl"
    source.write_text(lines(SHAREGPT))
    out = tmp_path / "out"
    import_any(source, out, ImportOptions(fmt="chat", valid=0, test=0))
    (record,) = written(out)
    assert record == {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "snow"},
        {"role": "assistant", "content": "Snow."}], "tools": [WEATHER]}
    # The data check's line rules take the mapped call and result as they are (no tool-* findings).
    from phi3tui.core.data.checks import check_folder
    from phi3tui.core.data.folder import DataSettings

    assert not [p for p in check_folder(out, DataSettings(batch_size=1)).problems if p.rule.startswith("tool")]


def test_a_csv_column_of_conversations(tmp_path, capsys):
    source = tmp_path / "chats.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "dialogue"])
        writer.writerow(["1", json.dumps(SHAREGPT["conversations"], indent=1)])  # a cell over several lines
        writer.writerow(["2", json.dumps(OPENAI["messages"])])
    out = tmp_path / "out"
    argv = ["data", "import", str(source), str(out), "--format", "chat", "--valid", "0", "--test", "0"]
    assert main(argv) == 2  # no column named, none called messages/conversations
    assert "--conversation-column" in capsys.readouterr().err
    assert main(argv + ["--conversation-column", "dialogue"]) == 0
    first, second = written(out)
    assert [m["role"] for m in first["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert second["messages"][-1] == {"role": "assistant", "content": "Snow."}

    bad = tmp_path / "bad.csv"
    with bad.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dialogue"])
        writer.writerow([json.dumps(SHAREGPT["conversations"], indent=1)])  # lines 2 to 20 or so
        writer.writerow(["[{\"from\": \"bot\", \"value\": \"hi\"}]"])
    assert main(argv[:2] + [str(bad), str(tmp_path / "out2")] + argv[4:] + ["--conversation-column", "dialogue"]) == 2
    line = 2 + json.dumps(SHAREGPT["conversations"], indent=1).count("\n") + 1
    assert f"bad.csv:{line}: message 1: speaker 'bot'" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("broken, message", [
    ({"messages": [{"role": "bot", "content": "hi"}]}, "chat.jsonl:2: message 1: role 'bot' is not one of"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]},
     "chat.jsonl:2: message 1: a user message without content"),
    ({"system": "s", "conversations": [{"from": "human"}, {"from": "gpt", "value": "x"}]},
     "chat.jsonl:2: message 1: a 'human' turn without a text \"value\""),
    ({"messages": [{"content": "hi"}]}, "chat.jsonl:2: message 1 has neither \"role\" (OpenAI) nor \"from\""),
    ({"messages": [{"role": "user", "content": "hi"}]}, "chat.jsonl:2: no assistant message"),
    ({"other": 1}, "chat.jsonl:2: no 'messages'"),
])
def test_what_cannot_be_mapped_is_named_file_line_and_nothing_is_written(tmp_path, broken, message):
    source = tmp_path / "chat.jsonl"
    source.write_text(lines(SHAREGPT if "conversations" in broken else OPENAI, broken))
    with pytest.raises(DataImportError) as caught:
        import_any(source, tmp_path / "out", ImportOptions(fmt="chat", valid=0, test=0))
    assert message in str(caught.value)
    assert not (tmp_path / "out").exists()
