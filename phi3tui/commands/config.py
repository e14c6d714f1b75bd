"""`phi3tui config`: check and migrate lora_config.yaml (not built yet: issue 4)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("config", help="check and migrate lora_config.yaml (not built yet)", description="check and migrate lora_config.yaml. Not built yet (issue 4).")
    p.set_defaults(func=run)


def run(args) -> int:
    print("phi3tui config: not built yet (issue 4)", file=sys.stderr)
    return 2
