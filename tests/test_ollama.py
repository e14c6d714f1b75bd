"""The Ollama Modelfile (text and lint), the not-installed path, and the real Ollama when it runs here."""

from __future__ import annotations

import pytest
from conftest import run_cli
from test_export_fixtures import trained_template, trained_ws  # noqa: F401

from phi3tui.core.export import ExportError
from phi3tui.core.export.ollama import (
    PHI3_STOPS,
    lint_modelfile,
    modelfile_text,
    ollama_status,
    package,
    write_modelfile,
)

EXPECTED_MODELFILE = '''FROM ./phi3-ft-f16.gguf
TEMPLATE """{{- range .Messages }}{{- if eq .Role "system" }}<|system|>
{{ .Content }}<|end|>
{{ else if eq .Role "user" }}<|user|>
{{ .Content }}<|end|>
{{ else if eq .Role "assistant" }}<|assistant|>
{{ .Content }}<|end|>
{{ end }}{{- end }}<|assistant|>
"""
PARAMETER stop "<|end|>"
PARAMETER stop "<|user|>"
PARAMETER stop "<|assistant|>"
PARAMETER stop "<|endoftext|>"
PARAMETER num_ctx 4096
'''


def test_modelfile_text_has_the_phi3_template_stops_and_context():
    text = modelfile_text("./phi3-ft-f16.gguf")
    assert text == EXPECTED_MODELFILE
    assert lint_modelfile(text) == []


def test_modelfile_for_base_plus_adapter_and_a_system_prompt():
    text = modelfile_text("./base.gguf", "./lora.gguf", num_ctx=8192, system="You answer briefly.")
    lines = text.splitlines()
    assert lines[0] == "FROM ./base.gguf" and lines[1] == "ADAPTER ./lora.gguf"
    assert 'SYSTEM """You answer briefly."""' in lines and "PARAMETER num_ctx 8192" in lines
    assert lint_modelfile(text) == []


@pytest.mark.parametrize(
    "text, problem",
    [
        ("FROM ./m.gguf\n" + "".join(f'PARAMETER stop "{s}"\n' for s in PHI3_STOPS), "no TEMPLATE"),
        ('FROM ./m.gguf\nTEMPLATE """{{ .Prompt }}"""\nPARAMETER stop "<|end|>"\n', "stop is missing for <|user|>"),
        ('FROM ./m.gguf\nTEMPLATE """{{ if .System }}{{ .System }}"""\n', "without {{ end }}"),
        ('FROM ./m.gguf\nTEMPLATE """{{ .Prompt }"""\n', "unbalanced"),
        ('FROM ./m.gguf\nTEMPLATE """{{ .Question }}"""\n', "uses .Question"),
        ('FROM ./m.gguf\nTEMPLATE """{{ .Prompt }}\n', "never closes it"),
        ("FROM ./a.gguf\nADAPTER ./b.gguf\nADAPTER ./c.gguf\n", "only one ADAPTER"),
        ("PARAMETER num_ctx 4096\nFROM ./m.gguf\n", "FROM must come first"),
        ("FROM ./m.gguf\nPARAMETER num_ctx lots\n", "num_ctx needs an integer"),
        ("FROM ./m.gguf\nPARAMETER wibble 3\n", "unknown PARAMETER wibble"),
        ("FROM ./m.gguf\nQUANTIZE q4\n", "unknown instruction QUANTIZE"),
    ],
)
def test_lint_names_what_is_wrong(text, problem):
    problems = lint_modelfile(text)
    assert any(problem in p for p in problems), problems


def test_lint_checks_files_and_the_training_context(tmp_path):
    text = modelfile_text("./missing.gguf", num_ctx=128)
    problems = lint_modelfile(text, tmp_path, min_ctx=256)
    assert any("FROM ./missing.gguf: no such file" in p for p in problems)
    assert any("num_ctx is 128, less than the training max_seq_length 256" in p for p in problems)


def test_write_modelfile_refuses_bad_names_and_overwrites(tmp_path):
    gguf_file = tmp_path / "m.gguf"
    gguf_file.write_bytes(b"GGUF")
    with pytest.raises(ExportError, match="not valid"):
        write_modelfile(tmp_path, gguf_file, "Bad Name!")
    plan = write_modelfile(tmp_path, gguf_file, "phi3-ft", min_ctx=8000)
    assert "FROM ./m.gguf" in plan.text and "PARAMETER num_ctx 8000" in plan.text  # at least the training length
    with pytest.raises(ExportError, match="--force"):
        write_modelfile(tmp_path, gguf_file, "phi3-ft")
    assert plan.path.read_text() == plan.text


def test_without_ollama_the_exact_commands_are_given(tmp_path, demo_model):
    status = ollama_status()
    if status.ready:
        pytest.skip("ollama is installed and its server answers here; the not-installed path cannot be seen")
    from phi3tui.core.export.gguf import write_gguf

    gguf_file = write_gguf(demo_model, tmp_path / "phi3-ft-f16.gguf", "f16").path
    result = package(tmp_path, gguf_file, "phi3-ft", quantize="q4_K_M")
    assert not result.created and result.reason == status.reason
    assert result.commands == [
        f"cd {tmp_path}",
        "ollama create phi3-ft -f Modelfile --quantize q4_K_M",
        "ollama run phi3-ft 'Hello, who are you?'",
    ]
    assert (tmp_path / "Modelfile").is_file()


def test_ollama_quantize_needs_an_unquantized_gguf(tmp_path, demo_model):
    from phi3tui.core.export.gguf import write_gguf

    q8 = write_gguf(demo_model, tmp_path / "m-q8_0.gguf", "q8_0").path
    with pytest.raises(ExportError, match="MOSTLY_Q8_0: Ollama quantizes only from an f32, f16 or bf16 GGUF"):
        package(tmp_path, q8, "phi3-ft", quantize="q4_K_M")
    assert not (tmp_path / "Modelfile").exists()


def test_cli_ollama_step_prints_the_commands(trained_ws):
    if ollama_status().ready:
        pytest.skip("ollama runs here: the CLI would create the model")
    assert run_cli("export", "fuse", "-w", str(trained_ws), "--name", "ft").returncode == 0
    assert run_cli("export", "lora-gguf", "-w", str(trained_ws), "--name", "ft", "--no-verify").returncode == 0
    proc = run_cli("export", "ollama", "-w", str(trained_ws), "--name", "ft", "--adapter")
    assert proc.returncode == 0, proc.stderr
    out_dir = trained_ws / "exports" / "ft"
    modelfile = (out_dir / "Modelfile").read_text()
    assert "FROM ./ft-base-f16.gguf" in modelfile and "ADAPTER ./ft-lora-f16.gguf" in modelfile
    assert "PARAMETER num_ctx 4096" in modelfile
    assert f"cd {out_dir}" in proc.stdout and "ollama create ft -f Modelfile" in proc.stdout
    bad = run_cli("export", "ollama", "-w", str(trained_ws), "--name", "ft", "--adapter")
    assert bad.returncode == 2 and "Modelfile" in bad.stderr and "--force" in bad.stderr


def test_cli_ollama_without_a_gguf_says_which_step_to_run(trained_ws):
    proc = run_cli("export", "ollama", "-w", str(trained_ws), "--name", "none")
    assert proc.returncode == 2 and "run `phi3tui export gguf` first" in proc.stderr


def test_real_ollama_create_and_refuses_an_existing_name(trained_ws):
    status = ollama_status()
    if not status.ready:
        pytest.skip(f"needs a running Ollama: {status.reason}")
    from phi3tui.core.export.job import ExportJob

    job = ExportJob.create(trained_ws, name="phi3tui-test-ft")
    job.run_fuse()
    job.run_gguf()
    result = job.run_ollama(replace=True)
    assert result.created and isinstance(result.answer, str)
    with pytest.raises(ExportError, match="exists"):
        job.force = True
        job.run_ollama(replace=False)
    import subprocess

    subprocess.run(["ollama", "rm", "phi3tui-test-ft"], capture_output=True, timeout=60)
