"""The Export wizard's step list: each step with its state (waiting, running, done, partial, failed)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

# step id -> label shown in the list
STEP_LABELS = {
    "choose": "Choose",
    "fuse": "Fuse",
    "gguf": "GGUF",
    "lora-gguf": "LoRA GGUF",
    "verify": "Verify",
    "ollama": "Ollama",
}
# partial: the step passed but did less than a ✓ claims (Verify read the files back; llama.cpp did not run them).
MARKS = {"waiting": " ", "running": "…", "done": "✓", "partial": "~", "failed": "✗"}


class ExportSteps(OptionList):
    """An OptionList whose options are the wizard's steps; set_state() redraws one step's mark."""

    DEFAULT_CSS = """
    ExportSteps { width: 20; height: auto; border: round $primary; }
    """

    def __init__(self, **kwargs):
        self.states = {step: "waiting" for step in STEP_LABELS}
        self.notes: dict[str, str] = {}  # step -> what a partial step did not do
        super().__init__(*[Option(self._label(s), id=s) for s in STEP_LABELS], **kwargs)

    def _label(self, step: str) -> Text:
        number = list(STEP_LABELS).index(step) + 1
        state = self.states[step]
        style = {"done": self.app_colour("good"), "failed": self.app_colour("bad"), "running": self.app_colour("warn"),
                 "partial": self.app_colour("warn")}.get(state, "")
        text = Text(f"{number} {STEP_LABELS[step]:<10} ")
        text.append(MARKS[state], style=style)
        return text

    def app_colour(self, role: str) -> str:
        try:
            return self.app.colour(role)
        except Exception:  # not mounted yet: no theme to ask
            return ""

    @property
    def current(self) -> str:
        index = self.highlighted or 0
        return list(STEP_LABELS)[index]

    def set_state(self, step: str, state: str, note: str = "") -> None:
        self.states[step] = state
        self.notes[step] = note
        self.replace_option_prompt(step, self._label(step))
