"""Keeping the machine awake while a run lives: the one place that picks how, per platform.

A Mac that idle-sleeps (the usual case for one reached over SSH) pauses every process, the run with it.
On macOS the runner is watched by `caffeinate -i -w PID`, which holds an idle-sleep assertion until PID
exits. On Linux `systemd-inhibit` takes a logind sleep/idle inhibitor lock for a holder that ends with
the runner (`tail --pid=PID`). Elsewhere, or with `keep_awake: off`, nothing is held, and run.json says why.

What caffeinate cannot hold is said too: a MacBook sleeps when its lid closes on battery power (closed-lid running
needs power and an external display) and when its battery runs out, whatever assertion is held. The runner reads
the power state (`pmset -g batt`, `ioreg`, by absolute path) and run.json keeps what it found (awake_limits).
In-app long jobs (export, verify, eval, batch compare) hold the same assertion through `kept_awake`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass

from phi3tui.core.machine import MAC_IOREG
from phi3tui.core.settings import KEEP_AWAKE_MODES

__all__ = ["KEEP_AWAKE_MODES", "AwakePlan", "MacPower", "awake_limits", "keep_awake_plan", "kept_awake",
           "read_mac_power", "start_keep_awake"]


MAC_CAFFEINATE = "/usr/bin/caffeinate"  # ships with macOS
MAC_PMSET = "/usr/bin/pmset"  # ships with macOS
LOW_BATTERY_PERCENT = 20  # at or under this, discharging: the Mac is about to sleep for its battery
POWER_CHECK_S = 60  # how often the runner looks at the power state again (a lid closes, a cable comes out)


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


@contextmanager
def kept_awake(why: str, mode: str | None = None, platform: str | None = None, which=shutil.which):
    """Hold the keep-awake assertion while an in-app job runs (export, verify, eval, batch compare): the same
    holder a run takes, tied to this process and ended with the job. Yields what holds the machine (or why
    nothing does). mode: auto | off (None: the keep_awake setting)."""
    if mode is None:
        from phi3tui.core.settings import load_settings

        mode = load_settings().settings.keep_awake
    holder, how = start_keep_awake(keep_awake_plan(os.getpid(), mode, platform=platform, which=which, why=why))
    try:
        yield how
    finally:
        if holder is not None:
            holder.terminate()
            holder.wait()


@dataclass(frozen=True)
class MacPower:
    """A Mac's power as pmset and ioreg report it."""

    battery: bool  # an internal battery: a MacBook
    on_battery: bool  # drawing from the battery (no power cable)
    percent: int | None = None
    discharging: bool = False
    lid_closed: bool | None = None  # AppleClamshellState; None: not reported


def _tool_output(command: list[str], timeout: float) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def read_mac_power(pmset: str = MAC_PMSET, ioreg: str = MAC_IOREG, timeout: float = 5) -> MacPower | None:
    """The power state from `pmset -g batt` and `ioreg -r -k AppleClamshellState -d 1` (tools by absolute path;
    tests name fakes). None when pmset cannot be read (not a Mac, a sandbox)."""
    batt = _tool_output([pmset, "-g", "batt"], timeout)
    if batt is None:
        return None
    source = re.search(r"drawing from '([^']+)'", batt)
    cell = re.search(r"InternalBattery[^\t\n]*\t\s*(\d+)%;\s*([a-zA-Z ]+);", batt)
    lid = None
    clamshell = _tool_output([ioreg, "-r", "-k", "AppleClamshellState", "-d", "1"], timeout)
    if clamshell:
        state = re.search(r'"AppleClamshellState"\s*=\s*(Yes|No)', clamshell)
        lid = None if state is None else state[1] == "Yes"
    return MacPower(
        battery=cell is not None,
        on_battery=bool(source) and source[1] == "Battery Power",
        percent=int(cell[1]) if cell else None,
        discharging=bool(cell) and cell[2].strip() == "discharging",
        lid_closed=lid,
    )


def awake_limits(power: MacPower | None) -> tuple[str, list[str]]:
    """(a short word for what is at risk now, or "" when nothing is; the limits to say, each a sentence) of keeping
    this Mac awake with caffeinate, from its power state. A desktop Mac (no battery) has none."""
    if power is None or not power.battery:
        return "", []
    limits, risk = [], ""
    if power.on_battery and power.lid_closed:
        risk = "lid closed on battery"
        limits.append("the lid is closed on battery power: a closed MacBook without power sleeps whatever "
                      "caffeinate holds; plug in power (closed-lid running also needs an external display)")
    elif power.on_battery:
        risk = "on battery"
        limits.append("on battery power: closing the lid sleeps this MacBook whatever caffeinate holds; plug in "
                      "power before closing it (closed-lid running also needs an external display)")
    else:
        limits.append("closing the lid sleeps this MacBook unless it has power and an external display")
    if power.percent is not None and power.discharging and power.percent <= LOW_BATTERY_PERCENT:
        risk = "battery low"
        limits.append(f"the battery is at {power.percent}% and discharging: the Mac sleeps when it runs out, "
                      "whatever caffeinate holds; plug in power")
    return risk, limits


def record_awake_limits(run_dir, last=None, pmset: str = MAC_PMSET, ioreg: str = MAC_IOREG):
    """Read the power state and, when what is at risk changed since `last`, keep it in run.json (awake_risk,
    awake_limits) for the Train screen and `runs status`. Returns what was found, the next call's `last`."""
    from phi3tui.core.run_folder import update_run_json

    found = awake_limits(read_mac_power(pmset, ioreg))
    if found != last:
        risk, limits = found
        update_run_json(run_dir, awake_risk=risk or None, awake_limits=limits)
    return found


def watch_power(run_dir, stop, every: float = POWER_CHECK_S, pmset: str = MAC_PMSET, ioreg: str = MAC_IOREG) -> None:
    """The runner's power watch (a thread of its supervisor, on a Mac): record_awake_limits now and every `every`
    seconds until the event `stop` is set."""
    last = None
    while True:
        try:
            last = record_awake_limits(run_dir, last, pmset, ioreg)
        except OSError:  # run.json unwritable for a moment: the next look tries again
            pass
        if stop.wait(every):
            return
