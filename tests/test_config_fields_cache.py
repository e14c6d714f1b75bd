"""The Config form's keys kept on disk: the first visit after a start builds the form without importing mlx-lm,
from a copy that equals config_fields() and is dropped when mlx-lm or phi3tui's tables change."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def test_saved_fields_equal_config_fields_and_a_stale_copy_is_not_used(config_dir, tmp_path, monkeypatch):
    from phi3tui.core.config import schema

    monkeypatch.setenv("PHI3TUI_CACHE_DIR", str(tmp_path / "cache"))
    assert schema.saved_config_fields() is None
    fields = schema.config_fields()
    schema.save_config_fields(fields)
    assert schema.saved_config_fields() == fields
    monkeypatch.setattr(schema, "_fields_cache_key", lambda: "mlx-lm 0.0.0")  # another mlx-lm
    assert schema.saved_config_fields() is None
    (tmp_path / "cache" / schema.FIELDS_CACHE_FILE).write_bytes(b"cut sh")
    monkeypatch.undo()
    monkeypatch.setenv("PHI3TUI_CACHE_DIR", str(tmp_path / "cache"))
    assert schema.saved_config_fields() is None  # unreadable: computed again, never an error


def test_a_fresh_process_reads_the_saved_fields_without_importing_mlx_lm(tmp_path):
    env = dict(os.environ, PHI3TUI_CACHE_DIR=str(tmp_path / "cache"))
    code = textwrap.dedent("""
        import sys
        from phi3tui.core.config import config_fields, save_config_fields, saved_config_fields
        if sys.argv[1] == "save":
            save_config_fields(config_fields())
        else:
            fields = saved_config_fields()
            print(len(fields), "mlx_lm" in sys.modules, "transformers" in sys.modules)
    """)
    subprocess.run([sys.executable, "-c", code, "save"], env=env, check=True, timeout=300)
    done = subprocess.run([sys.executable, "-c", code, "read"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    count, mlx_lm, transformers = done.stdout.split()
    assert int(count) > 30 and mlx_lm == "False" and transformers == "False"
