"""The import form: source file, target folder, format, column mapping, split sizes, order.

Dismisses with a dict of the entered values (None on Escape); the Data screen hands them to
phi3tui.core.data.importers, which checks them and says what is wrong.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, Select, Static

FIELDS = (
    # (id, label, placeholder)
    ("source", "Source file", "path to a .csv (TruthfulQA-style or any) or .jsonl"),
    ("out_dir", "Into folder", "folder for train/valid/test.jsonl"),
    ("prompt_column", "Prompt column", "TruthfulQA: Question"),
    ("completion_column", "Answer column", "TruthfulQA: Best Answer"),
    ("train", "Train size", "the rest (count, 0.8 or 80%)"),
    ("valid", "Valid size", "count, fraction or %"),
    ("test", "Test size", "count, fraction or %"),
    ("seed", "Seed", "0"),
    ("pairs_per_question", "Pairs/question", "preference: (best, incorrect) pairs per question, 1"),
)


class ImportForm(ModalScreen[dict | None]):
    DEFAULT_CSS = """
    ImportForm { align: center middle; }
    ImportForm > Vertical { width: 76; max-height: 24; height: auto; padding: 0 1; }
    ImportForm Grid { grid-size: 2; grid-columns: 16 1fr; grid-rows: 1; grid-gutter: 0 1; height: auto; }
    ImportForm #import-help { color: $text-muted; margin-top: 1; }
    """
    BINDINGS = [
        Binding("ctrl+s", "submit", "Import", id="import.submit"),
        Binding("escape", "cancel", "Cancel", id="import.cancel"),
    ]

    def __init__(self, out_dir: str, source: str = ""):
        super().__init__()
        self.defaults = {"out_dir": out_dir, "source": source, "valid": "10%", "test": "10%", "seed": "0"}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Import a CSV or JSONL file into train/valid/test.jsonl", id="import-title")
            with Grid():
                for field_id, label, placeholder in FIELDS:
                    yield Label(label)
                    yield Input(self.defaults.get(field_id, ""), placeholder=placeholder, id=f"import-{field_id}", compact=True)
                yield Label("Format")
                yield Select(
                    [("text (tutorial Phi-3 markers)", "text"), ("chat (messages)", "chat"), ("completions", "completions"),
                     ("preference (prompt, chosen, rejected: DPO/ORPO)", "preference"),
                     ("prompt-answer (prompt, answer: GRPO)", "prompt-answer")],
                    value="text", allow_blank=False, id="import-format", compact=True,
                )
                yield Label("Order")
                yield Checkbox("shuffle with the seed (else the file's order)", id="import-shuffle", compact=True)
            yield Static(
                "Empty columns: a TruthfulQA CSV maps itself; preference pairs its Best and Incorrect Answers, "
                "prompt-answer keeps its Correct Answers. "
                "Ctrl+S imports, Escape cancels; "
                "existing split files are only replaced after you confirm.",
                id="import-help",
            )

    def on_mount(self) -> None:
        self.query_one("#import-source", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def values(self) -> dict:
        out = {field_id: self.query_one(f"#import-{field_id}", Input).value.strip() for field_id, _, _ in FIELDS}
        out["fmt"] = self.query_one("#import-format", Select).value
        out["shuffle"] = self.query_one("#import-shuffle", Checkbox).value
        return out

    def action_submit(self) -> None:
        values = self.values()
        if not values["source"]:
            self.notify("Give the source file to import", severity="error")
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)
