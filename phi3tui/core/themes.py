"""Theme files: the built-in ones shipped with phi3tui, and the user's own, which add to and override them.

A theme file is YAML: a Textual theme (name, dark, primary, secondary, accent, warning, error, success,
foreground, background, surface, panel, boost, ...), the app's colour roles under `roles:` and any
other Textual variables under `variables:`. See themes/phi3-dark.yaml.

Built-in themes live in the wheel as phi3tui/_themes (pyproject force-includes the top-level themes/
folder there); an editable install has no such folder, so the source tree's themes/ is used instead.
This module never imports Textual: the caller passes a colour checker (the app passes Textual's).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from phi3tui.core.kept_yaml import kept_parse
from phi3tui.core.settings import SettingsError, read_yaml, user_themes_dir, yaml_line

# The app's own colour roles (also APP_COLOUR_ROLES in app.py, which says which Textual colour each
# falls back to). A built-in theme sets all of them.
ROLE_NAMES = ("train-loss", "val-loss", "base-model", "adapted-model", "good", "warn", "bad")
COLOUR_FIELDS = (
    "primary", "secondary", "accent", "warning", "error", "success",
    "foreground", "background", "surface", "panel", "boost",
)
NUMBER_FIELDS = ("luminosity_spread", "text_alpha")
BOOL_FIELDS = ("dark", "ansi")
SECTION_FIELDS = ("roles", "variables")
KNOWN_FIELDS = ("name", *COLOUR_FIELDS, *NUMBER_FIELDS, *BOOL_FIELDS, *SECTION_FIELDS)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
THEME_SUFFIXES = (".yaml", ".yml")

ColourCheck = Callable[[str], "str | None"]  # returns why a value is not a colour, or None


class ThemeError(Exception):
    """A theme file cannot be used. str() names the file, line and field and says what to do."""


@dataclass
class ThemeSpec:
    name: str
    source: Path
    builtin: bool
    dark: bool = True
    colours: dict[str, str] = field(default_factory=dict)  # Textual base colours (primary, ...)
    numbers: dict[str, float] = field(default_factory=dict)
    ansi: bool = False
    roles: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)

    def all_variables(self) -> dict[str, str]:
        """Textual variables for the theme: the user's extra variables, then the roles."""
        return {**self.variables, **self.roles}


@dataclass
class ThemeCatalog:
    themes: dict[str, ThemeSpec] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def builtin_themes_dir() -> Path:
    """Where the built-in theme files are: inside the installed wheel, else the source tree."""
    package_dir = Path(__file__).resolve().parent.parent
    installed = package_dir / "_themes"
    if installed.is_dir():
        return installed
    return package_dir.parent / "themes"


def theme_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in THEME_SUFFIXES and p.is_file())


def _read_fast(text: str, path: Path):
    """A built-in theme file through PyYAML's C loader: about 20x quicker than the round-trip parser, which
    then is not even imported on a start with no settings.yaml or user themes. No line numbers: a
    built-in file that fails is read again the slow way to say where (load_theme_file)."""
    def parse(text: str):
        import yaml

        try:
            return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            raise ThemeError(f"{path}: not valid YAML") from None

    # Read before the first paint: kept_parse answers without importing PyYAML when the text was read before.
    return kept_parse(text, "theme", parse)


def parse_theme(
    text: str, path: Path, builtin: bool = False, colour_check: ColourCheck | None = None, fast: bool = False,
) -> ThemeSpec:
    """One theme from YAML text. Raises ThemeError naming the file, line and field (the line only when not fast)."""

    def fail(node, key, what: str):
        line = yaml_line(node, key) if node is not None else None
        where = f"{path}:{line}" if line else str(path)
        raise ThemeError(f"{where}: {key}: {what}" if key else f"{where}: {what}")

    try:
        data = _read_fast(text, path) if fast else read_yaml(text, path)
    except SettingsError as exc:
        raise ThemeError(f"{exc}; fix the file or remove it") from None
    if not isinstance(data, dict):
        raise ThemeError(f"{path}: a theme file is a YAML mapping with at least `name:` and `primary:`")
    for key in data:
        if key not in KNOWN_FIELDS:
            fail(data, key, f"unknown field; known: {', '.join(KNOWN_FIELDS)}")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        fail(data, "name", "expected a theme name of lower-case letters, digits and dashes, e.g. my-theme")
    if "primary" not in data:
        fail(None, None, "no `primary:` colour; every theme needs one (e.g. primary: \"#4C8BF5\")")

    def colour(node, key) -> str:
        value = node[key]
        if not isinstance(value, str) or not value.strip():
            fail(node, key, f"expected a colour such as \"#4C8BF5\" or ansi_blue, found {value!r}")
        value = value.strip()
        why = colour_check(value) if colour_check else None
        if why:
            fail(node, key, f"{value!r} is not a colour ({why}); use e.g. \"#4C8BF5\", \"rgb(76,139,245)\" or ansi_blue")
        return value

    spec = ThemeSpec(name=name, source=path, builtin=builtin)
    for key in COLOUR_FIELDS:
        if data.get(key) is not None:
            spec.colours[key] = colour(data, key)
    for key in NUMBER_FIELDS:
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                fail(data, key, f"expected a number between 0 and 1, found {value!r}")
            spec.numbers[key] = float(value)
    for key in BOOL_FIELDS:
        if key in data and not isinstance(data[key], bool):
            fail(data, key, f"expected true or false, found {data[key]!r}")
    spec.dark = data.get("dark", True)
    spec.ansi = data.get("ansi", False)
    for section in SECTION_FIELDS:
        node = data.get(section)
        if node is None:
            continue
        if not isinstance(node, dict):
            fail(data, section, "expected a mapping of name: colour")
        target = spec.roles if section == "roles" else spec.variables
        for key in node:
            if section == "roles" and key not in ROLE_NAMES:
                fail(node, key, f"not a colour role; the roles are {', '.join(ROLE_NAMES)}")
            target[str(key)] = colour(node, key)
    if builtin:
        missing = [r for r in ROLE_NAMES if r not in spec.roles]
        if missing:
            fail(data, "roles", f"a built-in theme sets every role; missing {', '.join(missing)}")
    return spec


def load_theme_file(path: Path, builtin: bool = False, colour_check: ColourCheck | None = None) -> ThemeSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ThemeError(f"{path}: cannot be read ({exc})") from None
    if builtin:  # the start-up path: ours, known good
        try:
            return parse_theme(text, path, builtin=True, colour_check=colour_check, fast=True)
        except ThemeError:
            pass  # read it again to name the line
    return parse_theme(text, path, builtin=builtin, colour_check=colour_check)


def load_themes(
    colour_check: ColourCheck | None = None,
    builtin_dir: Path | None = None,
    user_dir: Path | None = None,
) -> ThemeCatalog:
    """Built-in themes, then the user's (a user theme with a built-in's name replaces it).
    A broken file is skipped and reported once in `problems`."""
    catalog = ThemeCatalog()
    for folder, builtin in ((builtin_dir or builtin_themes_dir(), True), (user_dir or user_themes_dir(), False)):
        seen: dict[str, Path] = {}
        for path in theme_files(folder):
            try:
                spec = load_theme_file(path, builtin=builtin, colour_check=colour_check)
            except ThemeError as exc:
                catalog.problems.append(f"{exc} (theme skipped)")
                continue
            if spec.name in seen:
                catalog.problems.append(
                    f"{path}: theme {spec.name!r} is also defined in {seen[spec.name]}; using {path.name}"
                )
            seen[spec.name] = path
            catalog.themes[spec.name] = spec
    return catalog
