"""Harness of the reliability suite: tree snapshots, CLI refusals, the app on a bad workspace, mounts."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

# What a message says when it tells the user what to do: an imperative verb (a whole word, at the start of a
# clause) followed by its object ("; fix the line", "(use 4 or -1 for all)", "hint: run `phi3tui demo`"), or the
# rule a value must meet ("it must be a whole number"). A noun that happens to be spelled like a verb ("run
# 20261201-…", "the run failed", "checkpoint") is not advice.
ADVICE_VERBS = ("add", "change", "check", "choose", "convert", "copy", "create", "delete", "download", "edit", "fill",
                "fix", "free", "give", "install", "lower", "make", "move", "open", "pass", "pick", "point", "put",
                "raise", "re-download", "rename", "remove", "replace", "rerun", "restore", "resume", "run", "save",
                "set", "start", "try", "turn", "upgrade", "use", "wait", "write")
ADVICE = re.compile(
    r"(?:^|[;:.,!?(—–]\s*|\s-\s|\b(?:or|then|and|please|first|instead|you can)\s+)"
    r"(?:" + "|".join(map(re.escape, ADVICE_VERBS)) + r")\s+(?!\d{8}-)[\w\"'`/.$~<{-]"
    r"|\bmust be\s+\w",
    re.IGNORECASE | re.MULTILINE,
)


def says_what_to_do(message: str) -> bool:
    return ADVICE.search(message) is not None


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind, size, mtime and sha256: equal snapshots mean nothing changed."""
    found: dict[str, tuple] = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            p = Path(dirpath) / name
            found[str(p.relative_to(root))] = ("dir",)
        for name in filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            found[str(p.relative_to(root))] = ("file", st.st_size, st.st_mtime_ns, digest)
    return found


def assert_unchanged(before: dict, after: dict) -> None:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), f"files changed: added {added}, removed {removed}, changed {changed}"


@dataclass
class Refusal:
    returncode: int
    output: str


def assert_refused(result, *expected: str, codes=(1, 2)) -> Refusal:
    """The CLI said no the way a person needs: a non-zero exit, no traceback, the place named, advice given."""
    output = (result.stdout or "") + (result.stderr or "")
    assert "Traceback" not in output, output[-3000:]
    assert result.returncode in codes, f"exit {result.returncode}, expected one of {codes}:\n{output[-3000:]}"
    for text in expected:
        assert text in output, f"{text!r} not in the message:\n{output[-3000:]}"
    assert says_what_to_do(output), f"the message says nothing to do:\n{output[-3000:]}"
    return Refusal(result.returncode, output)


def refuse_cli(root: Path, *args: str, expected=(), codes=(1, 2), cwd: Path | None = None, env=None, timeout=120) -> Refusal:
    """Run `phi3tui ARGS` in a subprocess on a bad input under root; assert the refusal and an unchanged root."""
    before = snapshot(root)
    result = run_cli(*args, cwd=cwd, env=env, timeout=timeout)
    refusal = assert_refused(result, *expected, codes=codes)
    assert_unchanged(before, snapshot(root))
    return refusal


def screen_text(app) -> str:
    """What the current screen shows, as text (every widget's render, including scrolled-out lines)."""
    parts = []
    for widget in app.screen.walk_children(with_self=True):
        try:
            parts.append(str(widget.render()))
        except Exception:  # some widgets render only when mounted with a size
            continue
        for attr in ("text", "value"):  # TextArea / Input content
            value = getattr(widget, attr, None)
            if isinstance(value, str):
                parts.append(value)
    return "\n".join(parts)


async def open_app_on(workspace: Path, mode: str, expected: str | None = None, settle: float = 6.0) -> str:
    """Open the app at 80×24 on a bad workspace, visit `mode`, wait for `expected` on screen; the app stays up."""
    import asyncio
    import time

    from phi3tui.app import Phi3App
    from phi3tui.core.workspace import Workspace

    app = Phi3App(Workspace.open(workspace), start_mode=mode)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = ""
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            await pilot.pause(0.2)
            text = screen_text(app) + "\n" + "\n".join(str(n) for n in _notifications(app))
            if expected is None or expected in text:
                break
        assert app.is_running, "the app stopped"
        assert app.current_mode == mode
        assert app.return_code is None
        if expected is not None:
            assert expected in text, f"{expected!r} not shown on the {mode} screen:\n{text[-3000:]}"
        await asyncio.sleep(0)
    return text


def _notifications(app):
    try:
        return [n.message for n in app._notifications]
    except AttributeError:
        return []


@pytest.fixture
def bad_workspace(demo_template, tmp_path) -> Path:
    """A copy of the demo workspace without runs/exports (fast to copy and to snapshot)."""
    target = tmp_path / "ws"
    shutil.copytree(demo_template, target, ignore=shutil.ignore_patterns("runs", "exports"))
    return target


@pytest.fixture(scope="session")
def trained_template(demo_template, tmp_path_factory) -> Path:
    """The demo workspace after one short finished run (its adapters), built once."""
    from phi3tui.core.runs.launcher import start_run, wait_for_run
    from phi3tui.core.workspace import Workspace

    root = tmp_path_factory.mktemp("trained") / "ws"
    shutil.copytree(demo_template, root, ignore=shutil.ignore_patterns("runs", "exports"))
    run_dir = start_run(Workspace.open(root), overrides={"iters": 10, "steps_per_eval": 5, "save_every": 5})
    info = wait_for_run(run_dir, timeout=240)
    assert info["state"] == "finished", (run_dir / "log.txt").read_text()[-2000:]
    return root


@pytest.fixture
def trained_workspace(trained_template, tmp_path) -> Path:
    target = tmp_path / "ws"
    shutil.copytree(trained_template, target)
    return target


def _mount(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@pytest.fixture
def small_tmpfs(tmp_path):
    """Mount a tmpfs on a fresh folder: yield a function (size) -> path, unmount afterwards."""
    if sys.platform != "linux" or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs Linux and mount(8)")
    mounted: list[Path] = []

    def make(size: str = "4m", at: Path | None = None) -> Path:
        point = at or tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
        point.mkdir(exist_ok=True)
        result = _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)])
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def remount_read_only(point: Path) -> None:
    result = _mount(["-o", "remount,ro", str(point)])
    if result.returncode != 0:
        pytest.skip(f"cannot remount read-only here: {result.stderr.strip()}")


__all__ = ["REPO", "assert_refused", "assert_unchanged", "open_app_on", "refuse_cli", "remount_read_only",
           "says_what_to_do", "screen_text", "snapshot"]
