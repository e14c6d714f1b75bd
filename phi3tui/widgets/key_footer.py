"""The key footer of every mode screen: Textual's Footer, with its keys in the first frame.

Textual's Footer composes empty, then again after each bindings update (the screen's start, every focus
move), removing and mounting all its keys each time. This one composes its keys at once and composes
again only when the keys it shows change, so the first paint holds the footer and a focus move that
leaves the keys as they were costs nothing.
"""

from __future__ import annotations

from textual.widgets import Footer

from phi3tui.textual_private import FooterKey, footer_ready


class KeyFooter(Footer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._shown: tuple | None = None

    def shown_keys(self) -> tuple:
        """What the footer draws: each shown binding's key, label and state, and the palette key."""
        return tuple(
            (binding.action, binding.key, self.app.get_key_display(binding), binding.description, enabled,
             tooltip, binding.group)
            for (_, binding, enabled, tooltip) in self.screen.active_bindings.values()
            if binding.show or binding.action == "command_palette"
        )

    def compose(self):
        footer_ready(self)  # the screen's bindings are there already: draw them in the first frame
        self._shown = self.shown_keys()
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                # The class a compact footer's keys get when mounted (their `compact` watcher), given before,
                # so that each key is styled once, not twice.
                widget.set_class(self.compact, "-compact", update=False)
            yield widget

    def bindings_changed(self, screen) -> None:
        if self.is_attached and screen is self.screen and self.shown_keys() == self._shown:
            return
        super().bindings_changed(screen)
