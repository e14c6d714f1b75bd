"""The Ollama Modelfile (text and lint), the not-installed path, and the real Ollama when it runs here."""

from __future__ import annotations

import pytest
from conftest import run_cli
from test_export_fixtures import trained_template, trained_ws  # noqa: F401

from phi3tui.core.export import ExportError
from phi3tui.core.export.ollama import (
    OLLAMA_DIRS,
    PHI3_STOPS,
    OllamaModelExists,
    check_replace,
    find_ollama,
    lint_modelfile,
    model_exists,
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


def test_write_modelfile_refuses_bad_names_and_overwrites(tmp_path, demo_model):
    from phi3tui.core.export.gguf import write_gguf

    gguf_file = write_gguf(demo_model, tmp_path / "m.gguf", "f16").path
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

    subprocess.run([status.binary, "rm", "phi3tui-test-ft"], capture_output=True, timeout=60)


# -- finding ollama, reaching its server, replacing a model ----------------------------------------


def test_ollama_is_found_off_path_in_the_install_folders(tmp_path, monkeypatch):
    """`ssh mac phi3tui` has a PATH without Homebrew: the usual install folders are searched too."""
    assert {"/opt/homebrew/bin", "/usr/local/bin", "/Applications/Ollama.app/Contents/Resources"} <= set(OLLAMA_DIRS)
    empty, bin_dir, no_exec = tmp_path / "path", tmp_path / "bin", tmp_path / "noexec"
    for folder in (empty, bin_dir, no_exec):
        folder.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # the bare PATH of a non-login shell: no ollama on it
    assert find_ollama((tmp_path / "missing",)) is None
    (no_exec / "ollama").write_text("")  # present but not executable: not taken
    assert find_ollama((no_exec,)) is None
    binary = bin_dir / "ollama"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert find_ollama((tmp_path / "missing", no_exec, bin_dir)) == str(binary)


class _FakeOllamaEndpoint:
    """A real HTTP server on 127.0.0.1 answering /api/tags and /api/version (stands where Ollama listens)."""

    def __enter__(self):
        import http.server
        import json
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = {"/api/tags": {"models": [{"name": "phi3ft:latest", "model": "phi3ft:latest"}]},
                        "/api/version": {"version": "0.0-test"}}.get(self.path)
                data = json.dumps(body).encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_local_ollama_server_is_reached_past_a_system_proxy(monkeypatch):
    from phi3tui.core.export.ollama import ollama_get

    dead_proxy = f"http://127.0.0.1:{_closed_port()}"  # a proxy nothing answers on
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, dead_proxy)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    with _FakeOllamaEndpoint() as port:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
        assert model_exists("phi3ft") and not model_exists("other")
        assert ollama_get("/api/version", 5) == {"version": "0.0-test"}


def test_an_existing_ollama_model_is_replaced_only_when_confirmed():
    with pytest.raises(OllamaModelExists, match="phi3ft exists.*--yes"):
        check_replace("phi3ft", exists=True, replace=False)
    check_replace("phi3ft", exists=True, replace=True)  # the wizard's confirm, or --yes
    check_replace("phi3ft", exists=False, replace=False)


def test_headless_demo_takes_yes_for_replacing_the_ollama_model():
    proc = run_cli("demo", "--help")
    assert proc.returncode == 0 and "--yes" in proc.stdout and "replace an Ollama model" in proc.stdout


def test_real_ollama_demo_step_needs_yes_to_replace(trained_ws):
    status = ollama_status()
    if not status.ready:
        pytest.skip(f"needs a running Ollama: {status.reason}")
    import io
    import subprocess

    from phi3tui.core.export.job import ExportJob
    from phi3tui.core.pipeline import STEPS, run_pipeline
    from phi3tui.core.workspace import Workspace

    name = "phi3tui-test-replace"
    job = ExportJob.create(trained_ws, name=name)
    job.run_fuse()
    job.run_gguf()
    assert job.run_ollama(replace=True).created
    try:
        state = {"gguf_path": str(job.gguf_path), "export_name": name}
        out = io.StringIO()
        assert run_pipeline(Workspace(trained_ws), out, steps=STEPS[-1:], state=state) == 1
        assert "exists" in out.getvalue() and "--yes" in out.getvalue()
        out = io.StringIO()
        assert run_pipeline(Workspace(trained_ws), out, replace_ollama=True, steps=STEPS[-1:], state=state) == 0, out.getvalue()
    finally:
        subprocess.run([status.binary, "rm", name], capture_output=True, timeout=60)


# -- the TEMPLATE and stops come from the model's own chat template -----------------------------------

PHI4_TEMPLATE = (
    '{{- range .Messages }}{{- if eq .Role "system" }}<|system|>{{ .Content }}<|end|>'
    '{{ else if eq .Role "user" }}<|user|>{{ .Content }}<|end|>'
    '{{ else if eq .Role "assistant" }}<|assistant|>{{ .Content }}<|end|>{{ end }}{{- end }}<|assistant|>'
)


def test_the_phi3_gguf_gets_phi3s_template_from_its_own_chat_template(tmp_path, demo_model):
    from phi3tui.core.export.gguf import write_gguf
    from phi3tui.core.export.ollama import PHI3_FORMAT, chat_format_from_gguf

    fmt = chat_format_from_gguf(write_gguf(demo_model, tmp_path / "m.gguf", "f16").path)
    assert fmt.template == PHI3_FORMAT.template and fmt.stops == PHI3_STOPS  # newline after each role tag


def test_the_phi4_mini_modelfile_has_no_newline_after_role_tags(tmp_path):
    from phi3tui.core.demo import write_phi4_mini_model
    from phi3tui.core.export.gguf import write_gguf

    model = tmp_path / "phi4"
    write_phi4_mini_model(model)
    gguf_file = write_gguf(model, tmp_path / "out" / "p4-f16.gguf", "f16").path
    plan = write_modelfile(tmp_path / "out", gguf_file, "phi4-ft")
    assert f'TEMPLATE """{PHI4_TEMPLATE}"""' in plan.text
    assert [line for line in plan.text.splitlines() if line.startswith("PARAMETER stop")] == [
        f'PARAMETER stop "{s}"' for s in ("<|end|>", "<|user|>", "<|assistant|>", "<|endoftext|>")
    ]
    assert lint_modelfile(plan.text, tmp_path / "out") == []


@pytest.mark.parametrize(
    "template, reason",
    [
        # Llama-2 style: the system prompt goes inside the first user turn, which a per-message template cannot say.
        ("{% for m in messages %}{% if m['role'] == 'system' %}{% set sys = m['content'] %}{% elif m['role'] == 'user' %}"
         "[INST] {% if loop.index0 == 1 %}<<SYS>>{{ messages[0]['content'] }}<</SYS>> {% endif %}{{ m['content'] }} [/INST]"
         "{% else %}{{ m['content'] }}<|end|>{% endif %}{% endfor %}", "a user message does not render the same after another"),
        # The assistant's turn is told apart by position, not role: the second conversation checked catches it.
        ("{% for m in messages %}{% if loop.index0 == 2 %}<|end|>{% endif %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
         "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}", "conversation renders differently"),
        ("{{ raise_exception('no') }}", "no"),
        ("{% for m in messages %}{{ m['content'] }}{% endfor %}", "no special token ends an assistant turn"),
    ],
)
def test_a_chat_template_ollama_cannot_express_is_refused_with_the_reason(template, reason):
    from phi3tui.core.export.ollama import chat_format

    with pytest.raises(ExportError, match=f"cannot be written as an Ollama TEMPLATE.*{reason}"):
        chat_format(template, ["<|end|>", "<|user|>"], ["<|endoftext|>"], {"eos_token": "<|endoftext|>"}, "m.gguf")


def test_an_unreadable_gguf_writes_no_modelfile(tmp_path):
    bad = tmp_path / "m.gguf"
    bad.write_bytes(b"GGUF")
    with pytest.raises(ExportError, match="not a readable GGUF"):
        write_modelfile(tmp_path, bad, "phi3-ft")
    assert not (tmp_path / "Modelfile").exists()
