"""The top line: workspace, model and the live run, if any. It fits its width: the live run's id (short
form), state and progress always show; the screen title, workspace and model shorten first."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static

from phi3tui.core.runs import live_text

SEPARATOR = " │ "
WORKSPACE_CUT = 14  # a long workspace name keeps this many characters before the run loses anything


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def fit_header(title: str, workspace: str, model: str, flags: list[str], runs: list[str], width: int) -> str:
    """The header's line for a width: the first of these, longest first, that fits. `runs` is the live run's
    text from the most to the least detail (empty when nothing runs); `flags` (READ-ONLY) always show."""
    run_full, run_mid, run_min = (runs + ["", "", ""])[:3] if runs else ("", "", "")

    def line(*parts: str) -> str:
        return SEPARATOR.join(p for p in parts if p)

    ws_short = cut(workspace, WORKSPACE_CUT)
    candidates = [
        line(f"phi3tui · {title}", workspace and f"workspace {workspace}", model and f"model {model}", *flags, run_full),
        line(title, workspace and f"workspace {workspace}", model and f"model {model}", *flags, run_full),
        line(title, workspace, model, *flags, run_full),
        line(title, workspace, model, *flags, run_mid),
        line(title, workspace, *flags, run_mid),
        line(title, workspace, *flags, run_min),
        line(title, ws_short, *flags, run_min),
        line(title, *flags, run_min),
        line(*flags, run_min),
        line(*flags, run_min.removeprefix("run ")),
    ]
    if width <= 0:  # not laid out yet
        return candidates[0]
    for text in candidates:
        if len(text) <= width:
            return text
    return cut(candidates[-1], width)


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
        self.live: list = []  # the live runs of the last poll (core.runs.RunSummary), newest first

    def on_mount(self) -> None:
        # The app's one RunWatcher feeds every header; this one never reads runs/ itself.
        poll = getattr(self.app, "run_poll", None)
        if poll is not None:
            self.show_poll(poll)
        self.update_text()
        signal = getattr(self.app, "runs_polled", None)
        if signal is not None:
            signal.subscribe(self, self.show_poll)

    def show_poll(self, poll) -> None:
        self.live = poll.live
        self.run_text = poll.header

    def watch_run_text(self) -> None:
        self.update_text()

    def on_resize(self) -> None:
        self.update_text()

    def update_text(self) -> None:
        ws = getattr(self.app, "workspace", None)
        name = model = ""
        flags = []
        if ws is not None:
            name = ws.name
            model = ws.model_setting() or ""
            if not ws.writable:
                flags.append("READ-ONLY")
        runs = [live_text(self.live, detail) for detail in (2, 1, 0)] if self.run_text else []
        self.update(fit_header(self.screen_title, name, model, flags, runs, self.content_size.width))
