"""`phi3tui settings`, `locate`, `themes`, `keys` and `serve`: the user's settings, where files live,
the themes, the key bindings (and their ids, for remapping) and the app in a browser."""

from __future__ import annotations

import sys
from pathlib import Path

LOCATE_WHAT = ("settings", "config", "themes", "builtin-themes", "cache", "models")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "settings",
        help="show the settings in effect (settings.yaml), or write a commented one with --init",
        description=(
            "Show the settings in effect, read from settings.yaml in the user's config folder "
            "(`phi3tui locate settings`; PHI3TUI_CONFIG_DIR moves the folder). Problems are printed on "
            "stderr with the file and line, and the exit status is 2."
        ),
    )
    p.add_argument("--init", action="store_true", help="write a settings.yaml with every setting, its default and a comment")
    p.add_argument("--force", action="store_true", help="with --init: replace an existing settings.yaml")
    p.set_defaults(func=cmd_settings)

    p = subparsers.add_parser(
        "locate",
        help="print where settings, themes and caches live",
        description="Print where phi3tui keeps its settings, themes and caches, e.g. `$EDITOR $(phi3tui locate settings)`.",
    )
    p.add_argument(
        "what",
        nargs="?",
        choices=LOCATE_WHAT,
        help="print only this path: settings (the file), config (its folder), themes (your theme files), "
        "builtin-themes, cache, models (the Hugging Face cache); default: all, one per line with a label",
    )
    p.set_defaults(func=cmd_locate)

    p = subparsers.add_parser(
        "themes",
        help="list the themes (built-in and yours) and report broken theme files",
        description=(
            "List every theme: the built-in ones and the YAML files in your themes folder "
            "(`phi3tui locate themes`), which add to and override them. A broken file is reported with "
            "its line and skipped; the exit status is then 2."
        ),
    )
    p.add_argument("--check", metavar="FILE", type=Path, help="only check this theme file and say what is wrong with it")
    p.set_defaults(func=cmd_themes)

    p = subparsers.add_parser(
        "keys",
        help="list every key binding with its id (for `keymap:` in settings.yaml)",
        description=(
            "List every key binding of the app, its screens and widgets: id, keys (with your keymap applied), "
            "what it does. Remap one in settings.yaml, e.g.  keymap: {app.mode.data: 'f1,ctrl+d'}."
        ),
    )
    p.set_defaults(func=cmd_keys)

    p = subparsers.add_parser(
        "serve",
        help="run the app in a web browser (textual-serve), bound to 127.0.0.1",
        description=(
            "Serve the app to a web browser through textual-serve, listening on 127.0.0.1 only "
            "(anyone who reaches the port controls the app). From another machine: "
            "ssh -L 8000:127.0.0.1:8000 HOST, then open http://127.0.0.1:8000."
        ),
    )
    p.add_argument(
        "workspace",
        nargs="?",
        default=None,
        help="workspace folder (default: the current folder, or default_workspace from the settings)",
    )
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument(
        "--public-url",
        default=None,
        help="the address the browser uses, when it differs (e.g. http://127.0.0.1:9000 through ssh -L 9000:127.0.0.1:8000)",
    )
    p.add_argument(
        "--screen",
        choices=["data", "config", "train", "chat", "export"],
        default="data",
        help="screen to open first (default: data)",
    )
    p.set_defaults(func=cmd_serve)


def _fail(command: str, message: str, code: int = 2) -> int:
    print(f"phi3tui {command}: {message}", file=sys.stderr)
    return code


# -- settings -------------------------------------------------------------------------------
def cmd_settings(args) -> int:
    from phi3tui.core.settings import SettingsError, load_settings, write_template

    if args.init:
        try:
            path = write_template(force=args.force)
        except SettingsError as exc:
            return _fail("settings", str(exc))
        print(f"wrote {path}")
        return 0
    loaded = load_settings()
    s = loaded.settings
    exists = loaded.path.exists()
    print(f"# {loaded.path}" + ("" if exists else " (absent: the defaults; `phi3tui settings --init` writes one)"))
    print(f"theme: {s.theme}")
    if s.keymap:
        print("keymap:")
        for binding_id, keys in s.keymap.items():
            print(f"  {binding_id}: {keys}")
    else:
        print("keymap: {}")
    print(f"plot_refresh_s: {s.plot_refresh_s}")
    print(f"default_workspace: {s.default_workspace or 'null'}")
    print(f"notifications: {s.notifications}")
    print(f"terminal_title: {'true' if s.terminal_title else 'false'}")
    print(f"keep_awake: {s.keep_awake}")
    for problem in loaded.problems:
        print(f"phi3tui settings: {problem}", file=sys.stderr)
    return 2 if loaded.problems else 0


# -- locate ---------------------------------------------------------------------------------
def locations() -> dict[str, Path]:
    from phi3tui.core.settings import cache_dir, config_dir, settings_path, user_themes_dir
    from phi3tui.core.themes import builtin_themes_dir

    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        models = Path(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - a dependency
        models = Path("~/.cache/huggingface/hub").expanduser()
    return {
        "settings": settings_path(),
        "config": config_dir(),
        "themes": user_themes_dir(),
        "builtin-themes": builtin_themes_dir(),
        "cache": cache_dir(),
        "models": models,
    }


LOCATE_LABELS = {
    "settings": "settings file",
    "config": "config folder",
    "themes": "your themes",
    "builtin-themes": "built-in themes",
    "cache": "phi3tui cache",
    "models": "models (Hugging Face cache)",
}


def cmd_locate(args) -> int:
    places = locations()
    if args.what:
        print(places[args.what])
        return 0
    width = max(map(len, LOCATE_LABELS.values()))
    for key, path in places.items():
        note = "" if path.exists() else "  (not created yet)"
        print(f"{LOCATE_LABELS[key]:<{width}}  {path}{note}")
    return 0


# -- themes ---------------------------------------------------------------------------------
def cmd_themes(args) -> int:
    from phi3tui.core.settings import load_settings
    from phi3tui.core.themes import ThemeError, load_theme_file, load_themes
    from phi3tui.appearance import colour_error

    if args.check:
        try:
            spec = load_theme_file(args.check, colour_check=colour_error)
        except ThemeError as exc:
            return _fail("themes", str(exc))
        print(f"{args.check}: theme {spec.name!r} is fine ({'dark' if spec.dark else 'light'})")
        return 0
    catalog = load_themes(colour_check=colour_error)
    current = load_settings().settings.theme
    width = max((len(n) for n in catalog.themes), default=4)
    for name, spec in sorted(catalog.themes.items()):
        mark = "*" if name == current else " "
        origin = "built-in" if spec.builtin else str(spec.source)
        print(f"{mark} {name:<{width}}  {'dark ' if spec.dark else 'light'}  {origin}")
    print("(* the theme in settings.yaml; Textual's own themes, e.g. nord, gruvbox, are available too)")
    for problem in catalog.problems:
        print(f"phi3tui themes: {problem}", file=sys.stderr)
    return 2 if catalog.problems else 0


# -- keys -----------------------------------------------------------------------------------
def cmd_keys(args) -> int:
    from phi3tui.core.settings import load_settings
    from phi3tui.app import Phi3App
    from phi3tui.appearance import binding_table, keymap_clashes
    from phi3tui.screens.help import key_character

    keymap = load_settings().settings.keymap
    rows = binding_table(Phi3App)
    known = {row[0] for row in rows}
    width = max(len(row[0]) for row in rows)
    for binding_id, keys, description, owner in rows:
        mapped = keymap.get(binding_id)
        keys = ",".join(key_character(key.strip()) for key in keys.split(","))  # [ rather than left_square_bracket
        shown = f"{mapped} (was {keys})" if mapped else keys
        print(f"{binding_id:<{width}}  {shown:<18}  {description or '-'}  [{owner}]")
    unknown = [binding_id for binding_id in keymap if binding_id not in known]
    for binding_id in unknown:
        print(f"phi3tui keys: settings keymap: no binding has the id {binding_id!r}", file=sys.stderr)
    clashes = keymap_clashes(keymap, Phi3App)
    for clash in clashes:
        print(f"phi3tui keys: {clash}", file=sys.stderr)
    return 2 if unknown or clashes else 0


# -- serve ----------------------------------------------------------------------------------
SERVE_HOST = "127.0.0.1"


def cmd_serve(args) -> int:
    from phi3tui.core.settings import startup_workspace
    from phi3tui.core.workspace import NotAWorkspace, Workspace

    try:
        from textual_serve.server import Server
    except ImportError:
        return _fail("serve", "textual-serve is not installed; run: pip install 'phi3tui[serve]' (or pip install textual-serve)")
    try:
        ws = Workspace.open(args.workspace or startup_workspace())
    except NotAWorkspace as exc:
        return _fail("serve", f"{exc}\nhint: {exc.hint}")
    if not 0 < args.port < 65536:
        return _fail("serve", f"--port {args.port} is not a port number (1-65535)")
    import socket

    with socket.socket() as probe:  # a clear message instead of aiohttp's traceback
        try:
            probe.bind((SERVE_HOST, args.port))
        except OSError as exc:
            return _fail("serve", f"cannot listen on {SERVE_HOST}:{args.port} ({exc.strerror}); pick another with --port")
    from phi3tui.core.files import shell_command

    command = shell_command(sys.executable, "-m", "phi3tui", ws.root, "--screen", args.screen)
    server = Server(command, host=SERVE_HOST, port=args.port, title=f"phi3tui — {ws.name}", public_url=args.public_url)
    server.serve()
    return 0
