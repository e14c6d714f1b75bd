"""Data screen: page through train/valid/test.jsonl as mlx-lm will read them, validate, measure, import.

Everything it knows comes from phi3tui.core.data.folder (open, page, search, check, render) and
phi3tui.core.data.importers; this file only wires keys, workers and widgets.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane

from phi3tui.core.data import SPLITS, Cancelled, DataFolder, human_size, workspace_data
from phi3tui.screens.base import ModeScreen
from phi3tui.widgets.length_histogram import LengthHistogram
from phi3tui.widgets.record_view import VIEW_TITLES, VIEWS, RecordView
from phi3tui.widgets.split_summary import SplitSummary

if TYPE_CHECKING:
    from phi3tui.core.data import Report
    from phi3tui.widgets.text_box import TextBox

AUTO_CHECK_DELAY = 0.6  # seconds after the first paint: the check's tokenizer import (transformers) waits for it


# The footer shows → and ← as one group: "→← Record". What does not fit 80 columns is in the palette and `?`.
RECORD_GROUP = Binding.Group("Record", compact=True)


class DataScreen(ModeScreen):
    TITLE = "Data"
    # The record has the focus from the start: the tab bar (the first focusable widget) would take left/right,
    # and the footer would be drawn once for it and again for the record.
    AUTO_FOCUS = "#record-view"
    DEFAULT_CSS = """
    DataScreen #data-tabs { height: 1fr; }
    DataScreen #data-status-row { height: 1; padding: 0 1; }
    DataScreen #data-status { width: 1fr; }
    DataScreen #data-progress { width: 30; }
    DataScreen #data-prompt { dock: bottom; display: none; }
    DataScreen #data-prompt.-shown { display: block; }
    DataScreen #stats-text { height: auto; padding: 0 1; }
    DataScreen #problem-detail { height: auto; max-height: 4; padding: 0 1; border-top: solid $panel; }
    """
    BINDINGS = [
        Binding("right,j", "next_record", "Next", group=RECORD_GROUP, id="data.next"),
        Binding("left,k", "previous_record", "Prev", group=RECORD_GROUP, id="data.previous"),
        Binding("home", "first_record", "First record", show=False, id="data.first"),
        Binding("end", "last_record", "Last record", show=False, id="data.last"),
        Binding("g", "goto", "Go to", show=False, id="data.goto"),
        Binding("slash", "search", "Search", key_display="/", id="data.search"),
        Binding("n", "search_next", "Next match", show=False, id="data.search_next"),
        Binding("s", "next_split", "Split", id="data.split"),
        Binding("v", "cycle_view", "View", id="data.view"),
        Binding("r", "show_tab('records')", "Records", show=False, id="data.tab_records"),
        Binding("e", "show_tab('problems')", "Problems", show=False, id="data.tab_problems"),
        Binding("t", "show_tab('stats')", "Statistics", show=False, id="data.tab_stats"),
        Binding("c", "check", "Check", id="data.check"),
        Binding("x", "cancel_check", "Cancel check", show=False, id="data.cancel"),
        Binding("i", "import_file", "Import", show=False, id="data.import"),
        Binding("o", "open_other", "Open folder", show=False, id="data.open"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.folder: DataFolder | None = None
        self.data_dir = None  # None: the workspace's data folder (the config's `data:`)
        self.model: str | None = None
        self.split = "train"
        self.line = 1
        self.view = "raw"
        self.prompt_mode = ""  # "goto" | "search" while the prompt line is open
        self.last_search = ""
        self.report: Report | None = None
        self.tokenizer = None
        self.tokenizer_error = ""
        self._tokenizer_lock = threading.Lock()
        self._cancel = threading.Event()
        self.status_text = ""

    # -- layout -------------------------------------------------------------------------------
    def compose_body(self) -> ComposeResult:
        yield SplitSummary(id="split-summary")
        with TabbedContent(id="data-tabs", initial="records"):
            with TabPane("Records", id="records"):
                yield RecordView(id="record-view")
            # Filled when first shown (fill_tab): the first paint needs only the records.
            yield TabPane("Problems", id="problems")
            yield TabPane("Statistics", id="stats")
        # The progress bar comes with the first check, the prompt line when first opened: neither is in the first frame.
        with Horizontal(id="data-status-row"):
            yield Static("", id="data-status")

    def on_mount(self) -> None:
        # Focus the record, not the tab bar: the tab bar would take left/right for itself.
        self.query_one(RecordView).focus()
        self.open_folder()
        self.call_after_refresh(self.set_timer, AUTO_CHECK_DELAY, self.action_check)

    def on_unmount(self) -> None:
        self._cancel.set()

    # -- opening and paging -------------------------------------------------------------------
    def open_folder(self, keep_place: bool = False) -> None:
        """(Re)open the data folder with the config as it is now (the Config screen may have changed it)."""
        wd = workspace_data(self.workspace)
        self.model = wd.model
        self.report = None
        try:
            self.folder = DataFolder.open(self.data_dir or wd.data_dir, wd.settings)
        except OSError as exc:
            self.folder = None
            self.set_status(f"{exc} (i imports a CSV, o opens another folder)")
        if wd.config_error and not keep_place:
            self.notify(f"config not read, defaults used: {wd.config_error}", severity="warning")
        if self.folder and self.split not in self.folder.splits:
            self.split = next(iter(self.folder.splits), "train")
            keep_place = False
        if not keep_place:
            self.line = 1
        self.refresh_summary()
        self.show_record()

    def refresh_summary(self) -> None:
        rows = []
        if self.folder:
            for name, info in self.folder.splits.items():
                if info.records is not None:
                    records = f"{info.records:,}"
                else:
                    records = f"counting {info.index.scanned_fraction:.0%}"
                rows.append((name, records, human_size(info.size), info.format or "unknown format"))
        self.query_one(SplitSummary).show(rows, self.split)

    def record_count(self) -> tuple[int, bool]:
        """(records known so far, whether that is all of them)."""
        info = self.folder.splits[self.split]
        return info.index.lines, info.index.complete

    def show_record(self) -> None:
        view = self.query_one(RecordView)
        if not self.folder or self.split not in self.folder.splits:
            view.show("no records", "This workspace has no data yet: press i to import a CSV or JSONL file.")
            return
        record = self.folder.record(self.split, self.line)
        if record is None and self.line > 1:  # past the end: stay on the last record
            known, _ = self.record_count()
            self.line = max(1, min(self.line - 1, known))
            record = self.folder.record(self.split, self.line)
        known, complete = self.record_count()
        of = f"{known:,}" if complete else f"≥{max(known, self.line):,}"
        fmt = (record.fmt if record else None) or self.folder.splits[self.split].format or "?"
        title = f"{self.split}:{self.line} of {of} · {fmt} · {VIEW_TITLES[self.view]}  (v: next view)"
        if record is None:
            view.show(title, "(empty file)")
            return
        if self.view == "raw" or record.error or record.fmt is None:
            from phi3tui.core.data import tool_preview

            view.show(title, view.raw_body(record, tool_preview(record, self.folder.settings)))
            return
        if self.tokenizer is None:
            view.show(title, self.tokenizer_error or "loading the model's tokenizer…")
            if not self.tokenizer_error:
                self.load_tokenizer_then_show()
            return
        from phi3tui.core.data import render_record

        try:
            rendered = render_record(record.value, record.fmt, self.tokenizer, self.folder.settings)
        except Exception as exc:  # the template or tokenizer rejects this record; say so, stay up
            view.show(title, f"cannot render this record: {type(exc).__name__}: {exc}")
            return
        masked = self.folder.settings.mask_prompt or rendered.prompt_masked  # pairs, prompt-answer: never the prompt
        body = view.rendered_body(rendered) if self.view == "rendered" else view.tokens_body(rendered, masked)
        if rendered.rejected is not None:  # a preference pair: both answers, one under the other
            rejected = rendered.rejected
            other = view.rendered_body(rejected) if self.view == "rendered" else view.tokens_body(rejected, True)
            body = Text.assemble(("chosen\n", "bold"), body, ("\n\nrejected\n", "bold"), other)
        view.show(title, body)

    def go_to(self, split: str, line: int) -> None:
        if not self.folder or split not in self.folder.splits:
            return
        self.split = split
        self.line = max(1, line)
        self.show_records_tab()
        self.refresh_summary()
        self.show_record()

    def call_on_screen(self, callback, *args, **kwargs) -> None:
        """From a worker thread: run callback on the UI thread, unless the screen has gone meanwhile
        (quitting while a check streams must not raise NoMatches from a vanished widget)."""
        if not self.is_attached or not self.app.is_running:
            return
        try:
            self.app.call_from_thread(lambda: callback(*args, **kwargs) if self.is_attached else None)
        except RuntimeError:  # the app closed between the check and the call
            pass

    # -- tokenizer ----------------------------------------------------------------------------
    def ensure_tokenizer(self):
        """Called from worker threads only: mlx-lm's loader is slow and imports transformers."""
        with self._tokenizer_lock:
            if self.tokenizer is None and not self.tokenizer_error:
                from phi3tui.core.data import TokenizerError, load_tokenizer

                try:
                    self.tokenizer = load_tokenizer(self.model)
                except TokenizerError as exc:
                    self.tokenizer_error = str(exc)
            return self.tokenizer

    @work(thread=True, exclusive=True, group="tokenizer")
    def load_tokenizer_then_show(self) -> None:
        from phi3tui.core.mlx_thread import mlx_thread

        with mlx_thread(worker=True):  # the worker thread's whole MLX work (see core/mlx_thread.py)
            self.ensure_tokenizer()
        self.call_on_screen(self.show_record)

    # -- check: index, validate, measure ------------------------------------------------------
    def action_check(self) -> None:
        self.open_folder(keep_place=True)
        if not self.folder:
            return
        self._cancel.set()
        self._cancel = threading.Event()
        self.run_check(self.folder, self._cancel)

    def action_cancel_check(self) -> None:
        self._cancel.set()

    @work(thread=True, exclusive=True, group="check")
    def run_check(self, folder: DataFolder, cancel: threading.Event) -> None:
        from phi3tui.core.mlx_thread import mlx_thread

        with mlx_thread(worker=True):  # the worker thread's whole MLX work (see core/mlx_thread.py)
            self._run_check(folder, cancel)

    def _run_check(self, folder: DataFolder, cancel: threading.Event) -> None:
        # The checks come with the first check, after the first paint.
        from phi3tui.core.data import Report, TokenizerError, run_checks

        call = self.call_on_screen
        labels = {"index": "counting records", "validate": "validating every line", "measure": "counting tokens"}

        def progress(done: int, total: int, phase: str) -> None:
            call(self.set_progress, labels[phase], done, total)

        def tokenizer():
            if self.ensure_tokenizer() is None:  # loaded once per screen, shared with the record view
                raise TokenizerError(self.tokenizer_error)
            return self.tokenizer

        report = Report(folder.path, folder.settings, model=self.model)
        try:
            folder.build_indexes(lambda d, t: progress(d, t, "index"), cancel)
            call(self.refresh_summary)
            call(self.show_record)  # its title now knows the record count
            run_checks(folder, report, get_tokenizer=tokenizer, progress=progress, cancel=cancel,
                       on_validated=lambda r: call(self.show_report, r))
        except Cancelled:
            call(self.set_status, "check cancelled (c runs it again)", done=True)
            return
        except OSError as exc:  # the folder itself could not be indexed
            call(self.set_status, f"cannot read the data: {exc}", done=True)
            return
        call(self.show_report, report)

    def progress_bar(self):
        """The check's progress bar, made when the first check reports (it then stays, showing the last check)."""
        found = self.query("#data-progress")
        if found:
            return found.first()
        from textual.widgets import ProgressBar

        bar = ProgressBar(total=100, show_eta=False, id="data-progress")
        self.query_one("#data-status-row").mount(bar)
        return bar

    def set_progress(self, label: str, done: int, total: int) -> None:
        bar = self.progress_bar()
        bar.update(total=100, progress=100 * done / max(total, 1))
        self.set_status(f"{label}… {100 * done / max(total, 1):.0f}%  (x cancels)")
        self.refresh_summary()

    def set_status(self, text: str, done: bool = False, lead: tuple[str, str] | None = None) -> None:
        """`lead` is (text, colour role): drawn first in the theme's colour, as Rich text so that a 16-colour
        theme's names ("green") stay the terminal's own colours (Textual markup would read them as CSS colours)."""
        self.status_text = (lead[0] if lead else "") + text
        shown = Text.assemble((lead[0], self.app.colour(lead[1])), text) if lead else Text(text)
        self.query_one("#data-status", Static).update(shown)
        if done:
            self.progress_bar().update(total=100, progress=100)

    def shown_widget(self, selector: str):
        """The widget, or None while its tab has not been shown yet (fill_tab)."""
        found = self.query(selector)
        return found.first() if found else None

    async def fill_tab(self, tab: str) -> None:
        """Build the Problems or Statistics tab the first time it is shown, from the report so far."""
        pane = self.query_one(f"#{tab}", TabPane)
        if tab == "records" or pane.children:
            return
        if tab == "problems":
            # Imported here: its DataTable is a large module the first paint has no use for.
            from phi3tui.widgets.validation_list import ValidationList

            await pane.mount(ValidationList(id="problem-list"), Static("", id="problem-detail"))
            self.show_problems()
        else:
            await pane.mount(VerticalScroll(Static("press c to check and measure", id="stats-text"),
                                            LengthHistogram(id="length-histogram")))
            self.show_stats()

    async def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        await self.fill_tab(event.pane.id or "")

    def show_problems(self) -> None:
        table = self.shown_widget("#problem-list")
        if table is not None and self.report is not None:
            table.set_problems(self.report.sorted_problems(), self.report.unlisted, self.report.clean_splits())

    def show_report(self, report: Report) -> None:
        self.report = report
        self.show_problems()
        state = "checked" if report.measured else "validated"
        colour = "bad" if report.errors else ("warn" if report.warnings else "good")
        self.set_status(
            ("" if report.measured else "; counting tokens…" if not report.tokenizer_note else f"; no token statistics: {report.tokenizer_note}")
            + ("  (e: problems)" if report.errors or report.warnings else "")
            + self.first_problem_text(report),
            done=report.measured or bool(report.tokenizer_note),
            lead=(f"{state}: {report.errors} errors, {report.warnings} warnings", colour),
        )
        self.refresh_summary()
        self.show_stats()

    @staticmethod
    def first_problem_text(report: Report) -> str:
        # The Problems tab is built when first shown, so the status line names the worst problem at once.
        problems = report.sorted_problems()
        return f"  first: {problems[0].location}: {problems[0].message}" if problems else ""

    def show_stats(self) -> None:
        report = self.report
        text, histogram = self.shown_widget("#stats-text"), self.shown_widget("#length-histogram")
        if text is None or histogram is None:
            return
        if report is None or not report.measured:
            text.update("token statistics appear here once the check has counted tokens (c)")
            histogram.plot({}, 0)
            return
        s = report.settings
        lines = [
            f"model {report.model or '(none)'} · batch_size {s.batch_size} · max_seq_length {s.max_seq_length:,}"
            f" · mask_prompt {'on' if s.mask_prompt else 'off'}",
            f"iterations per epoch (train records // batch_size): {report.iterations_per_epoch:,}",
            "",
            f"{'split':<6}{'records':>10}{'min':>7}{'median':>8}{'p95':>7}{'max':>8}{'tokens':>12}{'trained':>12}",
        ]
        for split, st in report.stats.items():
            lines.append(
                f"{split:<6}{st.records:>10,}{st.min:>7,}{st.median:>8,}{st.p95:>7,}{st.max:>8,}{st.tokens:>12,}{st.trained_tokens:>12,}"
            )
            if st.over_max:
                lines.append(f"      {st.over_max:,} records over max_seq_length (truncated)")
        lines.append(f"\nlength histogram of {self.split}:")
        text.update("\n".join(lines))
        st = report.stats.get(self.split)
        histogram.plot(dict(st.histogram) if st else {}, s.max_seq_length)

    # -- keys ---------------------------------------------------------------------------------
    def action_next_record(self) -> None:
        self.line += 1
        self.show_record()

    def action_previous_record(self) -> None:
        if self.line > 1:
            self.line -= 1
            self.show_record()

    def action_first_record(self) -> None:
        self.line = 1
        self.show_record()

    def action_last_record(self) -> None:
        if self.folder and self.split in self.folder.splits:
            self.line = max(1, self.record_count()[0])
            self.show_record()

    def action_next_split(self) -> None:
        if not self.folder or not self.folder.splits:
            return
        names = [s for s in SPLITS if s in self.folder.splits]
        self.split = names[(names.index(self.split) + 1) % len(names)] if self.split in names else names[0]
        self.line = 1
        self.refresh_summary()
        self.show_record()
        self.show_stats()

    def action_cycle_view(self) -> None:
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]
        self.show_records_tab()
        self.show_record()

    async def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        await self.fill_tab(tab)
        if tab == "problems":
            self.query_one("#problem-list").focus()
        elif tab == "records":
            self.query_one(RecordView).focus()

    def show_records_tab(self) -> None:
        self.query_one(TabbedContent).active = "records"
        self.query_one(RecordView).focus()

    def prompt_box(self) -> TextBox:
        """The prompt line (go to, search, open), made the first time it opens."""
        found = self.query("#data-prompt")
        if found:
            return found.first()
        from phi3tui.widgets.text_box import TextBox

        box = TextBox(placeholder="", id="data-prompt")
        self.mount(box, after="#data-status-row")
        return box

    def open_prompt(self, mode: str, placeholder: str) -> None:
        self.prompt_mode = mode
        prompt = self.prompt_box()
        prompt.number = mode == "goto"  # a record number keeps its digits (widgets/text_box.py)
        prompt.placeholder = placeholder
        prompt.value = ""
        prompt.add_class("-shown")
        prompt.focus()

    def action_goto(self) -> None:
        self.open_prompt("goto", "record number (Enter goes, Escape cancels)")

    def action_search(self) -> None:
        self.open_prompt("search", "text to find in this split (any case; Enter searches, n finds the next)")

    def action_open_other(self) -> None:
        self.open_prompt("open", "data folder to open (empty: the workspace's own; Enter opens)")

    def action_search_next(self) -> None:
        if self.last_search:
            self.run_search(self.last_search)

    def close_prompt(self) -> None:
        prompt = self.prompt_box()
        prompt.remove_class("-shown")
        self.prompt_mode = ""
        self.query_one(RecordView).focus()

    def on_input_submitted(self, event: TextBox.Submitted) -> None:
        if event.input.id != "data-prompt":
            return
        event.stop()
        value, mode = event.value.strip(), self.prompt_mode
        self.close_prompt()
        if mode == "goto":
            if not value.isdigit() or int(value) < 1:
                self.notify(f"{value!r} is not a record number (1, 2, …)", severity="error")
                return
            self.go_to(self.split, int(value))
        elif mode == "search" and value:
            self.last_search = value
            self.run_search(value)
        elif mode == "open":
            self.data_dir = self.workspace.resolve(value) if value else None
            self.open_folder()
            self.action_check()

    def on_key(self, event) -> None:
        if event.key == "escape" and self.prompt_mode:
            event.stop()
            self.close_prompt()

    @work(thread=True, exclusive=True, group="search")
    def run_search(self, needle: str) -> None:
        if not self.folder or self.split not in self.folder.splits:
            return
        call = self.call_on_screen
        call(self.set_status, f"searching {self.split} for {needle!r}…")
        found = self.folder.search(self.split, needle, after_line=self.line)
        if found is None:
            call(self.set_status, f"{needle!r} is not in {self.split}.jsonl")
        else:
            call(self.set_status, f"{needle!r} found at {self.split}:{found} (n: next match)")
            call(self.go_to, self.split, found)

    def on_data_table_row_highlighted(self, event) -> None:
        problem = self.query_one("#problem-list").problem_at(event.cursor_row)
        detail = str(problem) + ("  (Enter: show the record)" if problem and problem.line else "") if problem else ""
        self.query_one("#problem-detail", Static).update(detail)

    def on_validation_list_chosen(self, message) -> None:
        if message.line:
            self.go_to(message.split, message.line)
        else:
            self.notify(f"{message.split}: this problem is about the whole split", severity="information")

    # -- import -------------------------------------------------------------------------------
    def action_import_file(self) -> None:
        from phi3tui.widgets.import_form import ImportForm

        out_dir = str(self.folder.path if self.folder else self.data_dir or workspace_data(self.workspace).data_dir)
        self.app.push_screen(ImportForm(out_dir), self.import_form_done)

    def import_form_done(self, values: dict | None) -> None:
        if not values:
            return
        from phi3tui.core.data import existing_splits
        from phi3tui.widgets.confirm_dialog import ConfirmDialog

        existing = existing_splits(values["out_dir"])
        if not existing:
            self.run_import(values, False)
            return
        names = ", ".join(p.name for p in existing)
        question = f"{names} already exist in {values['out_dir']}. Replace them with the imported records?"
        self.app.push_screen(
            ConfirmDialog(question, yes="Replace", no="Keep"),
            lambda yes: self.run_import(values, True) if yes else self.notify("nothing was written"),
        )

    @work(thread=True, exclusive=True, group="import")
    def run_import(self, values: dict, force: bool) -> None:
        from phi3tui.core.data import DataImportError, import_any, options_from_values

        call = self.call_on_screen
        try:
            result = import_any(values["source"], values["out_dir"] or ".", options_from_values(values, force))
        except (DataImportError, OSError) as exc:
            call(self.notify, str(exc), title="Import failed", severity="error", timeout=10)
            call(self.set_status, f"import failed: {exc}")
            return
        call(self.notify, result.summary(), title="Imported")
        call(self.set_status, result.summary())
        call(self.reopen_after_import, values["out_dir"] or ".")

    def reopen_after_import(self, out_dir: str) -> None:
        """Show what was imported, wherever it went."""
        target = self.workspace.resolve(out_dir).resolve()
        self.data_dir = None if target == workspace_data(self.workspace).data_dir.resolve() else target
        self.open_folder()
        self.action_check()
