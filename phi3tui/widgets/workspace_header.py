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
        self.update_text()
        self.poll_live_run()
        self.set_interval(2.0, self.poll_live_run)

    def poll_live_run(self) -> None:
        # Only the visible screen's header reads the run folders (cheap: run.json files only).
        if self.screen.is_current:
            from phi3tui.core.runs import live_run_summary

            ws = getattr(self.app, "workspace", None)
            self.run_text = live_run_summary(ws) if ws is not None else ""

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
        run_text = self.run_text or getattr(app, "live_run_text", "")
        if run_text:
            parts.append(run_text)
        self.update(" │ ".join(parts))
