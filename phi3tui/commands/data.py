"""`phi3tui data`: check and import datasets (not built yet: issue 3)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="check and import datasets (not built yet)", description="check and import datasets. Not built yet (issue 3).")
    p.set_defaults(func=run)


def run(args) -> int:
    print("phi3tui data: not built yet (issue 3)", file=sys.stderr)
    return 2
