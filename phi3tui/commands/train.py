"""`phi3tui train`: start a detached training run (not built yet: issue 5)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="start a detached training run (not built yet)", description="start a detached training run. Not built yet (issue 5).")
    p.set_defaults(func=run)


def run(args) -> int:
    print("phi3tui train: not built yet (issue 5)", file=sys.stderr)
    return 2
