"""The Textual app: one mode per screen, the global keys, the long-lived workers."""

from __future__ import annotations

import gc
from collections.abc import Iterable
from importlib import import_module

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.signal import Signal

from phi3tui import modes
from phi3tui.core.workspace import Workspace
from phi3tui.appearance import AppearanceMixin, rich_colour
from phi3tui.textual_private import KeptStylesheet, paint_now
from phi3tui.widgets.dialog_style import DIALOG_CSS

# The app's own theme variables (used as $train-loss etc. in CSS, app.colour(...) in code),
# each defaulting to one of Textual's base colours when a theme does not set it.
APP_COLOUR_ROLES = {
    "train-loss": "primary",
    "val-loss": "warning",
    "base-model": "secondary",
    "adapted-model": "accent",
    "good": "success",
    "warn": "warning",
    "bad": "error",
}

# runs/ is read this often, by the app's one RunWatcher; the Train screen's live plot needs it this quick.
# The header and the terminal title are redrawn only when their text changes.
RUN_POLL_S = 0.5


# Screens whose modules are imported while the app is idle after the first paint, so that their first visit does not
# wait for them: Config (~13 ms of imports; its first visit has a goal, ≤ 0.5 s to the whole form). The others
# import plots or chat (~0.1 s each): not for every start.
PRELOADED_MODES = ("config",)
PRELOAD_AFTER_PAINT_S = 0.3

# The footer shows the screen keys as one group: "12345 Screens".
SCREEN_GROUP = Binding.Group("Screens", compact=True)


def screen_class(mode_id: str) -> type[Screen]:
    """The screen class of a row of the modes table (phi3tui/modes.py), imported now."""
    row = modes.find(mode_id)
    return getattr(import_module(row.module), row.cls)


def _mode_factory(mode_id: str):
    def make_screen() -> Screen:
        from textual import active_app

        screen = screen_class(mode_id)()
        # Its widgets take their styles as they mount: Textual's two CSS refreshes for a new mode are not needed.
        active_app.get().mark_css_current(screen)
        return screen

    return make_screen


def mode_bindings() -> list[Binding]:
    """One binding per app mode of the table: its key and F-key switch to it. Priority bindings, so they are
    tried before the focused widget; a text box lets the plain key through only while it is empty
    (widgets/text_box.py), the F-key always."""
    return [
        Binding(row.keys, f"switch_mode('{row.id}')", row.title, key_display=row.key, priority=True,
                group=SCREEN_GROUP, id=row.binding_id)
        for row in modes.app_modes()
    ]


def opener_binding(view: modes.Mode) -> Binding | None:
    """The binding of the view's `over` screen that opens it (its `opens` action), or None."""
    for binding in screen_class(view.over).BINDINGS:
        binding = binding if isinstance(binding, Binding) else Binding(*binding)
        if binding.action == view.opens:
            return binding
    return None


class Phi3App(AppearanceMixin, KeptStylesheet, App):
    TITLE = "phi3tui"
    CSS = """
    Screen { layout: vertical; }
    #placeholder { padding: 1 2; }
    /* A group's label ("12345 Screens") keeps a space before the next key in the compact footer. */
    Footer.-compact FooterLabel { margin: 0 1 0 0; }
    """ + DIALOG_CSS
    # The modes table (phi3tui/modes.py) gives the modes and their keys. Help is a priority binding too:
    # a text box lets ? through while it is empty.
    MODES = {row.id: _mode_factory(row.id) for row in modes.app_modes()}
    BINDINGS = [
        *mode_bindings(),
        Binding("question_mark", "help", "Help", key_display="?", priority=True, id="app.help"),
        Binding("q", "quit", "Quit", show=False, id="app.quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, id="app.quit_ctrl_c"),
    ]

    def __init__(self, workspace: Workspace, start_mode: str = "data", **kwargs):
        """start_mode: a row of the modes table; a view (eval) starts in its mode and opens after the first paint."""
        start = modes.find(start_mode)
        # The app starts in the first screen's mode: no default screen is made and left for it, and its
        # CSS is applied once (a switch_mode at mount would restyle twice before the first paint).
        self.DEFAULT_MODE = start.over if start.is_view else start.id
        super().__init__(**kwargs)
        self.workspace = workspace
        self.start_view = start if start.is_view else None
        self.painted = False  # until first_paint: see textual_private.NoHiddenFirstFrame
        self._model_worker = None
        # The one watcher of runs/ (core.runs.RunWatcher), polled by one timer; each poll is kept in
        # run_poll and published on runs_polled to the header and the Train screen. The first poll is
        # here, so the first screen starts from what is there.
        from phi3tui.core.runs import RunWatcher

        self.run_watcher = RunWatcher(workspace)
        self.run_poll = self.run_watcher.poll()
        self.runs_polled: Signal = Signal(self, "runs-polled")
        # Settings, themes and the keymap from the user's config folder (phi3tui/appearance.py).
        self.load_user_settings()
        self.take_css_variables()  # the theme's: the first screen's CSS is parsed once, with them

    @property
    def model_worker(self):
        """The one thread that runs all MLX work of this process (core.chat.ModelWorker), made on first use."""
        if self._model_worker is None:
            from phi3tui.core.chat import ModelWorker

            self._model_worker = ModelWorker()
        return self._model_worker

    def free_chat_memory(self) -> int:
        """Unload Chat's model before a run starts here (unified memory is not booked twice). Bytes freed."""
        return self._model_worker.unload() if self._model_worker is not None else 0

    def on_unmount(self) -> None:
        self.restore_terminal_title()
        if self._model_worker is not None:
            self._model_worker.close()

    def get_css_variables(self) -> dict[str, str]:
        # The app's own colour roles: a theme may set them; otherwise each takes the value of
        # the Textual base colour it defaults to. Screens and plots use only these and Textual's own.
        variables = super().get_css_variables()
        for role, source in APP_COLOUR_ROLES.items():
            variables.setdefault(role, variables[source])
        self.theme_variables = variables
        return variables

    def refresh_css(self, animate: bool = True) -> None:
        # Setting the theme in __init__ asks for a refresh that would parse the whole stylesheet before any screen
        # exists; the first mode's screen refreshes it anyway as it is made (so the start parses it once, not twice).
        if self.screen_stack:
            super().refresh_css(animate)

    def update_styles(self, node, animate: bool = True) -> None:
        # A widget not in the DOM yet, setting a class in its __init__ (an Input's compact and valid classes),
        # is styled as it mounts: styling it now is thrown away (~1 ms an Input: 50 of them in the Config form).
        if node.is_attached:
            super().update_styles(node, animate)

    def colour(self, role: str) -> str:
        """A resolved colour (e.g. '#4EBF71', or 'red' in a 16-colour theme) for one of APP_COLOUR_ROLES,
        for plots and rich text."""
        return rich_colour(self.theme_variables.get(role) or self.get_css_variables()[role])

    def on_mount(self) -> None:
        self.title = f"phi3tui — {self.workspace.name}"
        self.show_runs_in_terminal(self.run_poll)  # the first poll's title and run-end notices
        self.start_user_settings()
        self.set_interval(RUN_POLL_S, self.poll_runs)
        self.call_later(self.first_paint)

    def first_paint(self) -> None:
        """Right after start-up, once Textual stops holding updates back: draw the first screen now (all of it:
        nothing was drawn before, see textual_private.NoHiddenFirstFrame), not at its update timer's next tick,
        turn garbage collection back on (cli.main keeps it off until here), then start the queue's backstop."""
        self.painted = True
        paint_now(self.screen)
        if not gc.isenabled():  # cli.main's start-up (an app in tests leaves the GC as it is)
            # What start-up made stays for the process's life: frozen, no collection walks it again. Without
            # the freeze, the first collection after gc.enable() would walk all of it at once (tens of ms)
            # while the driver's writer thread waits for the GIL to put the frame just painted on the terminal.
            gc.freeze()
            gc.enable()
        # The queue's backstop after the paint: its thread (and the executor Textual imports for it) would
        # otherwise share the start-up's CPU.
        self.run_worker(self.resume_queue, thread=True, group="queue-backstop")
        if self.start_view is not None:  # `--screen eval`: the view opens over its mode's screen, as its key would
            self.call_later(self.screen.run_action, self.start_view.opens)
        self.set_timer(PRELOAD_AFTER_PAINT_S, self.preload_screens)

    def preload_screens(self) -> None:
        """Import the screens of PRELOADED_MODES now, while nothing is asked of the app (none is made)."""
        for mode_id in PRELOADED_MODES:
            screen_class(mode_id)

    def resume_queue(self) -> None:
        """The queue's backstop (core.runs.queue): a queue whose last runner died without handing on starts here."""
        from phi3tui.core.runs import resume_queue_quietly

        started = resume_queue_quietly(self.workspace)
        if started is not None:
            self.call_from_thread(self.notify, f"the queue had stalled; started its next run {started.name}")

    def poll_runs(self):
        """Poll runs/ once and tell everyone that shows runs. Returns the poll (a core.runs.RunPoll)."""
        try:
            poll = self.run_watcher.poll()
        except OSError:  # runs/ unreadable for a moment (a network disk): keep the last poll
            return self.run_poll
        self.run_poll = poll
        self.show_runs_in_terminal(poll)
        self.runs_polled.publish(poll)
        return poll

    # -- help and palette -------------------------------------------------
    def key_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        from phi3tui.screens.help import describe_bindings

        # Shown with the user's keymap applied (settings.yaml `keymap:`).
        everywhere = describe_bindings(self.remapped(self.BINDINGS)) + [("ctrl+p", "Command palette")]
        sections = [("Everywhere", everywhere + [("", modes.key_rule())])]
        for row in modes.MODES:
            title = row.title
            if row.is_view:  # where it opens from: "Evaluate (Chat ^o)"
                opener = opener_binding(row)
                keys = describe_bindings(self.remapped([opener]))[0][0] if opener else ""
                title = f"{row.title} ({modes.find(row.over).title} {keys})".replace(" )", ")")
            sections.append((title, describe_bindings(self.remapped(screen_class(row.id).BINDINGS))))
        return sections

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The priority screen keys and help stay out of dialogs (a dialog's own keys win there, as before).
        if action in ("switch_mode", "help") and isinstance(self.screen, ModalScreen):
            return False
        return True

    def on_key(self, event) -> None:
        # A screen key or ? that reached the app past an open dialog (which has no key of that name, and no text
        # box took it): say why nothing switched, rather than nothing at all (check_action keeps them out).
        screen = self.screen
        if not isinstance(screen, ModalScreen) or event.key in screen.active_bindings:
            return
        for binding in self.remapped(self.BINDINGS):
            if binding.action.startswith(("switch_mode", "help")) and event.key in binding.key.replace(" ", "").split(","):
                self.notify("close this dialog first (esc): screen keys and ? work once it is closed",
                            severity="warning", timeout=4)
                return

    async def action_quit(self) -> None:
        """Quit; a screen holding unsaved edits (has_unsaved_changes, e.g. the Config form) asks first.
        A second quit key while asking quits."""
        from phi3tui.widgets.confirm_dialog import ConfirmDialog

        unsaved = []
        for mode in self.MODES:
            try:
                stack = self.get_screen_stack(mode)
            except KeyError:  # a mode never opened
                continue
            unsaved += [s.TITLE for s in stack if getattr(s, "has_unsaved_changes", False)]
        if not unsaved or isinstance(self.screen, ConfirmDialog):
            self.exit()
            return
        self.push_screen(
            ConfirmDialog(f"The {', '.join(unsaved)} screen has unsaved changes. Quit and discard them?", yes="Quit"),
            lambda yes: self.exit() if yes else None,
        )

    async def open_view(self, view: modes.Mode) -> None:
        """Open a view of the modes table (e.g. Evaluate): its mode's screen, then the action there that opens it."""
        await self.switch_mode(view.over)
        await self.screen.run_action(view.opens)

    def action_help(self) -> None:
        from phi3tui.screens.help import HelpScreen

        self.push_screen(HelpScreen(self.key_sections()))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # Textual's own "Keys" (its key panel) would sit beside "Help: keys", which lists every screen's keys.
        yield from (command for command in super().get_system_commands(screen) if command.title != "Keys")
        for row in modes.MODES:
            if row.is_view:
                where = modes.find(row.over).title
                yield SystemCommand(
                    f"Go to {row.title}", f"Open {row.title} over the {where} screen", lambda v=row: self.open_view(v)
                )
            else:
                yield SystemCommand(
                    f"Go to {row.title}", f"Switch to the {row.title} screen", lambda m=row.id: self.switch_mode(m)
                )
        yield SystemCommand("Help: keys", "Every screen's keys", self.action_help)
        yield from self.user_settings_commands()
        # Every described binding of every mode's screen is a palette command; one of another screen switches
        # there first. A view's own keys (Evaluate's) need it open: its "Go to" above opens it.
        for row in modes.app_modes():
            here = self.current_mode == row.id
            for binding in self.remapped(screen_class(row.id).BINDINGS):
                if binding.description and binding.action:
                    key = binding.key_display or binding.key
                    yield SystemCommand(
                        f"{row.title}: {binding.description}",
                        f"key {key}" + ("" if here else f" on the {row.title} screen (goes there)"),
                        lambda m=row.id, a=binding.action: self.run_screen_action(m, a),
                    )
        # A screen that is no mode's (a view such as Evaluate, a dialog): its own keys too, run on it.
        if type(screen).__name__ not in {row.cls for row in modes.app_modes()}:
            for binding in self.remapped(getattr(screen, "BINDINGS", [])):
                if binding.description and binding.action:
                    yield SystemCommand(
                        f"{screen.TITLE or screen.__class__.__name__}: {binding.description}",
                        f"key {binding.key_display or binding.key}",
                        lambda a=binding.action, s=screen: self.run_action(a, s),
                    )

    async def run_screen_action(self, mode_id: str, action: str) -> None:
        """Run an action of a mode's screen (a palette command), switching to that mode first. An action the
        screen refuses now (its check_action: Stop on a stopped run) says so rather than doing nothing."""
        from textual.actions import parse

        if self.current_mode != mode_id:
            await self.switch_mode(mode_id)
        screen = self.screen
        _, name, parameters = parse(action)
        if screen.check_action(name, parameters) is not True:
            row = modes.find(mode_id)
            self.notify(f"{row.title}: {name.replace('_', ' ')} does not apply now", severity="warning")
            return
        await self.run_action(action, screen)
