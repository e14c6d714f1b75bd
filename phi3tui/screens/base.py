"""The frame every mode screen shares: the workspace header on top, the key footer below."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen

from phi3tui.textual_private import NoHiddenFirstFrame, StyledAsMounted
from phi3tui.widgets.key_footer import KeyFooter
from phi3tui.widgets.workspace_header import WorkspaceHeader


class ModeScreen(NoHiddenFirstFrame, StyledAsMounted, Screen):
    """Subclasses set TITLE and implement compose_body()."""

    TITLE = ""

    def compose(self) -> ComposeResult:
        yield WorkspaceHeader(self.TITLE)
        yield from self.compose_body()
        yield KeyFooter(compact=True)

    def compose_body(self) -> ComposeResult:
        raise NotImplementedError

    @property
    def workspace(self):
        return self.app.workspace
