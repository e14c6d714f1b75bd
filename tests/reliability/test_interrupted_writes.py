"""Temporaries of interrupted writes (issue 22, case 10): a writer killed mid-write (a GGUF export, a fuse) leaves
its `.tmp-*.partial` behind; the next write into the same folder removes it, never a live writer's, and such a
file is never taken for an export."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phi3tui.core.files import STALE_WITHOUT_PID_S, atomic_write_text

WRITER = """
import sys, time
from pathlib import Path
from phi3tui.core.files import atomic_output_dir, atomic_output_file

dest, kind = Path(sys.argv[1]), sys.argv[2]
output = atomic_output_file(dest, force=True) if kind == "file" else atomic_output_dir(dest, force=True)
with output as tmp:
    if kind == "file":
        with open(tmp, "wb") as handle:
            handle.write(b"GGUF" + b"x" * 1_000_000)
    else:
        (tmp / "model.safetensors").write_bytes(b"x" * 1000)
    print(tmp, flush=True)
    time.sleep(600)  # killed here, mid-write
"""


def start_writer(dest: Path, kind: str) -> tuple[subprocess.Popen, Path]:
    """A real process writing `dest` through the atomic writer, stopped mid-write; (process, its temporary)."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(dest), kind], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    line = proc.stdout.readline().strip()
    assert line, f"the writer died before writing (exit {proc.wait()})"
    return proc, Path(line)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_next_write_removes_a_killed_writers_temporary_and_keeps_a_live_ones(tmp_path, kind):
    exports = tmp_path / "exports" / "demo"
    exports.mkdir(parents=True)
    name = "demo-f16.gguf" if kind == "file" else "fused"
    dead, dead_tmp = start_writer(exports / name, kind)
    kill(dead)
    assert dead_tmp.exists() and dead_tmp.parent == exports  # SIGKILL leaves it: nothing can clean up then
    assert not (exports / name).exists()
    live, live_tmp = start_writer(exports / f"other-{name}", kind)
    try:
        # Never an export: hidden, and not named like one, so the listings by pattern (glob.glob of `*`,
        # `model*.safetensors`, `*.gguf`) do not see it.
        assert dead_tmp.name.startswith(".") and not glob.glob(str(exports / "*"))
        assert not list(exports.glob("*.gguf")) and not list(exports.glob("model*"))
        atomic_write_text(exports / "verify.json", "{}")  # the next write into the same folder
        assert not dead_tmp.exists(), "the killed writer's temporary file is still there"
        assert live_tmp.exists(), "a live writer's temporary file was removed"
        assert sorted(p.name for p in exports.iterdir()) == sorted([live_tmp.name, "verify.json"])
    finally:
        kill(live)
    atomic_write_text(exports / "verify.json", "{}")
    assert sorted(p.name for p in exports.iterdir()) == ["verify.json"]


def test_temporaries_without_a_pid_are_removed_only_when_old(tmp_path):
    """Names from before the pid was written: removed once nothing has written them for a day."""
    old = tmp_path / ".tmp-model.gguf.k2j3h4_1.partial"
    fresh = tmp_path / ".tmp-model.gguf.a8b7c6d5.partial"
    other = tmp_path / ".tmp-notes.txt"  # not the writer's name pattern: not ours to remove
    for path in (old, fresh, other):
        path.write_bytes(b"x")
    past = time.time() - STALE_WITHOUT_PID_S - 60
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    atomic_write_text(tmp_path / "a.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, other.name, "a.json"])
