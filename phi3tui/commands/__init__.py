"""CLI subcommands, one module per command group. Each module has register(subparsers)."""

# Order of appearance in `phi3tui --help`.
COMMAND_MODULES = ("demo", "data", "config", "train", "runs", "chat", "eval", "export", "settings")
