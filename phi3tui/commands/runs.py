"""`phi3tui runs`: list, attach, stop and resume runs (not built yet: issue 5)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("runs", help="list, attach, stop and resume runs (not built yet)", description="list, attach, stop and resume runs. Not built yet (issue 5).")
    p.set_defaults(func=run)


def run(args) -> int:
    print("phi3tui runs: not built yet (issue 5)", file=sys.stderr)
    return 2
