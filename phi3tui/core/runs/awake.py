"""Moved to phi3tui/core/awake.py (the app's long jobs hold it too, and core/chat may not import core/runs);
these names stay importable from here."""

from phi3tui.core.awake import (  # noqa: F401
    KEEP_AWAKE_MODES,
    MAC_CAFFEINATE,
    MAC_PMSET,
    AwakePlan,
    MacPower,
    awake_limits,
    keep_awake_plan,
    kept_awake,
    read_mac_power,
    record_awake_limits,
    start_keep_awake,
    watch_power,
)
