"""core.files: the one atomic write (fsynced, all or nothing, umask modes, no unasked overwrite) and quoted commands."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phi3tui.core.files import (
    WriteRefused,
    atomic_output_dir,
    atomic_output_file,
    atomic_write_text,
    replacing,
    shell_command,
)


def run_python(code: str, *, umask: int | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (optionally under a umask set before phi3tui is imported)."""
    prefix = f"import os; os.umask({umask:#o})\n" if umask is not None else ""
    return subprocess.run([sys.executable, "-c", prefix + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))


# -- fsync ------------------------------------------------------------------------------------------

_OPEN = re.compile(r'^(\d+)\s+openat\(AT_FDCWD, "([^"]+)", [^)]*\) = (\d+)')
_FSYNC = re.compile(r"^(\d+)\s+fsync\((\d+)\)\s+= 0")
_WRITE = re.compile(r"^(\d+)\s+write\((\d+),")
_RENAME = re.compile(r'^(\d+)\s+rename(?:at2?)?\((?:AT_FDCWD, )?"([^"]+)", (?:AT_FDCWD, )?"([^"]+)"')


def _events(trace: str) -> list[tuple[str, str, str]]:
    """(kind, path, other path) in order: open/write/fsync name the file their descriptor was opened on."""
    fds: dict[tuple[str, str], str] = {}
    events = []
    for line in trace.splitlines():
        if m := _OPEN.match(line):
            fds[(m[1], m[3])] = m[2]
        elif m := _FSYNC.match(line):
            events.append(("fsync", fds.get((m[1], m[2]), "?"), ""))
        elif m := _WRITE.match(line):
            events.append(("write", fds.get((m[1], m[2]), "?"), ""))
        elif m := _RENAME.match(line):
            events.append(("rename", m[2], m[3]))
    return events


def _check_durable(events, dest: Path) -> None:
    """The temp file is written, then fsynced, then renamed onto dest, then dest's folder is fsynced."""
    renames = [i for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(dest)]
    assert renames, f"nothing was renamed onto {dest}: {events}"
    i = renames[-1]
    tmp = events[i][1]
    assert Path(tmp).parent == dest.parent and Path(tmp).name.startswith(".tmp-"), tmp
    synced = [j for j, e in enumerate(events[:i]) if e == ("fsync", tmp, "")]
    assert synced, f"{tmp} was renamed onto {dest} without an fsync"
    written = [j for j, e in enumerate(events[:i]) if e[0] == "write" and e[1] == tmp]
    assert not written or written[-1] < synced[-1], f"{tmp} was written after its fsync"
    assert ("fsync", str(dest.parent), "") in events[i + 1:], f"{dest.parent} was not fsynced after the rename"


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed: the fsync calls cannot be seen")
def test_every_kind_of_write_is_fsynced_before_its_rename_and_the_folder_after(tmp_path):
    (tmp_path / "source.bin").write_bytes(b"s" * 5000)
    (tmp_path / "copy.bin").write_bytes(b"old")
    script = tmp_path / "writes.py"
    script.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from phi3tui.core.files import atomic_copy, atomic_output_dir, atomic_output_file, atomic_write_text
        root = Path({str(tmp_path)!r})
        atomic_write_text(root / "run.json", "{{}}")
        atomic_copy(root / "source.bin", root / "copy.bin")
        with atomic_output_file(root / "out" / "m.gguf") as tmp:
            tmp.write_bytes(b"gguf" * 1000)
        with atomic_output_dir(root / "fused") as tmp:
            (tmp / "config.json").write_text("{{}}")
    """))
    log = tmp_path / "trace.txt"
    proc = subprocess.run(["strace", "-f", "-qq", "-o", str(log), "-e", "trace=openat,write,fsync,rename,renameat,renameat2",
                           sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    events = _events(log.read_text())
    for dest in (tmp_path / "run.json", tmp_path / "copy.bin", tmp_path / "out" / "m.gguf"):
        _check_durable(events, dest)
    assert (tmp_path / "copy.bin").read_bytes() == b"s" * 5000
    # the folder: its file is fsynced before the folder is renamed into place
    fused = tmp_path / "fused"
    i = max(i for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(fused))
    inner = Path(events[i][1]) / "config.json"
    assert ("fsync", str(inner), "") in events[:i], f"{inner} was not fsynced before its folder became {fused}"
    assert ("fsync", str(tmp_path), "") in events[i + 1:]


# -- all or nothing ---------------------------------------------------------------------------------


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary_file(tmp_path):
    dest = tmp_path / "run.json"
    dest.write_text("old")
    with pytest.raises(RuntimeError, match="midway"), replacing(dest) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed midway")
    assert dest.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_full_disk_leaves_the_old_file_whole(tmp_path):
    # A real short write: the file-size limit makes the kernel refuse the write part way (EFBIG).
    dest = tmp_path / "metrics.json"
    dest.write_text("old content")
    proc = run_python(f"""
        import errno, resource, signal
        from phi3tui.core.files import atomic_write_bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            atomic_write_bytes({str(dest)!r}, b"n" * 100_000)
        except OSError as exc:
            print("refused", errno.errorcode[exc.errno])
    """)
    assert proc.stdout.strip() == "refused EFBIG", proc.stderr
    assert dest.read_text() == "old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_failed_output_says_why_and_leaves_nothing(tmp_path):
    dest = tmp_path / "exports" / "phi3-x" / "m.gguf"
    proc = run_python(f"""
        import resource, signal
        from phi3tui.core.files import WriteRefused, atomic_output_file
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            with atomic_output_file({str(dest)!r}) as tmp:
                tmp.write_bytes(b"g" * 100_000)
        except WriteRefused as exc:
            print(exc)
    """)
    assert proc.stdout.startswith(f"cannot write {dest}:"), proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == [], "the failed output left files or the folders it made"


def test_a_failed_folder_output_keeps_the_old_folder(tmp_path):
    dest = tmp_path / "fused"
    dest.mkdir()
    (dest / "config.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_output_dir(dest, force=True) as tmp:
        (tmp / "config.json").write_text("new")
        raise RuntimeError("the save died")
    assert (dest / "config.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused"]
    with atomic_output_dir(dest, force=True) as tmp:
        (tmp / "model.safetensors").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused"]


# -- modes ------------------------------------------------------------------------------------------


def test_new_files_and_folders_follow_the_umask_and_replaced_files_keep_their_mode(tmp_path):
    kept = tmp_path / "private.yaml"
    kept.write_text("old")
    kept.chmod(0o600)
    proc = run_python(f"""
        from pathlib import Path
        from phi3tui.core.files import atomic_output_dir, atomic_output_file, atomic_write_text
        root = Path({str(tmp_path)!r})
        atomic_write_text(root / "new.yaml", "a")
        atomic_write_text(root / "private.yaml", "b")
        with atomic_output_file(root / "m.gguf") as tmp:
            tmp.write_bytes(b"g")
        with atomic_output_dir(root / "fused") as tmp:
            (tmp / "config.json").write_text("{{}}")
    """, umask=0o027)
    assert proc.returncode == 0, proc.stderr

    def mode(name):
        return stat.S_IMODE((tmp_path / name).stat().st_mode)

    assert (mode("new.yaml"), mode("m.gguf"), mode("fused"), mode("private.yaml")) == (0o640, 0o640, 0o750, 0o600)
    assert kept.read_text() == "b"


# -- never overwrite unasked ------------------------------------------------------------------------


class OtherError(Exception):
    pass


def test_outputs_are_not_overwritten_without_force(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"old")
    with pytest.raises(WriteRefused, match=r"m\.gguf: file exists; pass --force"), atomic_output_file(gguf) as tmp:
        tmp.write_bytes(b"new")
    with pytest.raises(OtherError), atomic_output_file(gguf, error=OtherError):  # the caller's own error kind
        pass
    assert gguf.read_bytes() == b"old"
    fused = tmp_path / "fused"
    fused.mkdir()
    (fused / "config.json").write_text("{}")
    with pytest.raises(WriteRefused, match="folder is not empty"), atomic_output_dir(fused):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused", "m.gguf"]
    with atomic_output_file(gguf, force=True) as tmp:
        tmp.write_bytes(b"new")
    assert gguf.read_bytes() == b"new"
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_output_dir(empty) as tmp:  # an empty folder holds nothing to lose
        (tmp / "a").write_text("a")
    assert (empty / "a").read_text() == "a"


def test_plain_atomic_writes_replace_in_place(tmp_path):
    path = tmp_path / "settings.toml"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.toml"]


# -- printed commands -------------------------------------------------------------------------------


def test_printed_commands_survive_paths_with_spaces(tmp_path):
    from phi3tui.core.export.ollama import create_commands

    modelfile = tmp_path / "My Workspace" / "exports" / "phi3 ft" / "Modelfile"
    cd, create, run = create_commands(modelfile, "phi3-ft", "q4_K_M", prompt='Say "hi" (it\'s a test)')
    assert shlex.split(cd) == ["cd", str(modelfile.parent)]
    assert shlex.split(create) == ["ollama", "create", "phi3-ft", "-f", "Modelfile", "--quantize", "q4_K_M"]
    assert shlex.split(run) == ["ollama", "run", "phi3-ft", 'Say "hi" (it\'s a test)']
    assert shlex.split(shell_command("mlx_lm", "lora", "--data", tmp_path / "a b")) == ["mlx_lm", "lora", "--data",
                                                                                        f"{tmp_path}/a b"]


def test_config_check_prints_a_migrate_command_that_pastes(tmp_path):
    from tests.conftest import run_cli

    folder = tmp_path / "My Fine Tune"
    folder.mkdir()
    config = folder / "lora_config.yaml"
    config.write_text("model: microsoft/Phi-3-mini-4k-instruct\ntrain: true\ndata: data\nlora_layers: 4\n")
    proc = run_cli("config", "check", str(config), env={"HF_HUB_OFFLINE": "1"})
    lines = [line for line in proc.stdout.splitlines() if "config migrate" in line]
    assert lines, proc.stdout + proc.stderr
    command = re.search(r"`([^`]+)`", lines[0])[1]
    assert shlex.split(command) == ["phi3tui", "config", "migrate", str(config), "--write"]
