"""`phi3tui config check FILE` and `phi3tui config migrate FILE [--write]`: the Config screen's checks, headless."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "config",
        help="check and migrate lora_config.yaml",
        description=(
            "Check a lora_config.yaml against the installed mlx-lm, the model it names, its data and this "
            "machine's memory, or migrate an old one (lora_layers, short LoRA keys, alpha, ...) to today's keys."
        ),
    )
    sub = p.add_subparsers(title="actions", metavar="ACTION", dest="action", required=True)
    check = sub.add_parser(
        "check",
        help="list what a run would find wrong (exit 1 on errors, 2 when the file cannot be read)",
        description=(
            "Print every migration the file needs and every finding of the checks (made on the migrated values, "
            "as a run uses them): unknown keys and wrong types, num_layers against the model's blocks, LoRA keys "
            "against its modules, the trainable parameter count, batch_size against each split, max_seq_length "
            "against the longest record, the data folder, adapter_path, the memory estimate and mask_prompt; then "
            "the pre-run gate `phi3tui train` passes: every line of every data split (as `phi3tui data check`), "
            "the data format against train_mode, the probe prompts file, the reporters and the environment "
            "variables a run reads (PHI3TUI_MEMORY_LIMIT_GB). "
            "Exit status: 0 no errors, 1 errors found, 2 the file cannot be read."
        ),
    )
    check.add_argument("file", help="the lora_config.yaml to check")
    check.add_argument("-w", "--workspace", help="folder the config's relative paths start from (default: the file's folder)")
    check.set_defaults(func=run_check)
    migrate = sub.add_parser(
        "migrate",
        help="show (and with --write, make) the changes an old config needs",
        description=(
            "List the changes that make an old lora_config.yaml work with today's mlx-lm, with the reason for each, "
            "and the resulting diff. Nothing changes on disk without --write; --write edits only those keys, "
            "keeping comments, order and unknown keys, and writes atomically. Exit status: 0 done (or nothing to do), "
            "2 the file cannot be read, migrated or written (then it is unchanged)."
        ),
    )
    migrate.add_argument("file", help="the lora_config.yaml to migrate")
    migrate.add_argument("--write", action="store_true", help="rewrite FILE with the changes (default: only show them)")
    migrate.add_argument(
        "--skip", action="append", default=[], metavar="CHANGE",
        help="leave out one change by its id (as printed in brackets); may be repeated",
    )
    migrate.add_argument("-w", "--workspace", help="folder the config's relative paths start from (default: the file's folder)")
    migrate.set_defaults(func=run_migrate)


def _review(args):
    from phi3tui.core.config import ConfigError, load_config_values, read_config_text, review_config

    path = Path(args.file)
    try:
        load_config_values(path)
        text = read_config_text(path)  # exactly: a --write keeps CRLF line ends and a byte order mark
        root = Path(args.workspace) if args.workspace else path.resolve().parent
        return path, text, review_config(text, root, frozenset(getattr(args, "skip", []) or []))
    except ConfigError as exc:
        print(f"phi3tui config: {exc}", file=sys.stderr)
        return path, None, None


def run_check(args: argparse.Namespace) -> int:
    from phi3tui.core.files import shell_command
    from phi3tui.core.runs import check_before_run, finding_lines

    path, text, review = _review(args)
    if review is None:
        return 2
    if review.model is not None and review.model.info is not None:
        print(f"model: {review.model.value}: {review.model.info.summary()} ({review.model.location.kind})")
    # The pre-run gate on the reviewed values: what a run of this file would be refused for (every data line,
    # probes, the environment, …), the same check `phi3tui train` makes.
    root = Path(args.workspace) if args.workspace else path.resolve().parent
    findings = check_before_run(root, review.values, review.findings)
    # file:line: where the key is written, so an editor can jump there
    for line in finding_lines(findings, path):
        print(line)
    errors = sum(f.level == "error" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    print(f"{path}: {errors} error(s), {warnings} warning(s)")
    if review.changes:
        print(f"run `{shell_command('phi3tui', 'config', 'migrate', path, '--write')}` to make the {len(review.changes)} migration(s) in the file")
    return 1 if errors else 0


def run_migrate(args: argparse.Namespace) -> int:
    from phi3tui.core.config import ConfigDocument, DocumentEditError, apply_changes
    from phi3tui.core.files import disk_error_message

    path, text, review = _review(args)
    if review is None:
        return 2
    unknown = set(args.skip) - {c.id for c in review.changes}
    if unknown:
        print(f"phi3tui config migrate: no change with id {', '.join(sorted(unknown))}; the ids are shown in brackets",
              file=sys.stderr)
        return 2
    if not review.changes:
        print(f"{path}: nothing to migrate")
        return 0
    doc = ConfigDocument(text, path)
    chosen = [c for c in review.changes if c.id not in set(args.skip)]
    for change in review.changes:
        mark = "skip" if change.id in args.skip else "    "
        print(f"{mark} [{change.id}] {change.summary}\n       why: {change.why}")
    try:
        apply_changes(doc, chosen)
    except DocumentEditError as exc:
        print(f"phi3tui config migrate: cannot migrate {path}: {exc}; {path} is unchanged", file=sys.stderr)
        return 2
    diff = difflib.unified_diff(text.splitlines(True), doc.text.splitlines(True), str(path), f"{path} (migrated)")
    sys.stdout.writelines(diff)
    if args.write:
        try:
            doc.save()
        except OSError as exc:
            print(f"phi3tui config migrate: {disk_error_message(exc, path)} ({path} is unchanged)", file=sys.stderr)
            return 2
        print(f"wrote {path} ({len(chosen)} change(s))")
    else:
        print("nothing written; add --write to make these changes")
    return 0
