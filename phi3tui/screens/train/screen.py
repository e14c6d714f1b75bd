"""Train screen (F3): start detached runs and watch one live, or any past run; overlay several; the queue.

The screen polls nothing itself: the app's one RunWatcher (core/runs/watcher.py) publishes each poll of
runs/ and the screen shows it, reading the followed run's new metrics while it is visible. The run itself
is a detached process, so leaving the screen or closing the app never touches it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import ProgressBar, Static

from phi3tui.core import runs
from phi3tui.core.adapters import LATEST_WEIGHTS, run_adapter_dir
from phi3tui.core.eval import checkpoint_scores, read_probes, number_text
from phi3tui.core.run_folder import GRPO_SAMPLES, read_latest_samples
from phi3tui.core.runs import END_STATES, RunState, log_tail
from phi3tui.screens.base import ModeScreen
from phi3tui.widgets.loss_plot import Curve, LossPlot

REDRAW_S = 0.5  # the plot is rebuilt at most this often, and only when new data arrived
OVERLAY_ROLES = ("train-loss", "val-loss", "base-model", "adapted-model", "good", "bad")


class TrainScreen(ModeScreen):
    TITLE = "Train"
    DEFAULT_CSS = """
    TrainScreen #run-line { height: 1; }
    TrainScreen #run-title { width: 1fr; height: 1; padding-right: 1; }
    TrainScreen #run-progress { width: 22; height: 1; }
    TrainScreen #run-stats { height: 1; color: $text-muted; }
    TrainScreen #run-alarm { height: auto; color: $warn; display: none; }
    TrainScreen #run-alarm.shown { display: block; }
    TrainScreen #run-queue { height: 1; color: $text-muted; display: none; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainScreen #run-queue.shown { display: block; }
    TrainScreen #run-bottom { height: 6; }
    TrainScreen #run-bottom.probes { height: 9; }
    TrainScreen #run-probes { width: 1fr; display: none; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainScreen #run-bottom.probes #run-probes { display: block; }
    TrainScreen #run-bottom.probes #run-log { display: none; }
    TrainScreen #run-checkpoints { width: 30; border-right: vkey $panel; }
    TrainScreen #run-log { width: 1fr; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    TrainScreen #run-stats, TrainScreen #run-title { text-wrap: nowrap; text-overflow: ellipsis; }
    TrainScreen #run-samples { height: 1fr; display: none; border: round $panel; padding: 0 1; }
    TrainScreen #run-samples:focus { border: round $accent; }
    TrainScreen #run-samples.shown { display: block; }
    TrainScreen #loss-plot.samples-shown { display: none; }
    """
    BINDINGS = [
        Binding("n", "start_run", "New run", id="train.start"),
        Binding("s", "stop_run", "Stop", id="train.stop"),
        Binding("r", "resume_run", "Resume", id="train.resume"),
        # Shown in the footer only on a run that ran out of memory (check_action).
        Binding("b", "resume_smaller", "Resume, half batch", id="train.resume_smaller"),
        Binding("i", "show_details", "Run details", show=False, id="train.details"),
        Binding("k", "kill_run", "Kill", show=False, id="train.kill"),
        Binding("l", "runs_list", "Runs", id="train.runs"),
        Binding("u", "show_queue", "Queue", id="train.queue"),
        Binding("g", "toggle_log", "Log scale", show=False, id="train.log_scale"),
        # Not in the footer (full at 80 columns): a DPO/ORPO run's plot title names the key; palette and ? list it.
        Binding("w", "toggle_rewards", "Plot rewards/loss", show=False, id="train.rewards"),
        Binding("p", "promote", "Promote", id="train.promote"),
        Binding("c", "show_config", "Config", show=False, id="train.config"),
        # Probe answers (config key probe_prompts): step through the checkpoints to see an answer change.
        Binding("left_square_bracket", "probe_step(-1)", "Probe: earlier checkpoint", key_display="[", show=False,
                id="train.probe_earlier"),
        Binding("right_square_bracket", "probe_step(1)", "Probe: later checkpoint", key_display="]", show=False,
                id="train.probe_later"),
        Binding("a", "toggle_probes", "Probe answers / log", show=False, id="train.probes"),
        # A GRPO run's latest sampled group in place of the plot; up/down scroll it. Not in the footer (a live
        # run's keys fill 80 columns): the plot's title names it once the run has written a group, as for w.
        Binding("o", "toggle_samples", "Samples", show=False, id="train.samples"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.run_dir: Path | None = None
        self.overlay: list[Path] = []
        self.tail: runs.MetricsTail | None = None
        self.metrics = runs.RunMetrics()
        self.info: dict = {}
        self.dirty = False
        self.last_draw = 0.0
        self.seen_alarms = 0
        self.newest_at_attach: Path | None = None
        self.show_rewards = False  # w: the plot shows the series the run's task plots (DPO/ORPO: rewards), not loss
        self.footer_state = None  # the run state the footer's keys were chosen for (check_action)
        self.probes: dict[int, list[dict]] = {}
        self.probes_seen = None  # the probes folder's mtime when last read
        self.probe_at: int | None = None  # the checkpoint shown; None follows the newest
        self.probes_hidden = False
        self.samples: dict | None = None  # a GRPO run's latest sampled group (samples.jsonl's last line)
        self.samples_seen = None  # samples.jsonl's (mtime, size) when last read
        self.samples_shown = False  # o: the group in place of the plot
        self.samples_text = ""  # what the panel shows

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="run-line"):
            yield Static("no run yet: press n to start one", id="run-title")
            yield ProgressBar(total=100, show_eta=False, show_percentage=False, id="run-progress")
        yield Static("", id="run-stats")
        yield Static("", id="run-alarm")
        yield Static("", id="run-queue")
        yield LossPlot(id="loss-plot")
        with VerticalScroll(id="run-samples"):
            yield Static("", id="run-samples-text", markup=False)
        with Horizontal(id="run-bottom"):
            yield Static("", id="run-checkpoints")
            yield Static("", id="run-log", markup=False)
            yield Static("", id="run-probes", markup=False)

    def on_mount(self) -> None:
        poll = self.app.run_poll
        shown = poll.live or poll.runs
        self.show_queue_line(poll)
        if shown:
            self.attach(shown[0].run_dir, poll)
        self.app.runs_polled.subscribe(self, self.show_poll)

    # -- following a run -----------------------------------------------------------------
    def attach(self, run_dir: Path, poll=None) -> None:
        """Show this run from its first record (attaching late replays the whole history)."""
        poll = poll or self.app.run_poll
        self.run_dir = run_dir
        self.newest_at_attach = poll.newest
        self.overlay = []
        self.tail = runs.MetricsTail(run_dir)
        self.metrics = runs.RunMetrics.for_run(run_dir)
        seen = poll.summary(run_dir)
        self.info = seen.info if seen is not None else runs.run_info(run_dir)  # an old run, older than the poll
        self.seen_alarms = len(self.info.get("alarms") or [])  # old alarms show, but do not ring
        self.probes, self.probes_seen, self.probe_at = {}, None, None
        self.samples, self.samples_seen = None, None
        self.show_poll(poll, force=True)

    def refresh_now(self) -> None:
        """After an action: poll at once (through the app's one watcher) rather than wait for the timer."""
        self.show_poll(self.app.poll_runs(), force=True)

    def show_poll(self, poll, force: bool = False) -> None:
        if not (force or self.is_current):
            return
        self.show_queue_line(poll)
        if self.run_dir is None:  # nothing shown yet: the first run started (here or elsewhere) is
            if poll.live:
                self.notify(f"following the new run {poll.live[0].run_dir.name}")
                self.attach(poll.live[0].run_dir, poll)
            return
        if self.overlay:
            return
        records, reset = self.tail.poll()
        if reset:
            self.metrics = runs.RunMetrics.for_run(self.run_dir)
        if records or reset:
            self.metrics.add(records)
            self.dirty = True
        seen = poll.summary(self.run_dir)
        if seen is not None:  # else an old run outside the poll: ended, its run.json does not change
            self.info = seen.info
        if self.info.get("state") in END_STATES and self.follow_newer_run(poll):
            return
        self.update_panels()
        now = time.monotonic()
        if self.dirty and (force or now - self.last_draw >= getattr(self.app, "plot_refresh_s", REDRAW_S)):
            self.draw()
            self.last_draw = now
        self.check_alarms()

    def show_queue_line(self, poll) -> None:
        line = self.query_one("#run-queue", Static)
        queue = poll.queue
        if queue:
            point = queue[0].info.get("sweep_point") or {}
            label = " ".join(f"{k.split('.')[-1]}={v}" for k, v in point.items())
            line.update(f"queue: {len(queue)} waiting · next {queue[0].id} {label} · u: queue")
        line.set_class(bool(queue), "shown")

    def follow_newer_run(self, poll) -> bool:
        """A run started elsewhere (the CLI, another terminal) while this one had ended: follow it."""
        newest = poll.runs[0] if poll.runs else None
        # Only a run that appeared after attaching: one picked from the list on purpose stays shown.
        if newest and newest.run_dir not in (self.run_dir, self.newest_at_attach) and newest.live:
            self.notify(f"following the new run {newest.run_dir.name}")
            self.attach(newest.run_dir, poll)
            return True
        return False

    def draw(self) -> None:
        self.dirty = False
        m = self.metrics
        iters = int(self.info.get("iters") or 0)
        plotted = m.plotted_curves() if self.show_rewards else []
        samples = ["o: samples"] if self.samples is not None else []  # keys the footer has no room for
        if plotted:
            curves = [Curve(label, xs, ys, OVERLAY_ROLES[i % len(OVERLAY_ROLES)]) for i, (label, xs, ys) in enumerate(plotted)]
            keys = " · ".join(["w: loss"] + samples)
            self.query_one(LossPlot).show_curves(curves, f"run {self.run_dir.name} {m.plotted_title} ({keys})", x_end=iters)
            return
        curves = [Curve("train", m.train_x, m.train_y, "train-loss"), Curve("val", m.val_x, m.val_y, "val-loss", "dot")]
        keys = " · ".join(([f"w: {m.plotted_title}"] if m.series else []) + samples)
        hint = f" ({keys})" if keys else ""
        self.query_one(LossPlot).show_curves(curves, f"run {self.run_dir.name}{hint}", x_end=iters)

    def update_panels(self) -> None:
        info, m = self.info, self.metrics
        state = info.get("state", "?")
        if state != self.footer_state:  # the footer follows the run: s on a live run, r (and b) on a stopped one
            self.footer_state = state
            self.refresh_bindings()
        iteration, iters = int(info.get("iteration") or 0), int(info.get("iters") or 0)
        title = Text.assemble((f"run {self.run_dir.name} ", "bold"), (state, "bold"))
        eta = runs.eta_seconds(info) if state in (RunState.RUNNING, RunState.STOPPING) else None
        title.append(f"  {iteration}/{iters}" + (f"  ETA {runs.format_duration(eta)}" if eta is not None else ""))
        self.query_one("#run-title", Static).update(title)
        bar = self.query_one(ProgressBar)
        bar.update(total=max(iters, 1), progress=iteration)

        parts = []
        last = m.last_train
        if last:
            parts += [
                f"lr {last.get('lr', 0):.2e}",
                f"{last.get('tokens_per_s', 0):,.0f} tok/s",
                f"{last.get('it_per_s', 0):.1f} it/s",
                f"peak {last.get('peak_mem', 0):.2f}GB",
            ]
        started = info.get("started")
        if started:
            end = info.get("ended") or time.time()
            parts.append(f"{runs.format_duration(end - started)} elapsed")
        if m.test:
            ppl = f" ppl {runs.parse_float(m.test['ppl']):.2f}" if "ppl" in m.test else ""  # none for DPO/ORPO
            parts.append(f"test {runs.parse_float(m.test.get('loss')):.3f}{ppl}")
        # Last and one word, so lr … elapsed fit 80 columns: `i` (Run details) says how or why not.
        awake = runs.awake_word(info)
        if awake:
            parts.append(awake)
        self.query_one("#run-stats", Static).update(" · ".join(parts))

        lines = []
        alarms = info.get("alarms") or []
        if alarms:
            a = alarms[-1]
            lines.append(f"⚠ {a.get('kind')} @{a.get('iteration')}: {a.get('message')}")
        if state in (RunState.FAILED, RunState.DIVERGED, RunState.OUT_OF_MEMORY, RunState.UNREADABLE) and info.get("reason"):
            lines.append(f"✗ {state}: {info['reason']}")
        alarm = self.query_one("#run-alarm", Static)
        alarm.update(Text("\n".join(lines)))
        alarm.set_class(bool(lines), "shown")

        best = info.get("best_val_loss")
        rows = [f"best val {best:.4f} @{info.get('best_val_iteration')}" if isinstance(best, (int, float)) else "best val -"]
        table = runs.checkpoint_table(self.run_dir, m, last=3)
        scores = checkpoint_scores(run_adapter_dir(self.run_dir)) if table else {}
        if scores:  # evaluations saved beside the adapters (eval-*.json): their scores, per checkpoint
            rows.append("  iter    val  mc1  mc2  test")
        else:
            rows.append("checkpoint   val loss")
        for it, _path, loss in table:
            shown = "-" if loss is None or not math.isfinite(loss) else f"{loss:.4f}"
            if scores:
                s = scores.get(it, {})
                cells = [number_text(s.get(k), d) for k, d in (("mc1", 2), ("mc2", 2), ("test_loss", 2))]
                rows.append(f"{it:>6} {number_text(loss, 3):>6} {cells[0]:>4} {cells[1]:>4} {cells[2]:>5}")
            else:
                rows.append(f"{it:>10}   {shown}")
        if len(rows) == 2:
            rows.append("none saved yet")
        self.query_one("#run-checkpoints", Static).update("\n".join(rows))
        self.query_one("#run-log", Static).update("\n".join(log_tail(self.run_dir, 6)))
        self.update_probes()
        self.update_samples()

    # -- probe answers ----------------------------------------------------------------------
    def update_probes(self) -> None:
        folder = self.run_dir / "probes"
        try:
            stamp = folder.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self.probes_seen:  # a new checkpoint's answers (one file each) touch the folder
            self.probes_seen = stamp
            self.probes = read_probes(self.run_dir) if stamp is not None else {}
        shown = bool(self.probes) and not self.probes_hidden
        self.query_one("#run-bottom").set_class(shown, "probes")
        if not shown:
            return
        its = list(self.probes)
        at = self.probe_at if self.probe_at in self.probes else its[-1]
        index = its.index(at)
        previous = {a.get("prompt"): a.get("answer") for a in self.probes[its[index - 1]]} if index else {}
        lines = [f"probes @ iteration {at} ({index + 1}/{len(its)}) · [ ] other checkpoints · a log"]
        for answer in self.probes[at]:
            changed = index and previous.get(answer.get("prompt")) != answer.get("answer")
            lines.append(f"Q {answer.get('prompt', '')}")
            lines.append(f"{'A≠' if changed else 'A '} {answer.get('answer', '') or '(empty)'}")
        self.query_one("#run-probes", Static).update("\n".join(lines))

    def action_probe_step(self, delta: int) -> None:
        if self.run_dir is None or not self.probes:
            self.notify("no probe answers in this run: set probe_prompts in the config (Config screen)", severity="warning")
            return
        its = list(self.probes)
        at = self.probe_at if self.probe_at in self.probes else its[-1]
        index = max(0, min(len(its) - 1, its.index(at) + delta))
        self.probe_at = None if index == len(its) - 1 else its[index]  # at the newest: follow new ones
        self.probes_hidden = False
        self.update_probes()

    def action_toggle_probes(self) -> None:
        if not self.probes:
            self.notify("no probe answers in this run: set probe_prompts in the config (Config screen)", severity="warning")
            return
        self.probes_hidden = not self.probes_hidden
        self.update_probes()

    # -- a GRPO run's sampled groups ----------------------------------------------------------
    def update_samples(self) -> None:
        """Read samples.jsonl again when it changed (each poll of the app's run watcher asks), show the last group."""
        try:
            stat = (self.run_dir / GRPO_SAMPLES).stat() if self.run_dir is not None else None
            stamp = (stat.st_mtime_ns, stat.st_size) if stat is not None else None
        except OSError:
            stamp = None
        if stamp != self.samples_seen:
            self.samples_seen = stamp
            had = self.samples is not None
            self.samples = read_latest_samples(self.run_dir) if stamp is not None else None
            if had != (self.samples is not None):
                self.dirty = True  # the plot's title names o once there is a group to show
        shown = self.samples_shown and self.samples is not None and not self.overlay
        panel = self.query_one("#run-samples")
        self.query_one(LossPlot).set_class(shown, "samples-shown")
        panel.set_class(shown, "shown")
        if not shown and panel.has_focus:
            self.set_focus(None)
        if shown:
            text = "\n".join(runs.sample_group_lines(self.samples, hint="o: plot · ↑↓ scroll"))
            if text != self.samples_text:  # every poll asks; only a new group is drawn again
                self.samples_text = text
                self.query_one("#run-samples-text", Static).update(text)

    def action_toggle_samples(self) -> None:
        if self.run_dir is None or self.samples is None:
            self.notify("no sampled completions in this run: GRPO runs (train_mode: grpo) write them each report",
                        severity="warning")
            return
        self.samples_shown = not self.samples_shown
        self.update_samples()
        if self.samples_shown:
            self.query_one("#run-samples").focus()  # so up/down/page keys scroll it

    def check_alarms(self) -> None:
        alarms = self.info.get("alarms") or []
        for alarm in alarms[self.seen_alarms :]:
            self.app.bell()
            self.notify(f"{alarm.get('kind')}: {alarm.get('message')}", title="run alarm", severity="warning", timeout=10)
        self.seen_alarms = len(alarms)
        # A run's end is toasted once, by the app's run watcher (on every screen), not here as well.

    # -- actions ------------------------------------------------------------------------
    def action_start_run(self) -> None:
        def start() -> None:
            freed = self.app.free_chat_memory()  # the run and Chat's model would share the same memory
            if freed:
                self.app.call_from_thread(self.notify, f"unloaded Chat's model ({freed / 1e9:.2f} GB) for the run; "
                                          "it loads again when you chat")
            try:
                made = runs.start_or_queue(self.workspace)  # queued behind a live run, or a sweep: block's grid
            except Exception as exc:  # a refused config or a start failure is shown, the app stays up
                self.app.call_from_thread(self.notify, str(exc), title="run not started", severity="error", timeout=20)
                return
            self.app.call_from_thread(self.started, made)

        self.app.run_worker(start, thread=True, group="train-start", exclusive=True)

    def started(self, made: list[Path]) -> None:
        poll = self.app.poll_runs()
        queued = [d for d in made if any(s.run_dir == d for s in poll.queue)]
        if len(queued) < len(made):  # the first one started at once
            self.notify(f"started run {made[0].name}; it goes on if you quit (q)")
            self.attach(made[0], poll)
        if queued:
            self.notify(f"queued {len(queued)} run(s); each starts when the one before it ends (u: the queue)")

    def _control(self, action, done: str) -> None:
        if self.run_dir is None:
            self.notify("no run attached: press l to pick one", severity="warning")
            return
        try:
            result = action(self.run_dir)
        except (runs.RunError, OSError) as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.notify(done.format(result=result))
        self.refresh_now()

    def action_stop_run(self) -> None:
        self._control(runs.stop_run, "{result}")

    def action_resume_run(self) -> None:
        self._control(runs.resume_run, "resumed from iteration {result}")

    def check_action(self, action: str, parameters) -> bool | None:
        # In the footer (and run by their keys) only where they apply to the attached run; the palette lists them
        # always and says when one does not apply (app.run_screen_action).
        state = self.info.get("state")
        if action == "resume_smaller":
            return state == RunState.OUT_OF_MEMORY
        if action == "stop_run":  # a stalled run too: its process may live on (runs.stop_run says what it did)
            return state in runs.LIVE_STATES or state == RunState.STALLED
        if action == "resume_run":
            return state in runs.RESUMABLE_STATES
        return True

    def action_resume_smaller(self) -> None:
        self._control(lambda d: runs.resume_run(d, smaller=True),
                      "resumed from iteration {result} with half the batch and twice grad_accumulation_steps")

    def action_show_details(self) -> None:
        from phi3tui.screens.train.run_text import RunTextScreen

        if self.run_dir is not None:
            text = "\n".join(f"{label + ':':<12} {value}" for label, value in runs.run_details(self.info))
            self.app.push_screen(RunTextScreen(f"run {self.run_dir.name}: details", text))

    def action_kill_run(self) -> None:
        from phi3tui.widgets.confirm_dialog import ConfirmDialog

        if self.run_dir is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._control(runs.kill_run, "killed; press r to resume from the last checkpoint")

        self.app.push_screen(
            ConfirmDialog(f"Kill run {self.run_dir.name}? Work since its last checkpoint is lost."), answered
        )

    def action_promote(self) -> None:
        """Promote the best checkpoint by validation loss; with evaluations saved, pick the score first."""
        from phi3tui.widgets.picker import Picker

        if self.run_dir is None:
            self.notify("no run attached: press l to pick one", severity="warning")
            return
        choices = runs.promote_choices(self.run_dir)
        if len(choices) <= 1:
            self.promote_by("val_loss")
            return
        options = [(f"by {by.replace('_', ' ')}: iteration {it} ({score:.4f})", by) for by, it, score in choices]
        self.app.push_screen(Picker("Promote the best checkpoint by", options), self.promote_by)

    def promote_by(self, by: str | None) -> None:
        if by is None:
            return
        name = by.replace("_", " ")
        self._control(
            lambda d: "iteration {} ({name} {:.4f})".format(*runs.promote_best(d, by), name=name),
            LATEST_WEIGHTS + " is now the checkpoint of {result}",
        )

    def action_toggle_rewards(self) -> None:
        if self.run_dir is None or self.overlay:
            self.notify("no run attached: press l to pick one", severity="warning")
            return
        curves = self.metrics.plotted_curves()
        if not curves:
            self.show_rewards = False
            self.notify("this run records nothing to plot beside its loss (DPO/ORPO runs record rewards): showing "
                        "its loss", severity="warning")
            return
        self.show_rewards = not self.show_rewards
        self.draw()
        self.notify(", ".join(label for label, _, _ in curves) if self.show_rewards else "loss")

    def action_toggle_log(self) -> None:
        log = self.query_one(LossPlot).toggle_log_scale()
        self.notify("log scale" if log else "linear scale")

    def action_show_config(self) -> None:
        from phi3tui.screens.train.run_text import RunTextScreen

        if self.run_dir is not None:
            self.app.push_screen(RunTextScreen(f"run {self.run_dir.name}: config.yaml", runs.run_config_text(self.run_dir)))

    def action_show_queue(self) -> None:
        from phi3tui.screens.train.queue_list import QueueScreen

        self.app.push_screen(QueueScreen(self.workspace), lambda _: self.refresh_now())

    def action_runs_list(self) -> None:
        from phi3tui.screens.train.runs_list import RunsListScreen

        self.app.push_screen(RunsListScreen(self.workspace), self.picked)

    def picked(self, result) -> None:
        if not result:
            return
        kind, value = result
        if kind == "attach":
            self.attach(value)
        elif kind == "overlay":
            self.show_overlay(value)

    def show_overlay(self, run_dirs: list[Path]) -> None:
        """Several runs' curves on one plot: validation where a run has it, else training."""
        self.overlay = run_dirs
        self.update_samples()  # the overlay's plot takes the place of a group shown
        curves = []
        for i, run_dir in enumerate(run_dirs):
            m = runs.read_metrics(run_dir)
            role = OVERLAY_ROLES[i % len(OVERLAY_ROLES)]
            if m.val_x:
                curves.append(Curve(f"{run_dir.name} val", m.val_x, m.val_y, role))
            else:
                curves.append(Curve(f"{run_dir.name} train", m.train_x, m.train_y, role))
        self.query_one("#run-title", Static).update(f"overlay of {len(run_dirs)} runs (l: pick a run to attach)")
        self.query_one(LossPlot).show_curves(curves, "validation loss, overlaid")
