"""`phi3tui data check` and `phi3tui data import` in real subprocesses: reports, exit codes, no overwrite."""

from __future__ import annotations

import json
import os
import re

from tests.conftest import run_cli


def test_check_clean_workspace_exits_0_with_statistics(demo_workspace):
    proc = run_cli("data", "check", str(demo_workspace))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"train +417 records .* text", out)
    assert "tokens per record (min / median / p95 / max)" in out
    assert "iterations per epoch: 104" in out  # 417 // batch_size 4 from lora_config.yaml
    assert "0 errors" in out


def test_check_errors_exit_1_and_name_the_line(demo_workspace):
    valid = demo_workspace / "data" / "valid.jsonl"
    lines = valid.read_text().splitlines()
    lines.insert(9, '{"text": broken')
    valid.write_text("\n".join(lines) + "\n")
    proc = run_cli("data", "check", str(demo_workspace / "data"), "--batch-size", "100", "--no-tokens")
    assert proc.returncode == 1
    assert "error: valid:10: invalid JSON" in proc.stdout
    assert "fewer than batch_size 100" in proc.stdout


def test_check_options_override_the_config(demo_workspace, demo_model):
    proc = run_cli("data", "check", str(demo_workspace), "--model", str(demo_model), "--max-seq-length", "40")
    assert proc.returncode == 0  # truncation is a warning
    assert "over max_seq_length" in proc.stdout and "truncated to 40" in proc.stdout


def test_check_bad_arguments_exit_2(tmp_path):
    assert run_cli("data", "check", str(tmp_path / "nowhere")).returncode == 2
    assert run_cli("data", "check", str(tmp_path), "--batch-size", "0").returncode == 2
    help_text = run_cli("data", "check", "--help").stdout
    for option in ("--model", "--max-seq-length", "--batch-size"):
        assert option in help_text


def test_import_cli_refuses_to_overwrite_then_forces(shared_data, tmp_path):
    out = tmp_path / "data"
    source = shared_data / "TruthfulQA.csv"
    first = run_cli("data", "import", str(source), str(out), "--valid", "51", "--test", "51", "--train", "708")
    assert first.returncode == 0, first.stderr
    assert "train 708, valid 51, test 51" in first.stdout
    before = (out / "train.jsonl").read_bytes()
    again = run_cli("data", "import", str(source), str(out), "--format", "chat")
    assert again.returncode == 2 and "--force" in again.stderr
    assert (out / "train.jsonl").read_bytes() == before
    forced = run_cli("data", "import", str(source), str(out), "--format", "chat", "--shuffle", "--seed", "3", "--force")
    assert forced.returncode == 0
    assert "messages" in json.loads((out / "train.jsonl").read_text().splitlines()[0])


def test_import_cli_bad_mapping_exit_2(tmp_path):
    source = tmp_path / "x.csv"
    source.write_text("a,b\n1,2\n", encoding="utf-8")
    proc = run_cli("data", "import", str(source), str(tmp_path / "out"), "--prompt-column", "a", "--completion-column", "z")
    assert proc.returncode == 2
    assert "no column 'z'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_import_refuses_a_source_that_is_one_of_the_splits_it_would_write(tmp_path):
    # On a case-insensitive disk (macOS) data/Valid.jsonl and data/valid.jsonl are one file. Faked here with a
    # hard link, which is what os.path.samefile sees there: --force must not write over or delete its own source.
    data = tmp_path / "data"
    data.mkdir()
    source = data / "Valid.jsonl"
    source.write_text("".join(json.dumps({"text": f"record {i}"}) + "\n" for i in range(10)), encoding="utf-8")
    os.link(source, data / "valid.jsonl")
    (data / "train.jsonl").write_text('{"text": "old train"}\n', encoding="utf-8")
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    proc = run_cli("data", "import", str(source), str(data), "--text-column", "text", "--valid", "0", "--test", "0",
                   "--force")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{source} is the same file as {data / 'valid.jsonl'}" in proc.stderr and "nothing was written" in proc.stderr
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    assert os.path.samefile(source, data / "valid.jsonl")
