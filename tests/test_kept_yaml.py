"""core/kept_yaml.py: the app's second start reads its config and themes without importing PyYAML, to the same
values; an edited file is read afresh; a broken or missing copy only costs a parse. Each case in a fresh process
(the kept copies are used only by a process that has not imported PyYAML)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

READ = textwrap.dedent("""
    import json, sys
    from phi3tui.core.workspace import load_config_values
    from phi3tui.core.themes import load_themes
    values = load_config_values(sys.argv[1])
    themes = load_themes()
    print(json.dumps({"yaml": "yaml" in sys.modules, "values": values,
                      "themes": {name: repr(spec) for name, spec in sorted(themes.themes.items())}}))
""")


def read_in_fresh_process(config: Path, cache: Path, config_dir: Path) -> dict:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "PHI3TUI_CACHE_DIR": str(cache),
           "PHI3TUI_CONFIG_DIR": str(config_dir)}
    proc = subprocess.run([sys.executable, "-c", READ, str(config)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def read_twice(tmp_path: Path, text: str) -> tuple[dict, dict, Path]:
    """Write lora_config.yaml with `text`, read it in two fresh processes: (first, second, the cache folder)."""
    config = tmp_path / "lora_config.yaml"
    config.write_text(text)
    cache, config_dir = tmp_path / "cache", tmp_path / "config"
    return read_in_fresh_process(config, cache, config_dir), read_in_fresh_process(config, cache, config_dir), cache


def test_a_second_read_gives_the_same_values_without_pyyaml_and_an_edit_is_read_afresh(tmp_path):
    first, second, cache = read_twice(tmp_path, "model: some/model  # a comment\nlearning_rate: 1e-5\n"
                                                "lora_parameters: {rank: 8}\n")
    config, config_dir = tmp_path / "lora_config.yaml", tmp_path / "config"
    assert first["yaml"] and not second["yaml"]
    assert second["values"] == first["values"] == {"model": "some/model", "learning_rate": 1e-5,
                                                   "lora_parameters": {"rank": 8}}
    assert second["themes"] == first["themes"] and second["themes"]
    config.write_text("model: some/model\nlearning_rate: 2e-5\nlora_parameters: {rank: 8}\n")  # same size
    edited = read_in_fresh_process(config, cache, config_dir)
    assert edited["yaml"] and edited["values"]["learning_rate"] == 2e-5


def test_a_broken_copy_or_a_bad_file_is_parsed_as_usual(tmp_path):
    config = tmp_path / "lora_config.yaml"
    config.write_text("iters: 10\n")
    cache, config_dir = tmp_path / "cache", tmp_path / "config"
    read_in_fresh_process(config, cache, config_dir)
    (cache / "start-yaml.json").write_text("{not json")
    again = read_in_fresh_process(config, cache, config_dir)
    assert again["yaml"] and again["values"] == {"iters": 10}
    config.write_text("iters: [10\n")  # a YAML error is raised as before, and never kept
    code = ("import sys\nfrom phi3tui.core.workspace import ConfigError, load_config_values\n"
            "try:\n    load_config_values(sys.argv[1])\nexcept ConfigError as exc:\n    print('ERROR', exc)\n")
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, cwd=REPO,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "PHI3TUI_CACHE_DIR": str(cache)},
                              timeout=120)
        assert "ERROR" in proc.stdout and "YAML syntax error" in proc.stdout, proc.stdout + proc.stderr


def test_the_loaders_are_still_importable_and_read_floats_as_mlx_lm_does():
    import yaml

    from phi3tui.core.workspace import FastMlxLmLoader, MlxLmLoader

    # PyYAML's own SafeLoader reads the string '1e-5' (unless mlx_lm, once imported, has added its resolver to it).
    for loader in (MlxLmLoader, FastMlxLmLoader):
        assert yaml.load("lr: 1e-5", Loader=loader) == {"lr": 1e-5}


def test_a_value_json_would_change_is_never_kept(tmp_path):
    """A key that is not a string would come back from JSON as one: such a text is parsed by PyYAML every time."""
    first, second, cache = read_twice(tmp_path, "iters: 10\nlr_schedule: {arguments: {1: 2}}\n")
    assert first["yaml"] and second["yaml"]
    assert second["values"] == first["values"]
    assert "lr_schedule" not in (cache / "start-yaml.json").read_text()
