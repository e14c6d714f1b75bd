"""`phi3tui export`: fuse, write GGUF, write the Ollama Modelfile (not built yet: issue 7)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="fuse, write GGUF, write the Ollama Modelfile (not built yet)", description="fuse, write GGUF, write the Ollama Modelfile. Not built yet (issue 7).")
    p.set_defaults(func=run)


def run(args) -> int:
    print("phi3tui export: not built yet (issue 7)", file=sys.stderr)
    return 2
