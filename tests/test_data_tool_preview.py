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
