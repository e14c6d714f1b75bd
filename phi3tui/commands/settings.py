"""`phi3tui settings`: settings, themes and serving (not built yet: issue 9)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("settings", help="settings, themes and serving (not built yet)", description="settings, themes and serving. Not built yet (issue 9).")
    p.set_defaults(func=run)


def run(args) -> int:
    print("phi3tui settings: not built yet (issue 9)", file=sys.stderr)
    return 2
