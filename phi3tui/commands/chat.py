"""`phi3tui chat compare`: the base and adapted models (or two adapters) answer the same prompts side
by side, headless; the table is printed and saved to the run folder as JSONL."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phi3tui.commands.runs import add_workspace_option
from phi3tui.core.chat import GenerationSettings

OPTION_NAMES = {  # GenerationSettings field -> option, spelled as mlx_lm generate spells it
    "temp": "--temp",
    "top_p": "--top-p",
    "min_p": "--min-p",
    "top_k": "--top-k",
    "repetition_penalty": "--repetition-penalty",
    "repetition_context_size": "--repetition-context-size",
    "max_tokens": "--max-tokens",
    "seed": "--seed",
    "system_prompt": "--system-prompt",
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "chat",
        help="compare the base and adapted models side by side, headless",
        description="Side-by-side answers from one copy of the model weights (the Chat screen, F4, does this live).",
    )
    sub = p.add_subparsers(title="actions", metavar="ACTION", required=True)
    c = sub.add_parser(
        "compare",
        help="every test prompt (or a file of prompts) through both sides; prints a table, saves JSONL",
        description=(
            "Answer each prompt with the left side (default: the base model) and the right side (default: the "
            "newest run's latest adapter) together, one batch of two rows per prompt, and save the records "
            "(prompt, reference, both answers) as compare-<time>.jsonl in the run folder (or the adapter folder)."
        ),
    )
    add_workspace_option(c, positional=True)
    c.add_argument("--adapter-path", type=Path, help="right side: an adapter folder or run folder (default: newest run)")
    c.add_argument("--checkpoint", help="right side's checkpoint: an iteration number or 'latest' (default: latest)")
    c.add_argument("--left-adapter-path", type=Path, help="left side: an adapter folder instead of the base model")
    c.add_argument("--left-checkpoint", help="left side's checkpoint: an iteration number or 'latest'")
    c.add_argument("--prompts", type=Path, help="a .jsonl data file or a text file with one prompt a line (default: data/test.jsonl)")
    c.add_argument("--prompt", action="append", help="a prompt to compare (repeat for several); replaces --prompts")
    c.add_argument("--limit", type=int, help="compare only the first N prompts")
    c.add_argument("--tools", type=Path, metavar="FILE",
                   help="a JSON file with a list of tool definitions (OpenAI-style function specs), given to the chat "
                        "template for both sides: compare a tool-calling adapter against the base")
    defaults = GenerationSettings()
    for name, option in OPTION_NAMES.items():
        kind = type(getattr(defaults, name))
        c.add_argument(option, dest=name, type=kind, default=getattr(defaults, name),
                       help=f"{GenerationSettings.HELP[name]} (default: {getattr(defaults, name)!r})")
    c.set_defaults(func=run_compare)


def _print_record(record: dict) -> None:
    print(f"#{record['index'] + 1} {record['prompt']}")
    if record["reference"]:
        print(f"  reference: {record['reference']}")
    for key in ("left", "right"):
        print(f"  {key:<9}: {' '.join(record[key]['answer'].split())}")


def run_compare(args: argparse.Namespace) -> int:
    from phi3tui.core.chat import (
        BASE,
        ChatError,
        ComparePrompt,
        batch_compare,
        load_tools,
        model_path,
        newest_adapter,
        side_for_path,
        tools_note,
    )
    from phi3tui.core.workspace import NotAWorkspace, Workspace

    try:
        workspace = Workspace.open(args.workspace)
        settings = GenerationSettings(**{name: getattr(args, name) for name in OPTION_NAMES})
        settings.check()
        if args.limit is not None and args.limit < 1:
            raise ChatError("--limit must be at least 1")
        right = (
            side_for_path(args.adapter_path, args.checkpoint) if args.adapter_path else newest_adapter(workspace.root)
        )
        left = side_for_path(args.left_adapter_path, args.left_checkpoint) if args.left_adapter_path else BASE
        items = [ComparePrompt(text, None, f"--prompt {i + 1}") for i, text in enumerate(args.prompt or [])]
        tools = load_tools(args.tools.expanduser().resolve()) if args.tools else None
        from phi3tui.core.chat.model import ChatModel

        model = ChatModel(model_path(workspace))
        print(f"left: {left.label} · right: {right.label} · {settings.summary()}"
              + (f" · {tools.summary()}" if tools else ""))
        note = tools_note(model.tokenizer, tools, Path(model.model_path).name)
        if note:
            print(f"phi3tui chat: {note}", file=sys.stderr)
        out, records = batch_compare(
            model, workspace, [left, right], settings, args.prompts.expanduser().resolve() if args.prompts else None, args.limit, items=items, on_record=_print_record,
            tools=tools,
        )
    except NotAWorkspace as exc:
        print(f"phi3tui chat: {exc}\nhint: {exc.hint}", file=sys.stderr)
        return 2
    except ChatError as exc:
        print(f"phi3tui chat: {exc}", file=sys.stderr)
        return 2
    changed = sum(r["left"]["answer"] != r["right"]["answer"] for r in records)
    print(f"{len(records)} prompts, {changed} answers differ; saved to {out}")
    return 0
