"""The only atomic write or replace of a file or folder, the disk-error messages, and paths said as shell commands.

Every write goes to a temporary name in the destination's own folder (a rename never crosses file
systems), is flushed and fsynced, then `os.replace`d over the destination, and the folder is fsynced
so the rename itself survives a power cut. A crash, a kill or a full disk leaves either the old file or
the new one, never half of either, and no temporary file behind (a SIGKILL can leave one: its name
starts with `.tmp-`, so it is hidden and never mistaken for the real file, and it carries its writer's
process id, so the next write into the same folder removes it once that process is gone).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

TEMP_PREFIX = ".tmp-"
# `.tmp-<name>.<pid>-<random>.partial[<suffix>]`; names without a pid come from phi3tui before it wrote one.
_TEMP_NAME = re.compile(r"^\.tmp-.+?\.(?:(\d+)-)?[a-z0-9_]+\.partial(?:\.[^.]*)?$")
# A temporary without a writer's pid is removed only when nothing has written to it for this long.
STALE_WITHOUT_PID_S = 24 * 3600


class WriteRefused(Exception):
    """An output that exists and was not to be replaced, or a write that failed. str() says what to do."""


# -- disk errors ------------------------------------------------------------------------------------


def disk_error_message(exc: OSError, path: Path | str) -> str:
    """A write that failed, said the way a person can act on: disk full, read-only, no permission."""
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"cannot write {path}: the disk is full; free some space or choose another output folder, then try again"
    if code == errno.EROFS:
        return f"cannot write {path}: the file system is read-only; choose another output folder"
    if code in (errno.EACCES, errno.EPERM):
        return f"cannot write {path}: permission denied; choose a folder you can write to"
    return f"cannot write {path}: {exc.strerror or exc}; check the folder and try again"


# -- shell commands shown to a person ---------------------------------------------------------------


def shell_command(*argv: object) -> str:
    """One command line a person can paste: every part quoted for the shell (Mac paths have spaces)."""
    import shlex  # here: the app's start-up does not need it

    return shlex.join(str(part) for part in argv)


# -- the atomic write -------------------------------------------------------------------------------


def _read_umask() -> int:
    # os.umask can only be read by setting it: done once at import, before any worker thread makes files.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK_AT_START = _read_umask()


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _UMASK_AT_START


def full_fsync(fd: int) -> None:
    """Flush a file (or folder) to the disk itself. On macOS fsync only reaches the drive's cache: APFS needs
    fcntl F_FULLFSYNC for a checkpoint to survive a power cut; where that is refused, fsync."""
    if sys.platform == "darwin":
        import fcntl

        command = getattr(fcntl, "F_FULLFSYNC", None)
        if command is not None:
            try:
                fcntl.fcntl(fd, command)
                return
            except OSError:  # a file system without it (network, FAT): fsync is what there is
                pass
    os.fsync(fd)


def _fsync_path(path: Path) -> None:
    with open(path, "rb") as handle:
        full_fsync(handle.fileno())


def fsync_folder(folder: Path | str) -> None:
    """Make a rename inside `folder` durable; a no-op where the OS cannot open or fsync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        full_fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # another user's live process (or a number no process can have)
    return True


def stale_temporaries(folder: Path | str) -> list[Path]:
    """The temporaries of interrupted writes in `folder`: made by this module, whose writer process is
    gone (or, for names without a pid, untouched for STALE_WITHOUT_PID_S). A live writer's are never here."""
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None:
            continue
        if match.group(1) is not None:
            stale = not _process_alive(int(match.group(1)))
        else:
            try:
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_WITHOUT_PID_S
            except OSError:
                continue
        if stale:
            found.append(Path(entry.path))
    return found


def remove_stale_temporaries(folder: Path | str) -> list[Path]:
    """Remove what stale_temporaries finds (a failure to remove one is left for the next write)."""
    removed = []
    for path in stale_temporaries(folder):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue  # another writer removed it first
        except OSError:
            continue
        removed.append(path)
    return removed


def _temp_prefix(dest: Path) -> str:
    # The pid lets a later write tell a dead writer's temporary (removed) from a live one's (kept).
    remove_stale_temporaries(dest.parent)
    return f"{TEMP_PREFIX}{dest.name}.{os.getpid()}-"


def _make_file(dest: Path, keep_suffix: bool = False) -> Path:
    # keep_suffix: for writers that insist on an extension (mx.save_safetensors appends one otherwise).
    suffix = f".partial{dest.suffix}" if keep_suffix else ".partial"
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(dest), suffix=suffix, dir=dest.parent)
    os.close(fd)
    return Path(name)


def _commit_file(tmp: Path, dest: Path) -> None:
    _fsync_path(tmp)
    # mkstemp makes 0600 files: keep the replaced file's mode, or give the usual umask-based one.
    os.chmod(tmp, dest.stat().st_mode & 0o7777 if dest.exists() else 0o666 & ~current_umask())
    os.replace(tmp, dest)


@contextlib.contextmanager
def replacing(path: Path | str, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it becomes `path`, on any failure it is removed."""
    path = Path(path)
    tmp = _make_file(path, keep_suffix)
    try:
        yield tmp
        _commit_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: Path | str, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding))


def atomic_copy(source: Path | str, dest: Path | str) -> None:
    """Copy `source` over `dest` so `dest` is always the old file or the whole new one."""
    with replacing(dest, keep_suffix=True) as tmp:
        shutil.copyfile(source, tmp)


# -- outputs that must not be overwritten unasked ---------------------------------------------------


def is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def refuse_overwrite(path: Path, force: bool, what: str = "", error: type[Exception] = WriteRefused) -> None:
    """Raise `error` unless `path` is free (or an empty folder), or force is set."""
    if force:
        return
    if path.is_file() or is_nonempty_dir(path):
        kind = "folder is not empty" if path.is_dir() else "file exists"
        raise error(f"{path}: {what + ' ' if what else ''}{kind}; pass --force to replace it (or choose another output)")


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it made (deepest last), so a failed write can take them back."""
    missing = [p for p in [folder, *folder.parents] if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _remove_empty(made: list[Path]) -> None:
    # A failed output leaves no empty folders behind: nothing on disk changes.
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            break


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, names in os.walk(root):
        for name in names:
            _fsync_path(Path(folder, name))
        fsync_folder(folder)


@contextlib.contextmanager
def _output(dest: Path, force: bool, error: type[Exception], make: Callable[[Path], Path],
            commit: Callable[[Path, Path], None], discard: Callable[[Path], None]) -> Iterator[Path]:
    refuse_overwrite(dest, force, error=error)
    try:
        made = _make_parents(dest.parent)
        tmp = make(dest)
    except OSError as exc:
        raise error(disk_error_message(exc, dest)) from None
    try:
        yield tmp
        commit(tmp, dest)
    except BaseException as exc:
        discard(tmp)
        _remove_empty(made)
        if isinstance(exc, OSError):  # disk full, read-only: the destination is untouched; say so
            raise error(disk_error_message(exc, dest)) from None
        raise
    fsync_folder(dest.parent)


def _make_dir(dest: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=_temp_prefix(dest), suffix=".partial", dir=dest.parent))


def _commit_dir(tmp: Path, dest: Path) -> None:
    _fsync_tree(tmp)
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
    if not dest.exists():
        os.replace(tmp, dest)
        return
    # A folder cannot be renamed over a non-empty one: move the old aside first, then drop it.
    old = dest.with_name(f"{TEMP_PREFIX}{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _discard_dir(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)


def atomic_output_file(
    dest: Path | str, force: bool = False, error: type[Exception] = WriteRefused,
) -> contextlib.AbstractContextManager[Path]:
    """A context manager: a temporary path beside `dest` that becomes `dest` on success and is removed on failure.

    Refuses (raises `error`) when `dest` exists and force is not set; a failed write raises `error` with
    the disk-error message, and leaves `dest` as it was and no folder that the write made.
    """
    return _output(Path(dest), force, error, _make_file, _commit_file, lambda tmp: tmp.unlink(missing_ok=True))


def atomic_output_dir(
    dest: Path | str, force: bool = False, error: type[Exception] = WriteRefused,
) -> contextlib.AbstractContextManager[Path]:
    """Like atomic_output_file, for a folder: the temporary folder replaces `dest` whole on success."""
    return _output(Path(dest), force, error, _make_dir, _commit_dir, _discard_dir)
