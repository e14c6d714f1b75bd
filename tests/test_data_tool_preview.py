"""The Data screen at 80×24 on tool-calling records (the tiny Phi-4-mini-style tool-calling model, conftest's
tools_template): the record's preview names the tools, marks each call and each result, shows the data check's
own message for a call to an undefined function, and the token view has the call in the loss, the result out."""

from __future__ import annotations

import json
import shutil

from phi3tui.app import Phi3App
from phi3tui.core.data.checks import validate_folder
from phi3tui.core.data.folder import DataFolder, workspace_data
from phi3tui.core.workspace import Workspace
from tests.conftest import tool_record
from tests.test_data_screen import body, title, wait_for


def screen_rows(app) -> list[str]:
    """The current screen as the terminal shows it, one string per row."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def token_spans(app) -> list[tuple[str, bool]]:
    """The token view as (token piece, counted by the loss), read from the styles the screen drew it with."""
    content = app.screen.query_one("#record-body").content
    plain = content.plain
    return [(plain[span.start:span.end], "bold" in str(span.style)) for span in content.spans[1:]]


async def test_tool_calls_and_results_are_marked_and_the_token_view_counts_the_call_only(tools_template, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(tools_template, ws)
    misnamed = tool_record("Oslo", "snow")
    misnamed["messages"][2]["tool_calls"][0]["function"]["name"] = "get_wether"
    with open(ws / "data" / "train.jsonl", "a") as handle:
        handle.write(json.dumps(misnamed) + "\n")
    # The check's own wording for that line: the preview must show it, not a second one.
    wd = workspace_data(Workspace.open(ws))
    report = validate_folder(DataFolder.open(wd.data_dir, wd.settings))
    undefined = [p for p in report.problems if p.rule == "tool-undefined"]
    assert [(p.split, p.line) for p in undefined] == [("train", 7)]

    app = Phi3App(Workspace.open(ws))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await wait_for(pilot, lambda: title(app).startswith("train:1 "))
        shown = body(app)
        assert "tools: get_weather(city)" in shown
        assert 'assistant → call get_weather {"city": "Paris"}' in shown
        assert "tool ← result of get_weather: sunny and mild" in shown
        assert "assistant: In Paris it is sunny and mild today." in shown
        assert "error:" not in shown and '"tool_call_id": "call_1"' in shown  # the raw JSON follows
        # At 80×24 the marked conversation is on screen without scrolling.
        await pilot.pause()
        screen = "\n".join(screen_rows(app))
        for line in ("tools: get_weather(city)", 'assistant → call get_weather {"city": "Paris"}',
                     "tool ← result of get_weather: sunny and mild"):
            assert line in screen, screen

        await pilot.press("g", "7", "enter")
        await wait_for(pilot, lambda: title(app).startswith("train:7 "))
        shown = body(app)
        assert 'assistant → call get_wether {"city": "Oslo"}' in shown
        assert str(undefined[0]) in shown
        assert "tool ← result of get_wether: snow" in shown

        await pilot.press("g", "1", "enter", "v", "v")
        await wait_for(pilot, lambda: title(app).startswith("train:1 ") and "count toward the loss" in body(app))
        tokens = token_spans(app)
        pieces = [piece for piece, _ in tokens]
        call_start, call_end = pieces.index("<|tool_call|>"), pieces.index("<|/tool_call|>")
        assert all(counted for _, counted in tokens[call_start:call_end + 1]), tokens[call_start:call_end + 1]
        result_start = max(n for n, piece in enumerate(pieces) if piece == "<|tool|>")
        result_end = pieces.index("<|end|>", result_start)
        assert result_start > call_end
        assert not any(counted for _, counted in tokens[result_start:result_end + 1]), tokens[result_start:result_end + 1]
        # The tool definitions (in the system message) are out of the loss too.
        assert not any(counted for _, counted in tokens[:pieces.index("<|/tool|>") + 1])


def preview_of(value: dict, line: int = 3):
    from phi3tui.core.data import DataSettings, tool_preview
    from phi3tui.core.data.folder import parse_record

    return tool_preview(parse_record("train", line, json.dumps(value).encode(), DataSettings()), DataSettings())


def test_the_preview_marks_calls_and_results_and_leaves_other_records_alone():
    assert preview_of({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}) == []
    assert preview_of({"text": "<|user|>hi<|end|>"}) == []

    record = tool_record("Paris", "sunny and mild")
    record["tools"].append({"name": "get_time", "parameters": {"properties": {"zone": {}, "format": {}}}})
    record["messages"][2]["content"] = "Let me look."
    record["messages"][2]["tool_calls"].append({"id": "call_2", "function": {"name": "get_time",
                                                                             "arguments": {"zone": "CET"}}})
    # Results answered by id in another order, and one by order (no id).
    record["messages"][3:4] = [{"role": "tool", "tool_call_id": "call_2", "content": "noon"},
                               {"role": "tool", "content": [{"type": "text", "text": "sunny"}]}]
    lines = [(p.kind, p.label, p.text) for p in preview_of(record)]
    assert lines == [
        ("tools", "tools:", "get_weather(city), get_time(zone, format)"),
        ("message", "system:", "Use the tools when they help."),
        ("message", "user:", "What is the weather in Paris?"),
        ("message", "assistant:", "Let me look."),
        ("call", "assistant → call", 'get_weather {"city": "Paris"}'),
        ("call", "assistant → call", 'get_time {"zone": "CET"}'),
        ("result", "tool ← result of get_time:", "noon"),
        ("result", "tool ← result of get_weather:", "sunny"),
        ("message", "assistant:", "In Paris it is sunny and mild today."),
    ]


def test_the_preview_shows_the_checks_own_messages_for_the_line():
    from phi3tui.core.data import DataSettings, record_problems

    record = tool_record("Paris", "sunny and mild")
    record["messages"][2]["tool_calls"][0]["function"]["arguments"] = "{city: Paris"
    del record["tools"]
    record["messages"].insert(1, {"role": "tool", "content": "early"})
    problems = record_problems(record, "train", 3, DataSettings())
    assert {p.rule for p in problems} == {"tool-arguments", "tool-undefined", "tool-without-call"}
    lines = preview_of(record)
    assert lines[0].text == "none defined"
    assert ("call", "assistant → call", "get_weather {city: Paris") in [(p.kind, p.label, p.text) for p in lines]
    assert [(p.kind, p.text) for p in lines if not p.label] == [(p.level, str(p)) for p in problems]
