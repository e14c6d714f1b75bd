"""The Export wizard's text settings: base model, export name, output folder, Ollama context and system prompt."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

FIELDS = (
    ("model", "Base model (folder or Hugging Face repo)"),
    ("name", "Export name (folder under exports/, Ollama model name)"),
    ("output", "Output folder"),
    ("num_ctx", "Ollama num_ctx (at least the training max_seq_length)"),
    ("system", "Ollama SYSTEM prompt (optional)"),
)


class ExportSettingsScreen(ModalScreen):
    """Dismisses with {field: text} or None."""

    DEFAULT_CSS = """
    ExportSettingsScreen { align: center middle; }
    ExportSettingsScreen > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%; padding: 0 1;
    }
    ExportSettingsScreen Input { margin-bottom: 0; }
    ExportSettingsScreen .hint { color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel", id="export_settings.cancel"),
        Binding("ctrl+s", "save", "Save", key_display="^s", id="export_settings.save"),
    ]

    def __init__(self, values: dict[str, str]):
        super().__init__()
        self.values = values

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            for key, label in FIELDS:
                yield Label(label)
                yield Input(self.values.get(key, ""), id=f"set-{key}")
            yield Static("tab next field · enter or ^s save · esc cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_save()

    def action_save(self) -> None:
        self.dismiss({key: self.query_one(f"#set-{key}", Input).value.strip() for key, _ in FIELDS})
