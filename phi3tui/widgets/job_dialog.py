"""A full-screen dialog that runs one job on the app's model worker (batch compare, evaluate): enter
starts it, esc stops it or, when nothing runs, closes; one status line says where it is."""

from __future__ import annotations

from textual.screen import ModalScreen
from textual.widgets import Input, Static


class JobDialog(ModalScreen):
    DEFAULT_CSS = """
    JobDialog { align: center middle; }
    JobDialog > Vertical { width: 100%; height: 100%; padding: 0 1; }
    JobDialog Horizontal { height: 1; }
    JobDialog Input { width: 1fr; }
    JobDialog DataTable { height: 1fr; }
    JobDialog .job-status { height: auto; }
    JobDialog .job-status.error { color: $error; }
    JobDialog ProgressBar { display: none; }
    JobDialog.-running ProgressBar { display: block; }
    """
    STOPPING = "stopping…"  # what the status says once esc asked the job to stop

    result = None  # what closing the dialog returns

    @property
    def running(self) -> bool:
        """The job is running: a progress bar shows only then."""
        return self.has_class("-running")

    @running.setter
    def running(self, value: bool) -> None:
        self.set_class(value, "-running")

    def action_start(self) -> None:  # each dialog starts its own job
        raise NotImplementedError

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_start()

    def action_stop_or_close(self) -> None:
        if self.running:
            self.cancel.set()
            self._status(self.STOPPING)
        else:
            self.dismiss(self.result)

    def _status(self, text: str, error: bool = False) -> None:
        status = self.query_one(".job-status", Static)
        status.update(text)
        status.set_class(error, "error")
