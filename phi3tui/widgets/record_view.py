"""One record shown three ways: raw JSON, the text mlx-lm feeds (special tokens marked), token by token."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

VIEWS = ("raw", "rendered", "tokens")
VIEW_TITLES = {"raw": "raw JSON", "rendered": "as mlx-lm feeds it", "tokens": "tokens (loss: bright, masked: dim)"}


class RecordView(VerticalScroll, inherit_bindings=False):
    """Holds no data logic: the screen hands it a core Record and, when loaded, a RenderedRecord.

    Only up/down/page keys scroll it: left/right/home/end stay with the screen (previous/next record).
    """

    BINDINGS = [
        Binding("up", "scroll_up", "Scroll up", show=False, id="record_view.up"),
        Binding("down", "scroll_down", "Scroll down", show=False, id="record_view.down"),
        Binding("pageup", "page_up", "Page up", show=False, id="record_view.page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="record_view.page_down"),
    ]

    DEFAULT_CSS = """
    RecordView { height: 1fr; border: round $panel; padding: 0 1; }
    RecordView:focus { border: round $accent; }
    RecordView #record-title { color: $text-muted; }
    """
    can_focus = True

    def compose(self):
        yield Static("", id="record-title")
        yield Static("", id="record-body")

    def show(self, title: str, body: Text | str) -> None:
        self.query_one("#record-title", Static).update(title)
        self.query_one("#record-body", Static).update(body)
        self.scroll_home(animate=False)

    # -- the three bodies (pure functions of core objects and the theme) --------------------
    def raw_body(self, record, preview=()) -> Text:
        """`preview`: a tool-calling record's PreviewLines (core/data/tool_records.py), shown above the JSON."""
        if record.error:
            text = Text(f"{record.error}\n\n", style=f"bold {self.app.colour('bad')}")
            text.append(record.text or "(empty line)")
            return text
        if not preview:
            return Text(record.pretty())
        text = self.preview_body(preview)
        text.append("\n\nraw JSON\n", style="dim")
        text.append(record.pretty())
        return text

    def preview_body(self, preview) -> Text:
        colour = self.app.colour
        label_styles = {"tools": f"bold {colour('accent')}", "message": "bold", "call": f"bold {colour('good')}",
                        "result": f"bold {colour('base-model')}"}
        problem_styles = {"error": colour("bad"), "warning": colour("warn")}
        text = Text()
        for n, line in enumerate(preview):
            if n:
                text.append("\n")
            if line.label:
                text.append(line.label, style=label_styles.get(line.kind, "bold"))
                text.append(" ")
            text.append(line.text, style=problem_styles.get(line.kind, ""))
        return text

    def rendered_body(self, rendered) -> Text:
        special = f"bold {self.app.colour('accent')}"
        text = Text()
        for piece, is_special in rendered.segments:
            text.append(piece, style=special if is_special else "")
        if rendered.truncated_at:
            text.append(f"\n\n[truncated to {rendered.truncated_at} tokens by max_seq_length]", style=self.app.colour("warn"))
        return text

    def tokens_body(self, rendered, mask_prompt: bool) -> Text:
        trained = f"bold {self.app.colour('good')}"
        special = f"underline {self.app.colour('accent')}"
        masked = "dim"
        total = len(rendered.tokens)
        text = Text(
            f"{total} tokens, {rendered.trained_count} count toward the loss"
            + (f" (mask_prompt: the first {rendered.offset} are masked)" if mask_prompt else "")
            + (f"; cut at {rendered.truncated_at}" if rendered.truncated_at else "")
            + "\n\n",
            style="italic",
        )
        for n, token in enumerate(rendered.tokens):
            style = trained if token.trained else masked
            if token.special:
                style += " " + special
            text.append(token.piece, style=style)
            text.append(" " if n + 1 < total else "")
        return text
