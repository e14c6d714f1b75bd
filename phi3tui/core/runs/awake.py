"""Keeping the machine awake while a run lives: the one place that picks how, per platform.

A Mac that idle-sleeps (the usual case for one reached over SSH) pauses every process, the run with it.
On macOS the runner is watched by `caffeinate -i -w PID`, which holds an idle-sleep assertion until PID
exits. On Linux `systemd-inhibit` takes a logind sleep/idle inhibitor lock for a holder that ends with
the runner (`tail --pid=PID`). Elsewhere, or with `keep_awake: off`, nothing is held, and run.json says why.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass

from phi3tui.core.settings import KEEP_AWAKE_MODES

__all__ = ["KEEP_AWAKE_MODES", "AwakePlan", "keep_awake_plan", "start_keep_awake"]


MAC_CAFFEINATE = "/usr/bin/caffeinate"  # ships with macOS


@dataclass(frozen=True)
class AwakePlan:
    command: list[str] | None  # None: nothing keeps the machine awake
    how: str  # for run.json, the Train screen and `runs status`: what holds it, or why nothing does


def keep_awake_plan(pid: int, mode: str = "auto", platform: str | None = None, which=shutil.which,
                    why: str = "a phi3tui training run") -> AwakePlan:
    """The command that keeps this machine awake for as long as process `pid` lives, on `platform`
    (sys.platform by default; any value can be asked for, so the choice is testable anywhere)."""
    platform = platform or sys.platform
    if mode == "off":
        return AwakePlan(None, "nothing: keep_awake is off")
    if platform == "darwin":
        # The system's own, by absolute path: a `caffeinate` earlier on PATH could be anything.
        return AwakePlan([MAC_CAFFEINATE, "-i", "-w", str(pid)], f"caffeinate -i -w {pid} (idle sleep prevented)")
    if platform.startswith("linux"):
        inhibit, tail = which("systemd-inhibit"), which("tail")
        if not inhibit:
            return AwakePlan(None, "nothing: systemd-inhibit is not installed")
        if not tail:
            return AwakePlan(None, "nothing: tail (coreutils) is not installed to tie the lock to the run")
        command = [inhibit, "--what=sleep:idle", "--who=phi3tui", f"--why={why}", "--mode=block",
                   tail, f"--pid={pid}", "-f", "/dev/null"]
        return AwakePlan(command, f"systemd-inhibit --what=sleep:idle (until pid {pid} ends)")
    return AwakePlan(None, f"nothing: no way to keep {platform} awake is known")


def start_keep_awake(plan: AwakePlan, settle_s: float = 0.3) -> tuple[subprocess.Popen | None, str]:
    """Start the plan's holder. Returns (the process, what run.json should say). A holder that cannot
    run or that ends at once (systemd-inhibit without logind) keeps nothing awake: that is said, not hidden."""
    if plan.command is None:
        return None, plan.how
    try:
        proc = subprocess.Popen(plan.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    except OSError as exc:
        return None, f"nothing: {plan.command[0]} could not start ({exc.strerror or exc})"
    try:
        proc.wait(timeout=settle_s)
    except subprocess.TimeoutExpired:
        proc.stderr.close()  # running: it holds the lock until the run ends
        return proc, plan.how
    err = proc.stderr.read().decode("utf-8", errors="replace").strip().splitlines()
    proc.stderr.close()
    detail = err[-1] if err else f"exit status {proc.returncode}"
    return None, f"nothing: {plan.command[0].rsplit('/', 1)[-1]} refused ({detail})"
