"""Theme files: the built-in ones, user themes that add and override, broken files, the palette, the
wheel, 16-colour and NO_COLOR terminals."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from rich.style import Style
from textual.color import Color

from phi3tui.app import APP_COLOUR_ROLES, Phi3App
from phi3tui.core.settings import CONFIG_DIR_ENV, load_settings
from phi3tui.core.themes import ROLE_NAMES, ThemeError, builtin_themes_dir, load_themes, parse_theme
from phi3tui.core.workspace import Workspace
from phi3tui.appearance import colour_error
from tests.conftest import REPO, run_cli

USER_THEME = """\
name: {name}
dark: true
primary: "#112233"
background: "#000000"
roles:
  train-loss: "#FF00AA"
"""


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]


def test_builtin_themes_are_valid_and_set_every_role(config_dir):
    catalog = load_themes(colour_check=colour_error)
    assert catalog.problems == []
    builtin = {name: spec for name, spec in catalog.themes.items() if spec.builtin}
    assert set(ROLE_NAMES) == set(APP_COLOUR_ROLES)  # core and app agree on the roles
    for spec in builtin.values():
        assert set(spec.roles) == set(ROLE_NAMES), spec.name
    # A dark one, a light one, and one made of the terminal's own 16 colours.
    assert builtin["phi3-dark"].dark and not builtin["phi3-light"].dark
    sixteen = builtin["phi3-16"]
    assert sixteen.ansi and all(v.startswith("ansi_") for v in [*sixteen.colours.values(), *sixteen.roles.values()])


async def test_app_uses_the_theme_roles_in_css_and_code(config_dir, demo_workspace):
    spec = load_themes(colour_check=colour_error).themes["phi3-light"]
    (config_dir / "settings.yaml").write_text("theme: phi3-light\n")
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == "phi3-light"
        variables = app.get_css_variables()
        for role in ROLE_NAMES:
            assert variables[role] == spec.roles[role]
            assert app.colour(role).upper() == spec.roles[role].upper()


def _drawn(app) -> list:
    """The segments of the current screen as the terminal would get them."""
    import io

    from rich.console import Console

    console = Console(width=80, height=24, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    return list(console.render(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)))


def _colours_beyond_16(app) -> list[str]:
    """Every drawn segment of the current screen whose colour is not one of the terminal's 16 (or its default)."""
    from rich.color import ColorType

    found = []
    for segment in _drawn(app):
        for colour in (segment.style.color, segment.style.bgcolor) if segment.style else ():
            if colour is not None and colour.type not in (ColorType.DEFAULT, ColorType.STANDARD):
                found.append(f"{segment.text[:30]!r} in {segment.style}")
    return found


@pytest.mark.parametrize("mode", ("data", "config", "train", "chat", "export"))
async def test_sixteen_colour_theme_gives_terminal_colour_names(config_dir, demo_workspace, mode):
    (config_dir / "settings.yaml").write_text("theme: phi3-16\n")
    app = Phi3App(Workspace.open(demo_workspace), start_mode=mode)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        if mode == "data":  # the check's summary line is drawn when the check is done
            deadline = time.monotonic() + 20
            while "checked:" not in "".join(seg.text for seg in _drawn(app)) and time.monotonic() < deadline:
                await pilot.pause(0.1)
        await pilot.pause()
        assert app.theme == "phi3-16"
        assert app.colour("bad") == "red" and app.colour("train-loss") == "blue"
        for role in ROLE_NAMES:
            style = Style.parse(f"bold {app.colour(role)}")  # usable in Rich markup
            assert style.color.number is not None and style.color.number < 16
        # The screen is drawn with the terminal's own 16 colours only (what a 16-colour terminal can show).
        assert app.current_mode == mode
        assert _colours_beyond_16(app) == []


async def test_user_themes_add_and_override_builtin_ones(config_dir, demo_workspace):
    themes = config_dir / "themes"
    themes.mkdir()
    (themes / "mine.yaml").write_text(USER_THEME.format(name="mine"))
    (themes / "dark-again.yml").write_text(USER_THEME.format(name="phi3-dark"))
    catalog = load_themes(colour_check=colour_error)
    assert catalog.problems == []
    assert not catalog.themes["phi3-dark"].builtin and catalog.themes["phi3-dark"].source == themes / "dark-again.yml"
    (config_dir / "settings.yaml").write_text("theme: mine\n")
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == "mine"
        assert app.colour("train-loss") == "#FF00AA"
        # A role the user theme leaves out falls back to the Textual colour it is based on.
        assert app.colour("bad") == Color.parse(app.get_css_variables()["error"]).hex6
        app.theme = "phi3-dark"
        await pilot.pause()
        assert app.colour("train-loss") == "#FF00AA"  # the user's phi3-dark replaced the built-in


async def test_broken_theme_files_are_reported_once_and_skipped(config_dir, demo_workspace):
    themes = config_dir / "themes"
    themes.mkdir()
    (themes / "bad-colour.yaml").write_text('name: bad-colour\nprimary: "#112233"\nroles:\n  good: "not a colour"\n')
    (themes / "bad-yaml.yaml").write_text("name: bad-yaml\nprimary: [\n")
    (themes / "ok.yaml").write_text(USER_THEME.format(name="ok"))
    catalog = load_themes(colour_check=colour_error)
    assert set(catalog.themes) >= {"ok", "phi3-dark"} and "bad-colour" not in catalog.themes
    problems = "\n".join(catalog.problems)
    assert f"{themes / 'bad-colour.yaml'}:4: good: 'not a colour' is not a colour" in problems
    assert f"{themes / 'bad-yaml.yaml'}:" in problems and "not valid YAML" in problems

    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for mode in ("train", "export"):
            app.switch_mode(mode)
            await pilot.pause()
        assert "ok" in app.available_themes and "bad-colour" not in app.available_themes
        for name in ("bad-colour.yaml", "bad-yaml.yaml"):
            assert len([m for m in notifications(app) if name in m]) == 1

    listed = run_cli("themes", env={CONFIG_DIR_ENV: str(config_dir)})
    assert listed.returncode == 2
    assert "ok" in listed.stdout and "phi3-light" in listed.stdout and "bad-colour.yaml:4" in listed.stderr
    checked = run_cli("themes", "--check", str(themes / "bad-colour.yaml"))
    assert checked.returncode == 2 and "bad-colour.yaml:4: good" in checked.stderr
    assert run_cli("themes", "--check", str(themes / "ok.yaml")).returncode == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("primary: '#112233'\n", "name"),
        ("name: x\n", "no `primary:`"),
        ("name: x\nprimary: '#112233'\nshade: '#000000'\n", "3: shade: unknown field"),
        ("name: x\nprimary: '#112233'\nroles:\n  loss: '#000000'\n", "4: loss: not a colour role"),
        ("name: x\nprimary: '#112233'\ndark: maybe\n", "3: dark: expected true or false"),
        ("- a list\n", "a theme file is a YAML mapping"),
    ],
)
def test_theme_mistakes_name_the_line_and_field(text, message, tmp_path):
    with pytest.raises(ThemeError, match=re.escape(message)):
        parse_theme(text, tmp_path / "t.yaml", colour_check=colour_error)


async def test_theme_switched_from_the_palette_is_remembered(config_dir, demo_workspace):
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == "phi3-dark"
        app.set_focus(None)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"theme")
        await pilot.pause(0.3)
        await pilot.press("enter")  # Textual's "Theme" command opens the theme list
        await pilot.pause(0.3)
        await pilot.press(*"phi3-light")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.theme == "phi3-light"
    assert load_settings().settings.theme == "phi3-light"
    again = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with again.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert again.theme == "phi3-light"


async def test_unknown_remembered_theme_falls_back_with_a_notice(config_dir, demo_workspace):
    (config_dir / "settings.yaml").write_text("theme: gone-theme\n")
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == "phi3-dark"
        assert any("gone-theme" in m for m in notifications(app))


def _svg_fills(svg: str) -> set[tuple[int, int, int]]:
    return {
        tuple(int(h[i : i + 2], 16) for i in (0, 2, 4)) for h in re.findall(r"fill:\s*#([0-9a-fA-F]{6})", svg)
    }


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
async def test_no_color_is_respected(no_color, config_dir, demo_workspace, monkeypatch):
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    app = Phi3App(Workspace.open(demo_workspace), start_mode="config")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.switch_mode("train")
        await pilot.pause(0.5)
        fills = _svg_fills(app.export_screenshot())
    coloured = {rgb for rgb in fills if max(rgb) - min(rgb) > 8}
    if no_color:
        assert app.no_color and not coloured, sorted(coloured)[:5]
    else:
        assert coloured


def test_no_colour_literals_in_screens_or_widgets():
    literal = re.compile(r"#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b|\brgba?\(|\bhsl\(")
    offenders = []
    for folder in ("screens", "widgets"):
        for path in sorted((REPO / "phi3tui" / folder).glob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if literal.search(line.split("  #")[0]):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "colours belong in themes/ (use $variables or app.colour()):\n" + "\n".join(offenders)


def test_wheel_carries_the_themes_and_finds_them_installed(tmp_path):
    pytest.importorskip("hatchling", reason="hatchling (in the test extra) builds the wheel offline")
    out = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(out.glob("phi3tui-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("phi3tui/_themes/")}
    assert shipped == {p.name for p in (REPO / "themes").glob("*.yaml")}
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = subprocess.run(
        [sys.executable, "-c", "from phi3tui.core.themes import builtin_themes_dir, load_themes; "
         "print(builtin_themes_dir()); print(sorted(load_themes().themes))"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "", CONFIG_DIR_ENV: str(tmp_path / "cfg")},
    )
    assert probe.returncode == 0, probe.stderr
    where, names_line = probe.stdout.splitlines()
    assert Path(where) == site / "phi3tui" / "_themes"
    assert "phi3-dark" in names_line and "phi3-16" in names_line


def test_editable_checkout_uses_the_source_tree_themes():
    assert builtin_themes_dir() in (REPO / "themes", REPO / "phi3tui" / "_themes")
    assert (builtin_themes_dir() / "phi3-dark.yaml").is_file()


def test_readme_examples_work(tmp_path):
    """The README's theme and keymap examples are a valid theme and real binding ids."""
    from phi3tui.core.settings import parse_settings
    from phi3tui.app import Phi3App
    from phi3tui.appearance import binding_table, keymap_clashes

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Themes, keys and settings", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    theme_text = next(b for b in blocks if b.startswith("name:"))
    spec = parse_theme(theme_text, tmp_path / "midnight.yaml", colour_check=colour_error)
    assert set(spec.roles) == set(ROLE_NAMES)
    keymap_text = next(b for b in blocks if b.startswith("keymap:"))
    settings, problems = parse_settings(keymap_text, tmp_path / "settings.yaml")
    assert not problems and settings.keymap
    known = {row[0] for row in binding_table(Phi3App)}
    assert set(settings.keymap) <= known and keymap_clashes(settings.keymap, Phi3App) == []
    settings_text = next(b for b in blocks if b.startswith("theme:"))
    assert parse_settings(settings_text, tmp_path / "settings.yaml")[1] == []


def test_builtin_themes_read_fast_equal_the_round_trip_reading():
    from phi3tui.core.themes import theme_files

    for path in theme_files(builtin_themes_dir()):
        text = path.read_text(encoding="utf-8")
        fast = parse_theme(text, path, builtin=True, colour_check=colour_error, fast=True)
        assert fast == parse_theme(text, path, builtin=True, colour_check=colour_error), path.name


def test_a_broken_builtin_theme_still_names_its_line(tmp_path):
    from phi3tui.core.themes import load_theme_file

    path = tmp_path / "bad.yaml"
    path.write_text('name: bad\ndark: true\nprimary: "#112233"\nshade: 3\n')
    with pytest.raises(ThemeError, match=re.escape(f"{path}:4: shade: unknown field")):
        load_theme_file(path, builtin=True)


def test_first_start_reads_no_yaml_the_round_trip_way(demo_workspace, tmp_path):
    """No settings.yaml, no user themes: the app starts without importing ruamel (the built-in themes are
    read with PyYAML's C loader), a cost the first paint does not need."""
    code = (
        "import sys; from phi3tui.app import Phi3App; from phi3tui.core.workspace import Workspace; "
        "app = Phi3App(Workspace.open(sys.argv[1])); "
        "print('phi3-dark' in app.available_themes, 'ruamel.yaml' in sys.modules)"
    )
    env = {**__import__("os").environ, CONFIG_DIR_ENV: str(tmp_path / "config")}
    proc = subprocess.run([sys.executable, "-c", code, str(demo_workspace)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False"], proc.stdout
