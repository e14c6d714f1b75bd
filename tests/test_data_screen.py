"""The Data screen at 80×24 by keys: paging, jump, search, splits, views, problems, import."""

from __future__ import annotations

import csv
import json

from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace


def body(app) -> str:
    content = app.screen.query_one("#record-body").content
    return getattr(content, "plain", str(content))


def title(app) -> str:
    content = app.screen.query_one("#record-title").content
    return getattr(content, "plain", str(content))


async def wait_for(pilot, condition, seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)
    raise AssertionError("timed out waiting for the Data screen")


async def checked(app, pilot) -> None:
    # The worker measures the report it already showed as validated: wait for the screen's last word on it too.
    await wait_for(pilot, lambda: app.screen.report is not None and app.screen.report.measured
                   and app.screen.status_text.startswith("checked:"))


def train_record(ws, line: int) -> dict:
    return json.loads((ws / "data" / "train.jsonl").read_text().splitlines()[line - 1])


async def test_first_page_paging_jump_search_and_splits(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert title(app).startswith("train:1 of")
        assert train_record(demo_workspace, 1)["text"].split("\n")[1][:20] in body(app)
        await checked(app, pilot)
        assert title(app).startswith("train:1 of 417")
        await pilot.press("j", "j", "right")
        assert title(app).startswith("train:4 ")
        await pilot.press("k")
        assert title(app).startswith("train:3 ")
        await pilot.press("g", *"300", "enter")
        assert title(app).startswith("train:300 ")
        assert train_record(demo_workspace, 300)["text"].split("\n")[1][:30] in body(app)
        await pilot.press("end")
        assert title(app).startswith("train:417 ")
        await pilot.press("home", "slash", *"goldfish", "enter")
        await wait_for(pilot, lambda: not title(app).startswith("train:1 "))
        assert "goldfish" in body(app).lower()
        await pilot.press("s")
        assert title(app).startswith("valid:1 of 51")
        await pilot.press("s", "s")
        assert title(app).startswith("train:1 ")


async def test_views_show_rendered_text_and_masked_tokens(demo_workspace):
    records = [
        {"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]}
        for i in range(8)
    ]
    for split in ("train", "valid", "test"):
        (demo_workspace / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = demo_workspace / "lora_config.yaml"
    config.write_text(config.read_text() + "\nmask_prompt: true\n")
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("v")
        await wait_for(pilot, lambda: "<|assistant|>" in body(app))
        assert "as mlx-lm feeds it" in title(app)
        assert "<|user|>\nQuestion 0?<|end|>" in body(app)
        await pilot.press("v")
        await wait_for(pilot, lambda: "tokens" in body(app))
        text = body(app)
        assert "mask_prompt: the first" in text and "are masked" in text
        shown, trained = (int(w) for w in text.split(" tokens, ")[0:1] + text.split(" tokens, ")[1].split(" count")[0:1])
        assert 0 < trained < shown
        await pilot.press("v")
        assert '"role": "user"' in body(app)


async def test_problems_list_jumps_to_the_line(demo_workspace):
    train = demo_workspace / "data" / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[4] = '{"text": "<|user|>\\nQ <|end|>\\n<|assistant|> \\nA <|end|>", }'
    train.write_text("\n".join(lines) + "\n")
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await checked(app, pilot)
        assert "1 errors" in app.screen.status_text
        await pilot.press("e")
        table = app.screen.query_one("#problem-list")
        assert table.row_count >= 1
        assert table.get_row_at(0)[1] == "train:5"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.query_one("#data-tabs").active == "records"
        assert title(app).startswith("train:5 ")
        assert "invalid JSON" in body(app)


async def test_import_asks_before_replacing(demo_workspace, tmp_path):
    source = tmp_path / "qa.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
        for i in range(20):
            writer.writerow(["A", "B", f"Imported question {i}, with a comma?", f"Answer {i}", "", "", ""])
    train = demo_workspace / "data" / "train.jsonl"
    before = train.read_bytes()
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("i")
        await pilot.pause()
        assert type(app.screen).__name__ == "ImportForm"
        await pilot.press(*str(source), "ctrl+s")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmDialog"
        await pilot.press("n")
        await pilot.pause()
        assert train.read_bytes() == before
        await pilot.press("i")
        await pilot.pause()
        await pilot.press(*str(source), "ctrl+s")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: train.read_bytes() != before)
        await wait_for(pilot, lambda: app.screen.folder is not None and app.screen.folder.splits["train"].size == train.stat().st_size)
        assert "Imported question 0, with a comma?" in body(app)
        assert len(train.read_text().splitlines()) == 16


async def test_open_another_folder_and_a_missing_one(demo_workspace, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.jsonl").write_text(json.dumps({"prompt": "Other prompt?", "completion": "Yes."}) + "\n")
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("o", *str(other), "enter")
        await pilot.pause()
        assert title(app).startswith("train:1 of") and "completions" in title(app)
        assert "Other prompt?" in body(app)
        await checked(app, pilot)
        assert "1 records, fewer than batch_size 4" in [p.message for p in app.screen.report.problems][0]
        await pilot.press("o", *str(tmp_path / "nowhere"), "enter")
        await pilot.pause()
        assert app.screen.folder is None and "not a folder" in app.screen.status_text
        await pilot.press("o", "enter")  # back to the workspace's own data
        await pilot.pause()
        assert title(app).startswith("train:1 of") and "text" in title(app)


async def test_check_again_reads_the_config_as_it_is_now(demo_workspace):
    config = demo_workspace / "lora_config.yaml"
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await checked(app, pilot)
        assert app.screen.report.errors == 0
        await pilot.press("g", *"7", "enter")
        config.write_text(config.read_text().replace("batch_size: 4", "batch_size: 64"))
        await pilot.press("c")
        await checked(app, pilot)
        assert app.screen.report.settings.batch_size == 64
        assert [p.split for p in app.screen.report.problems if p.rule == "smaller-than-batch"] == ["valid", "test"]
        assert title(app).startswith("train:7 ")  # still on the same record


async def test_a_file_that_vanishes_mid_check_shows_cores_could_not_be_read(demo_workspace):
    """The screen runs core's own check (core.data.run_checks): a split deleted between validation and
    the token count is core's "could not be read … check again" error, and the check ends."""
    valid = demo_workspace / "data" / "valid.jsonl"
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await checked(app, pilot)
        screen = app.screen
        shown = screen.show_report

        def then_delete(report):  # the screen shows validation's results; the file goes right then
            if not report.measured and valid.exists():
                valid.unlink()
            shown(report)

        screen.show_report = then_delete
        await pilot.press("c")
        await wait_for(pilot, lambda: not valid.exists() and "could not be read" in screen.status_text + str(
            [p.message for p in screen.report.problems]) and "counting tokens" not in screen.status_text)
        problems = [(p.level, p.message, p.hint) for p in screen.report.problems]
        (unreadable,) = [p for p in problems if "could not be read" in p[1]]
        assert unreadable[0] == "error" and "valid.jsonl" in unreadable[1] and "check again" in unreadable[2]
        assert "1 errors" in screen.status_text and "no token statistics" in screen.status_text
        await pilot.press("e")
        table = screen.query_one("#problem-list")
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert any("could not be read" in str(row[2]) and "check again" in str(row[3]) for row in rows), rows
