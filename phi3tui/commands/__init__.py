"""CLI subcommands, one module per command group. Each module has register(subparsers)."""

# Order of appearance in `phi3tui --help`.
COMMAND_MODULES = ("demo", "data", "config", "train", "runs", "chat", "eval", "export", "settings", "mcp")
# Every command the modules above register (tests/test_foundation.py keeps the two in step): `phi3tui WS`
# tells a command from a workspace by this, without importing the command modules on the way to the app.
COMMAND_NAMES = frozenset(
    {"demo", "data", "config", "train", "runs", "chat", "eval", "export", "settings", "locate", "themes", "keys", "serve", "mcp"}
)
