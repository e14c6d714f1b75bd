"""Every use of Textual's private parts, in one place (pyproject pins textual exactly;
tests/test_private_apis.py pins what each one must do, so an upgrade that breaks one fails there first).

Textual 8 has no public way to do these: mark the stylesheet stale so that screens of other modes restyle
when a theme of the same name gets new colours, and read the app's keymap as set_keymap normalised it.
"""

from __future__ import annotations


def invalidate_css(app) -> None:
    """Make every screen, also those of modes not shown, take the CSS again at its next refresh
    (what Textual's own theme watcher does; it does not run when the theme's name stays the same)."""
    app._invalidate_css()


def app_keymap(app) -> dict[str, str]:
    """The keymap set_keymap installed, binding id -> keys, normalised as Textual matches them."""
    return dict(app._keymap)
