"""Keys sent as one burst (issue 24): over SSH a whole question reaches the app at once, before the Chat box
has taken its first letters. `Hi 2` must not switch to screen 2 and a `?` inside the question must not open
help: a box holds text as soon as keys are on their way to it (widgets/text_box.py)."""

from __future__ import annotations

from textual import events

from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace
from tests.test_settings_terminal import PtyApp

PROMPT = "Hi 2 what is 2+2? and 5?"


async def _chat_box(pilot, app):
    for _ in range(100):
        if type(app.screen).__name__ == "ChatScreen":
            break
        await pilot.pause(0.05)
    box = app.screen.query_one("#chat-input")
    assert app.focused is box and box.value == ""
    return box


def _burst(app, text: str) -> None:
    """Every key of `text` handed to the app at once, as a terminal's read of a fast write delivers them:
    no await between them, so the box has applied none when the app decides the later ones."""
    for character in text:
        key = {"?": "question_mark", " ": "space", "+": "plus"}.get(character, character)
        event = events.Key(key, character)
        event.set_sender(app)
        app._driver.send_message(event)


async def _settle(pilot, box, text: str) -> None:
    for _ in range(100):
        if box.value == text:
            return
        await pilot.pause(0.02)


async def test_a_burst_is_typed_into_the_chat_box(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        box = await _chat_box(pilot, app)
        _burst(app, PROMPT)
        await _settle(pilot, box, PROMPT)
        assert box.value == PROMPT
        assert type(app.screen).__name__ == "ChatScreen" and app.current_mode == "chat"
        assert box.keys_on_the_way == 0
        # The rule still holds once the box is empty again: 3 switches, ? opens help.
        box.value = ""
        await pilot.pause()
        _burst(app, "3")
        for _ in range(100):
            if app.current_mode == "train":
                break
            await pilot.pause(0.05)
        assert app.current_mode == "train"


async def test_pilot_presses_without_pauses_are_typed(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        box = await _chat_box(pilot, app)
        await pilot.press(*PROMPT)
        await _settle(pilot, box, PROMPT)
        assert box.value == PROMPT and type(app.screen).__name__ == "ChatScreen"


async def test_a_question_mark_inside_a_burst_stays_in_the_box(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        box = await _chat_box(pilot, app)
        _burst(app, "why?")
        await _settle(pilot, box, "why?")
        assert box.value == "why?" and type(app.screen).__name__ == "ChatScreen"


def test_one_pty_write_to_the_real_app_is_typed(config_dir, demo_workspace):
    app = PtyApp(demo_workspace, config_dir, "--screen", "chat")
    try:
        app.wait_for("phi3tui · Chat", 60)
        app.wait_for("Ask both models", 30)  # the prompt box is there (its placeholder)
        before = len(app.text())
        app.press(PROMPT)  # one write: the app reads the whole question at once
        app.wait_for("2+2? and 5?", 30)
        written = app.text()[before:]
        assert "phi3tui · Config" not in written and "phi3tui · Data" not in written
        assert "phi3tui keys" not in written  # no help opened
        app.press("\x1bOQ")  # F2 still switches: the check above would see a switch
        app.wait_for("phi3tui · Config", 30)
    finally:
        app.close()


async def test_screen_keys_in_a_dialog_say_why_nothing_switched(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(100):
            if type(app.screen).__name__ == "DataScreen":
                break
            await pilot.pause(0.05)
        app.set_focus(None)
        await pilot.press("question_mark")
        for _ in range(100):
            if type(app.screen).__name__ == "HelpScreen":
                break
            await pilot.pause(0.05)
        await pilot.press("f3")
        await pilot.pause()
        assert app.current_mode == "data" and type(app.screen).__name__ == "HelpScreen"
        assert any("close this dialog first" in str(n.message) for n in app._notifications)
        await pilot.press("question_mark")  # the dialog's own key (help's ? closes it) is not refused
        await pilot.pause()
        assert type(app.screen).__name__ == "DataScreen"
        assert sum("close this dialog first" in str(n.message) for n in app._notifications) == 1
