"""The Data screen's Problems at 80×24: a split without problems says so, and a bad line reads the same (worded once)
in the Problems table, the status line and the record view."""

from __future__ import annotations

from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace
from tests.test_data_screen import body, checked, title


async def problem_rows(app, pilot) -> list[list[str]]:
    """The Problems tab's rows as text, once the folder is checked."""
    await pilot.pause()
    await checked(app, pilot)
    await pilot.press("e")
    await pilot.pause()
    table = app.screen.query_one("#problem-list")
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_clean_splits_say_no_problems_and_a_bad_line_reads_the_same_everywhere(demo_workspace):
    train = demo_workspace / "data" / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[4] = '{"text": "a\tb"}'  # a raw tab inside a string: json's "Invalid control character at"
    train.write_text("\n".join(lines) + "\n")
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        rows = await problem_rows(app, pilot)
        assert rows[0][:3] == ["error", "train:5", "invalid JSON: Invalid control character at column 12"]
        assert ["ok", "valid", "no problems", ""] in rows and ["ok", "test", "no problems", ""] in rows
        assert not any(row[1] == "train" and row[2] == "no problems" for row in rows)
        assert "at at" not in app.screen.status_text
        await pilot.press("enter")
        await pilot.pause()
        assert title(app).startswith("train:5 ")
        assert body(app).startswith(rows[0][2] + "\n")


async def test_a_clean_folder_lists_no_problems_for_each_split(demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        rows = await problem_rows(app, pilot)
        assert rows == [["ok", split, "no problems", ""] for split in ("train", "valid", "test")]


def test_the_checker_and_the_record_reader_word_each_bad_line_alike(tmp_path):
    from phi3tui.core.data import DataSettings
    from phi3tui.core.data.checks import check_folder
    from phi3tui.core.data.folder import parse_record

    bad = [b'{"text": "a\tb"}', b"", b"[1, 2]", b'{"text": "x"', b"\xff\xfe{}", b'{"text": "unterminated']
    (tmp_path / "train.jsonl").write_bytes(b'{"text": "fine"}\n' + b"\n".join(bad) + b"\n")
    report = check_folder(tmp_path)
    by_line = {p.line: p.message for p in report.problems if p.split == "train"}
    for line, raw in enumerate(bad, 2):
        assert parse_record("train", line, raw, DataSettings()).error == by_line[line]
        assert " at at " not in by_line[line]
