"""The CLI's progress lines for its long commands (`phi3tui eval`, `phi3tui export`): always on stderr, so stdout
keeps only the results (`--json` stays pure JSON).

On a terminal one line is redrawn in place; into a pipe or a log file a line is written when a phase starts, at most
every few seconds while it runs, and when it ends, so a person tailing the log sees it move."""

from __future__ import annotations

import sys
import time

REDRAW_S = 0.1  # a terminal's line: at most ten redraws a second
LOG_EVERY_S = 5.0  # a pipe's or log's lines while a phase runs


class ProgressLine:
    """progress(what, done, total, detail=""): `what: done/total detail` on stderr."""

    def __init__(self, stream=None, percent: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        self.percent = percent  # done/total as a percentage (bytes, tensors) rather than n/N (questions, answers)
        self.tty = self.stream.isatty()
        self.what, self.last, self.open_line = None, 0.0, False

    def __call__(self, what: str, done: int, total: int, detail: str = "") -> None:
        now = time.monotonic()
        finished = total > 0 and done >= total
        started = what != self.what
        wait = REDRAW_S if self.tty else LOG_EVERY_S
        if not (started or finished or now - self.last >= wait):
            return
        if started and self.open_line:
            self.stream.write("\n")
        self.what, self.last = what, now
        count = f"{100 * done / total if total else 100:5.1f}%" if self.percent else f"{done}/{total}"
        text = f"{what}: {count}" + (f" {detail}" if detail else "")
        if self.tty:
            self.stream.write("\r" + text[:100].ljust(100) + ("\n" if finished else ""))
            self.open_line = not finished
        else:
            self.stream.write(text + "\n")
        if finished:
            self.what = None
        self.stream.flush()

    def close(self) -> None:
        """End a line being redrawn (a job that stopped half way), so what follows starts on a line of its own."""
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False

    def say(self, text: str) -> None:
        """A line of its own (a step starting or ending), after any line being redrawn."""
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False
        self.what = None
        self.stream.write(text + "\n")
        self.stream.flush()
