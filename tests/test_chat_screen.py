"""The Chat screen driven by keys at 80×24: streaming both panes, stop, pickers, settings, batch compare."""

from __future__ import annotations

import json
import shutil

import pytest

from phi3tui.app import Phi3App
from phi3tui.core.chat.session import BASE, GenerationSettings, side_for_path
from phi3tui.core.workspace import Workspace
from tests.test_chat import write_foreign_adapter


@pytest.fixture(scope="module")
def trained(trained_r1_template, tmp_path_factory):
    ws = tmp_path_factory.mktemp("chat-screen") / "ws"
    shutil.copytree(trained_r1_template, ws)  # run r1, trained once per session
    return ws


async def wait_for(pilot, condition, timeout: float = 60.0) -> None:
    waited = 0.0
    while not condition():
        await pilot.pause(0.05)
        waited += 0.05
        assert waited < timeout, "timed out"


async def open_chat(app, pilot):
    await wait_for(pilot, lambda: type(app.screen).__name__ == "ChatScreen")
    screen = app.screen
    # The model loads on the app's worker thread; the panes clear their note when it is ready.
    await wait_for(pilot, lambda: not app.model_worker.busy and app.model_worker._model is not None)
    await pilot.pause()
    return screen


async def ask(pilot, screen, text: str) -> None:
    await pilot.press(*text)
    await pilot.press("enter")
    await pilot.pause()
    await wait_for(pilot, lambda: not screen.generating)
    await pilot.pause(0.2)


async def test_both_panes_stream_the_answers_of_base_and_adapter(trained):
    app = Phi3App(Workspace.open(trained), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        screen.session.settings = GenerationSettings(max_tokens=24)
        await ask(pilot, screen, "Is the sun a star?")
        left, right = screen.pane(0), screen.pane(1)
        assert left.border_title == "base" and "run 20260101-0000-r1" in right.border_title

        # The panes show exactly what the core gives for the same sides and settings.
        model = app.model_worker._model
        prompt = model.prompt_tokens([{"role": "user", "content": "Is the sun a star?"}])
        model.set_sides([BASE, side_for_path(trained / "runs" / "20260101-0000-r1")])
        answers, stats = model.answer_all([prompt, prompt], [0, 1], GenerationSettings(max_tokens=24))
        assert left.answer_text == answers[0] and right.answer_text == answers[1]
        assert left.answer_text != right.answer_text
        assert f"{len(prompt)}→" in left.border_subtitle and "tok/s" in left.border_subtitle

        # A second turn: each pane's conversation carries its own answer.
        await ask(pilot, screen, "And the moon?")
        conversations = screen.session.conversations
        assert [t["content"] for t in conversations[0].turns[::2]] == ["Is the sun a star?", "And the moon?"]
        assert conversations[0].turns[1]["content"] == answers[0]
        assert conversations[1].turns[1]["content"] == answers[1]

        # Copy the right (adapted) pane's answer; clear both conversations.
        await pilot.press("ctrl+y")
        assert app.clipboard == conversations[1].last_answer()
        await pilot.press("ctrl+n")
        await pilot.pause(0.3)
        assert screen.session.conversations[0].turns == [] and left.answer_text == ""


async def test_stop_mid_stream_leaves_the_app_responsive(trained):
    app = Phi3App(Workspace.open(trained), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        screen.session.settings = GenerationSettings(max_tokens=100_000)
        await pilot.press(*"Tell me a long story")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(screen.pane(0).answer_text) > 20)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.generating, timeout=10)
        await pilot.pause(0.2)
        assert screen.last_stats[0].finish == "stopped"
        assert screen.last_stats[0].tokens < 100_000
        # Still responsive: switch screens and back, then ask again.
        app.set_focus(None)
        await pilot.press("1")
        await pilot.pause()
        assert app.current_mode == "data"
        await pilot.press("4")
        await pilot.pause()
        assert app.screen is screen
        screen.query_one("Input").focus()
        screen.session.settings = GenerationSettings(max_tokens=5)
        await ask(pilot, screen, "Short one")
        assert screen.last_stats[0].finish == "length"


async def test_pickers_and_errors_show_in_the_pane(trained, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(trained, ws)
    # An adapter folder made for another model sits in the workspace.
    write_foreign_adapter(ws / "other-model-adapter", ws / "runs" / "20260101-0000-r1" / "adapters")
    app = Phi3App(Workspace.open(ws), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        # ctrl+f: the left pane becomes checkpoint 10 of the run (two checkpoints side by side).
        await pilot.press("ctrl+f")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "Picker")
        labels = [label for label, _ in app.screen.choices]
        target = labels.index("run 20260101-0000-r1 · iteration 10")
        app.screen.query_one("OptionList").highlighted = target
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.pane(0).border_title.endswith("iteration 10"), timeout=20)
        assert screen.session.sides[0].weights_path.name == "0000010_adapters.safetensors"

        # ctrl+r: an adapter for another model is refused with a message; the pane keeps its model.
        before = screen.session.sides[1]
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "Picker")
        app.screen.query_one("OptionList").highlighted = [label for label, _ in app.screen.choices].index("other-model-adapter · latest")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.pane(1).query(".error"), timeout=20)
        error = str(screen.pane(1).query(".error").last().render())
        assert "made for another model" in error
        assert screen.session.sides[1] == before
        screen.session.settings = GenerationSettings(max_tokens=4)
        await ask(pilot, screen, "Still fine?")
        assert screen.last_stats[1].tokens >= 1

        # An adapter folder outside the workspace, by path; a wrong path is explained in the dialog.
        outside = tmp_path / "elsewhere"
        shutil.copytree(ws / "runs" / "20260101-0000-r1" / "adapters", outside)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "Picker")
        app.screen.query_one("#pick-path").focus()
        await pilot.press(*str(tmp_path / "nowhere"), "enter")
        assert "not an adapter folder" in str(app.screen.query_one("#pick-error").render())
        app.screen.query_one("#pick-path").value = str(outside)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.pane(1).border_title == "elsewhere · latest", timeout=20)


async def test_no_adapter_is_a_message_and_the_base_still_answers(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        error = str(screen.pane(1).query(".error").first().render())
        assert "no adapters" in error and "train a run first" in error
        screen.session.settings = GenerationSettings(max_tokens=6)
        await ask(pilot, screen, "Hello")
        assert screen.pane(0).answer_text and screen.last_stats[0].tokens == 6
        assert 1 not in screen.last_stats


async def test_settings_are_checked_and_applied(trained):
    app = Phi3App(Workspace.open(trained), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChatSettingsScreen")
        modal = app.screen
        modal.query_one("#setting-temp").value = "hot"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "temp: 'hot' is not a number" in str(modal.query_one("#settings-error").render())
        assert app.screen is modal
        modal.query_one("#setting-temp").value = "0.7"
        modal.query_one("#setting-max_tokens").value = "32"
        modal.query_one("#setting-system_prompt").value = "Answer in one word."
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is screen
        assert screen.session.settings.temp == 0.7 and screen.session.settings.max_tokens == 32
        assert "temp 0.7" in str(screen.query_one("#chat-bar").render())


async def test_batch_compare_table_and_file(trained, tmp_path):
    prompts = tmp_path / "three.txt"
    prompts.write_text("Is the sun a star?\nWhy is the sky blue?\nDo ants lift cars?\n")
    app = Phi3App(Workspace.open(trained), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_chat(app, pilot)
        screen.session.settings = GenerationSettings(max_tokens=8)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "CompareScreen")
        modal = app.screen
        modal.query_one("#compare-file").value = str(prompts)
        await pilot.press("enter")
        await wait_for(pilot, lambda: not modal.running and modal.records)
        await pilot.pause()
        assert modal.query_one("DataTable").row_count == 3
        status = str(modal.query_one("#compare-status").render())
        saved = status.split("saved to ")[1].split(" · ")[0]
        lines = [json.loads(line) for line in open(saved)]
        assert [r["prompt"] for r in lines] == ["Is the sun a star?", "Why is the sky blue?", "Do ants lift cars?"]
        assert str(trained / "runs" / "20260101-0000-r1") in saved
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen


async def test_a_missing_model_is_a_message_in_both_panes(demo_workspace):
    config = demo_workspace / "lora_config.yaml"
    config.write_text(config.read_text().replace('model: "model"', 'model: "no-such-model"'))
    app = Phi3App(Workspace.open(demo_workspace), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChatScreen")
        screen = app.screen
        await wait_for(pilot, lambda: screen.pane(0).query(".error"))
        assert "model 'no-such-model' is neither a folder" in str(screen.pane(0).query(".error").last().render())
        await pilot.press(*"Hello")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not screen.generating)
        assert app.screen is screen  # still up; the error is shown again, nothing crashed
