"""The user's settings: one YAML file in the user's config folder (platformdirs).

    theme: phi3-dark            # a theme name (built-in or a file in <config>/themes/)
    keymap:                     # binding id -> keys (comma-separated); `phi3tui keys` lists the ids
      app.mode.data: f1,ctrl+d
    plot_refresh_s: 0.5         # the loss plot is redrawn at most this often (seconds)
    default_workspace: ~/ft     # opened by a bare `phi3tui` when the current folder is not a workspace
    notifications: auto         # desktop notifications when a run ends: auto | osc9 | osc777 | off
    terminal_title: true        # show the live run's progress in the terminal's title
    keep_awake: auto            # keep the machine from sleeping while a run lives: auto | off
    stalled_run: wait           # a run that stopped stepping: wait for it (the queue too) | kill it and go on

PHI3TUI_CONFIG_DIR and PHI3TUI_CACHE_DIR move the folders (tests use them; so can people with
several setups). A broken file never stops the app: `load_settings` returns the defaults and a
problem naming the file, line and field; saving refuses to overwrite a file it could not read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, fields
from pathlib import Path

from phi3tui.core.app_dirs import APP_NAME, CACHE_DIR_ENV, CONFIG_DIR_ENV, cache_dir, config_dir  # noqa: F401
from phi3tui.core.files import atomic_write_text

SETTINGS_NAME = "settings.yaml"
THEMES_DIR_NAME = "themes"
DEFAULT_THEME = "phi3-dark"
NOTIFICATION_KINDS = ("auto", "osc9", "osc777", "off")
PLOT_REFRESH_RANGE = (0.1, 60.0)
KEEP_AWAKE_MODES = ("auto", "off")  # what core/awake.py does with them
STALLED_RUN_MODES = ("wait", "kill")  # what core/runs/stall.py does with a run that stopped stepping


class SettingsError(Exception):
    """The settings file cannot be used as written. str() names the file, line and field."""


def settings_path() -> Path:
    return config_dir() / SETTINGS_NAME


def user_themes_dir() -> Path:
    return config_dir() / THEMES_DIR_NAME


@dataclass
class Settings:
    theme: str = DEFAULT_THEME
    keymap: dict[str, str] = field(default_factory=dict)
    plot_refresh_s: float = 0.5
    default_workspace: str | None = None
    notifications: str = "auto"
    terminal_title: bool = True
    keep_awake: str = "auto"
    stalled_run: str = "wait"

    def default_workspace_path(self) -> Path | None:
        return Path(self.default_workspace).expanduser() if self.default_workspace else None


FIELD_NAMES = tuple(f.name for f in fields(Settings))


@dataclass
class LoadedSettings:
    settings: Settings
    path: Path
    problems: list[str] = field(default_factory=list)
    # False when the file exists but could not be parsed: saving would lose what the user wrote.
    writable: bool = True


def yaml_line(node, key: str) -> int | None:
    """1-based line of `key` in a ruamel mapping, when known."""
    try:
        return node.lc.key(key)[0] + 1
    except Exception:
        return None


def _where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


def read_yaml(text: str, path: Path):
    """Round-trip YAML, which keeps line numbers for messages. Raises SettingsError
    'PATH:LINE: not valid YAML (why)'."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        why = getattr(exc, "problem", None) or exc
        raise SettingsError(f"{_where(path, line)}: not valid YAML ({why})") from None


def parse_settings(text: str, path: Path) -> tuple[Settings, list[str]]:
    """Settings from YAML text. Raises SettingsError when the text is not a YAML mapping;
    a bad field is reported in the returned problems and left at its default."""
    data = read_yaml(text, path)
    if data is None:
        return Settings(), []
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of settings (key: value), found {type(data).__name__}")
    settings, problems = Settings(), []

    def bad(key: str, what: str) -> None:
        problems.append(f"{_where(path, yaml_line(data, key))}: {key}: {what}; using the default")

    for key, value in data.items():
        if key not in FIELD_NAMES:
            problems.append(
                f"{_where(path, yaml_line(data, key))}: unknown setting {key!r}; known: {', '.join(FIELD_NAMES)}"
            )
        elif key == "theme":
            if isinstance(value, str) and value.strip():
                settings.theme = value.strip()
            else:
                bad(key, "expected a theme name")
        elif key == "keymap":
            if value is None:
                continue
            if not isinstance(value, dict):
                bad(key, "expected a mapping of binding id -> keys, e.g. app.mode.data: f1,ctrl+d")
                continue
            for binding_id, keys in value.items():
                if isinstance(keys, list):
                    keys = ",".join(str(k) for k in keys)
                if not isinstance(keys, str) or not keys.strip():
                    problems.append(
                        f"{_where(path, yaml_line(value, binding_id))}: keymap.{binding_id}: expected keys "
                        "such as 'f1' or 'ctrl+d,f1'; ignored"
                    )
                    continue
                settings.keymap[str(binding_id)] = ",".join(k.strip() for k in keys.split(",") if k.strip())
        elif key == "plot_refresh_s":
            low, high = PLOT_REFRESH_RANGE
            if isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high:
                settings.plot_refresh_s = float(value)
            else:
                bad(key, f"expected seconds between {low} and {high}, found {value!r}")
        elif key == "default_workspace":
            if value is None or (isinstance(value, str) and value.strip()):
                settings.default_workspace = value.strip() if value else None
            else:
                bad(key, "expected a folder path")
        elif key == "notifications":
            if value in NOTIFICATION_KINDS:
                settings.notifications = value
            elif value is False:
                settings.notifications = "off"
            else:
                bad(key, f"expected one of {', '.join(NOTIFICATION_KINDS)}, found {value!r}")
        elif key == "terminal_title":
            if isinstance(value, bool):
                settings.terminal_title = value
            else:
                bad(key, f"expected true or false, found {value!r}")
        elif key == "keep_awake":
            if value in KEEP_AWAKE_MODES:
                settings.keep_awake = value
            elif value is False:  # YAML reads a bare `off` as false
                settings.keep_awake = "off"
            else:
                bad(key, f"expected one of {', '.join(KEEP_AWAKE_MODES)}, found {value!r}")
        elif key == "stalled_run":
            if value in STALLED_RUN_MODES:
                settings.stalled_run = value
            else:
                bad(key, f"expected one of {', '.join(STALLED_RUN_MODES)}, found {value!r}")
    return settings, problems


def load_settings(path: Path | None = None) -> LoadedSettings:
    """The user's settings; never raises (a missing file means the defaults)."""
    path = path or settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LoadedSettings(Settings(), path)
    except (OSError, UnicodeDecodeError) as exc:
        return LoadedSettings(Settings(), path, [f"{path}: cannot be read ({exc}); using the defaults"], writable=False)
    try:
        settings, problems = parse_settings(text, path)
    except SettingsError as exc:
        return LoadedSettings(Settings(), path, [f"{exc}; fix or delete the file; using the defaults"], writable=False)
    return LoadedSettings(settings, path, problems)


def save_setting(key: str, value, path: Path | None = None) -> Path:
    """Set one top-level setting, keeping the rest of the file (comments included). Atomic.
    Raises SettingsError when the existing file cannot be parsed (it is left as it is)."""
    if key not in FIELD_NAMES:
        raise SettingsError(f"unknown setting {key!r}; known: {', '.join(FIELD_NAMES)}")
    from ruamel.yaml import YAML

    path = path or settings_path()
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if text.strip():
        parse_settings(text, path)  # raises on a file we could not read back
        data = yaml.load(text)
    else:
        data = None
    if data is None:
        from ruamel.yaml.comments import CommentedMap

        data = CommentedMap()
    data[key] = value
    out = io.StringIO()
    yaml.dump(data, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, out.getvalue())
    return path


SETTINGS_TEMPLATE = f"""\
# phi3tui settings. Delete a line to get its default back.
theme: {DEFAULT_THEME}            # any name `phi3tui themes` lists; the palette (ctrl+p, "theme") switches and remembers
keymap: {{}}                # binding id -> keys, e.g.  app.mode.data: f1,ctrl+d   (`phi3tui keys` lists the ids)
plot_refresh_s: 0.5       # the loss plot is redrawn at most this often, in seconds
default_workspace: null   # opened by a bare `phi3tui` when the current folder is not a workspace
notifications: auto       # when a run finishes or fails: auto | osc9 | osc777 | off
terminal_title: true      # the terminal's title shows the live run's progress
keep_awake: auto          # while a run lives: caffeinate (macOS) / systemd-inhibit (Linux) | off
stalled_run: wait         # a run that stopped stepping: wait for it (the queue too) | kill it and go on
"""


def write_template(path: Path | None = None, force: bool = False) -> Path:
    """Write a commented settings file with the defaults. Refuses to overwrite unless force."""
    path = path or settings_path()
    if path.exists() and not force:
        raise SettingsError(f"{path} already exists; edit it, or pass --force to replace it with the defaults")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, SETTINGS_TEMPLATE)
    return path


def startup_workspace(cwd: Path | None = None) -> str:
    """What a bare `phi3tui` opens: the current folder when it is a workspace (or no default is set),
    else `default_workspace` from the settings."""
    from phi3tui.core.workspace import NotAWorkspace, Workspace

    here = cwd or Path(".")
    default = load_settings().settings.default_workspace_path()
    if default is None:
        return str(here)
    try:
        Workspace.open(here)
        return str(here)
    except NotAWorkspace:
        return str(default)
