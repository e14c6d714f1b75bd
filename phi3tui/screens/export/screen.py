"""Export (F5): a wizard from the trained adapter to a GGUF in Ollama. Each step says what it will do,
then does it with a progress bar. The steps are core.export.steps.EXPORT_STEPS; all the work is the ExportJob's, run on
the app's model worker."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import OptionList, ProgressBar, Static

from phi3tui.core.export import OUT_TYPES
from phi3tui.screens.base import ModeScreen
from phi3tui.widgets.export_steps import CHOOSE, ExportSteps
from phi3tui.widgets.reflow_log import ReflowLog

QUANTIZE = (None, "q4_K_M", "q8_0")


class ExportScreen(ModeScreen):
    TITLE = "Export"
    DEFAULT_CSS = """
    ExportScreen #export-body { height: 1fr; }
    ExportScreen #export-right { padding: 0 1; }
    ExportScreen #export-choices { height: auto; color: $text; }
    ExportScreen #export-plan { height: auto; margin-top: 1; color: $text-muted; }
    ExportScreen #export-progress { margin-top: 1; display: none; }
    ExportScreen.-busy #export-progress { display: block; }
    ExportScreen #export-status { height: 1; color: $text-muted; }
    ExportScreen #export-log { height: 1fr; border: round $panel; }
    """
    BINDINGS = [
        Binding("r", "run_step", "Run step", id="export.run"),
        Binding("a", "run_all", "Run all", id="export.all"),
        Binding("c", "choose", "Adapter", id="export.choose"),
        Binding("s", "settings", "Settings", id="export.settings"),
        Binding("t", "cycle_type", "GGUF type", show=False, id="export.type"),
        Binding("d", "toggle_dequantize", "De-quantize", show=False, id="export.dequantize"),
        Binding("l", "toggle_lora", "Fused/LoRA", show=False, id="export.lora"),
        Binding("z", "cycle_quantize", "Ollama quantize", show=False, id="export.quantize"),
    ]

    class Progress(Message):
        def __init__(self, step: str, done: int, total: int, text: str):
            super().__init__()
            self.step, self.done, self.total, self.text = step, done, total, text

    class StepStarted(Message):
        def __init__(self, step: str):
            super().__init__()
            self.step = step

    class StepDone(Message):
        def __init__(self, outcome):
            super().__init__()
            self.outcome = outcome  # core.export.steps.StepOutcome

    class Finished(Message):
        """The submitted steps are over (done or stopped at a failure)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.job = None
        self.job_error = ""
        self.busy = False
        self.overrides: dict = {}

    @property
    def busy(self) -> bool:
        """A step is running: the progress bar shows only then."""
        return self.has_class("-busy")

    @busy.setter
    def busy(self, value: bool) -> None:
        self.set_class(value, "-busy")

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="export-body"):
            yield ExportSteps(id="export-steps")
            with Vertical(id="export-right"):
                yield Static("", id="export-choices", markup=False)
                yield Static("", id="export-plan", markup=False)
                yield ProgressBar(total=100, show_eta=False, id="export-progress")
                yield Static("", id="export-status", markup=False)
                yield ReflowLog(id="export-log", min_width=20)

    def on_mount(self) -> None:
        self.rebuild_job()
        self.query_one(ExportSteps).focus()

    # -- the job ----------------------------------------------------------------------------------
    def rebuild_job(self, **changes) -> None:
        """Make the ExportJob from the current choices (cheap: reads a few JSON files)."""
        from phi3tui.core.export import ExportError
        from phi3tui.core.export.job import ExportJob

        self.overrides.update(changes)
        o = self.overrides
        options = {k: o[k] for k in ("outtype", "no_dequantize", "num_ctx", "quantize", "system", "use_adapter_in_ollama") if o.get(k) is not None}
        try:
            self.job = ExportJob.create(
                self.workspace.root, o.get("adapter_path"), None, None, o.get("model") or None, o.get("name") or None,
                o.get("output") or None, need_adapter=False, **options,
            )
            self.job_error = ""
        except ExportError as exc:
            self.job, self.job_error = None, str(exc)
        self.refresh_text()

    def refresh_text(self) -> None:
        step = self.query_one(ExportSteps).current
        choices = self.query_one("#export-choices", Static)
        plan = self.query_one("#export-plan", Static)
        job = self.job
        if job is None:
            choices.update(f"Cannot export yet: {self.job_error}")
            plan.update("c: choose an adapter · s: settings")
            return
        adapter = job.adapter_label if job.adapter else "none found (train first, or c to choose)"
        ollama = "base+LoRA" if job.use_adapter_in_ollama else "fused"
        choices.update(
            f"Adapter  {adapter}\n"
            f"Base     {job.rel(job.base_model or '?')}   Output {job.rel(job.out_dir)}\n"
            f"GGUF {job.outtype} (t) · de-quantize {'off' if job.no_dequantize else 'auto'} (d) · "
            f"Ollama {ollama} (l) q {job.quantize or '-'} (z) ctx {job.effective_num_ctx()}"
        )
        steps = self.query_one(ExportSteps)
        if step == CHOOSE:
            lines = ["c: pick the run and checkpoint (or adapter folder)", "s: base model, export name, output folder, Ollama settings",
                     "then r runs the highlighted step, a runs them all"]
        else:
            lines = job.describe(step)
            note = steps.notes.get(step)
            if note:
                lines = lines + [f"last run: {note}"]
        plan.update(f"{steps.labels[step]} will:\n" + "\n".join(f"  • {line}" for line in lines))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if self.is_mounted:
            self.refresh_text()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_run_step()

    # -- actions ----------------------------------------------------------------------------------
    def action_choose(self) -> None:
        from phi3tui.core.adapters import checkpoint_choices
        from phi3tui.widgets.picker import Picker

        def picked(choice) -> None:
            if choice:
                self.rebuild_job(adapter_path=str(choice.weights))

        picker = Picker(
            "Which adapter to export?",
            checkpoint_choices(self.workspace.root),
            empty="No adapters yet: train a run (F3), or put an adapter folder in the workspace.",
        )
        self.app.push_screen(picker, picked)

    def action_settings(self) -> None:
        from phi3tui.screens.export.settings import ExportSettingsScreen

        job = self.job
        values = {
            "model": self.overrides.get("model") or (job.base_model if job else "") or "",
            "name": job.name if job else "",
            "output": str(job.out_dir) if job else "",
            "num_ctx": str(job.effective_num_ctx()) if job else "",
            "system": (job.system if job else "") or "",
        }

        def saved(result) -> None:
            if not result:
                return
            num_ctx = result.pop("num_ctx")
            if num_ctx:
                if not num_ctx.isdigit():
                    self.notify(f"num_ctx must be a whole number, not {num_ctx!r}", severity="error")
                    return
                result["num_ctx"] = int(num_ctx)
            # A new name moves the default output folder with it.
            if job and result.get("name") != job.name and result.get("output") == str(job.out_dir):
                result["output"] = ""
            self.rebuild_job(**result)

        self.app.push_screen(ExportSettingsScreen(values), saved)

    def action_cycle_type(self) -> None:
        current = self.job.outtype if self.job else "f16"
        self.rebuild_job(outtype=OUT_TYPES[(OUT_TYPES.index(current) + 1) % len(OUT_TYPES)])

    def action_toggle_dequantize(self) -> None:
        # auto: a quantized base is de-quantized for the GGUF (and said so); off: it is refused instead.
        self.rebuild_job(no_dequantize=not (self.job and self.job.no_dequantize))

    def action_toggle_lora(self) -> None:
        self.rebuild_job(use_adapter_in_ollama=not (self.job and self.job.use_adapter_in_ollama))

    def action_cycle_quantize(self) -> None:
        current = self.job.quantize if self.job else None
        self.rebuild_job(quantize=QUANTIZE[(QUANTIZE.index(current) + 1) % len(QUANTIZE)])

    def action_run_step(self) -> None:
        step = self.query_one(ExportSteps).current
        if step == CHOOSE:
            self.action_choose()
        else:
            self.start([step])

    def action_run_all(self) -> None:
        from phi3tui.core.export.steps import run_all_steps

        self.start([step.id for step in run_all_steps(self.job)] if self.job else [])  # no job: start() says why

    # -- running ----------------------------------------------------------------------------------
    def start(self, steps: list[str], replace_model: bool = False) -> None:
        from phi3tui.widgets.confirm_dialog import ConfirmDialog

        if self.busy:
            self.notify("an export step is running; wait for it to finish", severity="warning")
            return
        if self.job is None:
            self.notify(self.job_error or "choose an adapter first (c)", severity="error")
            return
        existing = [p for step in steps for p in self.job.existing_outputs(step)]
        if existing and not self.job.force:
            names = "\n".join(f"  {p}" for p in existing[:4])

            def answered(yes: bool) -> None:
                if yes:
                    self.job.force = True
                    self.start(steps, replace_model)

            self.app.push_screen(ConfirmDialog(f"These exist and would be replaced:\n{names}\nReplace them?", "Replace", "Keep"), answered)
            return
        self.busy = True
        self.app.model_worker.submit(self._steps_job(self.job, steps, replace_model), keep_awake="a phi3tui export")

    def _steps_job(self, job, steps: list[str], replace_model: bool):
        """The work, on the model worker thread: it talks back only through messages."""

        def run(worker) -> None:
            try:
                run_steps()
            finally:
                self.post_message(self.Finished())

        def run_steps() -> None:
            from phi3tui.core.export.steps import StepOutcome, run_step

            job.replace_model = replace_model  # only for this start: the next one asks again
            for step in steps:
                self.post_message(self.StepStarted(step))
                last = [0.0]

                def progress(done: int, total: int, text: str, step=step) -> None:
                    now = time.monotonic()
                    if done >= total or now - last[0] > 0.1:
                        last[0] = now
                        self.post_message(self.Progress(step, done, total, text))

                try:
                    outcome = run_step(job, step, progress)
                except Exception as exc:  # anything else is reported, and the app stays up
                    outcome = StepOutcome(step, (f"{type(exc).__name__}: {exc}",), ok=False)
                self.post_message(self.StepDone(outcome))
                if not outcome.ok:
                    return

        return run

    # -- messages from the worker -----------------------------------------------------------------
    def on_export_screen_step_started(self, message: StepStarted) -> None:
        self.query_one(ExportSteps).set_state(message.step, "running")
        self.query_one("#export-progress", ProgressBar).update(total=100, progress=0)
        self.log_line(f"— {self.query_one(ExportSteps).labels[message.step]}")

    def on_export_screen_progress(self, message: Progress) -> None:
        bar = self.query_one("#export-progress", ProgressBar)
        bar.update(total=max(1, message.total), progress=message.done)
        self.query_one("#export-status", Static).update(message.text)

    def on_export_screen_step_done(self, message: StepDone) -> None:
        from phi3tui.core.export.steps import outcome_lines

        outcome = message.outcome
        steps = self.query_one(ExportSteps)
        state = "failed" if not outcome.ok else "partial" if outcome.shortfall else "done"
        steps.set_state(outcome.step, state, outcome.shortfall or "")
        for line in outcome_lines(outcome):
            self.log_line(line)
        status = f"{steps.labels[outcome.step]}: {outcome.shortfall}" if outcome.shortfall else ""
        self.query_one("#export-status", Static).update(status)
        self.refresh_text()
        if outcome.ok:
            self.query_one("#export-progress", ProgressBar).update(total=100, progress=100)
        elif outcome.ask_replace:
            from phi3tui.widgets.confirm_dialog import ConfirmDialog

            def answered(yes: bool) -> None:
                if yes:
                    self.start([outcome.step], replace_model=True)

            self.app.push_screen(ConfirmDialog(f"{outcome.lines[0]}\nReplace the Ollama model?", "Replace", "Keep"), answered)

    def on_export_screen_finished(self, message: Finished) -> None:
        self.busy = False

    @property
    def log_lines(self) -> list[str]:
        """What the log shows, unwrapped."""
        return self.query_one("#export-log", ReflowLog).texts

    def log_line(self, text: str) -> None:
        self.query_one("#export-log", ReflowLog).add(text)
