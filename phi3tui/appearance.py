"""How the user's settings.yaml and theme files shape the running app: its theme, keymap, terminal title and
notifications (a mixin for Phi3App), and the keymap's checks that `phi3tui keys` shares.

What is read and validated lives in phi3tui.core (settings.py, themes.py, terminal.py); this module
turns it into Textual themes, a keymap, the terminal title and notifications.
"""

from __future__ import annotations

from importlib import import_module

from textual.binding import Binding
from textual.color import Color, ColorParseError
from textual.theme import Theme

from phi3tui.core.settings import DEFAULT_THEME, SettingsError, load_settings, save_setting
from phi3tui.core.themes import ThemeSpec, load_themes
from phi3tui.textual_private import app_keymap, invalidate_css


# -- themes ---------------------------------------------------------------------------------
def colour_error(value: str) -> str | None:
    """Why `value` is not a colour Textual understands, or None."""
    try:
        Color.parse(value)
    except ColorParseError as exc:
        suggestion = getattr(exc, "suggested_color", None)
        return f"did you mean {suggestion}?" if suggestion else "unknown colour"
    return None


def textual_theme(spec: ThemeSpec) -> Theme:
    return Theme(
        name=spec.name,
        dark=spec.dark,
        ansi=spec.ansi,
        variables=spec.all_variables(),
        **spec.colours,
        **spec.numbers,
    )


def rich_colour(value: str) -> str:
    """A theme colour as Rich markup takes it: ansi_red -> 'red' (the terminal's own red), else '#RRGGBB'."""
    if value.startswith("ansi_"):
        return value[len("ansi_"):]
    try:
        return Color.parse(value).hex6
    except ColorParseError:
        return value


# -- keymap ---------------------------------------------------------------------------------
def _as_binding(binding) -> Binding:
    return binding if isinstance(binding, Binding) else Binding(*binding)


def remapped(bindings, keymap: dict[str, str]) -> list[Binding]:
    """Bindings with the keymap's keys, for the help screen and the palette's key hints."""
    out = []
    for binding in map(_as_binding, bindings):
        keys = keymap.get(binding.id or "")
        out.append(binding.with_key(key=keys, key_display=None) if keys else binding)
    return out


def binding_classes(app_class: type) -> list[type]:
    """The app class, its bases, and every class in phi3tui.screens and phi3tui.widgets that declares
    BINDINGS. The app class is passed in, not imported: the app imports this module."""
    import pkgutil  # here: the start-up walks no packages

    from phi3tui import screens, widgets

    modules = [import_module(app_class.__module__)]
    for package in (screens, widgets):
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            modules.append(import_module(info.name))
    seen = []
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__ and "BINDINGS" in vars(value):
                seen.append(value)
    return seen


def binding_table(app_class: type) -> list[tuple[str, str, str, str]]:
    """(binding id, keys, description, class) for every binding of the app, screens and widgets."""
    rows = []
    for cls in binding_classes(app_class):
        for binding in map(_as_binding, cls.BINDINGS):
            rows.append((binding.id or "", binding.key, binding.description, cls.__name__))
    return rows


def unknown_keymap_ids(keymap: dict[str, str], app_class: type) -> list[str]:
    known = {row[0] for row in binding_table(app_class)}
    return [binding_id for binding_id in keymap if binding_id not in known]


def keymap_clashes(keymap: dict[str, str], app_class: type) -> list[str]:
    """Keys the keymap gives to a binding while another binding of the same screen (or the app's
    own) still has them by default: the remapped one wins there, the other silently loses the key."""
    rows = binding_table(app_class)
    effective: dict[str, list[tuple[str, set[str], str]]] = {}
    for binding_id, keys, description, owner in rows:
        mapped = keymap.get(binding_id)
        key_set = {b.key for b in Binding.make_bindings([Binding(mapped or keys, "")])}  # Textual's own key names
        effective.setdefault(owner, []).append((binding_id, key_set, description))
    app_rows = effective.get("Phi3App", [])
    every_row = [row for owner_rows in effective.values() for row in owner_rows]
    problems = []
    for owner, owner_rows in effective.items():
        # An app-wide key meets every screen's keys (a screen's own binding wins there).
        others = every_row if owner == "Phi3App" else owner_rows + app_rows
        for binding_id, key_set, _ in owner_rows:
            if binding_id not in keymap:
                continue
            for other_id, other_keys, other_description in others:
                if other_id == binding_id or other_id in keymap:
                    continue
                for key in sorted(key_set & other_keys):
                    problems.append(
                        f"keymap: {binding_id} takes {key}, which {other_id} ({other_description}) "
                        f"also uses; remap {other_id} too"
                    )
    return problems


# -- the mixin ------------------------------------------------------------------------------
class AppearanceMixin:
    """Settings-driven behaviour for Phi3App. Call load_user_settings() in __init__ and
    start_user_settings() in on_mount."""

    def load_user_settings(self) -> None:
        self.terminal_title = ""
        self.desktop_notifications: list[str] = []
        self._title_pushed = False
        self.theme_specs: dict[str, ThemeSpec] = {}
        self.startup_problems = self.apply_user_settings()

    def apply_user_settings(self) -> list[str]:
        """Read settings.yaml and the theme files; apply the theme and keymap. Returns the problems."""
        loaded = load_settings()
        self.settings = loaded.settings
        self.settings_writable = loaded.writable
        problems = list(loaded.problems)
        catalog = load_themes(colour_check=colour_error)
        problems += catalog.problems
        for name in set(self.theme_specs) - set(catalog.themes):  # a theme file removed since
            if name != self.theme:
                self.unregister_theme(name)
        self.theme_specs = catalog.themes
        for spec in catalog.themes.values():
            self.register_theme(textual_theme(spec))
        wanted = self.settings.theme
        if wanted not in self.available_themes:
            problems.append(
                f"settings: theme {wanted!r} is not available; using {DEFAULT_THEME} "
                "(pick another from the palette: ctrl+p, then 'theme')"
            )
            wanted = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.settings.theme = wanted
        if wanted == self.theme and self.is_running:
            # Same name, perhaps new colours: the theme watcher will not run, so redo what it does
            # (invalidate_css makes the other modes' screens update too).
            invalidate_css(self)
            self.refresh_css(animate=False)
        self.theme = wanted
        self.set_keymap(self.settings.keymap)
        return problems

    def reload_user_settings(self) -> None:
        """Palette: re-read settings.yaml and the theme files without restarting."""
        problems = self.apply_user_settings()
        for problem in problems:
            self.notify(problem, title="phi3tui settings", severity="warning", timeout=12)
        self._check_keymap()
        self.notify(f"settings and {len(self.theme_specs)} themes reloaded", title="phi3tui settings")

    def user_settings_commands(self):
        from textual.app import SystemCommand

        from phi3tui.core.settings import settings_path, user_themes_dir

        yield SystemCommand(
            "Settings: reload", "Re-read settings.yaml and the theme files", self.reload_user_settings
        )
        yield SystemCommand(
            "Settings: where files live",
            "Show the settings file and your themes folder",
            lambda: self.notify(
                f"settings: {settings_path()}\nthemes: {user_themes_dir()}", title="phi3tui locate", timeout=20
            ),
        )

    def start_user_settings(self) -> None:
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        # Reported once, after the first paint.
        for problem in self.startup_problems:
            self.notify(problem, title="phi3tui settings", severity="warning", timeout=12)
        if self.settings.keymap:
            self.call_after_refresh(self._check_keymap)

    def _check_keymap(self) -> None:
        problems = keymap_clashes(self.settings.keymap, type(self))
        unknown = unknown_keymap_ids(self.settings.keymap, type(self))
        if unknown:
            problems.insert(0, f"keymap: no binding has the id {', '.join(unknown)}; `phi3tui keys` lists the ids")
        for problem in problems:
            self.notify(problem, title="phi3tui settings", severity="warning", timeout=12)

    def _remember_theme(self, theme: Theme) -> None:
        if theme.name == self.settings.theme:
            return
        self.settings.theme = theme.name
        if not self.settings_writable:
            self.notify("theme not remembered: the settings file has an error", severity="warning")
            return
        try:
            save_setting("theme", theme.name)
        except (SettingsError, OSError) as exc:
            self.notify(f"theme not remembered: {exc}", severity="warning")

    def remapped(self, bindings) -> list[Binding]:
        return remapped(bindings, app_keymap(self))

    @property
    def plot_refresh_s(self) -> float:
        """Live plots are redrawn at most this often (settings.yaml `plot_refresh_s`)."""
        return self.settings.plot_refresh_s

    # -- terminal title and notifications --------------------------------------------------
    def write_terminal(self, sequence: str) -> None:
        driver = getattr(self, "_driver", None)
        if driver is not None and not self.is_headless:
            driver.write(sequence)
            driver.flush()

    def show_runs_in_terminal(self, poll) -> None:
        """The terminal title and the run-end notifications, from one poll of the app's RunWatcher."""
        from phi3tui.core.terminal import (
            TITLE_PUSH,
            notification_kind,
            notification_sequence,
            title_sequence,
        )

        progress = poll.title
        name = getattr(self.workspace, "name", "")
        title = f"phi3tui — {name}" + (f" — {progress}" if progress else "")
        if self.settings.terminal_title and title != self.terminal_title:
            if not self._title_pushed:
                self.write_terminal(TITLE_PUSH)
                self._title_pushed = True
            self.terminal_title = title
            self.write_terminal(title_sequence(title))
        kind = notification_kind(self.settings.notifications)
        for event in poll.events:
            self.notify(event.body, title=event.title, severity=event.severity, timeout=10)
            if kind:
                self.desktop_notifications.append(f"{event.title}: {event.body}")
                self.write_terminal(notification_sequence(event.title, event.body, kind))

    def restore_terminal_title(self) -> None:
        from phi3tui.core.terminal import TITLE_POP

        if self._title_pushed:
            self.write_terminal(TITLE_POP)
            self._title_pushed = False
