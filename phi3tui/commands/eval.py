"""`phi3tui eval`: did the fine-tune help? The left side (default: the base model) and the right side
(default: the newest run's latest adapter) scored on the same items from one load of the weights."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from phi3tui.commands.progress import ProgressLine
from phi3tui.commands.runs import add_workspace_option


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score base vs adapted: test loss, perplexity, TruthfulQA MC1/MC2, exact match, ROUGE-L",
        description=(
            "Score the left side (default: the base model) and the right side (default: the newest run's latest "
            "adapter) on the same items, from one load of the weights: test loss and perplexity on data/test.jsonl "
            "(as mlx-lm's evaluate computes them), multiple choice TruthfulQA style (--mc: a CSV with TruthfulQA's "
            "columns or a JSONL with question/correct/incorrect; MC1 and MC2 as lm-evaluation-harness scores them), "
            "and the greedy answers to the test prompts against their references (exact match, ROUGE-L F1). "
            "The results are saved as eval-<time>.json in the run folder (or the adapter folder)."
        ),
    )
    add_workspace_option(p, positional=True)
    right = p.add_mutually_exclusive_group()
    right.add_argument("--adapter-path", type=Path, metavar="DIR", help="right side: an adapter folder or run folder (default: newest run)")
    right.add_argument("--run", metavar="ID", help="right side: the run with this id (a folder in runs/)")
    p.add_argument("--checkpoint", metavar="N|latest", help="right side's checkpoint: an iteration number or 'latest' (default: latest)")
    p.add_argument("--left-adapter-path", type=Path, metavar="DIR", help="left side: an adapter folder instead of the base model")
    p.add_argument("--left-checkpoint", metavar="N|latest", help="left side's checkpoint: an iteration number or 'latest'")
    p.add_argument("--mc", type=Path, metavar="FILE",
                   help="multiple-choice questions: TruthfulQA CSV or JSONL (default: the test records that carry \"incorrect\")")
    p.add_argument("--limit", type=int, metavar="N",
                   help="score only the first N questions and answer only the first N test prompts (the test loss is always mlx-lm's: test_batches of the config)")
    p.add_argument("--max-tokens", type=int, default=128, metavar="N", help="the longest greedy answer, in tokens (default: 128)")
    p.add_argument("--json", action="store_true", help='print one JSON object {"left": {...}, "right": {...}}')
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from phi3tui.core.chat import ChatError
    from phi3tui.core.eval import EvalError, summary, table
    from phi3tui.core.workspace import NotAWorkspace, Workspace

    progress = ProgressLine()  # on stderr, tty or not: stdout keeps the table or the JSON
    try:
        workspace = Workspace.open(args.workspace)
        from phi3tui.core.eval.scoring import evaluate_workspace

        try:
            result, out = evaluate_workspace(
                workspace, args.run, args.adapter_path, args.checkpoint, args.left_adapter_path, args.left_checkpoint,
                args.mc, args.limit, args.max_tokens, progress=progress, announce=progress.say,
            )
        finally:
            progress.close()  # a reason printed below starts on a line of its own
    except NotAWorkspace as exc:
        print(f"phi3tui eval: {exc}\nhint: {exc.hint}", file=sys.stderr)
        return 2
    except (ChatError, EvalError) as exc:
        print(f"phi3tui eval: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        from phi3tui.core.files import disk_error_message

        print(f"phi3tui eval: {disk_error_message(exc, exc.filename or '')}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary(result)))
    else:
        print(table(result))
        print(f"saved to {out}")
    return 0
