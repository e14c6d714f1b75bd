"""`phi3tui data check DIR`, `phi3tui data import SOURCE OUT_DIR` and `phi3tui data tokens DIR --line N`:
the Data screen, headless."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data",
        help="check a data folder, or import a CSV/JSONL file into train/valid/test.jsonl",
        description="Check and import datasets the way mlx-lm reads them.",
    )
    sub = p.add_subparsers(title="data commands", metavar="ACTION", dest="data_action")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    c = sub.add_parser(
        "check",
        help="validate every line and measure tokens; exits 1 when there are errors",
        description=(
            "Validate every line of train/valid/test.jsonl (JSON, format, fields, roles, mixed formats, "
            "Phi-3 markers, blank lines, UTF-8, split sizes against the batch size, train records leaking "
            "into valid/test) and, with a model, count tokens per record with its tokenizer as mlx-lm would "
            "(records over max_seq_length, iterations per epoch). DIR may be a workspace (its lora_config.yaml "
            "supplies model, batch_size, max_seq_length, mask_prompt and feature names) or a data folder. "
            "Exit status: 0 no errors, 1 errors found, 2 bad arguments."
        ),
    )
    c.add_argument("dir", metavar="DIR", help="a data folder with train.jsonl (valid/test optional), or a workspace")
    c.add_argument("--model", help="model folder or Hugging Face repo whose tokenizer counts tokens (default: the workspace config's model)")
    c.add_argument("--max-seq-length", type=int, help="longest record in tokens before truncation (default: config, or 2048)")
    c.add_argument("--batch-size", type=int, help="records per batch; every split must have at least this many (default: config, or 4)")
    c.add_argument("--mask-prompt", action=argparse.BooleanOptionalAction, default=None, help="count only the last message/completion toward the loss (default: config, or off)")
    c.add_argument("--no-tokens", action="store_true", help="skip the token statistics (no tokenizer is loaded)")
    c.set_defaults(func=run_check)

    t = sub.add_parser(
        "tokens",
        help="show one record's tokens and which ones the loss counts (--json: one object per token)",
        description=(
            "Print each token of one record as the runner trains it: its id, its text and whether the loss "
            "counts it — mlx-lm's mask_prompt offset, or with assistant_turns: all every assistant turn "
            "(the Data screen's token view). DIR may be a workspace or a data folder; the model and the "
            "settings come from --config, else the workspace's lora_config.yaml. "
            "Exit status: 0 shown, 1 the line is not a record that can be rendered, 2 bad arguments."
        ),
    )
    t.add_argument("dir", metavar="DIR", help="a data folder with train.jsonl (valid/test optional), or a workspace")
    t.add_argument("--split", default="train", help="train, valid or test (default: train)")
    t.add_argument("--line", type=int, required=True, help="the record's line number in the split, from 1")
    t.add_argument("--config", help="lora_config.yaml whose model, mask_prompt, assistant_turns, max_seq_length "
                                    "and feature names apply (default: DIR's, when DIR is a workspace)")
    t.add_argument("--model", help="model folder or Hugging Face repo whose tokenizer renders (default: the config's model)")
    t.add_argument("--json", action="store_true", help="one JSON list of {\"id\", \"text\", \"loss\"} objects")
    t.set_defaults(func=run_tokens, max_seq_length=None, batch_size=None, mask_prompt=None)

    i = sub.add_parser(
        "import",
        help="turn a TruthfulQA-style CSV, conversations (OpenAI chat, ShareGPT), or any CSV/JSONL with a column mapping, into train/valid/test.jsonl",
        description=(
            "Import SOURCE into OUT_DIR/train.jsonl, valid.jsonl and test.jsonl. A CSV with 'Question' and "
            "'Best Answer' columns (TruthfulQA) needs no mapping, nor, with --format chat, a file of whole "
            "conversations (OpenAI chat JSONL with 'messages', ShareGPT with 'conversations', or a CSV column "
            "of them named by --conversation-column); otherwise name the columns. The text format "
            "is the Phi-3 tutorial's: <|user|>\\n{prompt} <|end|>\\n<|assistant|> \\n{answer} <|end|>. "
            "Existing split files are never overwritten without --force."
        ),
    )
    i.add_argument("source", metavar="SOURCE", help="a .csv file (RFC 4180, UTF-8, BOM allowed) or a .jsonl file")
    i.add_argument("out_dir", metavar="OUT_DIR", help="folder to write train/valid/test.jsonl into (created if needed)")
    i.add_argument("--format", dest="fmt", choices=["text", "chat", "completions", "preference", "prompt-answer"], default="text", help="record format to write (default: text, the tutorial's Phi-3 markers); preference: {prompt, chosen, rejected} pairs for DPO/ORPO from TruthfulQA's Best Answer and Incorrect Answers; prompt-answer: {prompt, answer} records for GRPO (TruthfulQA's Correct Answers kept as correct_answers)")
    i.add_argument("--pairs-per-question", type=int, default=1, help="preference format: pairs per question, one per incorrect answer (default: 1)")
    i.add_argument("--prompt-column", help="column (or JSONL key) with the question/prompt (TruthfulQA: Question)")
    i.add_argument("--completion-column", help="column with the answer/completion (TruthfulQA: Best Answer)")
    i.add_argument("--text-column", help="column with ready-made text, copied as is (text format only)")
    i.add_argument("--system-column", help="column with a system message (chat format only)")
    i.add_argument("--conversation-column", help="chat format: the JSONL key or CSV column (JSON text) holding a "
                   "whole conversation, as OpenAI chat messages (role/content/tool_calls) or ShareGPT turns "
                   "(from/value: human, gpt, system, tool); default: 'messages' or 'conversations' when the file has it")
    i.add_argument("--train", help="train records: a count (700), fraction (0.8) or percentage (80%%); default: the rest")
    i.add_argument("--valid", default="10%", help="valid records: count, fraction or percentage (default: 10%%)")
    i.add_argument("--test", default="10%", help="test records: count, fraction or percentage (default: 10%%)")
    i.add_argument("--shuffle", action="store_true", help="shuffle the rows before splitting (default: keep the file's order)")
    i.add_argument("--seed", type=int, default=0, help="seed for --shuffle (default: 0)")
    i.add_argument("--force", action="store_true", help="overwrite existing train/valid/test.jsonl in OUT_DIR")
    i.set_defaults(func=run_import)


def _settings_and_dir(args):
    """(data folder, settings, model, config note) from DIR: a workspace or a plain data folder."""
    from dataclasses import replace

    from phi3tui.core.data import DataSettings, workspace_data
    from phi3tui.core.workspace import CONFIG_NAME, Workspace

    root = Path(args.dir)
    if (root / CONFIG_NAME).is_file():
        wd = workspace_data(Workspace(root.resolve()))
        data_dir, settings, model, note = wd.data_dir, wd.settings, wd.model, wd.config_error
    else:
        # A workspace without a config still keeps its records in data/.
        data_dir = root / "data" if not (root / "train.jsonl").exists() and (root / "data" / "train.jsonl").is_file() else root
        settings, model, note = DataSettings(), None, ""
    changes = {}
    if args.max_seq_length is not None:
        changes["max_seq_length"] = args.max_seq_length
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.mask_prompt is not None:
        changes["mask_prompt"] = args.mask_prompt
    if args.model:
        model = args.model
    return data_dir, replace(settings, **changes), model, note


def run_check(args) -> int:
    from phi3tui.core.data import check_folder

    for name in ("max_seq_length", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"phi3tui data check: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    data_dir, settings, model, note = _settings_and_dir(args)
    if not data_dir.is_dir():
        print(f"phi3tui data check: {data_dir} is not a folder; give a data folder with train.jsonl, or a workspace", file=sys.stderr)
        return 2
    if note:
        print(f"warning: config not read, defaults used: {note}", file=sys.stderr)
    report = check_folder(data_dir, settings, None if args.no_tokens else model)
    if args.no_tokens:
        report.model = model
        report.tokenizer_note = "--no-tokens"
    print("\n".join(report.lines()))
    return 1 if report.errors else 0


def run_tokens(args) -> int:
    import json

    from phi3tui.core.data import DataFolder, TokenizerError, load_tokenizer, render_record, token_rows

    if args.config:
        from phi3tui.core.data import workspace_data
        from phi3tui.core.workspace import Workspace

        config = Path(args.config)
        if not config.is_file():
            print(f"phi3tui data tokens: --config {config} is not a file", file=sys.stderr)
            return 2
        wd = workspace_data(Workspace(config.resolve().parent), config.resolve())
        settings, model, note = wd.settings, args.model or wd.model, wd.config_error
        data_dir = Path(args.dir)
    else:
        data_dir, settings, model, note = _settings_and_dir(args)
    if note:
        print(f"warning: config not read, defaults used: {note}", file=sys.stderr)
    try:
        folder = DataFolder.open(data_dir, settings)
        record = folder.line_record(args.split, args.line)
    except (FileNotFoundError, LookupError) as exc:
        print(f"phi3tui data tokens: {exc}", file=sys.stderr)
        return 2
    where = f"{args.split}:{args.line}"
    if record.error or record.fmt is None:
        why = record.error or "no field of a known format (text, messages, prompt/completion, prompt/chosen/rejected)"
        print(f"phi3tui data tokens: {where}: {why}; `phi3tui data check` lists every such line", file=sys.stderr)
        return 1
    try:
        tokenizer = load_tokenizer(model)
    except TokenizerError as exc:
        print(f"phi3tui data tokens: {exc}", file=sys.stderr)
        return 2
    try:
        rendered = render_record(record.value, record.fmt, tokenizer, settings)
    except Exception as exc:  # the template or the tokenizer refuses this record: name it, as the Data screen does
        print(f"phi3tui data tokens: {where}: cannot render this record: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    rows = token_rows(rendered, tokenizer)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    counted = sum(1 for row in rows if row["loss"])
    print(f"{where} · {record.fmt} · {len(rows)} tokens, {counted} in the loss (+)"
          + (f" · truncated at {rendered.truncated_at}" if rendered.truncated_at else ""))
    answer, position = None, 0
    for row in rows:
        if row.get("answer") != answer:  # a preference pair: the chosen answer's tokens, then the rejected one's
            answer, position = row["answer"], 0
            print(f"{answer}:")
        print(f"{position:>6} {row['id']:>8} {'+' if row['loss'] else ' '} {json.dumps(row['text'], ensure_ascii=False)}")
        position += 1
    return 0


def run_import(args) -> int:
    from phi3tui.core.data import DataImportError, ImportOptions, import_any

    options = ImportOptions(
        fmt=args.fmt,
        prompt_column=args.prompt_column,
        completion_column=args.completion_column,
        text_column=args.text_column,
        system_column=args.system_column,
        conversation_column=args.conversation_column,
        train=args.train,
        valid=args.valid,
        test=args.test,
        shuffle=args.shuffle,
        seed=args.seed,
        force=args.force,
        pairs_per_question=args.pairs_per_question,
    )
    try:
        result = import_any(args.source, args.out_dir, options)
    except DataImportError as exc:
        print(f"phi3tui data import: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"phi3tui data import: {exc}; the import stopped", file=sys.stderr)
        return 2
    print(result.summary())
    for number, why in result.skipped[:20]:
        print(f"  skipped row {number}: {why}")
    return 0
