"""Entry point: `phi3tui [WORKSPACE]` opens the app; subcommands do the same work headless."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from phi3tui import __version__
from phi3tui.commands import COMMAND_MODULES


def build_parser() -> tuple[argparse.ArgumentParser, set[str]]:
    parser = argparse.ArgumentParser(
        prog="phi3tui",
        usage="phi3tui [-h] [--version] [WORKSPACE] | phi3tui COMMAND ...",
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
        choices=["data", "config", "train", "chat", "export"],
        default="data",
        help="screen to open first when opening a workspace (default: data)",
    )
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
    # A first positional word that is not a command is the workspace to open.
    positional = [a for a in argv if not a.startswith("-")]
    if not positional or positional[0] not in commands:
        opts, rest = parser.parse_known_args([a for a in argv if a not in positional[:1]])
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if positional:
            return open_workspace(positional[0], opts.screen)
        from phi3tui.core.settings import startup_workspace  # settings.yaml's default_workspace

        return open_workspace(startup_workspace(), opts.screen)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
