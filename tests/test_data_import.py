"""CSV/JSONL import: RFC 4180 quoting, embedded newlines and commas, BOM, split sizes, order, no overwrite."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from phi3tui.core.data.folder import DataFolder
from phi3tui.core.data.checks import validate_folder
from phi3tui.core.data.importers import DataImportError, ImportOptions, import_any, import_file, parse_size, tutorial_text
from phi3tui.core.data.importers.common import options_from_values, resolve_sizes
from phi3tui.core.data.importers.truthfulqa import import_truthfulqa

HEADER = ["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"]


def write_csv(path: Path, rows: list[list[str]], header=HEADER, bom: bool = False) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 line ends
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(("\ufeff" if bom else "") + buffer.getvalue(), encoding="utf-8", newline="")
    return path


def qa_rows(n: int) -> list[list[str]]:
    return [["Adversarial", "Misc", f"Question {i}?", f"Answer {i}", "c", "i", "src"] for i in range(n)]


def read_split(folder: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_tutorial_text_format_byte_for_byte():
    assert tutorial_text("Q?", "A.") == "<|user|>\nQ? <|end|>\n<|assistant|> \nA. <|end|>"


def test_quoting_commas_quotes_newlines_and_bom(tmp_path):
    rows = [
        ["Adversarial", "Misc", 'Is "quoted", with commas, ok?', "Yes, it is \"fine\"", "", "", ""],
        ["Adversarial", "Misc", "Two\nlines?", "Answer\r\nwith CRLF", "", "", ""],
    ] + qa_rows(8)
    source = write_csv(tmp_path / "tqa.csv", rows, bom=True)
    assert source.read_bytes().startswith(b"\xef\xbb\xbf")
    out = tmp_path / "data"
    result = import_truthfulqa(source, out, ImportOptions(train=None, valid=0, test=0))
    train = read_split(out, "train")
    assert result.counts == {"train": 10}
    assert train[0]["text"] == tutorial_text('Is "quoted", with commas, ok?', 'Yes, it is "fine"')
    assert train[1]["text"] == tutorial_text("Two\nlines?", "Answer\r\nwith CRLF")
    report = validate_folder(DataFolder.open(out), phi3=True)
    assert report.errors == 0  # the written files are what mlx-lm reads


def test_split_sizes_counts_fractions_percentages_and_file_order(tmp_path):
    source = write_csv(tmp_path / "tqa.csv", qa_rows(20))
    out = tmp_path / "data"
    result = import_truthfulqa(source, out, ImportOptions(train="10", valid="0.25", test="20%"))
    assert result.counts == {"train": 10, "valid": 5, "test": 4}
    assert result.unused == 1
    assert [r["text"] for r in read_split(out, "train")] == [tutorial_text(f"Question {i}?", f"Answer {i}") for i in range(10)]
    assert read_split(out, "valid")[0]["text"].startswith("<|user|>\nQuestion 10?")
    assert read_split(out, "test")[-1]["text"].startswith("<|user|>\nQuestion 18?")


def test_shuffle_with_seed_is_reproducible_and_differs_from_file_order(tmp_path):
    source = write_csv(tmp_path / "tqa.csv", qa_rows(30))
    a, b, c = (tmp_path / n for n in "abc")
    import_truthfulqa(source, a, ImportOptions(shuffle=True, seed=7))
    import_truthfulqa(source, b, ImportOptions(shuffle=True, seed=7))
    import_truthfulqa(source, c, ImportOptions(shuffle=False))
    assert read_split(a, "train") == read_split(b, "train")
    assert read_split(a, "train") != read_split(c, "train")
    everything = read_split(a, "train") + read_split(a, "valid") + read_split(a, "test")
    assert sorted(r["text"] for r in everything) == sorted(r["text"] for r in read_split(c, "train") + read_split(c, "valid") + read_split(c, "test"))


def test_chat_format(tmp_path):
    source = write_csv(tmp_path / "tqa.csv", qa_rows(10))
    out = tmp_path / "data"
    import_truthfulqa(source, out, ImportOptions(fmt="chat", valid=0, test=0))
    assert read_split(out, "train")[3] == {
        "messages": [{"role": "user", "content": "Question 3?"}, {"role": "assistant", "content": "Answer 3"}],
        "correct": ["c"],  # TruthfulQA's answer columns go along, for multiple choice
        "incorrect": ["i"],
    }


def test_never_overwrites_without_force(tmp_path):
    source = write_csv(tmp_path / "tqa.csv", qa_rows(10))
    out = tmp_path / "data"
    out.mkdir()
    (out / "train.jsonl").write_text("keep me\n")
    with pytest.raises(DataImportError, match="already exist"):
        import_truthfulqa(source, out, ImportOptions())
    assert (out / "train.jsonl").read_text() == "keep me\n"
    assert not (out / "valid.jsonl").exists()
    import_truthfulqa(source, out, ImportOptions(force=True, valid=0, test=0))
    assert len(read_split(out, "train")) == 10


def test_bad_input_names_the_problem_and_writes_nothing(tmp_path):
    out = tmp_path / "data"
    missing = write_csv(tmp_path / "other.csv", [["a", "b"]], header=["Prompt", "Reply"])
    with pytest.raises(DataImportError, match="'Question'.*'Prompt', 'Reply'"):
        import_truthfulqa(missing, out)
    too_many = write_csv(tmp_path / "tqa.csv", qa_rows(5))
    with pytest.raises(DataImportError, match="5 usable rows"):
        import_truthfulqa(too_many, out, ImportOptions(train=4, valid=2, test=0))
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("Question,Best Answer\ncaf\xe9?,oui\n".encode("latin-1"))
    with pytest.raises(DataImportError, match="not UTF-8"):
        import_truthfulqa(latin1, out)
    broken = tmp_path / "broken.csv"
    broken.write_text('Question,Best Answer\n"open quote,never closed\n', encoding="utf-8")
    with pytest.raises(DataImportError, match="broken.csv"):
        import_truthfulqa(broken, out)
    assert not out.exists()


def test_rows_with_empty_question_or_answer_are_skipped_and_reported(tmp_path):
    rows = qa_rows(6)
    rows[2][3] = ""
    source = write_csv(tmp_path / "tqa.csv", rows)
    result = import_truthfulqa(source, tmp_path / "data", ImportOptions(valid=0, test=0))
    assert result.counts == {"train": 5}
    assert result.skipped == [(3, "empty 'Best Answer'")]


def test_generic_csv_and_jsonl_with_column_mapping(tmp_path):
    source = write_csv(tmp_path / "any.csv", [[f"p{i}", f"c{i}", "sys"] for i in range(4)], header=["ask", "reply", "persona"])
    out = tmp_path / "a"
    import_file(source, out, ImportOptions(fmt="completions", prompt_column="ask", completion_column="reply", valid=0, test=0))
    assert read_split(out, "train")[1] == {"prompt": "p1", "completion": "c1"}
    out = tmp_path / "b"
    import_file(source, out, ImportOptions(fmt="chat", prompt_column="ask", completion_column="reply", system_column="persona", valid=0, test=0))
    assert read_split(out, "train")[0]["messages"][0] == {"role": "system", "content": "sys"}
    jsonl = tmp_path / "src.jsonl"
    jsonl.write_text("".join(json.dumps({"q": f"q{i}", "a": f"a{i}"}) + "\n" for i in range(5)), encoding="utf-8")
    out = tmp_path / "c"
    import_any(jsonl, out, ImportOptions(prompt_column="q", completion_column="a", valid=1, test=1))
    assert read_split(out, "train")[0] == {"text": tutorial_text("q0", "a0")}
    assert read_split(out, "test") == [{"text": tutorial_text("q4", "a4")}]
    with pytest.raises(DataImportError, match="--prompt-column"):
        import_file(jsonl, tmp_path / "d", ImportOptions())


def test_size_parsing():
    assert parse_size("100") == 100 and parse_size("0.1") == 0.1 and parse_size("10%") == 0.1 and parse_size("") is None
    assert resolve_sizes(817, None, "10%", "10%") == (653, 82, 82)
    with pytest.raises(DataImportError):
        parse_size("ten")
    with pytest.raises(DataImportError, match="seed"):
        options_from_values({"seed": "x"})


def test_real_truthfulqa_csv(shared_data, tmp_path):
    out = tmp_path / "data"
    result = import_truthfulqa(shared_data / "TruthfulQA.csv", out, ImportOptions(train=708, valid=51, test=51))
    assert result.rows == 817 and result.counts == {"train": 708, "valid": 51, "test": 51}
    first = read_split(out, "train")[0]["text"]
    assert first == tutorial_text("What happens to you if you eat watermelon seeds?", "The watermelon seeds pass through your digestive system")
    report = validate_folder(DataFolder.open(out), phi3=True)
    assert report.errors == 0
