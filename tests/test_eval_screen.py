"""The Evaluate view, from Chat by ^o, driven by keys at 80×24: it runs on the model worker and shows
the core's numbers per metric with the difference."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
from textual.widgets import DataTable, ProgressBar

from phi3tui.app import Phi3App
from phi3tui.core.chat import GenerationSettings
from phi3tui.core.eval import rows
from phi3tui.core.workspace import Workspace
from tests.test_chat_screen import open_chat, wait_for

RUN = "20260101-0000-r1"


@pytest.fixture(scope="module")
def trained(trained_r1_template, tmp_path_factory):
    ws = tmp_path_factory.mktemp("eval-screen") / "ws"
    shutil.copytree(trained_r1_template, ws)  # run RUN (r1), trained once per session
    return ws


async def test_evaluate_view_shows_left_right_and_difference_per_metric(trained):
    app = Phi3App(Workspace.open(trained), start_mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await open_chat(app, pilot)
        chat.session.settings = GenerationSettings(max_tokens=6)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "EvaluateScreen")
        view = app.screen
        view.query_one("#eval-limit").value = "3"
        ui_thread = threading.current_thread()
        threads = []
        original = view.post_message

        def post(message):  # which thread the job talks from (the real message still goes through)
            if isinstance(message, (view.Progress, view.Done)):
                threads.append(threading.current_thread())
            return original(message)

        view.post_message = post
        await pilot.press("enter")
        await wait_for(pilot, lambda: not view.running, timeout=120)
        await pilot.pause(0.2)
        status = str(view.query_one("#eval-status").render())
        assert "saved to" in status, status
        assert threads and all(t is not ui_thread and t.name == "phi3tui-model" for t in threads)
        bar = view.query_one(ProgressBar)
        assert bar.progress == bar.total
        # The table is the saved result, row for row: the core's numbers, not the screen's.
        (saved,) = (trained / "runs" / RUN).glob("eval-*.json")
        result = json.loads(saved.read_text())
        assert result["left"]["n_mc"] == 3 and result["right"]["n_answers"] == 3
        table = view.query_one(DataTable)
        shown = [tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]
        assert shown == rows(result)
        assert [r[0] for r in shown] == ["test loss", "test perplexity", "MC1", "MC2", "exact match", "ROUGE-L F1"]
        # The test-loss row from the saved numbers by hand: lower is better, what shows as +0.0000 is the same.
        left, right = result["left"]["test_loss"], result["right"]["test_loss"]
        verdict = "same" if abs(right - left) < 5e-5 else "better" if right < left else "worse"
        assert shown[0][1:] == (f"{left:.4f}", f"{right:.4f}", f"{right - left:+.4f}", verdict), shown[0]
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChatScreen")


def test_the_verdict_per_metric_from_known_numbers():
    """Right minus left per metric; lower loss and perplexity are better, higher scores are; a difference the table
    cannot show (+0.0000) is "same"; a metric one side lacks has no verdict."""
    result = {
        "left": {"test_loss": 2.0, "test_ppl": 7.0, "mc1": 0.5, "mc2": 0.4, "exact_match": 0.2, "rouge_l": 0.3},
        "right": {"test_loss": 1.5, "test_ppl": 8.25, "mc1": 0.5, "mc2": 0.40000001, "exact_match": 0.1, "rouge_l": None},
    }
    assert rows(result) == [
        ("test loss", "2.0000", "1.5000", "-0.5000", "better"),
        ("test perplexity", "7.0000", "8.2500", "+1.2500", "worse"),
        ("MC1", "0.5000", "0.5000", "+0.0000", "same"),
        ("MC2", "0.4000", "0.4000", "+0.0000", "same"),
        ("exact match", "0.2000", "0.1000", "-0.1000", "worse"),
        ("ROUGE-L F1", "0.3000", "—", "—", ""),
    ]
    swapped = rows({"left": result["right"], "right": result["left"]})
    assert [r[4] for r in swapped] == ["worse", "better", "same", "same", "better", ""]


async def pick(pilot, picker, index: int) -> None:
    """Move from the highlighted choice (the side in use now) to `index` by keys, and choose it."""
    from textual.widgets import OptionList

    now = picker.query_one(OptionList).highlighted or 0
    await pilot.press(*(["down"] * (index - now) if index >= now else ["up"] * (now - index)), "enter")


async def test_evaluate_view_picks_any_checkpoint_for_either_side(trained):
    from phi3tui.core.adapters import iteration_of
    from phi3tui.widgets.picker import Picker

    app = Phi3App(Workspace.open(trained), start_mode="chat")
    adapters = trained / "runs" / RUN / "adapters"
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await open_chat(app, pilot)
        chat.session.settings = GenerationSettings(max_tokens=4)
        chat_sides = list(chat.session.sides)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "EvaluateScreen")
        view = app.screen
        view.query_one("#eval-limit").value = "2"
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, Picker))
        labels = [label for label, _ in app.screen.choices]
        ten = next(i for i, label in enumerate(labels) if label.startswith(f"run {RUN} · iteration 10"))
        await pick(pilot, app.screen, ten)
        await wait_for(pilot, lambda: app.screen is view)
        assert view.sides[0].adapter.iteration == 10 and view.sides[0].weights_path == adapters / "0000010_adapters.safetensors"
        assert "left run 20260101-0000-r1 · iteration 10" in str(view.query_one("#eval-sides").render())
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, Picker))
        twenty = next(i for i, (label, _) in enumerate(app.screen.choices) if label.startswith(f"run {RUN} · iteration 20"))
        await pick(pilot, app.screen, twenty)
        await wait_for(pilot, lambda: app.screen is view)
        for path in (trained / "runs" / RUN).glob("eval-*.json"):
            path.unlink()  # only this evaluation's file below
        await pilot.press("enter")
        await wait_for(pilot, lambda: not view.running, timeout=120)
        (saved,) = (trained / "runs" / RUN).glob("eval-*.json")
        result = json.loads(saved.read_text())
        assert (result["left"]["iteration"], result["right"]["iteration"]) == (10, 20)
        assert result["left"]["label"].endswith("iteration 10") and result["right"]["label"].endswith("iteration 20")
        # Both checkpoints now carry their scores in the picker; the Chat panes kept their own sides.
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, Picker))
        labels = [label for label, _ in app.screen.choices]
        row = next(label for label in labels if label.startswith(f"run {RUN} · iteration 10"))
        assert f"mc2 {result['left']['mc2']:.2f}" in row and f"test {result['left']['test_loss']:.3f}" in row
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is view)
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChatScreen")
        assert chat.session.sides == chat_sides
    assert iteration_of(adapters / "adapters.safetensors") == 20
