"""The top line: workspace, model and the live run, if any."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static


class WorkspaceHeader(Static):
    DEFAULT_CSS = """
    WorkspaceHeader {
        dock: top;
        height: 1;
        background: $primary;
        color: $text;
        padding: 0 1;
    }
    """

    run_text: reactive[str] = reactive("")

    def __init__(self, screen_title: str, **kwargs):
        super().__init__(**kwargs)
        self.screen_title = screen_title

    def on_mount(self) -> None:
        # The app's one RunWatcher feeds every header; this one never reads runs/ itself.
        poll = getattr(self.app, "run_poll", None)
        self.run_text = poll.header if poll is not None else ""
        self.update_text()
        signal = getattr(self.app, "runs_polled", None)
        if signal is not None:
            signal.subscribe(self, self.show_poll)

    def show_poll(self, poll) -> None:
        self.run_text = poll.header

    def watch_run_text(self) -> None:
        self.update_text()

    def update_text(self) -> None:
        app = self.app
        ws = getattr(app, "workspace", None)
        parts = [f"phi3tui · {self.screen_title}"]
        if ws is not None:
            parts.append(f"workspace {ws.name}")
            model = ws.model_setting()
            if model:
                parts.append(f"model {model}")
            if not ws.writable:
                parts.append("READ-ONLY")
        if self.run_text:
            parts.append(self.run_text)
        self.update(" │ ".join(parts))
