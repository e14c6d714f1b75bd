"""The peak RSS of this process, for the bench scripts' measured children."""

from __future__ import annotations

import resource
import sys


def peak_rss() -> int:
    """Bytes. VmHWM is this process image's own peak (ru_maxrss can carry the forking parent's peak across exec)."""
    try:
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("VmHWM")).split()[1]) * 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
