"""Every use of Textual's private parts, in one place (pyproject pins textual exactly;
tests/test_private_apis.py pins what each one must do, so an upgrade that breaks one fails there first;
tests/test_style_once.py the styling ones).

Textual 8 has no public way to do these: mark the stylesheet stale so that screens of other modes restyle
when a theme of the same name gets new colours; read the app's keymap as set_keymap normalised it; for
the first paint, let a Footer draw its keys in its first compose, render no frame that Textual would drop
while the app starts, and draw a screen at once rather than at its update timer's next tick; and spare a
screen that is already styled with the CSS as it is the CSS refresh and the restyles Textual runs for it
(KeptStylesheet, StyledAsMounted).
"""

from __future__ import annotations

from textual import events
from textual.widgets._footer import FooterKey  # a Footer's key (Textual exports Footer only)

__all__ = ["FooterKey", "KeptStylesheet", "NoHiddenFirstFrame", "StyledAsMounted", "app_keymap", "footer_ready",
           "invalidate_css", "paint_now"]


def invalidate_css(app) -> None:
    """Make every screen, also those of modes not shown, take the CSS again at its next refresh
    (what Textual's own theme watcher does; it does not run when the theme's name stays the same)."""
    app._invalidate_css()


def app_keymap(app) -> dict[str, str]:
    """The keymap set_keymap installed, binding id -> keys, normalised as Textual matches them."""
    return dict(app._keymap)


def footer_ready(footer) -> None:
    """Tell a Footer its screen's bindings are ready, as its first bindings update would (Footer composes
    empty until then); set quietly, so that it does not compose again for it."""
    from textual.widgets import Footer

    footer.set_reactive(Footer._bindings_ready, True)


def paint_now(screen) -> None:
    """Draw now what the screen has yet to draw, as its update timer would at its next tick (a 60th of a second
    on, and later on a busy machine): pending layout and repaints, and what NoHiddenFirstFrame left undrawn."""
    screen._on_timer_update()
    screen._compositor_refresh()


class NoHiddenFirstFrame:
    """A Screen mixin: while the app starts, no frame is rendered that Textual would drop unseen.

    Textual holds updates back until the app's mount is done (its start-up batch) and drops every frame rendered
    before; the first screen, mounted meanwhile, renders one anyway (a full frame of every widget). Until the app
    says it has painted (its `painted` attribute, set by the call to paint_now after the batch), this skips them;
    what they would have drawn stays dirty and paint_now draws it, once."""

    def _compositor_refresh(self) -> None:
        app = self.app
        if app._batch_count and not getattr(app, "painted", True):
            return
        super()._compositor_refresh()


class KeptStylesheet:
    """An App mixin: a screen styled with the CSS as it is now is marked so (`mark_css_current`), and Textual does
    not refresh the CSS for it.

    Textual refreshes the CSS for each screen whose mark is behind the app's count (bumped by a theme change): when
    it first shows a mode's screen (twice, in _init_mode and switch_mode) and when it returns to one whose mark
    is behind. Each refresh parses every widget's CSS from scratch in a fresh stylesheet and restyles every widget
    shown; for a screen that has just been made, or was mounted once the CSS was last refreshed, that changes
    nothing: its widgets take their styles from the same stylesheet as they mount."""

    _css_refreshed_at: int | None = None  # the app's count when the CSS was last refreshed (variables set, parsed)

    def refresh_css(self, animate: bool = True) -> None:
        count = self._css_update_count
        super().refresh_css(animate)
        self._css_refreshed_at = count

    def take_css_variables(self) -> None:
        """Give the stylesheet the app's CSS variables now (call at the end of __init__, once the theme is set),
        before anything is parsed or styled: the first screen's widgets are then styled with them as they mount,
        and neither the CSS parsed with the default theme's variables nor the refresh for the theme is needed."""
        self.stylesheet.set_variables(self.get_css_variables())
        self._css_refreshed_at = self._css_update_count

    def mark_css_current(self, screen) -> None:
        """Mark `screen` (new, or mounted since the last refresh) as styled with the CSS as it is, when no theme
        change is waiting for a refresh; otherwise Textual refreshes it as usual."""
        if self._css_refreshed_at == self._css_update_count:
            screen._css_update_count = self._css_update_count


class StyledAsMounted:
    """A Screen mixin (with an app that is a KeptStylesheet): on a screen's first visit, no restyle of all of it.

    Each ScreenResume restyles the whole screen (a mode's first visit has two: from _init_mode and switch_mode),
    though on the first visit every widget has just taken its styles, as it mounted, from the same stylesheet. Until
    the screen is first suspended, and while it is marked current with the app's CSS (KeptStylesheet), its resumes
    say so (the event's refresh_styles, which Textual itself clears when an opaque screen is popped off)."""

    _suspended_once = False

    def post_message(self, message) -> bool:
        if isinstance(message, events.ScreenSuspend):
            self._suspended_once = True
        elif (isinstance(message, events.ScreenResume) and not self._suspended_once
              and self._css_update_count == self.app._css_update_count):
            message.refresh_styles = False
        return super().post_message(message)
