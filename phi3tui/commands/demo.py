"""`phi3tui demo [DIR] [--headless]`: build the offline demo workspace and open it, or run the whole job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phi3tui.commands.runs import add_workspace_option

DEFAULT_DIR = "phi3tui-demo"


def register(subparsers) -> None:
    from phi3tui.core.pipeline import STEPS  # the steps --help lists are those --headless runs

    steps = "; ".join(f"{number}. {title}" for number, (title, _owner, _needs) in enumerate(STEPS, 1))
    p = subparsers.add_parser(
        "demo",
        help="build (or reuse) the offline demo workspace and open it",
        description=(
            "Build a demo workspace with a tiny random-weight Phi-3 (real architecture and tokenizer), "
            "a few hundred question/answer records and a lora_config.yaml, all offline; then open the app "
            f"on it, or with --headless run the whole job in {len(STEPS)} steps: {steps}."
        ),
    )
    add_workspace_option(p, positional=True, default=DEFAULT_DIR)
    p.add_argument("--headless", action="store_true", help="run every step with no UI and print each result")
    p.add_argument("--yes", action="store_true", help="with --headless: replace an Ollama model of the same name without asking")
    p.add_argument("--preference", action="store_true", help="with --headless: a short DPO pass on preference pairs after the SFT run (compare, fuse and export then use its adapter)")
    p.add_argument("--grpo", action="store_true", help="with --headless: a short GRPO pass on prompt-answer records after the last training pass (compare, fuse and export then use its adapter)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the model, data and config even if present")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from phi3tui.core.demo import build_demo

    target = Path(args.workspace)
    try:
        result = build_demo(target, force=args.rebuild)
    except (FileExistsError, OSError) as exc:
        print(f"phi3tui demo: {exc}", file=sys.stderr)
        return 2
    verb = "built" if result.created else "reusing"
    print(f"{verb} demo workspace {result.workspace.root}")
    if args.headless:
        from phi3tui.core.pipeline import STEPS, run_pipeline, steps_with_grpo, steps_with_preference

        steps = steps_with_preference() if args.preference else STEPS
        steps = steps_with_grpo(steps) if args.grpo else steps
        return run_pipeline(result.workspace, out=sys.stdout, replace_ollama=args.yes, steps=steps)
    from phi3tui.app import Phi3App

    Phi3App(result.workspace).run()
    return 0
