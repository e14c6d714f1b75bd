"""The Export wizard's step list: Choose, then each step of core.export.steps.EXPORT_STEPS with its state
(waiting, running, done, partial, failed)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from phi3tui.core.export import steps as export_steps

CHOOSE = "choose"  # the wizard's own first entry: pick the adapter; every other entry is an export step
# partial: the step passed but did less than a ✓ claims (Verify read the files back; llama.cpp did not run them;
# Ollama wrote the Modelfile but created no model).
MARKS = {"waiting": " ", "running": "…", "done": "✓", "partial": "~", "failed": "✗"}


class ExportSteps(OptionList):
    """An OptionList whose options are the wizard's steps; set_state() redraws one step's mark."""

    DEFAULT_CSS = """
    ExportSteps { width: 20; height: auto; border: round $primary; }
    """

    def __init__(self, **kwargs):
        # step id -> label shown in the list, read from the registry when the wizard opens
        self.labels = {CHOOSE: "Choose", **{step.id: step.label for step in export_steps.EXPORT_STEPS}}
        self.states = {step: "waiting" for step in self.labels}
        self.notes: dict[str, str] = {}  # step -> what a partial step did not do
        super().__init__(*[Option(self._label(s), id=s) for s in self.labels], **kwargs)

    def _label(self, step: str) -> Text:
        number = list(self.labels).index(step) + 1
        state = self.states[step]
        style = {"done": self.app_colour("good"), "failed": self.app_colour("bad"), "running": self.app_colour("warn"),
                 "partial": self.app_colour("warn")}.get(state, "")
        text = Text(f"{number} {self.labels[step]:<10} ")
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
        return list(self.labels)[index]

    def set_state(self, step: str, state: str, note: str = "") -> None:
        self.states[step] = state
        self.notes[step] = note
        self.replace_option_prompt(step, self._label(step))
