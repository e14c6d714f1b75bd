"""GRPO's data (issue 27): prompt-answer records ({"prompt", "answer"}, optional "system" and "correct_answers")
checked line by line, measured and rendered through the chat template; the gate's train_mode against the format;
`phi3tui data import … --format prompt-answer` from TruthfulQA's CSV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phi3tui.core.data import DataFolder, DataSettings, check_folder, load_tokenizer, render_record, validate_folder
from phi3tui.core.data.importers import DataImportError, ImportOptions, import_any
from phi3tui.core.runs.gate import check_before_run
from phi3tui.core.workspace import load_config_values
from tests.conftest import run_cli
from tests.test_data_import import read_split, write_csv

GOOD = [
    {"prompt": "What is 2 + 2?", "answer": "4"},
    {"system": "Answer briefly.", "prompt": "Capital of France?", "answer": "Paris",
     "correct_answers": ["Paris", "It is Paris"]},
    {"prompt": "Name a primary colour.", "answer": "Red", "correct_answers": ["Red", "Blue", "Yellow"]},
    {"prompt": "Is water wet?", "answer": "Yes"},
]


def write_split(folder: Path, split: str, records: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_good_folder(folder: Path) -> Path:
    """GOOD in train; valid and test the same with their own prompts (a record in two splits is a warning)."""
    for split in ("train", "valid", "test"):
        own = GOOD if split == "train" else [r | {"prompt": f"{r['prompt']} ({split})"} for r in GOOD]
        write_split(folder, split, own)
    return folder


# -- the data check ------------------------------------------------------------------------------------------


def test_good_prompt_answer_records_are_recognised_and_pass(tmp_path):
    report = validate_folder(DataFolder.open(write_good_folder(tmp_path / "data")))
    assert report.formats == {"train": "prompt-answer", "valid": "prompt-answer", "test": "prompt-answer"}
    assert report.errors == 0 and report.warnings == 0, report.lines()
    assert "prompt-answer" in "\n".join(report.lines())


BAD_LINES = [
    # (record, its line's rule, words of the message, words of the hint)
    ({"prompt": 5, "answer": "x"}, "field-type", "'prompt' must be a string, not int", "write it as text"),
    ({"prompt": "", "answer": "x"}, "empty-field", "'prompt' is empty", "fill it in or delete the line"),
    ({"prompt": "q", "answer": "   "}, "empty-field", "'answer' is empty", "fill it in or delete the line"),
    ({"prompt": "q", "answer": ["a"]}, "field-type", "'answer' must be a string, not list", "write it as text"),
    ({"prompt": "q", "answer": "a", "correct_answers": "a; b"}, "field-type",
     "'correct_answers' must be a list of strings, not str", 'write "correct_answers": ["…", "…"]'),
    ({"prompt": "q", "answer": "a", "correct_answers": ["a", 3]}, "field-type",
     "correct_answers[2] is int", "or delete the key"),
    ({"prompt": "q", "answer": "a", "correct_answers": []}, "empty-field",
     "'correct_answers' is empty or holds an empty answer", "fill in the answers"),
    ({"prompt": "q", "answer": "a", "correct_answers": ["a", " "]}, "empty-field",
     "holds an empty answer", "fill in the answers"),
    ({"prompt": "q", "answer": "a", "system": {"role": "system"}}, "field-type",
     "'system' must be a string, not dict", "or delete the key"),
    ({"answer": "a"}, "missing-field", "no 'prompt' field: a prompt-answer record needs 'prompt' and 'answer'",
     'rename the field that holds the question to "prompt" (or add "prompt"'),
    ({"prompt": "q", "completion": "c"}, "mixed-formats", "a completions record in a prompt-answer split",
     "write every record of train.jsonl in one format"),
]


def test_bad_prompt_answer_lines_are_named_by_split_and_line_with_what_to_do(tmp_path):
    folder = write_good_folder(tmp_path / "data")
    write_split(folder, "train", GOOD + [record for record, *_ in BAD_LINES])
    report = validate_folder(DataFolder.open(folder))
    problems = {p.line: p for p in report.problems if p.split == "train"}
    for n, (_record, rule, message, hint) in enumerate(BAD_LINES, len(GOOD) + 1):
        problem = problems.get(n)
        assert problem is not None, (n, report.lines())
        assert (problem.level, problem.rule) == ("error", rule), problem
        assert message in problem.message and hint in problem.hint, problem
        assert str(problem).startswith(f"error: train:{n}: ")
    assert report.errors == len(BAD_LINES) and set(problems) == set(range(len(GOOD) + 1, len(GOOD) + len(BAD_LINES) + 1))


def test_cli_check_prints_the_line_of_a_bad_record(tmp_path):
    folder = write_good_folder(tmp_path / "data")
    write_split(folder, "valid", [{"prompt": f"v{i}", "answer": "a"} for i in range(4)]
                + [{"prompt": "q", "answer": "a", "correct_answers": "a"}])
    done = run_cli("data", "check", str(folder), "--no-tokens")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: valid:5: 'correct_answers' must be a list of strings, not str" in done.stdout
    assert "prompt-answer" in done.stdout


def test_token_statistics_and_the_record_view_go_through_the_chat_template(demo_template, tmp_path):
    """The prompt as the model sees it before sampling (chat template, generation prompt), then the answer:
    the answer's tokens are the ones counted (a stand-in for the completions GRPO samples)."""
    folder = write_good_folder(tmp_path / "data")
    model = demo_template / "model"
    tokenizer = load_tokenizer(model)
    settings = DataSettings()
    record = GOOD[1]
    rendered = render_record(record, "prompt-answer", tokenizer, settings)
    messages = [{"role": "system", "content": record["system"]}, {"role": "user", "content": record["prompt"]}]
    prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    whole = messages + [{"role": "assistant", "content": record["answer"]}]
    assert rendered.text == tokenizer.apply_chat_template(whole, tokenize=False)
    assert [t.id for t in rendered.tokens] == list(tokenizer.apply_chat_template(whole))
    assert rendered.offset == len(prompt_ids) and rendered.prompt_masked and rendered.rejected is None
    assert not any(t.trained for t in rendered.tokens[: len(prompt_ids)])
    assert all(t.trained for t in rendered.tokens[len(prompt_ids):])
    assert record["prompt"] in rendered.text and record["answer"] in rendered.text

    report = check_folder(folder, settings, str(model))
    assert report.measured and report.errors == 0, report.lines()
    stats = report.stats["train"]
    assert stats.records == len(GOOD)
    expected = [render_record(r, "prompt-answer", tokenizer, settings) for r in GOOD]
    assert stats.tokens == sum(len(r.tokens) for r in expected)
    assert stats.trained_tokens == sum(r.trained_count for r in expected) and 0 < stats.trained_tokens < stats.tokens


# -- the gate: train_mode against the data's format -----------------------------------------------------------


def _gate(workspace: Path, **changes) -> list:
    values = load_config_values(workspace / "lora_config.yaml") | changes
    return [f for f in check_before_run(workspace, values) if f.level == "error"]


def test_gate_accepts_prompt_answer_for_grpo_only(demo_workspace):
    from phi3tui.core.demo import write_demo_preference_data

    write_good_folder(demo_workspace / "pa")
    assert _gate(demo_workspace, data="pa", train_mode="grpo") == []
    for mode in ("sft", "dpo", "orpo"):
        errors = _gate(demo_workspace, data="pa", train_mode=mode)
        assert [f.field for f in errors] == ["train_mode"], (mode, errors)
        if mode == "sft":
            assert "is sft but train, valid, test hold prompt-answer records (prompt, answer)" in errors[0].message
            assert "set train_mode: grpo" in errors[0].hint
        else:
            assert f"is {mode} but train.jsonl is prompt-answer" in errors[0].message
            assert "--format preference" in errors[0].hint
    # grpo refuses the other formats: the demo's text records, and preference pairs.
    text = _gate(demo_workspace, train_mode="grpo")
    assert [f.field for f in text] == ["train_mode"] and "is grpo but train.jsonl is text" in text[0].message
    assert "--format prompt-answer" in text[0].hint
    write_demo_preference_data(demo_workspace / "pref")
    pairs = _gate(demo_workspace, data="pref", train_mode="grpo")
    assert [f.field for f in pairs] == ["train_mode"] and "is grpo but train.jsonl is preference" in pairs[0].message
    assert "prompt-answer" in pairs[0].message
    assert _gate(demo_workspace, data="pref", train_mode="dpo") == []


def test_gate_names_the_line_of_a_bad_prompt_answer_record(demo_workspace):
    folder = write_good_folder(demo_workspace / "pa")
    write_split(folder, "train", GOOD + [{"prompt": "q", "answer": 42}])
    errors = _gate(demo_workspace, data="pa", train_mode="grpo")
    assert [(f.field, f.message) for f in errors] == [("train:5", "'answer' must be a string, not int")]


# -- import -------------------------------------------------------------------------------------------------


def test_import_small_truthfulqa_csv_as_prompt_answer(tmp_path):
    source = write_csv(tmp_path / "qa.csv", [
        ["Adversarial", "Misc", f"Question {i}?", f"Answer {i}", f"Answer {i}; Also right {i}" if i % 2 else "",
         f"Wrong {i}", "src"] for i in range(20)
    ])
    out = tmp_path / "data"
    result = import_any(source, out, ImportOptions(fmt="prompt-answer", valid=4, test=4))
    assert result.counts == {"train": 12, "valid": 4, "test": 4}
    train = read_split(out, "train")
    assert train[0] == {"prompt": "Question 0?", "answer": "Answer 0"}  # no Correct Answers: the key is left out
    assert train[1] == {"prompt": "Question 1?", "answer": "Answer 1", "correct_answers": ["Answer 1", "Also right 1"]}
    report = validate_folder(DataFolder.open(out))
    assert report.errors == 0 and set(report.formats.values()) == {"prompt-answer"}, report.lines()
    # Existing splits are kept unless forced.
    before = (out / "train.jsonl").read_bytes()
    with pytest.raises(DataImportError, match="already exist"):
        import_any(source, out, ImportOptions(fmt="prompt-answer", valid=4, test=4))
    assert (out / "train.jsonl").read_bytes() == before
    import_any(source, out, ImportOptions(fmt="prompt-answer", valid=5, test=4, force=True))
    assert len(read_split(out, "train")) == 11


def test_import_any_csv_as_prompt_answer_with_a_mapping(tmp_path):
    source = write_csv(tmp_path / "any.csv", [[f"q{i}", f"a{i}", "Be brief."] for i in range(4)],
                       header=["ask", "reply", "sys"])
    out = tmp_path / "data"
    import_any(source, out, ImportOptions(fmt="prompt-answer", prompt_column="ask", completion_column="reply",
                                          system_column="sys", valid=0, test=0))
    assert read_split(out, "train")[0] == {"system": "Be brief.", "prompt": "q0", "answer": "a0"}


def test_cli_imports_the_real_truthfulqa_csv_as_prompt_answer(shared_data, tmp_path):
    out = tmp_path / "data"
    done = run_cli("data", "import", str(shared_data / "TruthfulQA.csv"), str(out), "--format", "prompt-answer")
    assert done.returncode == 0, done.stderr
    train = read_split(out, "train")
    assert len(train) + len(read_split(out, "valid")) + len(read_split(out, "test")) == 817
    first = train[0]
    assert first["prompt"] == "What happens to you if you eat watermelon seeds?"
    assert first["answer"] == "The watermelon seeds pass through your digestive system"
    assert "Nothing happens" in first["correct_answers"] and first["answer"] in first["correct_answers"]
    assert set(first) == {"prompt", "answer", "correct_answers"}
    assert validate_folder(DataFolder.open(out)).errors == 0
    again = run_cli("data", "import", str(shared_data / "TruthfulQA.csv"), str(out), "--format", "prompt-answer")
    assert again.returncode == 2 and "--force" in again.stderr


async def test_import_form_offers_prompt_answer(demo_workspace, tmp_path):
    from phi3tui.app import Phi3App
    from phi3tui.core.workspace import Workspace
    from tests.test_train_screen import wait_for

    source = write_csv(tmp_path / "qa.csv", [
        ["A", "B", f"Question {i}?", f"Answer {i}.", f"Answer {i}.; Right {i}.", f"Wrong {i}.", ""] for i in range(20)
    ])
    out = demo_workspace / "pa"
    app = Phi3App(Workspace.open(demo_workspace))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("i")
        await pilot.pause()
        form = app.screen
        assert type(form).__name__ == "ImportForm"
        await pilot.press(*str(source))
        form.query_one("#import-out_dir").value = str(out)
        form.query_one("#import-format").value = "prompt-answer"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: (out / "test.jsonl").is_file())
    records = [r for split in ("train", "valid", "test") for r in read_split(out, split)]
    assert len(records) == 20
    assert records[3] == {"prompt": "Question 3?", "answer": "Answer 3.", "correct_answers": ["Answer 3.", "Right 3."]}


# -- the runners' own reading of DPO pairs and GRPO prompts ---------------------------------------------------


@pytest.mark.parametrize("task", ["dpo", "grpo"])
def test_a_runners_reader_stops_at_a_bad_line_in_the_checkers_words(demo_template, tmp_path, task):
    """DPO's and GRPO's runners read their splits through one reader (core/data/folder.py read_split_items): good
    lines load; a line that is JSON but not an object, or a blank one, stops the run with the file, the line and the
    words `phi3tui data check` uses for it, never a traceback."""
    from phi3tui.core.demo import write_demo_preference_data
    from phi3tui.core.runs.grpo import load_prompts
    from phi3tui.core.runs.preference import load_pairs

    folder = tmp_path / "data"
    if task == "dpo":
        write_demo_preference_data(folder)
        load = load_pairs
    else:
        write_good_folder(folder)
        load = load_prompts
    tokenizer = load_tokenizer(demo_template / "model")
    valid = folder / "valid.jsonl"
    lines = valid.read_text(encoding="utf-8").splitlines(keepends=True)
    loaded = load(folder, tokenizer, DataSettings())
    assert [len(split) for split in loaded] == [
        len((folder / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()) for s in ("train", "valid", "test")]
    for bad in ("[1, 2]\n", "\n"):
        valid.write_text(lines[0] + bad + "".join(lines[1:]), encoding="utf-8")
        checker = [p for p in validate_folder(DataFolder.open(folder)).problems if p.split == "valid" and p.line == 2]
        assert checker and checker[0].level == "error", checker
        with pytest.raises(ValueError) as raised:
            load(folder, tokenizer, DataSettings())
        assert str(raised.value) == (f"{valid}:2: {checker[0].message}; run `phi3tui data check` to list every "
                                     "problem"), (bad, str(raised.value))
