"""core.models is the one place that finds the model a workspace names; every feature gets the same answer.

On real files: the demo model under a folder name with `#` in it, a real training run, the real Chat model
and the export's base-model lookup; and a real Hugging Face cache layout read offline in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from phi3tui.core import models, runs
from phi3tui.core.chat import BASE, model_path, side_for_path
from phi3tui.core.data import workspace_data
from phi3tui.core.export.paths import base_model_of, local_model_dir, resolve_adapter
from phi3tui.core.workspace import Workspace
from tests.conftest import REPO, run_cli

QUICK = dict(iters=4, steps_per_report=2, steps_per_eval=100, save_every=4, val_batches=1)


def write_other_model(folder: Path, template: Path) -> None:
    """A Phi-3 of another shape (hidden 32, not 64) with the demo tokenizer: an adapter for the demo model
    does not fit it, so loading it instead is refused as "made for another model"."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import phi3

    shutil.copytree(template, folder, ignore=shutil.ignore_patterns("model.safetensors", "config.json"))
    config = json.loads((template / "config.json").read_text())
    config.update(hidden_size=32, intermediate_size=64)
    model = phi3.Model(phi3.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(model.parameters())), metadata={"format": "mlx"})
    (folder / "config.json").write_text(json.dumps(config))


def test_model_folder_with_a_hash_in_its_name_is_trained_chatted_and_exported(demo_workspace):
    # Issue 12, defect 1: `model: "models/phi3#v2"`: the run trained models/phi3#v2, but Chat read the value
    # with a line reader that cut it at `#`, loaded models/phi3 and refused the adapter.
    ws_root = demo_workspace
    (ws_root / "models").mkdir()
    wanted = ws_root / "models" / "phi3#v2"
    shutil.move(str(ws_root / "model"), wanted)
    write_other_model(ws_root / "models" / "phi3", wanted)
    config = ws_root / "lora_config.yaml"
    text = config.read_text()
    assert 'model: "model"\n' in text
    config.write_text(text.replace('model: "model"\n', 'model: "models/phi3#v2"  # the second try\n'))
    ws = Workspace.open(ws_root)

    # One answer for every feature.
    assert ws.model_setting() == "models/phi3#v2"
    assert models.workspace_model(ws) == str(wanted.resolve())
    assert model_path(ws) == str(wanted.resolve())
    assert workspace_data(ws).model == str(wanted.resolve())

    run_dir = runs.start_run(ws, overrides=QUICK)
    info = runs.wait_for_run(run_dir, timeout=300)
    assert info["state"] == "finished", (info, (run_dir / "log.txt").read_text()[-2000:])
    assert "loading models/phi3#v2" in (run_dir / "log.txt").read_text()
    assert json.loads((run_dir / "adapters" / "adapter_config.json").read_text())["model"] == "models/phi3#v2"

    # Chat loads that model and accepts the adapter (set_sides is the check that refuses another model's).
    from phi3tui.core.chat.model import ChatModel

    chat = ChatModel(model_path(ws))
    assert chat.model_path == str(wanted.resolve())
    chat.set_sides([BASE, side_for_path(run_dir)])
    assert len(chat.sides) == 2

    # The export fuses into the same base.
    assert base_model_of(ws_root, resolve_adapter(ws_root)) == str(wanted.resolve())

    # And the CLI, in its own process.
    done = run_cli("chat", "compare", str(ws_root), "--prompt", "Is the sun a star?", "--max-tokens", "4", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "another model" not in done.stdout + done.stderr
    assert "1 prompts" in done.stdout


def test_a_missing_model_is_one_message_everywhere(demo_workspace):
    config = demo_workspace / "lora_config.yaml"
    config.write_text(config.read_text().replace('model: "model"\n', 'model: "models/nowhere#2"\n'))
    ws = Workspace.open(demo_workspace)
    from phi3tui.core.chat import ChatError
    from phi3tui.core.export import ExportError

    messages = []
    for call, error in ((models.workspace_model, models.ModelNotFound), (model_path, ChatError),
                        (lambda w: base_model_of(w.root, None), ExportError)):
        try:
            call(ws)
        except error as exc:
            messages.append(str(exc))
        else:
            raise AssertionError(f"{call} found a model that is not there")
    for message in messages:
        assert str(ws.config_path) in message and "models/nowhere#2" in message, message


def write_hf_cache(cache: Path, repo_id: str, model_dir: Path) -> Path:
    """The Hugging Face cache layout (refs/main -> snapshots/<commit>/files) holding a copy of a model."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_a_repo_id_in_the_hugging_face_cache_is_found_offline(demo_workspace, tmp_path):
    # The export's base-model folder comes from huggingface_hub.snapshot_download with mlx-lm's patterns
    # (not mlx-lm's private _download): offline, a cached repo resolves to its snapshot folder.
    snapshot = write_hf_cache(tmp_path / "hub", "acme/tiny-phi3", demo_workspace / "model")
    config = demo_workspace / "lora_config.yaml"
    config.write_text(config.read_text().replace('model: "model"\n', "model: acme/tiny-phi3\n"))
    script = (
        "import json, sys\n"
        "from phi3tui.core import models\n"
        "from phi3tui.core.export.paths import local_model_dir\n"
        "from phi3tui.core.workspace import Workspace\n"
        "ws = Workspace.open(sys.argv[1])\n"
        "name = models.workspace_model(ws)\n"
        "loc = models.locate_model(name, ws.root)\n"
        "print(json.dumps([name, loc.kind, str(loc.folder), str(local_model_dir(name))]))\n"
    )
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", script, str(demo_workspace)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    name, kind, folder, local = json.loads(done.stdout.strip().splitlines()[-1])
    assert (name, kind) == ("acme/tiny-phi3", "Hugging Face cache")
    assert Path(folder) == snapshot and Path(local) == snapshot


def test_a_repo_not_downloaded_offline_is_an_export_error_naming_it(tmp_path):
    from phi3tui.core.export import ExportError

    try:
        local_model_dir("acme/not-there")
    except ExportError as exc:
        assert "acme/not-there" in str(exc)
    else:
        raise AssertionError("an absent repo was taken for a model folder")


def test_the_models_offered_are_the_workspace_folders_with_a_config_json(demo_workspace):
    shutil.copytree(demo_workspace / "model", demo_workspace / "phi3#v2")
    choices, problem = models.model_choices(demo_workspace)
    local = [value for label, value in choices if label.endswith("(folder in this workspace)")]
    assert local == ["model", "phi3#v2"]  # data/, runs/, exports/ have no config.json
    assert choices[:2] == [(f"{v}  (folder in this workspace)", v) for v in local]
    assert problem is None or "Hugging Face cache" in problem
