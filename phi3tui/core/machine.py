"""Facts about this machine that runs depend on: a stable id, and how much memory MLX may use.

macOS renames the host when the network changes (`name.local`, `name-2.local`), so a run's liveness is
judged by a machine id kept beside the host name, never by the name alone. The memory MLX can use on a
Mac is Metal's recommended working set, not the total RAM; where MLX has none (the CPU build), total RAM.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from phi3tui.core.files import atomic_write_text

MACHINE_ID_FILE = "machine-id"
WORKING_SET_KEY = "max_recommended_working_set_size"
MAC_IOREG = "/usr/sbin/ioreg"  # by absolute path: the system's own, whatever PATH holds
# What MLX may use, in GB, as another machine would report it: plan a run for a smaller Mac (or fake one in tests).
WORKING_SET_ENV = "PHI3TUI_WORKING_SET_GB"


def _system_machine_id() -> str | None:
    if sys.platform == "darwin":
        try:
            out = subprocess.run([MAC_IOREG, "-rd1", "-c", "IOPlatformExpertDevice"], capture_output=True,
                                 text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        for line in out.splitlines():
            if "IOPlatformUUID" in line:
                return line.split("=", 1)[-1].strip().strip('"') or None
        return None
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    return None


@functools.lru_cache(maxsize=1)
def machine_id() -> str:
    """This machine's id: the OS's own (IOPlatformUUID, /etc/machine-id), else one made once and kept
    in phi3tui's config folder. Never the host name."""
    found = _system_machine_id()
    if found:
        return found
    from phi3tui.core.settings import config_dir

    path = config_dir() / MACHINE_ID_FILE
    try:
        kept = path.read_text(encoding="ascii").strip()
        if kept:
            return kept
    except (OSError, UnicodeDecodeError):
        pass
    made = uuid.uuid4().hex
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, made + "\n")
    except OSError:  # a read-only home: the id holds for this process only, and liveness falls back on the host
        pass
    return made


def host_name() -> str:
    """For display only (it changes with the network on a Mac)."""
    return socket.gethostname()


def same_machine(info: dict) -> bool:
    """Whether a run recorded by run.json `info` was started on this machine."""
    recorded = info.get("machine_id")
    if recorded:
        return recorded == machine_id()
    return info.get("host") in (None, host_name())  # runs recorded before machine ids


@dataclass(frozen=True)
class MemoryBudget:
    bytes: int
    source: str  # said in messages: which figure this is

    @property
    def gb(self) -> float:
        return self.bytes / 1e9


def memory_budget(device_info: dict | None = None, total_ram: int | None = None) -> MemoryBudget:
    """What MLX can use here: Metal's recommended working set where MLX reports one, else total RAM;
    PHI3TUI_WORKING_SET_GB, when set, instead."""
    raw = os.environ.get(WORKING_SET_ENV)
    if raw and device_info is None and total_ram is None:
        try:
            return MemoryBudget(int(float(raw) * 1e9), f"{WORKING_SET_ENV}={raw}")
        except ValueError:
            raise ValueError(f"{WORKING_SET_ENV}={raw!r} is not a number of GB; unset it or give e.g. 10.7") from None
    if device_info is None:
        import mlx.core as mx

        info_fn = getattr(mx, "device_info", None) or mx.metal.device_info
        try:
            device_info = dict(info_fn())
        except Exception:  # no device information at all: total RAM is all that is known
            device_info = {}
    working_set = device_info.get(WORKING_SET_KEY)
    if isinstance(working_set, int) and working_set > 0:
        return MemoryBudget(working_set, "Metal's recommended working set")
    if total_ram is None:
        import psutil

        total_ram = psutil.virtual_memory().total
    return MemoryBudget(int(total_ram), "total RAM (this MLX build reports no Metal working set)")
