"""Chat with tool definitions and multi-turn history: a tools file is checked by core (a bad one named with what is
wrong), given to the chat template as `tools=` for both panes (the prompt the model receives carries them when the
template renders tools; the demo Phi-3 template, which cannot, is named as Data's checks name it), each pane keeps its
own turns, and ctrl+l clears them. The Chat screen driven by keys at 80×24."""

from __future__ import annotations

import json
import shutil

import pytest

from phi3tui.core.chat import ChatError, ChatSession, load_tools
from phi3tui.core.demo import PHI3_CHAT_TEMPLATE
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli
from tests.test_chat_screen import ask, open_chat, wait_for

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city today",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
# The demo's Phi-3 template with a system block listing the tools, as templates that take `tools=` do (Llama 3.1's,
# Qwen's): the demo template itself ignores `tools`.
TOOL_TEMPLATE = ("{% if tools %}{{ '<|system|>\nTools: ' + (tools | tojson) + '<|end|>\n' }}{% endif %}"
                 + PHI3_CHAT_TEMPLATE)


def give_template(model_dir, template: str) -> None:
    path = model_dir / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["chat_template"] = template
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    jinja = model_dir / "chat_template.jinja"  # newer transformers read the template from here first
    if jinja.exists():
        jinja.write_text(template, encoding="utf-8")


@pytest.mark.parametrize("text, said", [
    (None, "does not exist"),
    ('[{"type": "function"', ":1: not valid JSON"),
    ('{"name": "get_weather"}', "holds a JSON dict, not a list"),
    ("[]", "holds no tool definitions"),
    ('[{"type": "function", "function": {"description": "no name"}}]', 'tool 1 has no function "name"'),
    ('[{"name": "a", "parameters": "x"}]', '"parameters" must be a JSON Schema object'),
    ('[{"name": "a"}, {"type": "function", "function": {"name": "a"}}]', "defines 'a' a second time"),
])
def test_a_bad_tools_file_is_named_with_what_is_wrong(tmp_path, text, said):
    path = tmp_path / "tools.json"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ChatError, match="tools.json") as refused:
        load_tools(path)
    assert said in str(refused.value)


def test_tools_reach_the_prompt_when_the_template_renders_them(demo_workspace):
    from phi3tui.core.chat.model import ChatModel

    (demo_workspace / "tools.json").write_text(json.dumps(TOOLS), encoding="utf-8")
    session = ChatSession(Workspace.open(demo_workspace))
    tools = session.load_tools("tools.json")
    assert tools.names == ("get_weather",) and tools.summary() == "tools: get_weather (tools.json)"
    messages = [{"role": "user", "content": "Rain in Paris?"}]

    # The demo Phi-3 template cannot express tools: the prompt is the same, and the panes are told so, with the
    # data checks' advice.
    model = ChatModel(demo_workspace / "model")
    assert model.prompt_tokens(messages, tools) == model.prompt_tokens(messages)
    note = session.tools_note(model)
    assert "chat template leaves out the tool definitions of tools.json" in note
    assert "use a model whose template renders tools" in note

    give_template(demo_workspace / "model", TOOL_TEMPLATE)
    model = ChatModel(demo_workspace / "model")
    assert session.tools_note(model) == ""
    text = model.tokenizer.decode(model.prompt_tokens(messages, tools))
    assert "get_weather" in text and "The weather in a city today" in text and "Rain in Paris?" in text
    assert "get_weather" not in model.tokenizer.decode(model.prompt_tokens(messages))

    session.load_tools(None)  # no tools again
    assert session.tools is None


@pytest.fixture
def trained_with_tool_template(trained_r1_template, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(trained_r1_template, ws)
    give_template(ws / "model", TOOL_TEMPLATE)
    (ws / "tools.json").write_text(json.dumps(TOOLS), encoding="utf-8")
    (ws / "broken.json").write_text('[{"type": "function"}]', encoding="utf-8")
    return ws


async def test_both_panes_get_the_tools_keep_their_own_turns_and_ctrl_l_clears(trained_with_tool_template):
    from phi3tui.app import Phi3App
    from phi3tui.core.chat import GenerationSettings

    ws = trained_with_tool_template
    app = Phi3App(Workspace.open(ws), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        screen.session.settings = GenerationSettings(max_tokens=6)
        left, right = screen.pane(0), screen.pane(1)

        # ctrl+j: a file that is not a tool list is refused in the dialog, named; the listed one is loaded.
        await pilot.press("ctrl+j")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "Picker")
        picker = app.screen
        assert [label for label, _ in picker.choices] == ["no tools", "broken.json", "tools.json"]
        picker.query_one("#pick-path").focus()
        await pilot.press(*"broken.json", "enter")
        await pilot.pause()
        assert 'broken.json: tool 1 has no function "name"' in str(picker.query_one("#pick-error").render())
        picker.query_one("#pick-list").focus()
        picker.query_one("#pick-list").highlighted = 2
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.session.tools is not None, timeout=20)
        await wait_for(pilot, lambda: "tools: get_weather (tools.json)" in str(
            screen.query_one("#chat-bar").render()), timeout=20)

        # Both panes' prompts carry the definitions: the prompt size each shows is the prompt with the tools.
        screen.query_one("Input").focus()
        await ask(pilot, screen, "Rain in Paris?")
        model = app.model_worker._model
        first = [{"role": "user", "content": "Rain in Paris?"}]
        with_tools = model.prompt_tokens(first, screen.session.tools)
        assert "get_weather" in model.tokenizer.decode(with_tools)
        assert len(with_tools) > len(model.prompt_tokens(first))
        for pane in (left, right):
            assert f"{len(with_tools)}→" in pane.border_subtitle

        # A second turn: each pane's prompt is its own history (its own first answer) plus the new question.
        answers = [c.last_answer() for c in screen.session.conversations]
        assert answers[0] != answers[1]
        await ask(pilot, screen, "And Rome?")
        for index, pane in enumerate((left, right)):
            turns = screen.session.conversations[index].turns
            assert [t["role"] for t in turns] == ["user", "assistant"] * 2
            assert turns[1]["content"] == answers[index] and turns[2]["content"] == "And Rome?"
            history = turns[:2] + [{"role": "user", "content": "And Rome?"}]
            assert f"{len(model.prompt_tokens(history, screen.session.tools))}→" in pane.border_subtitle

        # ctrl+l clears both conversations (the tools stay); the next prompt starts afresh.
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: screen.session.conversations[0].turns == []
                       and screen.session.conversations[1].turns == [], timeout=20)
        assert left.answer_text == "" and right.answer_text == "" and screen.session.tools is not None
        await ask(pilot, screen, "Rain in Paris?")
        assert [len(c.turns) for c in screen.session.conversations] == [2, 2]
        assert f"{len(with_tools)}→" in left.border_subtitle


def test_chat_compare_takes_a_tools_file_and_refuses_a_bad_one(trained_with_tool_template):
    ws = trained_with_tool_template
    bad = ws / "broken.json"
    done = run_cli("chat", "compare", str(ws), "--tools", str(bad), "--prompt", "Hi", "--max-tokens", "2")
    assert done.returncode == 2 and f'{bad}: tool 1 has no function "name"' in done.stderr
    assert not list((ws / "runs").glob("*/compare-*.jsonl"))  # nothing ran, nothing saved

    done = run_cli("chat", "compare", str(ws), "--tools", str(ws / "tools.json"), "--prompt", "Hi",
                   "--max-tokens", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].endswith("· tools: get_weather (tools.json)")
    assert "leaves out" not in done.stderr  # this template renders them
    assert len(list((ws / "runs").glob("*/compare-*.jsonl"))) == 1


def test_a_phi4_mini_template_gets_the_tools_in_its_system_message(tmp_path):
    """Phi-4-mini's template ignores `tools=` and reads the definitions from the system message's 'tools' (a JSON
    string), as the data checks advise for records: Chat puts them there, so the model sees them."""
    from phi3tui.core.chat import tools_note
    from phi3tui.core.chat.model import ChatModel
    from phi3tui.core.chat.tools import tool_form
    from phi3tui.core.demo import write_phi4_mini_model

    write_phi4_mini_model(tmp_path / "model")
    (tmp_path / "tools.json").write_text(json.dumps(TOOLS), encoding="utf-8")
    tools = load_tools(tmp_path / "tools.json")
    model = ChatModel(tmp_path / "model")
    assert tool_form(model.tokenizer, tools) == "system" and tools_note(model.tokenizer, tools) == ""
    asked = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Rain in Paris?"}]
    text = model.tokenizer.decode(model.prompt_tokens(asked, tools))
    assert text == f"<|system|>Be brief.<|tool|>{json.dumps(TOOLS)}<|/tool|><|end|><|user|>Rain in Paris?<|end|><|assistant|>"
    assert "<|tool|>" not in model.tokenizer.decode(model.prompt_tokens(asked))
