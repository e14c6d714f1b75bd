"""lora_config.yaml as a file (issue 22, cases 7 to 9): a key written twice is an error naming both lines on every
path that reads the config for a run; a 10 MB comment line is read and edited in seconds; CRLF line ends, a byte
order mark and a missing final line break survive every write of the document."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from phi3tui.app import Phi3App
from phi3tui.core.config import ConfigDocument, DocumentEditError, read_config_text
from phi3tui.core.demo import DEMO_CONFIG_YAML
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli
from tests.reliability.conftest import open_app_on, refuse_cli
from tests.test_config_screen import open_config, status, type_at_end

# In the demo config `iters: 100` is on line 19 and the file has 60 lines: an appended key is line 61.
assert DEMO_CONFIG_YAML.splitlines()[18] == "iters: 100" and len(DEMO_CONFIG_YAML.splitlines()) == 60


# -- case 7: a key written twice --------------------------------------------------------------------


def _write_twice(workspace: Path) -> Path:
    path = workspace / "lora_config.yaml"
    path.write_text(DEMO_CONFIG_YAML + "iters: 7\n")
    return path


def test_key_written_twice_is_an_error_naming_both_lines(bad_workspace):
    """Today's mlx-lm (PyYAML) silently trains the second `iters`; the check says so and exits 1."""
    path = _write_twice(bad_workspace)
    refusal = refuse_cli(bad_workspace, "config", "check", str(path), codes=(1,),
                         expected=["lora_config.yaml:19: error: iters: written 2 times (lines 19 and 61)", "remove"])
    assert "1 error(s)" in refusal.output


def test_nested_key_written_twice_is_named_with_its_path(bad_workspace):
    path = bad_workspace / "lora_config.yaml"
    path.write_text(DEMO_CONFIG_YAML.replace("  rank: 16\n", "  rank: 16\n  rank: 4\n"))
    refuse_cli(bad_workspace, "config", "check", str(path), codes=(1,),
               expected=["lora_parameters.rank: written 2 times (lines 58 and 59)"])


def test_train_refuses_a_key_written_twice(bad_workspace):
    _write_twice(bad_workspace)
    refuse_cli(bad_workspace, "train", "-w", str(bad_workspace), codes=(1, 2),
               expected=["iters: written 2 times (lines 19 and 61)"])
    assert not (bad_workspace / "runs").exists()


async def test_config_screen_shows_a_key_written_twice(bad_workspace):
    _write_twice(bad_workspace)
    await open_app_on(bad_workspace, "config", expected="written 2 times (lines 19 and 61)", settle=30)


def test_an_edit_of_a_key_written_twice_is_refused():
    doc = ConfigDocument(DEMO_CONFIG_YAML + "iters: 7\n")
    with pytest.raises(DocumentEditError, match="lines 19, 61"):
        doc.set(("iters",), 5)
    assert doc.text == DEMO_CONFIG_YAML + "iters: 7\n"


# -- case 8: a very long comment line ---------------------------------------------------------------


@pytest.mark.parametrize("size", [1_000_000, 10_000_000], ids=["1MB", "10MB"])
def test_long_comment_line_is_checked_in_seconds(bad_workspace, size):
    """ruamel's scanner reads a comment a character at a time (1 MB took 12 s, 10 MB over 120 s)."""
    path = bad_workspace / "lora_config.yaml"
    path.write_text(DEMO_CONFIG_YAML.replace("iters: 100", "iters: 100  # " + "x" * size) + "# " + "y" * size + "\n")
    # CPU seconds of the command, not the wall clock: tests beside this one (several workers) stretch the wall
    # clock, while the quadratic scan this guards against costs CPU (over 120 s of it for 10 MB).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_cli("config", "check", str(path), timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and result.returncode == 0, output[-3000:]
    assert cpu < 10, f"config check took {cpu:.1f} s of CPU on a {size // 1_000_000} MB comment line"


def test_long_comment_line_is_edited_in_seconds_and_saved_byte_for_byte(tmp_path):
    size = 10_000_000
    path = tmp_path / "lora_config.yaml"
    text = DEMO_CONFIG_YAML.replace("iters: 100", "iters: 100  # " + "x" * size) + "# " + "y" * size + "\n"
    path.write_text(text)
    started = time.process_time()  # CPU, not the wall clock, which tests beside this one stretch
    doc = ConfigDocument.load(path)
    doc.set(("iters",), 200)
    doc.set(("lora_parameters", "rank"), 8)
    doc.set(("extra_note",), 3)
    doc.save()
    elapsed = time.process_time() - started
    assert path.read_text() == text.replace("iters: 100  #", "iters: 200  #").replace("  rank: 16\n", "  rank: 8\n") \
        + "extra_note: 3\n"
    assert doc.line_of(("lora_parameters", "rank")) == 58 and doc.line_of(("extra_note",)) == 62
    assert elapsed < 10, f"three edits and a save took {elapsed:.1f} s of CPU"


def test_long_line_where_the_hash_is_inside_a_string_keeps_the_string(tmp_path):
    """A `#` inside a quoted value is not a comment: the value is read and edited whole."""
    value = "a #" + "z" * 5000
    text = f'prompt_note: "{value}"\n' + DEMO_CONFIG_YAML
    doc = ConfigDocument(text)
    doc.set(("iters",), 9)
    assert doc.values["prompt_note"] == value and doc.values["iters"] == 9
    assert doc.text == text.replace("iters: 100", "iters: 9")


# -- case 9: line ends, byte order mark, final line break -------------------------------------------

OLD = DEMO_CONFIG_YAML.replace("num_layers: -1", "lora_layers: 2")
FORMS = {
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "bom": lambda t: "\ufeff" + t,
    "no-final-newline": lambda t: t.rstrip("\n"),
    "all-three": lambda t: "\ufeff" + t.rstrip("\n").replace("\n", "\r\n"),
}


@pytest.mark.parametrize("form", list(FORMS), ids=list(FORMS))
def test_migrate_write_keeps_line_ends_bom_and_final_newline(bad_workspace, form):
    path = bad_workspace / "lora_config.yaml"
    path.write_bytes(FORMS[form](OLD).encode("utf-8"))
    result = run_cli("config", "migrate", str(path), "--write")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert path.read_bytes() == FORMS[form](OLD.replace("lora_layers: 2", "num_layers: 2")).encode("utf-8")


@pytest.mark.parametrize("form", list(FORMS), ids=list(FORMS))
def test_document_edits_keep_line_ends_bom_and_final_newline(tmp_path, form):
    """A changed value, an added key at the end and inside a mapping, a list and a removed key: every
    line the edit adds uses the file's line break, the rest is as it was."""
    path = tmp_path / "lora_config.yaml"
    path.write_bytes(FORMS[form](DEMO_CONFIG_YAML).encode("utf-8"))
    doc = ConfigDocument.load(path)
    doc.set(("iters",), 5)
    doc.set(("lora_parameters", "extra"), 1)
    doc.set(("extra_note",), 3)
    doc.save()
    expected = DEMO_CONFIG_YAML.replace("iters: 100", "iters: 5") + "extra_note: 3\n"
    expected = expected.replace("  dropout: 0.0\n", "  dropout: 0.0\n  extra: 1\n")
    assert "extra: 1" in expected
    assert path.read_bytes() == FORMS[form](expected).encode("utf-8")
    doc.delete(("extra_note",))
    doc.save()
    assert path.read_bytes() == FORMS[form](expected.replace("extra_note: 3\n", "")).encode("utf-8")
    assert read_config_text(path) == doc.text


@pytest.mark.parametrize("form", ["crlf", "all-three"])
async def test_config_screen_save_keeps_line_ends_bom_and_final_newline(demo_workspace, form):
    path = demo_workspace / "lora_config.yaml"
    path.write_bytes(FORMS[form](DEMO_CONFIG_YAML).encode("utf-8"))
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_config(pilot, app)
        await type_at_end(pilot, screen, ("batch_size",), "backspace", "2")
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert "unsaved" not in status(screen)
    assert path.read_bytes() == FORMS[form](DEMO_CONFIG_YAML.replace("batch_size: 4\n", "batch_size: 2\n")).encode()
