"""Config screen: every lora_config.yaml key as a keyboard form, old files migrated, checked against the model.

All the work is in core (config_document, config_schema, config_migrate, config_checks, models); this
screen shows it. mlx-lm is imported in a worker after first paint (reading its keys, checking).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading

from rich.text import Text
from textual import work
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, ProgressBar, Static

from phi3tui.core.config import ConfigError
from phi3tui.core.config import ConfigDocument, DocumentEditError, read_config_text
from phi3tui.core.files import disk_error_message
from phi3tui.screens.base import ModeScreen
from phi3tui.widgets.config_form import ConfigForm, preset_value


# Under the form until a key has the focus; then that key's help.
KEY_HELP_HINT = "tab next key · ^f or / find · n/N next set key · z/Z fold · esc leave a box"

# In the footer as "nN Set" and "zZ Fold".
NOTABLE_GROUP = Binding.Group("Set", compact=True)
FOLD_GROUP = Binding.Group("Fold", compact=True)


class ConfigScreen(ModeScreen):
    TITLE = "Config"
    DEFAULT_CSS = """
    ConfigScreen #config-status { height: 1; padding: 0 1; background: $panel; }
    ConfigScreen #model-info { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    ConfigScreen #form-holder { height: 1fr; }
    ConfigScreen #key-help { height: auto; max-height: 3; padding: 0 1; color: $text-muted; border-top: solid $primary; }
    ConfigScreen #loading, ConfigScreen #load-error { padding: 1 2; }
    ConfigScreen #findings { height: 7; border-top: solid $primary; padding: 0 1; }
    ConfigScreen #download { height: auto; padding: 0 1; display: none; }
    ConfigScreen #download.active { display: block; }
    ConfigScreen.-wide ConfigForm FieldRow > .default { width: 36; }
    """
    # From 120 columns the form's default column is wide enough for the defaults (ConfigForm's CSS).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    # F6–F9 need Fn on a Mac keyboard: each also has a ctrl key, which the form's text boxes let through.
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="config.save"),
        # priority: a text box would take ctrl+f for itself. `/` is typed in a text box (paths have it).
        # Off the footer (80 columns are full): the line under the form names both, as do ? and the palette.
        Binding("ctrl+f", "find_key", "Find key", show=False, priority=True, id="config.find_key"),
        Binding("slash", "find_key", "Find key", show=False, id="config.find_key_slash"),
        # priority, so that a box for numbers lets these letters through (widgets/text_box.py); a box for
        # text keeps them (they are typed there): esc leaves it for the group's title.
        Binding("n", "next_notable(1)", "Next set", priority=True, group=NOTABLE_GROUP, id="config.next_notable"),
        Binding("N", "next_notable(-1)", "Previous set", priority=True, group=NOTABLE_GROUP,
                id="config.previous_notable"),
        Binding("z", "fold", "Fold group", priority=True, group=FOLD_GROUP, id="config.fold"),
        Binding("Z", "fold_all", "Fold all", priority=True, group=FOLD_GROUP, id="config.fold_all"),
        # Off the footer, which n/N and z/Z fill: the status line says "N to migrate (^g)" when there is any.
        Binding("ctrl+g,f6", "migrate", "Migrate", show=False, id="config.migrate"),
        Binding("ctrl+t,f7", "presets", "Presets", id="config.presets"),
        Binding("ctrl+n,f8", "models", "Models", id="config.models"),
        Binding("ctrl+l", "keys", "LoRA keys", show=False, id="config.keys"),
        Binding("ctrl+y,f9", "download", "Download", show=False, id="config.download"),
        Binding("ctrl+o", "editor", "$EDITOR", show=False, id="config.editor"),
        Binding("ctrl+r", "reload", "Reload", show=False, id="config.reload"),
        # Not in the footer (it would push it past 80 columns): the download line says "esc cancels".
        Binding("escape", "cancel_download", "Cancel download", show=False, id="config.cancel_download"),
        # Otherwise escape leaves a key for its group's title, where the letter keys above work.
        Binding("escape", "leave_field", "Leave the key", show=False, id="config.leave_field"),
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.doc: ConfigDocument | None = None
        self.fields: list | None = None
        self.review = None
        self.rejected: set[str] = set()
        self.load_error = ""
        self.download_cancel: threading.Event | None = None
        self._check_timer = None

    @property
    def has_unsaved_changes(self) -> bool:
        """Read by the app before quitting."""
        return self.doc is not None and self.doc.modified

    def compose_body(self) -> ComposeResult:
        yield Static("", id="config-status")
        yield Static("", id="model-info", markup=False)
        with Vertical(id="form-holder"):
            yield Label("Reading mlx-lm's keys…", id="loading")
        yield Static(KEY_HELP_HINT, id="key-help", markup=False)
        with Vertical(id="download"):
            yield Label("", id="download-label")
            yield ProgressBar(id="download-bar", show_eta=True)
        with VerticalScroll(id="findings"):
            yield Static("", id="findings-text")

    def on_mount(self) -> None:
        self._load()

    # -- loading and checking -------------------------------------------------------------
    @work(thread=True, group="config-load")
    def _load(self) -> None:
        from phi3tui.core.config import config_fields, save_config_fields, saved_config_fields

        fields = saved_config_fields()  # no mlx-lm import on a visit after the first (core/config/schema.py)
        if fields is None:
            from phi3tui.core.mlx_thread import mlx_thread

            with mlx_thread(worker=True):
                fields = config_fields()
            save_config_fields(fields)
        self.app.call_from_thread(self._loaded, fields, *self._read_document())

    def _read_document(self) -> tuple[ConfigDocument | None, str]:
        """(the document, "") or (None, why it cannot be read); a missing file is an empty document."""
        path = self.workspace.config_path
        try:
            return (ConfigDocument.load(path) if path.exists() else ConfigDocument("", path)), ""
        except ConfigError as exc:
            return None, str(exc)

    async def _loaded(self, fields, doc, error: str) -> None:
        self.fields, self.doc, self.load_error = fields, doc, error
        holder = self.query_one("#form-holder")
        await holder.remove_children()
        if doc is None:
            await holder.mount(Label(f"{error}\n\nctrl+o opens the file in $EDITOR; it is checked again when you "
                                     "return.", id="load-error", markup=False))
            self._update_status()
            return
        known = {f.path[0] for f in fields}
        unknown = [k for k in doc.values if k not in known]
        await holder.mount(ConfigForm(fields, doc.values, unknown, id="config-form"))
        self._update_status()
        self.schedule_check(0)

    def schedule_check(self, delay: float = 0.3) -> None:
        if self._check_timer is not None:
            self._check_timer.stop()
        self._check_timer = self.set_timer(max(delay, 0.01), self._start_check)

    def _start_check(self) -> None:
        if self.doc is not None:
            self._check(self.doc.text, frozenset(self.rejected))

    @work(thread=True, exclusive=True, group="config-check")
    def _check(self, text: str, rejected: frozenset) -> None:
        from phi3tui.core.config import ConfigReview, Finding, review_config
        from phi3tui.core.mlx_thread import mlx_thread

        try:
            with mlx_thread(worker=True):
                review = review_config(text, self.workspace.root, rejected)
        except ConfigError as exc:
            review = ConfigReview({}, findings=[Finding("error", "", str(exc))])
        self.app.call_from_thread(self._show_review, review, text)

    def _show_review(self, review, text: str) -> None:
        if self.doc is None or text != self.doc.text:
            return  # stale: a newer check is on its way
        if not self.query("#model-info"):
            return  # the app is closing: the screen's widgets are gone before the worker's answer
        self.review = review
        info = review.model.info if review.model is not None else None
        model_line = ""
        if info is not None:
            model_line = f"{info.summary()} · {review.model.location.kind} {review.model.value}"
        elif review.model is not None:
            model_line = f"model {review.model.value}: {review.model.problem}"
        self.query_one("#model-info", Static).update(model_line)
        styles = {"error": self.app.colour("bad"), "warning": self.app.colour("warn"), "info": ""}
        out = Text()
        for finding in review.findings:
            out.append(f"{finding.level:7} ", style=f"bold {styles.get(finding.level, '')}".strip())
            line = self.doc.line_of(tuple(finding.field.split("."))) if finding.field else None
            out.append(f"{finding.field}{f' (line {line})' if line else ''}: " if finding.field else "", style="bold")
            out.append(finding.message)
            if finding.hint:
                out.append(f" ({finding.hint})", style="italic")
            out.append("\n")
        if not review.findings:
            out.append("no findings")
        self.query_one("#findings-text", Static).update(out)
        form = self._form()
        if form is not None:
            form.show_findings(review.findings)
        self._update_epochs()
        self._update_status()

    def _update_status(self) -> None:
        parts = [self.workspace.config_path.name]
        if self.doc is None:
            parts.append("cannot be read (ctrl+o to edit)")
        else:
            parts.append("● unsaved (ctrl+s)" if self.doc.modified else "saved")
            if not self.workspace.config_path.exists():
                parts.append("new file")
        if self.review is not None:
            pending = [c for c in self.review.changes if c.id not in self.rejected]
            if pending:
                parts.append(f"{len(pending)} to migrate (^g)")
            if len(pending) < len(self.review.changes):
                parts.append(f"{len(self.review.changes) - len(pending)} rejected")
            errors = len(self.review.errors)
            warnings = sum(f.level == "warning" for f in self.review.findings)
            parts.append(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
        self.query_one("#config-status", Static).update(" · ".join(parts))
        self.sub_title = "unsaved" if self.doc is not None and self.doc.modified else ""

    def _train_size(self) -> int | None:
        data = self.review.data if self.review is not None else None
        return data.sizes.get("train") if data is not None else None

    def _update_epochs(self) -> None:
        from phi3tui.core.config import epochs_for_iters

        form = self._form()
        size = self._train_size()
        if form is None or self.doc is None or not size:
            return
        values = self.review.values
        iters, batch = values.get("iters"), values.get("batch_size")
        from phi3tui.core.config import mlx_lm_defaults

        iters = iters if isinstance(iters, int) else mlx_lm_defaults()["iters"]
        batch = batch if isinstance(batch, int) and batch > 0 else mlx_lm_defaults()["batch_size"]
        widget = form.widget_for(("epochs",))
        if not widget.has_focus:
            with widget.prevent(widget.Changed):
                widget.value = f"{epochs_for_iters(iters, size, batch):.2f}"

    def _form(self) -> ConfigForm | None:
        found = self.query("#config-form")
        return found.first() if found else None

    def _refresh_form(self) -> None:
        form = self._form()
        if form is not None and self.doc is not None:
            form.set_values(self.doc.values)
        self._update_status()
        self.schedule_check()

    # -- moving around --------------------------------------------------------------------
    def on_config_form_focused(self, event: ConfigForm.Focused) -> None:
        form = self._form()
        if form is not None:
            self.query_one("#key-help", Static).update(form.help_text(event.spec))

    def action_find_key(self) -> None:
        """Jump to a key by typing part of its name."""
        from phi3tui.widgets.picker import Picker

        form = self._form()
        if form is None or not self.fields:
            return
        options = [(f"{'.'.join(f.path)}  · {f.group}", f.path) for f in self.fields]

        def jump(path) -> None:
            if path:
                widget = form.widget_for(path)
                widget.focus()
                widget.parent.scroll_visible()

        self.app.push_screen(Picker("Jump to a key: type part of its name", options, find="key name"), jump)

    def action_next_notable(self, step: int) -> None:
        """n / N: the next / previous key whose value differs from mlx-lm's default or has a finding."""
        form = self._form()
        if form is not None and form.jump_notable(step) is None:
            self.notify("every key is at mlx-lm's default and has no finding")

    def action_fold(self) -> None:
        form = self._form()
        group = form.focused_group() if form is not None else None
        if group is not None:
            form.toggle_group(group)

    def action_fold_all(self) -> None:
        form = self._form()
        if form is not None:
            form.toggle_all()

    def action_leave_field(self) -> None:
        form = self._form()
        group = form.focused_group() if form is not None else None
        if group is not None:
            form.focus_title(group)

    # -- edits ----------------------------------------------------------------------------
    def on_config_form_changed(self, event: ConfigForm.Changed) -> None:
        from phi3tui.core.config import apply_field_edit

        if self.doc is None:
            return
        form = self._form()
        try:
            apply_field_edit(self.doc, event.path, event.value, self._train_size())
        except (DocumentEditError, ValueError) as exc:
            # The document is as it was: the form goes back to showing what the file says.
            message = f"{'.'.join(event.path)}: {exc}"
            self.notify(message, severity="error")
            if form is not None:
                form.refuse(event.path, message, self.doc.values)
            self._update_status()
            return
        if form is not None:
            if event.path == ("epochs",) or event.path[0] == "lr_schedule":
                form.set_values(self.doc.values)  # iters (or the schedule's other fields) changed too
            else:
                form.values = self.doc.values
        self._update_status()
        self.schedule_check()

    def apply_values(self, values: dict) -> None:
        """Lay values over the document (a preset, a pick), as if typed into the form."""
        try:
            with self.doc.transaction():
                for key, value in values.items():
                    self.doc.set((key,), value)
        except DocumentEditError as exc:
            self.notify(f"nothing was changed: {exc}", severity="error")
        self._refresh_form()

    # -- actions --------------------------------------------------------------------------
    def check_action(self, action: str, parameters) -> bool | None:
        if action == "cancel_download":
            return self.download_cancel is not None
        return True

    def action_save(self) -> None:
        if self.doc is None:
            self.notify("the file cannot be read; fix it with ctrl+o first", severity="error")
            return
        path = self.workspace.config_path
        try:
            on_disk = read_config_text(path) if path.exists() else None  # exactly, as the document read it
        except OSError as exc:
            self.notify(f"cannot save {path}: {exc.strerror or exc}; it must be a file you can read", severity="error")
            return
        if on_disk is not None and on_disk != self.doc.saved_text:
            from phi3tui.widgets.confirm_dialog import ConfirmDialog

            self.app.push_screen(
                ConfirmDialog(f"{path.name} changed on disk since it was loaded. Overwrite it with this form?"),
                lambda yes: self._save() if yes else None,
            )
            return
        self._save()

    def _save(self) -> bool:
        """Whether the file now holds the form; on a failure it says why and the file is as it was."""
        try:
            self.doc.save(self.workspace.config_path)
        except OSError as exc:
            self.notify(f"{disk_error_message(exc, self.workspace.config_path)} (nothing was written)",
                        severity="error")
            return False
        self.notify(f"saved {self.workspace.config_path.name}")
        self._update_status()
        return True

    def action_migrate(self) -> None:
        if self.review is None or not self.review.changes:
            self.notify("nothing to migrate" if self.review is not None else "still checking…")
            return
        from phi3tui.screens.config.migrate import MigrationScreen

        changes = list(self.review.changes)
        self.app.push_screen(MigrationScreen(changes, self.rejected), lambda ids: self._migrated(changes, ids))

    def _migrated(self, changes: list, accepted: set | None) -> None:
        if accepted is None or self.doc is None:
            return
        from phi3tui.core.config import apply_changes

        try:
            apply_changes(self.doc, [c for c in changes if c.id in accepted])
        except DocumentEditError as exc:
            self.notify(f"migration failed, nothing was changed: {exc}", severity="error")
            return
        self.rejected = {c.id for c in changes if c.id not in accepted}
        self.notify(f"{len(accepted)} change(s) applied, {len(self.rejected)} rejected; ctrl+s saves")
        self._refresh_form()

    def action_presets(self) -> None:
        from phi3tui.core.config import PRESETS
        from phi3tui.widgets.picker import Picker

        if self.doc is None:
            return
        options = [(f"{name}: " + ", ".join(f"{k} {preset_value(v)}" for k, v in values.items() if k != "lora_parameters"), name)
                   for name, values in PRESETS.items()]
        self.app.push_screen(Picker("Start from a preset (other keys stay as they are)", options),
                             lambda name: self.apply_values(PRESETS[name]) if name else None)

    def action_models(self) -> None:
        if self.doc is not None:
            self._list_models()

    @work(thread=True, group="config-models")
    def _list_models(self) -> None:
        from phi3tui.core.models import model_choices

        choices, problem = model_choices(self.workspace.root)
        if problem:
            self.app.call_from_thread(self.notify, problem, severity="warning")
        self.app.call_from_thread(self._pick_model, choices)

    def _pick_model(self, options) -> None:
        from phi3tui.widgets.picker import Picker

        self.app.push_screen(Picker("Model: a folder here, one in the Hugging Face cache, or a known Phi model "
                                    "(ctrl+y downloads it)", options, find="type part of a name"),
                             lambda value: self.apply_values({"model": value}) if value else None)

    def action_keys(self) -> None:
        from phi3tui.widgets.picker import Picker

        model = self.review.model if self.review is not None else None
        if model is None or model.block_modules is None:
            self.notify("the model's modules are not known yet (is the model downloaded?)", severity="warning")
            return
        current = (self.doc.values.get("lora_parameters") or {}).get("keys") or []
        options = [(name, name) for name in model.block_modules]
        self.app.push_screen(
            Picker("LoRA keys: the modules inside each block to adapt", options, multi=True, selected=current),
            self._keys_picked,
        )

    def _keys_picked(self, keys) -> None:
        if keys is None or self.doc is None:
            return
        try:
            self.doc.set(("lora_parameters", "keys"), list(keys))
        except DocumentEditError as exc:
            self.notify(str(exc), severity="error")
        self._refresh_form()

    def action_download(self) -> None:
        from phi3tui.core.models import REPO_ID_RE

        if self.doc is None or self.download_cancel is not None:
            return
        model = str(self.doc.values.get("model") or "")
        located = self.review.model.location if self.review is not None and self.review.model else None
        if located is not None and located.available:
            self.notify(f"{model} is already here ({located.kind})")
            return
        if not REPO_ID_RE.match(model):
            self.notify(f"{model!r} is not a Hugging Face repo id (owner/name)", severity="warning")
            return
        from phi3tui.widgets.confirm_dialog import ConfirmDialog

        self.app.push_screen(
            ConfirmDialog(f"Download {model} from Hugging Face into the local cache? (escape cancels it)"),
            lambda yes: self._start_download(model) if yes else None,
        )

    def _start_download(self, model: str) -> None:
        self.download_cancel = threading.Event()
        self.query_one("#download").add_class("active")
        self.query_one("#download-label", Label).update(f"downloading {model}… (esc cancels)")
        self.query_one("#download-bar", ProgressBar).update(total=None, progress=0)
        self.refresh_bindings()
        self._download(model, self.download_cancel)

    @work(thread=True, group="config-download")
    def _download(self, model: str, cancel: threading.Event) -> None:
        from phi3tui.core.models import DownloadCancelled, ModelNotFound, download_model

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(self.query_one("#download-bar", ProgressBar).update,
                                      total=total or None, progress=done)

        try:
            folder = download_model(model, progress, cancel)
            message, severity = f"downloaded {model} to {folder}", "information"
        except DownloadCancelled as exc:
            message, severity = str(exc), "warning"
        except ModelNotFound as exc:
            message, severity = str(exc), "error"
        self.app.call_from_thread(self._download_done, message, severity)

    def _download_done(self, message: str, severity: str) -> None:
        self.download_cancel = None
        self.query_one("#download").remove_class("active")
        self.refresh_bindings()
        self.notify(message, severity=severity)
        self.schedule_check(0)

    def action_cancel_download(self) -> None:
        if self.download_cancel is not None:
            self.download_cancel.set()
            self.query_one("#download-label", Label).update("cancelling…")

    async def action_editor(self) -> None:
        if self.doc is not None and self.doc.modified:
            from phi3tui.widgets.confirm_dialog import ConfirmDialog

            async def answered(yes: bool | None) -> None:
                if yes and self._save():  # a failed save has said why; the editor would show the old file
                    await self._edit()

            self.app.push_screen(
                ConfirmDialog("The form has unsaved changes. Save them, then open the file in $EDITOR?",
                              yes="Save and edit", no="Cancel"),
                answered,
            )
            return
        await self._edit()

    async def _edit(self) -> None:
        path = self.workspace.config_path
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        command = shlex.split(editor) + [str(path)]
        try:
            try:
                with self.app.suspend():
                    subprocess.run(command, check=False)
            except SuspendNotSupported:  # headless or web: run it without handing over the terminal
                subprocess.run(command, check=False, stdin=subprocess.DEVNULL, capture_output=True)
        except OSError as exc:
            self.notify(f"cannot run {editor}: {exc}; set $EDITOR", severity="error")
            return
        self.rejected.clear()
        await self._reload_from_disk()
        self.notify(f"{path.name} re-read and checked again")

    async def action_reload(self) -> None:
        if self.doc is not None and self.doc.modified:
            from phi3tui.widgets.confirm_dialog import ConfirmDialog

            async def answered(yes: bool | None) -> None:
                if yes:
                    await self._reload_from_disk()

            self.app.push_screen(
                ConfirmDialog("Discard the unsaved changes and reload the file from disk?", yes="Discard"),
                answered,
            )
            return
        await self._reload_from_disk()

    async def _reload_from_disk(self) -> None:
        if self.fields is None:
            return
        doc, error = self._read_document()
        if doc is not None and self.doc is not None and self._form() is not None:
            self.doc, self.load_error = doc, ""
            self._refresh_form()
            return
        self.review = None
        await self._loaded(self.fields, doc, error)
