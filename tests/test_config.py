"""lora_config.yaml: byte-exact round trip, migration of the tutorial's file, every check, the CLI.

Real parts only: the installed mlx-lm (its keys, its LoRA conversion, `mlx_lm lora` training the demo
model), real files, real subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phi3tui.core import models
from phi3tui.core.config.review import ConfigError, load_config_values, prepare_run_config, review_config
from phi3tui.core.config.document import ConfigDocument
from phi3tui.core.config.migrate import plan_migration
from phi3tui.core.config.schema import PRESETS, config_fields, iters_for_epochs
from tests.conftest import run_cli

# The tutorial's lora_config.yaml, key for key (DESIGN.md), with model and data pointed at the demo workspace.
TUTORIAL_YAML = """\
# The path to the local model directory or Hugging Face repo.
model: "model"
# Whether or not to train (boolean)
train: true

# Directory with {train, valid, test}.jsonl files
data: "data"

# The PRNG seed
seed: 0

# Number of layers to fine-tune
lora_layers: 32

# Minibatch size.
batch_size: 1

# Iterations to train for.
iters: 1000

# Number of validation batches, -1 uses the entire validation set.
val_batches: 25

# Adam learning rate.
learning_rate: 1e-6

# Number of training steps between loss reporting.
steps_per_report: 10

# Number of training steps between validations.
steps_per_eval: 200

# Load path to resume training with the given adapter weights.
resume_adapter_file: null

# Save/load path for the trained adapter weights.
adapter_path: "adapters"

# Save the model every N iterations.
save_every: 1000

# Evaluate on the test set after training
test: false

# Number of test set batches, -1 uses the entire test set.
test_batches: 100

# Maximum sequence length.
max_seq_length: 2048

# Use gradient checkpointing to reduce memory use.
grad_checkpoint: true

# LoRA parameters can only be specified in a config file
lora_parameters:
  # The layer keys to apply LoRA to.
  # These will be applied for the last lora_layers
  keys: ["o_proj","qkv_proj"]
  rank: 64
  scale: 1
  dropout: 0.1
"""

# A file written by hand: odd indentation, block lists, quotes, trailing comments, keys we do not know.
HANDWRITTEN_YAML = """\
model: model   # the demo model
data: 'data'
train: yes
iters: 2
learning_rate: 2e-4        # a float for mlx-lm, though plain PyYAML reads a string
lr_schedule:
    name: cosine_decay
    warmup: 1 # steps
    arguments:
        - 2e-4
        - 2
lora_parameters:
    keys:
    - self_attn.o_proj
    - 'mlp.down_proj'
    rank: 4
    scale: 10.0
    dropout: 0.0
my_note: keep me   # not an mlx-lm key
resume_adapter_file: null
"""

# Phi-3-mini-4k-instruct's published architecture (its config.json), for building the structure only.
PHI3_MINI_CONFIG = {
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "hidden_size": 3072,
    "num_hidden_layers": 32,
    "intermediate_size": 8192,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32064,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 4096,
    "original_max_position_embeddings": 4096,
    "sliding_window": 2047,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}

TRAINABLE_RE = re.compile(r"Trainable parameters: ([\d.]+)% \(([\d.]+)M/([\d.]+)M\)")


def snapshot(root: Path) -> dict:
    """Every file under root with its size and modification time: proves a check changed nothing."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def mlx_lm_lora(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    return subprocess.run([sys.executable, "-m", "mlx_lm", "lora", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.fixture
def phi3_mini_folder(tmp_path) -> Path:
    folder = tmp_path / "phi3-mini"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(PHI3_MINI_CONFIG))
    return folder


# -- YAML in and out ----------------------------------------------------------------------------
@pytest.mark.parametrize("text", [TUTORIAL_YAML, HANDWRITTEN_YAML], ids=["tutorial", "handwritten"])
def test_load_then_save_without_edit_gives_same_bytes(tmp_path, text):
    path = tmp_path / "lora_config.yaml"
    path.write_text(text)
    doc = ConfigDocument.load(path)
    doc.save()
    assert path.read_text() == text
    assert not doc.modified


def test_edits_land_in_the_file_and_nothing_else_moves(tmp_path):
    path = tmp_path / "lora_config.yaml"
    path.write_text(HANDWRITTEN_YAML)
    doc = ConfigDocument.load(path)
    doc.set(("learning_rate",), 3e-5)
    doc.set(("lora_parameters", "rank"), 8)
    doc.set(("lora_parameters", "keys"), ["self_attn.qkv_proj", "self_attn.o_proj", "mlp.down_proj"])
    doc.set(("batch_size",), 2)
    assert doc.modified
    doc.save()
    old, new = HANDWRITTEN_YAML.splitlines(), path.read_text().splitlines()
    changed = {i for i, (a, b) in enumerate(zip(old, new)) if a != b}
    # learning_rate (its trailing comment kept), the three key lines of the block list, rank;
    # batch_size is appended at the end and the block list grew by one line.
    assert new[4] == "learning_rate: 3e-05        # a float for mlx-lm, though plain PyYAML reads a string"
    assert new[13:16] == ["    - 'self_attn.qkv_proj'", "    - 'self_attn.o_proj'", "    - 'mlp.down_proj'"]
    assert new[16] == "    rank: 8"
    assert new[:4] == old[:4] and new[5:13] == old[5:13]
    assert new[17:-1] == old[16:]
    assert new[-1] == "batch_size: 2"
    assert changed <= {4, 13, 14, 15, 16, 17, 18, 19, 20}
    values = load_config_values(path)
    assert values["learning_rate"] == 3e-5 and isinstance(values["learning_rate"], float)
    assert values["my_note"] == "keep me" and values["train"] is True


def test_values_load_exactly_as_mlx_lm_loads_them(tmp_path):
    import yaml
    from mlx_lm.lora import yaml_loader

    path = tmp_path / "lora_config.yaml"
    path.write_text(HANDWRITTEN_YAML)
    ours = ConfigDocument.load(path).values
    assert ours == yaml.load(HANDWRITTEN_YAML, yaml_loader)
    assert ours["learning_rate"] == 2e-4 and ours["lr_schedule"]["arguments"] == [2e-4, 2]


def test_saved_edit_is_accepted_by_mlx_lm_lora_and_trains(demo_workspace):
    doc = ConfigDocument.load(demo_workspace / "lora_config.yaml")
    doc.set(("iters",), 2)
    doc.set(("steps_per_eval",), 2)
    doc.set(("val_batches",), 1)
    doc.set(("lora_parameters", "rank"), 4)
    doc.set(("learning_rate",), 2e-4)
    doc.save()
    result = mlx_lm_lora(demo_workspace, "--config", "lora_config.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (demo_workspace / "adapters" / "adapters.safetensors").is_file()
    saved = json.loads((demo_workspace / "adapters" / "adapter_config.json").read_text())
    assert saved["iters"] == 2 and saved["lora_parameters"]["rank"] == 4 and saved["learning_rate"] == 2e-4


# -- migration -----------------------------------------------------------------------------------
def test_tutorial_file_migrates_and_trains_with_the_predicted_parameter_count(demo_workspace):
    path = demo_workspace / "tutorial.yaml"
    path.write_text(TUTORIAL_YAML)
    before = snapshot(demo_workspace)

    # A run migrates on its own, without touching the file.
    values, findings = prepare_run_config(path, demo_workspace)
    assert snapshot(demo_workspace) == before
    assert not [f for f in findings if f.level == "error"], findings
    assert values["num_layers"] == -1 and "lora_layers" not in values  # 32 meant every block; the demo has 4
    assert values["lora_parameters"]["keys"] == ["self_attn.o_proj", "self_attn.qkv_proj"]
    assert any(f.message.startswith("migrated: lora_layers") for f in findings)

    migrate = run_cli("config", "migrate", str(path), "--write")
    assert migrate.returncode == 0, migrate.stderr
    assert "rename:lora_layers" in migrate.stdout and "keys:lora_parameters.keys" in migrate.stdout
    text = path.read_text()
    assert 'keys: ["self_attn.o_proj", "self_attn.qkv_proj"]' in text
    assert "num_layers: -1" in text and "# Number of layers to fine-tune" in text

    review = review_config(text, demo_workspace)
    assert review.changes == [] and not review.errors
    predicted = review.plan
    assert predicted.blocks == 4 and len(predicted.adapted) == 8

    result = mlx_lm_lora(demo_workspace, "--config", "tutorial.yaml", "--iters", "2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    printed = TRAINABLE_RE.search(result.stdout + result.stderr)
    assert printed, result.stdout[-2000:]
    assert f"{printed.group(1)}% ({printed.group(2)}M/{printed.group(3)}M)" == predicted.summary()


def test_tutorial_keys_mean_rank_64_on_o_proj_and_qkv_proj_in_all_32_blocks_of_phi3_mini(tmp_path, phi3_mini_folder):
    import mlx.core as mx

    text = TUTORIAL_YAML.replace('model: "model"', f'model: "{phi3_mini_folder}"')
    review = review_config(text, tmp_path)
    ids = {c.id for c in review.changes}
    assert ids == {"rename:lora_layers", "keys:lora_parameters.keys"}
    assert review.values["num_layers"] == 32
    assert review.values["lora_parameters"]["keys"] == ["self_attn.o_proj", "self_attn.qkv_proj"]
    plan = review.plan
    expected = {f"model.layers.{i}.self_attn.{m}" for i in range(32) for m in ("o_proj", "qkv_proj")}
    assert set(plan.adapted) == expected
    hidden, qkv_out = 3072, 3 * 3072
    assert plan.trainable == 32 * 64 * ((hidden + hidden) + (hidden + qkv_out))  # rank 64: A (in x r) + B (r x out)
    assert plan.total > 3_800_000_000
    assert mx.get_active_memory() < 64 << 20  # built from config.json alone: no weights allocated


def test_alpha_becomes_scale_with_the_explanation():
    values = {"lora_parameters": {"rank": 16, "alpha": 32, "dropout": 0.0}}
    changes = plan_migration(values, ["self_attn.qkv_proj"], [])
    (change,) = changes
    assert change.summary == "alpha: 32 -> scale: 2"
    assert "alpha / rank" in change.why


def test_other_renamed_keys_migrate(tmp_path):
    text = "model: model\nuse_dora: true\nadapter_file: adapters.npz\nwandb: myproj\n"
    changes = {c.id: c for c in plan_migration(load_values_text(text))}
    assert set(changes) == {"rename:use_dora", "rename:adapter_file", "rename:wandb"}
    from phi3tui.core.config.migrate import migrated_text

    migrated = load_values_text(migrated_text(text, list(changes.values())))
    assert migrated == {"model": "model", "fine_tune_type": "dora", "adapter_path": "adapters",
                        "report_to": "wandb", "project_name": "myproj"}


def load_values_text(text: str) -> dict:
    from phi3tui.core.config.document import load_values

    return load_values(text)


# -- checks: each tripped by a config, none changes a file ------------------------------------------
DEMO = "model: model\ndata: data\ntrain: true\nnum_layers: -1\nbatch_size: 4\niters: 10\nlora_parameters: {rank: 4, scale: 10.0, dropout: 0.0}\n"


@pytest.mark.parametrize(
    "extra, level, field, words",
    [
        ("num_layers: 8\n", "error", "num_layers", "the model has 4 blocks"),
        ("lora_parameters: {keys: [self_attn.q_proj_x], rank: 4, scale: 10.0, dropout: 0.0}\n", "error",
         "lora_parameters.keys", "matches no module"),
        ("lora_parameters: {keys: [], rank: 4, scale: 10.0, dropout: 0.0}\n", "error", "lora_parameters.keys",
         "trains 0 parameters"),
        ("batch_size: 60\n", "error", "batch_size", "valid.jsonl has 51 records"),
        ("max_seq_length: 16\n", "warning", "max_seq_length", "longer"),
        ("data: nodata\n", "error", "data", "does not exist"),
        ("model: no-such-model-folder\n", "error", "model", "neither a folder"),
        ("mask_prompt: true\n", "error", "mask_prompt", "text format"),
        ("learning_rat: 1e-5\n", "warning", "learning_rat", "ignored"),
        ("lora_parameters: {rank: 4, scale: 10.0, dropout: 0.0, rnak: 8}\n", "warning", "lora_parameters.rnak",
         "ignored"),
        ("learning_rate: '1e-5'\n", "error", "learning_rate", "must be a number"),
        ("train: false\n", "error", "train", "both false"),
        ("resume_adapter_file: nowhere/adapters.safetensors\n", "error", "resume_adapter_file", "does not exist"),
        ("lora_parameters: {rank: 4, dropout: 0.0}\n", "warning", "lora_parameters.scale", "needs migration: add scale"),
    ],
    ids=["num_layers", "keys-unmatched", "keys-empty", "batch_size", "max_seq_length", "data", "model-missing", "mask_prompt",
         "unknown-key", "unknown-nested-key", "type", "train-test", "resume", "scale-missing"],
)
def test_each_check_trips_and_changes_nothing(demo_workspace, extra, level, field, words):
    before = snapshot(demo_workspace)
    text = "\n".join(line for line in DEMO.splitlines() if not line.startswith(extra.split(":")[0] + ":")) + "\n" + extra
    review = review_config(text, demo_workspace)
    hits = [f for f in review.findings if f.level == level and f.field == field and words in f.message]
    assert hits, review.findings
    assert snapshot(demo_workspace) == before


def test_rejected_migration_leaves_the_error(demo_workspace):
    text = DEMO.replace("{rank: 4, scale: 10.0, dropout: 0.0}", "{rank: 4, dropout: 0.0}")
    review = review_config(text, demo_workspace, rejected={"add:lora_parameters.scale"})
    assert any(f.field == "lora_parameters" and "lacks scale" in f.message for f in review.errors)


def test_unmatched_key_lists_the_valid_modules(demo_workspace):
    review = review_config(DEMO.replace("{rank", "{keys: [q_projection], rank"), demo_workspace)
    (finding,) = [f for f in review.errors if "matches no module" in f.message]
    assert "self_attn.qkv_proj" in finding.hint and "mlp.down_proj" in finding.hint


def test_data_folder_without_train_split(demo_workspace, tmp_path):
    empty = tmp_path / "empty-data"
    empty.mkdir()
    review = review_config(DEMO.replace("data: data", f"data: {empty}"), demo_workspace)
    assert any(f.field == "data" and "no train.jsonl" in f.message for f in review.errors)


def test_adapter_path_with_another_runs_adapters(demo_workspace):
    adapters = demo_workspace / "adapters"
    adapters.mkdir()
    (adapters / "adapter_config.json").write_text("{}")
    (adapters / "adapters.safetensors").write_bytes(b"")
    before = snapshot(demo_workspace)
    review = review_config(DEMO + "adapter_path: adapters\n", demo_workspace)
    assert any(f.field == "adapter_path" and "overwrite" in f.message for f in review.findings)
    resumed = review_config(DEMO + "adapter_path: adapters\nresume_adapter_file: adapters/adapters.safetensors\n",
                            demo_workspace)
    assert not any(f.field == "adapter_path" for f in resumed.findings)
    assert snapshot(demo_workspace) == before


def test_memory_estimate_refuses_above_what_mlx_can_use(demo_workspace, phi3_mini_folder):
    from phi3tui.core.machine import memory_budget

    text = DEMO.replace("model: model", f"model: {phi3_mini_folder}") + \
        "batch_size: 64\nmax_seq_length: 8192\ngrad_checkpoint: false\n"
    text = text.replace("batch_size: 4\n", "")
    review = review_config(text, demo_workspace)
    (memory,) = [f for f in review.findings if f.field == "memory"]
    budget = memory_budget()
    assert memory.level == "error" and "above what MLX can use on this machine" in memory.message
    assert budget.source in memory.message  # Metal's working set on a Mac, total RAM on this CPU build
    assert review.memory.machine == budget.bytes
    assert review.memory.total > review.memory.total_other  # grad_checkpoint would save memory
    # Weights at bf16: 3.8 B parameters x 2 bytes.
    assert 7.0 < review.memory.weights / 2**30 < 7.3


def test_memory_estimate_is_info_when_it_fits(demo_workspace):
    review = review_config(DEMO, demo_workspace)
    (memory,) = [f for f in review.findings if f.field == "memory"]
    assert memory.level == "info" and review.memory.total < review.memory.machine


def test_trainable_count_matches_mlx_lm_conversion_in_process(demo_workspace):
    from mlx.utils import tree_flatten
    from mlx_lm import load
    from mlx_lm.tuner.utils import linear_to_lora_layers

    review = review_config(DEMO.replace("num_layers: -1", "num_layers: 2"), demo_workspace)
    model, _ = load(str(demo_workspace / "model"))
    model.freeze()
    linear_to_lora_layers(model, 2, {"rank": 4, "scale": 10.0, "dropout": 0.0})
    assert review.plan.trainable == sum(v.size for _, v in tree_flatten(model.trainable_parameters()))


def test_model_that_is_not_downloaded_is_said_so(demo_workspace):
    review = review_config(DEMO.replace("model: model", "model: acme/not-downloaded-model"), demo_workspace)
    assert any(f.field == "model" and "not in the local Hugging Face cache" in f.message for f in review.findings)


# -- the form's keys come from mlx-lm ---------------------------------------------------------------
def test_form_fields_are_read_from_the_installed_mlx_lm(monkeypatch):
    import mlx_lm.lora as lora
    from phi3tui.core.config import schema as config_schema

    fields = {f.path: f for f in config_fields()}
    for key in lora.CONFIG_DEFAULTS:
        if key not in ("config", "lora_parameters", "lr_schedule"):
            assert (key,) in fields, key
    assert fields[("batch_size",)].help == "Minibatch size." and fields[("batch_size",)].kind == "int"
    assert fields[("optimizer",)].choices == ("adam", "adamw", "muon", "sgd", "adafactor")
    assert fields[("learning_rate",)].default == 1e-5 and fields[("learning_rate",)].kind == "float"
    for sub in ("keys", "rank", "scale", "dropout"):
        assert ("lora_parameters", sub) in fields
    assert "cosine_decay" in fields[("lr_schedule", "name")].choices
    # A key a newer mlx-lm adds shows up, in the "other" group, typed from its default.
    monkeypatch.setitem(lora.CONFIG_DEFAULTS, "shiny_new_knob", 3)
    config_schema.mlx_lm_defaults.cache_clear()
    try:
        newer = {f.path: f for f in config_fields()}
        assert newer[("shiny_new_knob",)].group == "other" and newer[("shiny_new_knob",)].kind == "int"
    finally:
        monkeypatch.undo()
        config_schema.mlx_lm_defaults.cache_clear()


def test_epochs_set_iterations():
    assert iters_for_epochs(2, 417, 4) == 209
    assert iters_for_epochs(0.5, 10, 4) == 2


def test_presets_are_valid_configs(demo_workspace, phi3_mini_folder):
    from phi3tui.core.config.checks import check_types

    for name, values in PRESETS.items():
        doc = ConfigDocument.load(demo_workspace / "lora_config.yaml")
        for key, value in values.items():
            doc.set((key,), value)
        assert not [f for f in check_types(doc.values) if f.level == "error"], name
    quick = ConfigDocument.load(demo_workspace / "lora_config.yaml")
    for key, value in PRESETS["quick check"].items():
        quick.set((key,), value)
    assert not review_config(quick.text, demo_workspace).errors
    # The 16 GB preset fits 16 GB by our own estimate on the real Phi-3-mini structure.
    preset = dict(PRESETS["Phi-3-mini LoRA on a 16 GB Mac"], model=str(phi3_mini_folder))
    plan = models.plan_lora(PHI3_MINI_CONFIG, -1, preset["lora_parameters"])
    estimate = models.estimate_memory(PHI3_MINI_CONFIG, plan, preset, machine_bytes=16 << 30)
    assert estimate.total < 16 << 30


# -- the Hugging Face cache and downloads -----------------------------------------------------------
def make_hf_cache(root: Path, repo_id: str, source: Path) -> Path:
    """A Hugging Face cache laid out as huggingface_hub writes it (blobs, snapshots, refs)."""
    commit = "0" * 40
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for i, f in enumerate(sorted(p for p in source.iterdir() if p.is_file())):
        blob = repo / "blobs" / f"{i:040d}"
        shutil.copy(f, blob)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    return snap


def test_cached_models_are_listed_and_used(demo_workspace, demo_model, tmp_path):
    cache = tmp_path / "hf-cache"
    make_hf_cache(cache, "acme/tiny-phi3", demo_model)
    listed = models.cached_models(cache)
    assert [m.repo_id for m in listed] == ["acme/tiny-phi3"] and listed[0].has_config
    assert models.cached_models(tmp_path / "no-cache-here") == []
    config = demo_workspace / "lora_config.yaml"
    config.write_text(config.read_text().replace('model: "model"', 'model: "acme/tiny-phi3"'))
    result = run_cli("config", "check", str(config), env={"HF_HUB_CACHE": str(cache)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Hugging Face cache" in result.stdout and "4 blocks" in result.stdout


def test_download_refuses_offline_and_says_why(tmp_path):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(models.ModelNotFound, match="cannot download acme/not-there"):
        models.download_model("acme/not-there")
    with pytest.raises(models.ModelNotFound, match="not a Hugging Face repo id"):
        models.download_model("not a repo")


# -- CLI ---------------------------------------------------------------------------------------------
def test_cli_check_exit_codes(demo_workspace):
    config = demo_workspace / "lora_config.yaml"
    ok = run_cli("config", "check", str(config))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "trainable parameters" in ok.stdout and "0 error(s)" in ok.stdout
    bad = demo_workspace / "bad.yaml"
    bad.write_text(DEMO.replace("num_layers: -1", "num_layers: 9"))
    failed = run_cli("config", "check", str(bad))
    assert failed.returncode == 1
    assert f"{bad}:4: error: num_layers: is 9 but the model has 4 blocks" in failed.stdout
    broken = demo_workspace / "broken.yaml"
    broken.write_text("model: model\nbatch_size: [1\n")
    unreadable = run_cli("config", "check", str(broken))
    assert unreadable.returncode == 2 and "broken.yaml:3" in unreadable.stderr


def test_cli_migrate_changes_nothing_without_write_and_skips_on_request(demo_workspace):
    path = demo_workspace / "tutorial.yaml"
    path.write_text(TUTORIAL_YAML)
    shown = run_cli("config", "migrate", str(path))
    assert shown.returncode == 0 and "nothing written" in shown.stdout
    assert "-lora_layers: 32" in shown.stdout and "+num_layers: -1" in shown.stdout
    assert path.read_text() == TUTORIAL_YAML
    written = run_cli("config", "migrate", str(path), "--write", "--skip", "rename:lora_layers")
    assert written.returncode == 0, written.stderr
    text = path.read_text()
    assert "lora_layers: 32" in text and "self_attn.qkv_proj" in text
    unknown = run_cli("config", "migrate", str(path), "--skip", "no-such-change")
    assert unknown.returncode == 2


def test_unreadable_config_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        prepare_run_config(tmp_path / "missing.yaml", tmp_path)


def test_quantized_model_weights_and_lora(phi3_mini_folder):
    quantized = dict(PHI3_MINI_CONFIG, quantization={"group_size": 64, "bits": 4})
    assert models.weight_bytes(quantized) < models.weight_bytes(PHI3_MINI_CONFIG) / 3
    plan = models.plan_lora(quantized, -1, {"keys": ["self_attn.qkv_proj"], "rank": 8, "scale": 2.0, "dropout": 0.0})
    assert plan.trainable == 32 * 8 * (3072 + 3 * 3072)  # LoRA on QuantizedLinear: same adapter shapes
    assert "4-bit (group 64)" in models.ModelInfo(quantized).summary()


def test_form_field_edits_keep_their_meaning(tmp_path):
    from phi3tui.core.config.review import apply_field_edit

    doc = ConfigDocument(HANDWRITTEN_YAML)
    apply_field_edit(doc, ("seed",), None)  # an empty field for an absent key: nothing written
    assert doc.text == HANDWRITTEN_YAML
    apply_field_edit(doc, ("epochs",), 3, train_size=100)  # batch_size absent: mlx-lm's 4
    assert doc.values["iters"] == 75
    apply_field_edit(doc, ("lr_schedule", "name"), None)  # no schedule name: no schedule
    assert doc.values["lr_schedule"] is None
    assert doc.values["lora_parameters"]["rank"] == 4 and "my_note: keep me   # not an mlx-lm key" in doc.text
    with pytest.raises(ValueError, match="train split"):
        apply_field_edit(doc, ("epochs",), 1, train_size=None)


def test_run_preparation_with_a_model_not_downloaded_keeps_the_warning_offline(demo_workspace):
    path = demo_workspace / "lora_config.yaml"
    path.write_text(DEMO.replace("model: model", "model: acme/not-downloaded-model"))
    values, findings = prepare_run_config(path, demo_workspace)
    assert values["model"] == "acme/not-downloaded-model"
    assert [f.level for f in findings if f.field == "model"] == ["warning"]  # the run may still download it


# -- edits are transactions ---------------------------------------------------------------------
COMMENTED_YAML = """\
model: model
lora_parameters:  # keys: which layers
  # the modules inside each block
  keys:
    - self_attn.o_proj
    - self_attn.qkv_proj  # qkv: fused in Phi-3
  rank: 8
learning_rate: 1e-5  # lr: small
resume_adapter_file:  # file: none yet
iters: 100
"""


def test_block_value_replaced_under_a_key_line_whose_comment_has_a_colon():
    doc = ConfigDocument(COMMENTED_YAML)
    doc.set(("lora_parameters",), {"keys": ["mlp.down_proj"], "rank": 4})  # a mapping sets its keys in place
    assert doc.text == COMMENTED_YAML.replace(
        "    - self_attn.o_proj\n    - self_attn.qkv_proj  # qkv: fused in Phi-3\n", "    - mlp.down_proj\n"
    ).replace("rank: 8", "rank: 4")
    doc = ConfigDocument(COMMENTED_YAML)
    doc.set(("lora_parameters",), None)  # the whole block replaced by one value
    assert doc.text == COMMENTED_YAML.replace(
        "lora_parameters:  # keys: which layers\n  # the modules inside each block\n"
        "  keys:\n    - self_attn.o_proj\n    - self_attn.qkv_proj  # qkv: fused in Phi-3\n  rank: 8\n",
        "lora_parameters: null  # keys: which layers\n  # the modules inside each block\n")
    assert doc.values["lora_parameters"] is None and doc.values["iters"] == 100
    doc = ConfigDocument(COMMENTED_YAML)
    doc.set(("lora_parameters", "keys"), [])  # a nested block list replaced by a flow one
    assert doc.text == COMMENTED_YAML.replace(
        "  keys:\n    - self_attn.o_proj\n    - self_attn.qkv_proj  # qkv: fused in Phi-3\n", "  keys: []\n")


def test_scalar_value_replaced_beside_a_comment_with_a_colon():
    doc = ConfigDocument(COMMENTED_YAML)
    doc.set(("learning_rate",), 2e-5)
    assert doc.text == COMMENTED_YAML.replace("learning_rate: 1e-5  # lr: small", "learning_rate: 2e-05  # lr: small")
    doc.set(("resume_adapter_file",), "adapters/a.safetensors")  # an empty value: it goes after the key's colon
    assert doc.text == COMMENTED_YAML.replace("learning_rate: 1e-5", "learning_rate: 2e-05").replace(
        "resume_adapter_file:  # file: none yet", "resume_adapter_file: adapters/a.safetensors  # file: none yet")
    assert doc.values["resume_adapter_file"] == "adapters/a.safetensors"


@pytest.mark.parametrize("text, edit, words", [
    ("iters: 100\nbatch_size: 4\niters: 200\n", ("set", ("iters",), 5), "written 2 times (lines 1, 3)"),
    ("base: &lp {rank: 8}\nlora_parameters: *lp\n", ("set", ("lora_parameters", "rank"), 4), "anchor"),
    ("lora_parameters: 8\n", ("set", ("lora_parameters", "rank"), 4), "lora_parameters is not a mapping"),
    ("lora_layers: 8\nnum_layers: 4\n", ("rename", ("lora_layers",), "num_layers"), "already at line 2"),
])
def test_an_edit_that_cannot_be_made_changes_nothing(text, edit, words):
    from phi3tui.core.config.document import DocumentEditError

    doc = ConfigDocument(text)
    with pytest.raises(DocumentEditError, match=re.escape(words)):
        getattr(doc, edit[0])(*edit[1:])
    assert doc.text == text and not doc.modified
    doc.set(("seed",), 1)  # the document still takes edits after a refused one
    assert doc.text == text + "seed: 1\n"


def test_a_migration_that_cannot_be_made_in_full_changes_nothing():
    from phi3tui.core.config.document import DocumentEditError
    from phi3tui.core.config.migrate import Change, apply_changes

    text = "lora_layers: 8\nlora_parameters: 8\n"
    doc = ConfigDocument(text)
    changes = [Change("rename:lora_layers", "lora_layers", "", "", (("rename", ("lora_layers",), "num_layers"),)),
               Change("add:lora_parameters.rank", "lora_parameters.rank", "add rank: 8", "",
                      (("set", ("lora_parameters", "rank"), 8),))]
    with pytest.raises(DocumentEditError, match=r"\[add:lora_parameters.rank\].*not a mapping"):
        apply_changes(doc, changes)
    assert doc.text == text and not doc.modified  # the first change, which could be made, is undone too


def test_cli_migrate_whose_write_fails_says_so_and_leaves_the_file(demo_workspace):
    import resource
    import signal

    from tests.conftest import REPO

    path = demo_workspace / "tutorial.yaml"
    path.write_text(TUTORIAL_YAML)

    def no_file_growth():
        # A full disk, as the kernel reports it to this process alone: writes to files fail with EFBIG
        # (works as root too, where a read-only folder would not stop the write).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    failed = subprocess.run([sys.executable, "-m", "phi3tui", "config", "migrate", str(path), "--write"],
                            capture_output=True, text=True, timeout=600, cwd=REPO, preexec_fn=no_file_growth,
                            env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert f"cannot write {path}" in failed.stderr and "is unchanged" in failed.stderr, failed.stderr
    assert "wrote" not in failed.stdout and "Traceback" not in failed.stderr
    assert path.read_text() == TUTORIAL_YAML
    assert [p.name for p in demo_workspace.iterdir() if "tutorial.yaml" in p.name] == ["tutorial.yaml"]  # no temp left
