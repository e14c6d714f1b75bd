"""The bad-input corpus: each case is a real file; the CLI refuses it with the place and the fix, no
traceback and no file changed; the app opened on the same workspace stays up and shows the problem."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phi3tui.core.demo import DEMO_CONFIG_YAML
from tests.conftest import run_cli
from tests.reliability.conftest import (
    assert_refused,
    assert_unchanged,
    open_app_on,
    refuse_cli,
    remount_read_only,
    snapshot,
)

GOOD = '{"text": "<|user|>\\nQ <|end|>\\n<|assistant|> \\nA <|end|>"}'


def _lines(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _good(n: int = 4) -> list[str]:
    return [GOOD.replace("Q", f"Q{i}") for i in range(n)]


def _chat(messages) -> str:
    return json.dumps({"messages": messages})


# (id, train.jsonl content (bytes, or None for a special layout), expected text in the message)
DATASETS = [
    ("invalid-json", _lines(*_good(), "{not json"), ["train:5", "invalid JSON", "fix the line"]),
    ("blank-line", _lines(*_good(2), "", *_good(2)), ["train:3", "blank line", "delete the line"]),
    ("byte-order-mark", b"\xef\xbb\xbf" + _lines(*_good()), ["train:1", "byte-order mark", "without BOM"]),
    ("not-an-object", _lines(*_good(), "[1, 2]"), ["train:5", "not a JSON object"]),
    ("not-utf8", _lines(*_good()) + b'{"text": "caf\xe9"}\n', ["train:5", "not UTF-8", "save the file as UTF-8"]),
    ("no-known-field", _lines(*_good(), '{"question": "q", "answer": "a"}'), ["train:5", "'question'", "rename the field"]),
    ("text-not-string", _lines(*_good(), '{"text": 42}'), ["train:5", "'text' must be a string"]),
    ("text-empty", _lines(*_good(), '{"text": ""}'), ["train:5", "'text' is empty", "delete the line"]),
    ("mixed-formats", _lines(*_good(), '{"prompt": "p", "completion": "c"}'), ["train:5", "completions record in a text split", "one format"]),
    ("chat-unknown-role", _lines(*[_chat([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])] * 4,
                                 _chat([{"role": "wizard", "content": "q"}, {"role": "assistant", "content": "a"}])),
     ["train:5", "unknown role 'wizard'", "use system, user, assistant or tool"]),
    ("chat-not-a-list", _lines(*[_chat([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])] * 4,
                               '{"messages": "hello"}'), ["train:5", "non-empty list of messages"]),
    ("chat-no-role", _lines(*[_chat([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])] * 4,
                            _chat([{"content": "q"}, {"role": "assistant", "content": "a"}])), ["train:5", "has no 'role'", "add"]),
    ("chat-no-content", _lines(*[_chat([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])] * 4,
                               _chat([{"role": "user"}, {"role": "assistant", "content": "a"}])), ["train:5", "has no 'content'"]),
    ("completion-not-string", _lines(*['{"prompt": "p", "completion": "c"}'] * 4, '{"prompt": "p", "completion": ["c"]}'),
     ["train:5", "'completion' must be a string"]),
    ("tools-not-list", _lines(*['{"prompt": "p", "completion": "c"}'] * 4, '{"prompt": "p", "completion": "c", "tools": "x"}'),
     ["train:5", "'tools' must be a list"]),
    ("fewer-than-batch", _lines(*_good(2)), ["fewer than batch_size 4", "lower batch_size to 2"]),
    ("empty-file", b"", ["train.jsonl is empty"]),
    ("binary-garbage", bytes(range(256)) * 64, ["train:", "not UTF-8"]),
    ("directory-named-train-jsonl", None, ["train.jsonl is a folder", "move the folder away"]),
]


@pytest.mark.parametrize("content, expected", [c[1:] for c in DATASETS], ids=[c[0] for c in DATASETS])
def test_bad_dataset_cli(bad_workspace, content, expected):
    train = bad_workspace / "data" / "train.jsonl"
    train.unlink()
    if content is None:
        train.mkdir()
        (train / "part-1.jsonl").write_text(GOOD + "\n")
    else:
        train.write_bytes(content)
    refusal = refuse_cli(bad_workspace, "data", "check", "--no-tokens", str(bad_workspace / "data"), expected=expected, codes=(1,))
    assert "error" in refusal.output


def test_fifty_megabyte_single_line(bad_workspace):
    """One 50 MB line with no newline: checked line by line in bounded time, reported, nothing changed."""
    train = bad_workspace / "data" / "train.jsonl"
    with open(train, "w") as handle:
        handle.write('{"text": "' + "a" * (50 * 1024 * 1024))  # never closed: invalid JSON
    started = time.monotonic()
    refuse_cli(bad_workspace, "data", "check", "--no-tokens", str(bad_workspace / "data"),
               expected=["train:1", "invalid JSON"], codes=(1,))
    assert time.monotonic() - started < 60


def test_file_deleted_while_being_read(bad_workspace):
    """train.jsonl disappears while valid.jsonl is being checked: an error names it, no exception."""
    from phi3tui.core.data.checks import PROGRESS_EVERY, check_folder

    data = bad_workspace / "data"
    (data / "valid.jsonl").write_text((GOOD + "\n") * (PROGRESS_EVERY + 10))
    deleted = []

    def progress(done, total, stage):
        if not deleted:
            (data / "train.jsonl").unlink()
            deleted.append(done)

    report = check_folder(data, progress=progress)
    assert deleted, "the check never reported progress, so the file was never deleted mid-read"
    text = "\n".join(report.lines())
    assert "train.jsonl could not be read" in text and "check again" in text, text


async def test_app_shows_bad_dataset(bad_workspace):
    (bad_workspace / "data" / "train.jsonl").write_bytes(_lines(*_good(), "{not json"))
    before = snapshot(bad_workspace)
    await open_app_on(bad_workspace, "data", expected="invalid JSON")
    assert_unchanged(before, snapshot(bad_workspace))


# -- configs ----------------------------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
) + "\n"

# (id, sed-like (old, new) on the demo lora_config.yaml or a whole text, expected, exit codes)
CONFIGS = [
    ("wrong-type-batch-size", ("batch_size: 4", "batch_size: four"), [":16:", "batch_size", "whole number"], (1,)),
    ("wrong-type-max-seq-length", ("max_seq_length: 256", "max_seq_length: [1]"), [":49:", "max_seq_length"], (1,)),
    ("wrong-type-learning-rate", ("learning_rate: 1e-3", "learning_rate: fast"), ["learning_rate"], (1,)),
    ("wrong-type-lora-rank", ("rank: 16", "rank: x"), [":58:", "lora_parameters.rank", "whole number"], (1,)),
    ("wrong-type-num-layers", ("num_layers: -1", "num_layers: all"), [":13:", "num_layers"], (1,)),
    ("wrong-type-lora-parameters",
     DEMO_CONFIG_YAML[: DEMO_CONFIG_YAML.index("lora_parameters:")] + "lora_parameters: 5\n",
     [":55:", "lora_parameters", "must be a mapping", "rank"], (1,)),
    ("negative-iters", ("iters: 100", "iters: -5"), [":19:", "iters", "at least 1"], (1,)),
    ("zero-batch-size", ("batch_size: 4", "batch_size: 0"), [":16:", "batch_size", "at least 1"], (1,)),
    ("zero-save-every", ("save_every: 50", "save_every: 0"), ["save_every"], (1,)),
    ("negative-steps-per-eval", ("steps_per_eval: 25", "steps_per_eval: -1"), ["steps_per_eval"], (1,)),
    ("num-layers-above-blocks", ("num_layers: -1", "num_layers: 40"), [":13:", "num_layers", "4 blocks"], (1,)),
    ("lora-key-matches-nothing", ('"mlp.down_proj"', '"mlp.nope"'), ["'mlp.nope' matches no module"], (1,)),
    ("yaml-syntax-unclosed-list", ("iters: 100", "iters: [1, 2"), ["YAML syntax error"], (2,)),
    ("yaml-syntax-tab-indent", ("  rank: 16", "\trank: 16"), ["lora_config.yaml:58", "YAML"], (2,)),
    ("yaml-not-a-mapping", "- just\n- a list\n", ["lora_config.yaml"], (1, 2)),
    ("yaml-alias-bomb", ALIAS_BOMB, ["lora_config.yaml"], (1, 2)),
]


def _write_config(workspace: Path, change) -> Path:
    path = workspace / "lora_config.yaml"
    if isinstance(change, str):
        path.write_text(change)
    else:
        text = path.read_text()
        assert change[0] in text, change
        path.write_text(text.replace(change[0], change[1], 1))
    return path


@pytest.mark.parametrize("change, expected, codes", [c[1:] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_bad_config_cli(bad_workspace, change, expected, codes):
    path = _write_config(bad_workspace, change)
    refuse_cli(bad_workspace, "config", "check", str(path), expected=expected, codes=codes)


@pytest.mark.parametrize("change, expected", [(c[1], c[2]) for c in CONFIGS if c[0] in
                         ("wrong-type-batch-size", "negative-iters", "yaml-syntax-unclosed-list")],
                         ids=["wrong-type", "negative-count", "yaml-syntax"])
def test_train_refuses_bad_config(bad_workspace, change, expected):
    """`phi3tui train` refuses before anything is written: no runs/ folder appears."""
    _write_config(bad_workspace, change)
    refuse_cli(bad_workspace, "train", "-w", str(bad_workspace), expected=["lora_config.yaml"], codes=(1, 2))
    assert not (bad_workspace / "runs").exists()


def test_unknown_key_is_named(bad_workspace):
    """mlx-lm ignores an unknown key silently; the check names its line and says to fix the spelling."""
    path = bad_workspace / "lora_config.yaml"
    path.write_text(path.read_text() + "learning_rat: 1e-4\n")
    before = snapshot(bad_workspace)
    result = run_cli("config", "check", str(path))
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "lora_config.yaml:61: warning: learning_rat: unknown to mlx-lm" in output and "did you mean learning_rate?" in output, output
    assert_unchanged(before, snapshot(bad_workspace))


def test_alias_bomb_refused_quickly_without_memory(bad_workspace):
    """A billion-laughs YAML: answered in seconds, the process never grows past a few hundred MB."""
    path = _write_config(bad_workspace, ALIAS_BOMB)
    proc = subprocess.Popen([sys.executable, "-m", "phi3tui", "config", "check", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _pid, status, usage = os.wait4(proc.pid, 0)
    cpu = usage.ru_utime + usage.ru_stime  # not the wall clock, which tests beside this one stretch
    output = proc.stdout.read() + proc.stderr.read()
    assert "Traceback" not in output and os.waitstatus_to_exitcode(status) in (1, 2), output
    assert cpu < 30, f"{cpu:.1f} s of CPU"
    peak_mb = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20
    assert peak_mb < 600, f"peak memory {peak_mb:.0f} MB"


def test_directory_in_place_of_config(bad_workspace):
    path = bad_workspace / "lora_config.yaml"
    path.unlink()
    path.mkdir()
    refuse_cli(bad_workspace, "config", "check", str(path), expected=["is a folder, not a YAML file", "point to"], codes=(2,))
    refuse_cli(bad_workspace, "train", "-w", str(bad_workspace), expected=["is a folder, not a YAML file"], codes=(2,))


@pytest.mark.parametrize("change, expected", [
    (("batch_size: 4", "batch_size: four"), "whole number"),
    (("iters: 100", "iters: [1, 2"), "YAML"),
    (ALIAS_BOMB, "lora_config.yaml"),
], ids=["wrong-type", "yaml-syntax", "alias-bomb"])
async def test_app_shows_bad_config(bad_workspace, change, expected):
    _write_config(bad_workspace, change)
    before = snapshot(bad_workspace)
    await open_app_on(bad_workspace, "config", expected=expected)
    assert_unchanged(before, snapshot(bad_workspace))


async def test_app_with_directory_in_place_of_config(bad_workspace):
    path = bad_workspace / "lora_config.yaml"
    path.unlink()
    path.mkdir()
    before = snapshot(bad_workspace)
    await open_app_on(bad_workspace, "config", expected="folder")
    assert_unchanged(before, snapshot(bad_workspace))


# -- model folders ----------------------------------------------------------------------------------

MARKER_PICKLE = """
import os, pickle, sys
class Boom:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
with open(sys.argv[1], "wb") as f:
    pickle.dump({"model.embed_tokens.weight": Boom()}, f)
"""


def _break_model(model: Path, how: str, marker: Path) -> None:
    if how == "no-config-json":
        (model / "config.json").unlink()
    elif how == "config-json-not-json":
        (model / "config.json").write_text("{ this is not json")
    elif how == "unknown-model-type":
        config = json.loads((model / "config.json").read_text())
        config["model_type"] = "zorblax"
        (model / "config.json").write_text(json.dumps(config))
    elif how == "only-pickle-weights":
        (model / "model.safetensors").unlink()
        subprocess.run([sys.executable, "-c", MARKER_PICKLE, str(model / "pytorch_model.bin"), str(marker)], check=True)
    elif how == "truncated-safetensors":
        with open(model / "model.safetensors", "r+b") as handle:
            handle.truncate(handle.seek(0, 2) // 2)


MODELS = [
    ("no-config-json", ["config.json"]),
    ("config-json-not-json", ["config.json"]),
    ("unknown-model-type", ["zorblax", "not supported"]),
    ("only-pickle-weights", ["pytorch_model.bin", "never loads"]),
    ("truncated-safetensors", ["model.safetensors is truncated", "re-download"]),
]


@pytest.mark.parametrize("how, expected", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("command", ["config-check", "export-fuse"])
def test_bad_model_folder(trained_workspace, tmp_path, how, expected, command):
    marker = tmp_path / "UNPICKLED"
    _break_model(trained_workspace / "model", how, marker)
    if command == "config-check":
        args = ("config", "check", str(trained_workspace / "lora_config.yaml"))
    else:
        args = ("export", "fuse", "-w", str(trained_workspace), "--name", "x")
    refuse_cli(trained_workspace, *args, expected=expected)
    assert not marker.exists(), "a pickle was unpickled"


def test_pickle_weights_never_unpickled_by_chat(trained_workspace, tmp_path):
    marker = tmp_path / "UNPICKLED"
    _break_model(trained_workspace / "model", "only-pickle-weights", marker)
    result = run_cli("chat", "compare", "-w", str(trained_workspace), timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output, output[-2000:]
    assert not marker.exists(), "a pickle was unpickled"


@pytest.mark.parametrize("how, expected", MODELS, ids=[m[0] for m in MODELS])
async def test_app_with_bad_model(bad_workspace, tmp_path, how, expected):
    marker = tmp_path / "UNPICKLED"
    _break_model(bad_workspace / "model", how, marker)
    before = snapshot(bad_workspace)
    await open_app_on(bad_workspace, "config", expected=expected[0])
    assert not marker.exists()
    assert_unchanged(before, snapshot(bad_workspace))


@pytest.mark.parametrize("how", ["only-pickle-weights", "truncated-safetensors"])
async def test_chat_screen_with_bad_model(bad_workspace, tmp_path, how):
    marker = tmp_path / "UNPICKLED"
    _break_model(bad_workspace / "model", how, marker)
    await open_app_on(bad_workspace, "chat", expected="cannot load the model", settle=20)
    assert not marker.exists()


# -- adapters and export targets --------------------------------------------------------------------


def _foreign_adapter(workspace: Path) -> Path:
    """The run's adapter with every LoRA matrix reshaped as for a model twice as wide."""
    import mlx.core as mx

    run = next((workspace / "runs").iterdir())
    adapters = run / "adapters"
    weights = mx.load(str(adapters / "adapters.safetensors"))
    wide = {k: mx.zeros((v.shape[0] * 2, v.shape[1]) if k.endswith("lora_a") else (v.shape[0], v.shape[1] * 2))
            for k, v in weights.items()}
    mx.save_safetensors(str(adapters / "adapters.safetensors"), wide)
    return adapters


def test_adapter_for_another_model(trained_workspace):
    adapters = _foreign_adapter(trained_workspace)
    refuse_cli(trained_workspace, "export", "fuse", "-w", str(trained_workspace), "--adapter-path", str(adapters),
               "--name", "x", expected=["adapters.safetensors", "pick the adapter trained for this model"], codes=(2,))


def test_export_refuses_existing_file(trained_workspace):
    out = trained_workspace / "exports" / "mine"
    out.mkdir(parents=True)
    (out / "mine-f16.gguf").write_bytes(b"precious")
    (out / "fused").mkdir()
    (out / "fused" / "keep.txt").write_text("precious")
    refuse_cli(trained_workspace, "export", "fuse", "-w", str(trained_workspace), "--name", "mine",
               expected=["--force"], codes=(2,))


def test_export_to_read_only_folder(trained_workspace, small_tmpfs):
    target = small_tmpfs("8m")
    (target / "old.txt").write_text("keep")
    remount_read_only(target)
    refuse_cli(trained_workspace, "export", "fuse", "-w", str(trained_workspace), "--name", "ro",
               "--output", str(target), expected=[str(target)], codes=(1, 2))
    assert (target / "old.txt").read_text() == "keep"


def test_export_name_cannot_leave_the_workspace(trained_workspace, tmp_path):
    """A name that looks like a path is reduced to a plain name inside exports/."""
    result = run_cli("export", "fuse", "-w", str(trained_workspace), "--name", "../../escaped", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "escaped").exists() and not (trained_workspace.parent / "escaped").exists()
    made = [p.name for p in (trained_workspace / "exports").iterdir()]
    assert made == ["escaped"], made


# -- arguments that point at the wrong thing ---------------------------------------------------------

ARGUMENTS = [
    ("workspace-not-a-workspace", lambda ws: (str(ws / "data"),), ["not a phi3tui workspace", "phi3tui demo"]),
    ("workspace-missing", lambda ws: (str(ws / "nope"),), ["does not exist"]),
    ("data-check-missing-folder", lambda ws: ("data", "check", str(ws / "nope")), ["is not a folder"]),
    ("attach-unknown-run", lambda ws: ("runs", "attach", "-w", str(ws), "nosuchrun"), ["no run 'nosuchrun'", "runs list"]),
    ("resume-finished-run", lambda ws: ("runs", "resume", "-w", str(ws), "latest"), ["is finished", "only a stopped"]),
]


@pytest.mark.parametrize("args, expected", [a[1:] for a in ARGUMENTS], ids=[a[0] for a in ARGUMENTS])
def test_bad_arguments(trained_workspace, args, expected):
    refuse_cli(trained_workspace, *args(trained_workspace), expected=expected)
