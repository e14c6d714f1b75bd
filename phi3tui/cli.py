"""Entry point: `phi3tui [WORKSPACE]` opens the app; subcommands do the same work headless."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from importlib import import_module

from phi3tui import __version__, modes
from phi3tui.commands import COMMAND_MODULES, COMMAND_NAMES


def build_parser(with_commands: bool = True) -> tuple[argparse.ArgumentParser, set[str]]:
    """The CLI's parser and its command names. Without commands it only knows the app's own options:
    opening a workspace needs no more, and importing every command module would delay the first paint."""
    parser = argparse.ArgumentParser(
        prog="phi3tui",
        usage="phi3tui [-h] [--version] [--screen SCREEN] [-w DIR | WORKSPACE] | phi3tui COMMAND ...",
        description=(
            "Fine-tune Phi-3 with mlx-lm from the keyboard: data, config, training, chat, export. "
            "`phi3tui [WORKSPACE]` opens the app on a workspace (default: the current folder); "
            "the commands below do the same work headless."
        ),
        epilog="Run `phi3tui COMMAND --help` for a command's options. Start with `phi3tui demo`.",
    )
    parser.add_argument("--version", action="version", version=f"phi3tui {__version__}")
    parser.add_argument(
        "--screen",
        choices=[row.id for row in modes.MODES],
        default=modes.MODES[0].id,
        help=f"screen to open first when opening a workspace (default: {modes.MODES[0].id})",
    )
    parser.add_argument("-w", "--workspace", dest="open_workspace", metavar="DIR",
                        help="the workspace to open, as every command takes it (WORKSPACE is the same)")
    if not with_commands:
        return parser, set()
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", prog="phi3tui")
    for name in COMMAND_MODULES:
        import_module(f"phi3tui.commands.{name}").register(subparsers)
    return parser, set(subparsers.choices)


def open_workspace(path: str, screen: str) -> int:
    from phi3tui.core.workspace import NotAWorkspace, Workspace

    try:
        ws = Workspace.open(path)
    except NotAWorkspace as exc:
        print(f"phi3tui: {exc}\nhint: {exc.hint}", file=sys.stderr)
        return 2
    from phi3tui.app import Phi3App

    Phi3App(ws, start_mode=screen).run()
    return 0


# Top-level options that take a value: the word after them is not a command or a workspace.
VALUE_OPTIONS = ("--screen", "-w", "--workspace")


def first_word(argv: list[str]) -> int | None:
    """Index of the first positional word, skipping option values: in `--screen train WS` it is WS
    (every screen name is also a command name)."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in VALUE_OPTIONS:
            index += 2
        elif word.startswith("-"):
            index += 1
        else:
            return index
    return None


def plan(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace, str | None]:
    """Parse argv: (parser, args, workspace). workspace is None for a command (args.func runs it),
    else the folder to open ("" for settings.yaml's default) on args.screen."""
    index = first_word(argv)
    is_command = index is not None and argv[index] in COMMAND_NAMES
    # --help lists the commands, so it needs them all.
    parser, _ = build_parser(with_commands=is_command or bool({"-h", "--help"} & set(argv)))
    if is_command:
        return parser, parser.parse_args(argv), None
    rest_argv = argv if index is None else argv[:index] + argv[index + 1:]
    opts, rest = parser.parse_known_args(rest_argv)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if index is None:
        return parser, opts, opts.open_workspace or ""
    return parser, opts, argv[index]


def command_like(word: str) -> str | None:
    """The command `word` looks like a typo of (`trian` -> train), when no folder of that name is there to open."""
    import difflib

    if os.path.exists(word) or os.sep in word:
        return None
    close = difflib.get_close_matches(word, sorted(COMMAND_NAMES), n=1, cutoff=0.7)
    return close[0] if close else None


def main(argv: list[str] | None = None) -> int:
    # No garbage collection until the app's first paint (Phi3App turns it back on) or a command starts: at
    # start-up it would only walk, again and again, the objects the imports make (~60 ms of a 0.4 s start).
    gc.disable()
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        parser, args, workspace = plan(argv)
        if workspace is not None:
            if not workspace:
                from phi3tui.core.settings import startup_workspace  # settings.yaml's default_workspace

                workspace = startup_workspace()
            suggestion = command_like(workspace)
            if suggestion:
                print(f"phi3tui: unknown command {workspace!r} — did you mean {suggestion}? (`phi3tui --help` lists them)",
                      file=sys.stderr)
                return 2
            return open_workspace(workspace, args.screen)
        gc.enable()
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    finally:
        gc.enable()
