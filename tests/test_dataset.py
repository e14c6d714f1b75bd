"""core/dataset: formats as mlx-lm reads them, one test per validation rule, index, search, statistics, render."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from phi3tui.core.data.folder import STRIDE, DataFolder, DataSettings, LineIndex, split_sizes
from phi3tui.core.data.checks import check_folder, demo_step, longest_record_tokens, validate_folder
from phi3tui.core.data.render import load_tokenizer, render_record
from phi3tui.core.models import is_phi3_model
from phi3tui.core.workspace import Workspace

PHI3_TEXT = "<|user|>\nQ{n} <|end|>\n<|assistant|> \nA{n} <|end|>"


def text_lines(count: int, start: int = 0) -> list[str]:
    return [json.dumps({"text": PHI3_TEXT.format(n=n)}) for n in range(start, start + count)]


def write_split(folder: Path, split: str, lines: list[str] | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.jsonl"
    path.write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())
    return path


def make_data(tmp_path: Path, train: list[str] | bytes, valid=None, test=None) -> Path:
    data = tmp_path / "data"
    write_split(data, "train", train)
    write_split(data, "valid", valid if valid is not None else text_lines(8, 1000))
    if test is not None:
        write_split(data, "test", test)
    return data


def problems(report, rule: str) -> list[tuple[str, int, str]]:
    return [(p.split, p.line, p.level) for p in report.problems if p.rule == rule]


def validate(data: Path, settings: DataSettings | None = None, phi3: bool = False):
    return validate_folder(DataFolder.open(data, settings or DataSettings()), phi3=phi3)


@pytest.fixture(scope="module")
def tokenizer(demo_template):
    return load_tokenizer(demo_template / "model")


# -- formats ----------------------------------------------------------------------------------


def test_text_format_clean(tmp_path):
    report = validate(make_data(tmp_path, text_lines(10)), phi3=True)
    assert report.formats["train"] == "text"
    assert report.records == {"train": 10, "valid": 8}
    assert report.errors == 0 and report.warnings == 0
    assert report.iterations_per_epoch == 10 // 4


def test_chat_format_with_tools_is_clean(tmp_path):
    rec = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    data = make_data(tmp_path, [json.dumps(rec)] * 4, valid=[json.dumps(rec)] * 4)
    report = validate(data)
    assert report.formats == {"train": "chat", "valid": "chat"}
    assert report.errors == 0
    # identical train and valid records are leakage
    assert problems(report, "leakage")[0] == ("train", 1, "warning")


def test_completions_format(tmp_path):
    lines = [json.dumps({"prompt": f"p{n}", "completion": f"c{n}"}) for n in range(5)]
    report = validate(make_data(tmp_path, lines, valid=lines[:0] + [json.dumps({"prompt": "x", "completion": "y"})] * 4))
    assert report.formats["train"] == "completions"
    assert report.errors == 0


def test_custom_feature_names_from_config(tmp_path):
    lines = [json.dumps({"question": f"q{n}", "answer": f"a{n}"}) for n in range(5)]
    data = make_data(tmp_path, lines, valid=lines[:4])
    default = validate(data)
    assert ("train", 1, "error") in problems(default, "missing-field")
    mapped = validate(data, DataSettings.from_config({"prompt_feature": "question", "completion_feature": "answer"}))
    assert mapped.formats["train"] == "completions"
    assert mapped.errors == 0


# -- one test per rule, each with the line it must name ---------------------------------------


def test_invalid_json_line_number(tmp_path):
    lines = text_lines(6)
    lines[3] = '{"text": "unterminated'
    report = validate(make_data(tmp_path, lines))
    assert problems(report, "invalid-json") == [("train", 4, "error")]


def test_not_an_object(tmp_path):
    lines = text_lines(6)
    lines[2] = '["a", "list"]'
    assert problems(validate(make_data(tmp_path, lines)), "not-object") == [("train", 3, "error")]


def test_missing_field(tmp_path):
    lines = text_lines(6)
    lines[4] = json.dumps({"body": "x"})
    report = validate(make_data(tmp_path, lines))
    assert problems(report, "missing-field") == [("train", 5, "error")]
    assert "'body'" in [p for p in report.problems if p.rule == "missing-field"][0].message


def test_empty_fields(tmp_path):
    lines = text_lines(6)
    lines[1] = json.dumps({"text": ""})
    report = validate(make_data(tmp_path, lines))
    assert problems(report, "empty-field") == [("train", 2, "error")]


def test_unknown_and_missing_roles(tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    lines = [json.dumps(good)] * 6
    lines[2] = json.dumps({"messages": [{"role": "human", "content": "q"}, {"role": "assistant", "content": "a"}]})
    lines[4] = json.dumps({"messages": [{"content": "q"}, {"role": "assistant", "content": "a"}]})
    report = validate(make_data(tmp_path, lines, valid=[json.dumps(good)] * 4))
    assert problems(report, "unknown-role") == [("train", 3, "error")]
    assert "'human'" in [p for p in report.problems if p.rule == "unknown-role"][0].message
    assert ("train", 5, "error") in problems(report, "missing-field")


def test_mixed_formats_within_a_split(tmp_path):
    lines = text_lines(6)
    lines[5] = json.dumps({"prompt": "p", "completion": "c"})
    report = validate(make_data(tmp_path, lines))
    assert problems(report, "mixed-formats") == [("train", 6, "error")]


def test_phi3_markers_warning_only_for_phi3(tmp_path):
    lines = text_lines(6)
    lines[1] = json.dumps({"text": "plain text without markers"})
    data = make_data(tmp_path, lines)
    assert problems(validate(data, phi3=True), "phi3-markers") == [("train", 2, "warning")]
    assert problems(validate(data, phi3=False), "phi3-markers") == []


def test_phi3_model_detected_from_config_or_name(demo_model, tmp_path):
    assert is_phi3_model(demo_model)
    assert is_phi3_model("microsoft/Phi-3-mini-4k-instruct")
    assert not is_phi3_model("mlx-community/Mistral-7B-v0.1")
    (tmp_path / "mistral").mkdir()
    assert not is_phi3_model(tmp_path / "mistral")  # no config.json, and the name says nothing


def test_records_longer_than_max_seq_length(tmp_path, tokenizer):
    lines = text_lines(8)
    lines[6] = json.dumps({"text": PHI3_TEXT.format(n="long " * 200)})
    report = check_folder(make_data(tmp_path, lines), DataSettings(max_seq_length=64), tokenizer=tokenizer)
    assert problems(report, "too-long") == [("train", 0, "warning")]
    assert problems(report, "too-long-record") == [("train", 7, "info")]
    assert report.stats["train"].over_max == 1
    assert report.stats["train"].longest()[0][1] == 7


def test_split_smaller_than_batch_size(tmp_path):
    data = make_data(tmp_path, text_lines(3), valid=text_lines(2, 100), test=text_lines(1, 200))
    report = validate(data, DataSettings(batch_size=4))
    found = problems(report, "smaller-than-batch")
    assert ("train", 0, "error") in found and ("valid", 0, "error") in found
    assert ("test", 0, "warning") in found  # the test split only matters with test: true
    assert ("test", 0, "error") in problems(validate(data, DataSettings(batch_size=4, test=True)), "smaller-than-batch")


def test_duplicates_between_train_and_valid_test(tmp_path):
    train = text_lines(10)
    valid = text_lines(4, 500) + [train[7]]
    test = [train[2]] + text_lines(4, 900)
    report = validate(make_data(tmp_path, train, valid=valid, test=test))
    leaks = sorted(p.line for p in report.problems if p.rule == "leakage")
    assert leaks == [3, 8]
    messages = {p.line: p.message for p in report.problems if p.rule == "leakage"}
    assert "valid:5" in messages[8] and "test:1" in messages[3]


def test_bytes_that_are_not_utf8(tmp_path):
    lines = [line.encode() for line in text_lines(6)]
    lines[3] = b'{"text": "caf\xe9"}'
    report = validate(make_data(tmp_path, b"\n".join(lines) + b"\n"))
    assert problems(report, "not-utf8") == [("train", 4, "error")]


def test_blank_lines(tmp_path):
    lines = text_lines(6)
    lines.insert(2, "")
    lines.insert(5, "   ")
    report = validate(make_data(tmp_path, lines))
    assert problems(report, "blank-line") == [("train", 3, "error"), ("train", 6, "error")]
    assert report.records["train"] == 8  # mlx-lm reads every line, blank ones included


def test_bom_at_start(tmp_path):
    raw = ("\ufeff" + "\n".join(text_lines(6)) + "\n").encode()
    assert problems(validate(make_data(tmp_path, raw)), "bom") == [("train", 1, "error")]


def test_mask_prompt_with_text_is_an_error(tmp_path):
    report = validate(make_data(tmp_path, text_lines(6)), DataSettings(mask_prompt=True))
    assert ("train", 0, "error") in problems(report, "mask-text")


def test_missing_train_and_valid(tmp_path):
    data = tmp_path / "data"
    write_split(data, "test", text_lines(5))
    report = validate(data)
    assert ("train", 0, "error") in problems(report, "missing-split")
    assert ("valid", 0, "warning") in problems(report, "missing-split")


def test_chat_template_failure_is_reported_with_line(tmp_path, tokenizer):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    bad = {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]}
    lines = [json.dumps(good)] * 3 + [json.dumps(bad)] + [json.dumps(good)]
    report = check_folder(make_data(tmp_path, lines, valid=[json.dumps(good)] * 4), tokenizer=tokenizer)
    assert ("train", 4, "error") in problems(report, "template") + problems(report, "field-type")


# -- index, paging, search ----------------------------------------------------------------------


def test_line_index_pages_across_checkpoints_and_last_line_without_newline(tmp_path):
    n = STRIDE * 3 + 5
    path = write_split(tmp_path, "train", b"\n".join(json.dumps({"text": f"r{i}"}).encode() for i in range(n)))
    index = LineIndex(path)
    early = index.read_lines(0, 2)  # readable before the index is built
    assert [ln for ln, _ in early] == [1, 2]
    assert index.build() == n
    assert len(index.checkpoints) == 4
    page = index.read_lines(STRIDE * 2 - 1, 3)
    assert [ln for ln, _ in page] == [STRIDE * 2, STRIDE * 2 + 1, STRIDE * 2 + 2]
    assert json.loads(page[1][1]) == {"text": f"r{STRIDE * 2}"}
    assert index.read_lines(n - 1, 5) == [(n, json.dumps({"text": f"r{n - 1}"}).encode())]
    assert split_sizes(tmp_path) == {"train": n}


def test_folder_page_record_and_search(tmp_path):
    lines = text_lines(200)
    lines[150] = json.dumps({"text": "Ünïcode needle here"})
    data = make_data(tmp_path, lines)
    folder = DataFolder.open(data)
    assert folder.splits["train"].format == "text"
    page = folder.page("train", 10, 3)
    assert [r.line for r in page] == [11, 12, 13]
    assert page[0].value["text"] == PHI3_TEXT.format(n=10)
    assert folder.search("train", "NEEDLE") == 151
    assert folder.search("train", "nïcode") == 151  # matched through JSON's \\u escapes
    assert folder.search("train", "Q3 ", after_line=151) == 4  # wraps to the top
    assert folder.search("train", "no such text") is None


# -- statistics and rendering ------------------------------------------------------------------


def test_token_statistics_match_mlx_lm_datasets(demo_template, tokenizer):
    from mlx_lm.tuner.datasets import TextDataset

    data = demo_template / "data"
    report = check_folder(data, DataSettings(batch_size=4, max_seq_length=256), tokenizer=tokenizer)
    records = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    dataset = TextDataset(records, tokenizer)
    expected = Counter(len(dataset.process(r)[0]) for r in records)
    stats = report.stats["train"]
    assert stats.histogram == expected
    lengths = sorted(expected.elements())
    assert stats.min == lengths[0] and stats.max == lengths[-1]
    assert stats.median == lengths[(len(lengths) + 1) // 2 - 1]
    assert stats.tokens == sum(lengths)
    assert report.iterations_per_epoch == len(records) // 4
    assert longest_record_tokens(data, settings=DataSettings(), tokenizer=tokenizer) >= stats.max


def test_render_chat_record_with_mask(tokenizer):
    from mlx_lm.tuner.datasets import ChatDataset

    record = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Is Earth round?"},
            {"role": "assistant", "content": "Nearly."},
        ]
    }
    settings = DataSettings(mask_prompt=True)
    rendered = render_record(record, "chat", tokenizer, settings)
    assert rendered.text == tokenizer.apply_chat_template(record["messages"], tokenize=False)
    assert ("<|assistant|>", True) in rendered.segments and ("<|system|>", True) in rendered.segments
    ids, offset = ChatDataset([record], tokenizer, mask_prompt=True).process(record)
    assert [t.id for t in rendered.tokens] == list(ids)
    assert rendered.offset == offset > 0
    trained = [t.piece for t in rendered.tokens if t.trained]
    masked = [t.piece for t in rendered.tokens if not t.trained]
    assert "<|user|>" in masked and "<|system|>" in masked and "<|assistant|>" in masked
    assert "".join(trained).replace("▁", " ").startswith("N")  # the answer is what the loss sees
    assert len(trained) == len(ids) - offset
    unmasked = render_record(record, "chat", tokenizer, DataSettings(mask_prompt=False))
    assert unmasked.trained_count == len(ids) - 1  # all but the first token, which is never a target


def test_render_text_record_appends_eos_like_mlx_lm(tokenizer):
    rendered = render_record({"text": PHI3_TEXT.format(n=1)}, "text", tokenizer, DataSettings())
    assert rendered.text.endswith(tokenizer.eos_token)
    assert rendered.tokens[-1].id == tokenizer.eos_token_id


# -- the pipeline step -------------------------------------------------------------------------


def test_demo_step_summarises_and_raises_on_errors(demo_workspace):
    ws = Workspace.open(demo_workspace)
    summary = demo_step(ws, {})
    assert "train 417" in summary
    assert "0 errors" in summary and "tokens" in summary
    with open(demo_workspace / "data" / "valid.jsonl", "a") as handle:
        handle.write("not json\n")
    with pytest.raises(ValueError, match=r"valid:\d+"):
        demo_step(ws, {})


def test_validation_and_indexing_stop_when_cancelled(tmp_path):
    import threading

    from phi3tui.core.data.folder import Cancelled

    data = make_data(tmp_path, text_lines(40000))
    folder = DataFolder.open(data)
    cancel = threading.Event()
    seen = []

    def progress(done, total, phase):
        seen.append(done)
        cancel.set()  # the user presses x after the first progress report

    with pytest.raises(Cancelled):
        validate_folder(folder, progress=progress, cancel=cancel)
    assert len(seen) == 1
    with pytest.raises(Cancelled):
        folder.build_indexes(cancel=cancel)
    assert not folder.splits["train"].index.complete


def test_chat_and_completion_content_rules(tmp_path):
    def chat(*roles, **extra):
        return json.dumps({"messages": [{"role": r, "content": f"{r} text"} for r in roles], **extra})

    lines = [
        chat("user", "assistant"),
        chat("user"),  # 2: nothing for the model to learn
        chat("user", "assistant", "user"),  # 3: with mask_prompt the last (user) message is trained
        chat("user", "assistant", tools="not a list"),  # 4
        json.dumps({"messages": []}),  # 5
        json.dumps({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]}),  # 6
    ]
    report = validate(make_data(tmp_path, lines, valid=[chat("user", "assistant")] * 4), DataSettings(mask_prompt=True))
    assert problems(report, "no-assistant") == [("train", 2, "warning")]
    assert problems(report, "mask-last-message") == [("train", 3, "warning")]
    assert ("train", 4, "error") in problems(report, "field-type")
    assert ("train", 5, "error") in problems(report, "empty-field")
    assert ("train", 6, "warning") in problems(report, "empty-field")
    completions = [json.dumps({"prompt": "p", "completion": c}) for c in ("a", "", "b", "c")]
    report = validate(make_data(tmp_path / "c", completions, valid=completions[:1] * 4))
    assert problems(report, "empty-field") == [("train", 2, "error")]
