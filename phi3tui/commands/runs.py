"""`phi3tui runs list | attach ID | stop ID | kill ID | resume ID | promote ID [--by KEY] | probes ID [WS] | diff A B |
delete ID | status --oneline | queue [--drop ID | --up ID | --down ID] | resume-queue | sweep ID`."""

from __future__ import annotations

import argparse
import math
import sys
import time

from phi3tui.core.adapters import LATEST_WEIGHTS

ID_HELP = "run id, a unique prefix of it, or `latest`"


def add_workspace_option(p: argparse.ArgumentParser, positional: bool = False, default: str = ".") -> None:
    """-w/--workspace, the one way every command takes its workspace. positional: also the bare WORKSPACE word
    these commands documented before -w (kept as an alias; it sets nothing when absent, so -w stands)."""
    shown = "the current folder" if default == "." else f"./{default}"
    p.add_argument("-w", "--workspace", default=default, metavar="DIR", help=f"the workspace folder (default: {shown})")
    if positional:
        p.add_argument("workspace", nargs="?", default=argparse.SUPPRESS, metavar="WORKSPACE",
                       help="the workspace folder, as -w (an alias kept for older scripts)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "runs",
        help="list, attach to, stop, resume and compare training runs",
        description=(
            "Training runs of a workspace (runs/<id>/). Runs are detached processes: attach from any "
            "terminal, detach with ctrl+c, and the run goes on."
        ),
    )
    sub = p.add_subparsers(title="actions", metavar="ACTION", dest="action", required=True)

    a = sub.add_parser("list", help="every run with state, progress, best validation loss and age")
    add_workspace_option(a)
    a.set_defaults(func=cmd_list)

    a = sub.add_parser("attach", help="print a run's whole history, then follow it live until it ends")
    a.add_argument("id", help=ID_HELP)
    add_workspace_option(a)
    a.set_defaults(func=cmd_attach)

    a = sub.add_parser("stop", help="ask a run to save its adapter at the next step and end as stopped")
    a.add_argument("id", help=ID_HELP)
    a.add_argument("--wait", action="store_true", help="wait until the run has stopped")
    add_workspace_option(a)
    a.set_defaults(func=cmd_stop)

    a = sub.add_parser("kill", help="end a run that does not answer a stop (recorded as failed; resumable)")
    a.add_argument("id", help=ID_HELP)
    add_workspace_option(a)
    a.set_defaults(func=cmd_kill)

    a = sub.add_parser(
        "resume",
        help="start a stopped, failed or diverged run again from its last checkpoint "
        "(iteration count, optimizer state and learning-rate schedule continue)",
    )
    a.add_argument("id", help=ID_HELP)
    a.add_argument("--attach", action="store_true", help="follow the resumed run until it ends")
    a.add_argument(
        "--smaller",
        action="store_true",
        help="after running out of memory: half the batch_size and twice grad_accumulation_steps (the same "
        "effective batch), and twice the iterations left (the same number of updates)",
    )
    add_workspace_option(a)
    a.set_defaults(func=cmd_resume)

    a = sub.add_parser(
        "promote",
        help=f"copy the best checkpoint (by validation loss, or by a saved evaluation's score) to {LATEST_WEIGHTS}",
    )
    a.add_argument("id", help=ID_HELP)
    a.add_argument("--by", default="val_loss", choices=("val_loss", "mc2", "mc1", "test_loss"),
                   help="what makes a checkpoint best: val_loss (lowest, default), mc2 or mc1 (highest) or test_loss "
                        "(lowest) of the checkpoints' evaluations (eval-*.json, from `phi3tui eval`)")
    add_workspace_option(a)
    a.set_defaults(func=cmd_promote)

    a = sub.add_parser("probes", help="the probe prompts' answers at each checkpoint (config key probe_prompts), newest first")
    a.add_argument("id", help=ID_HELP)
    a.add_argument("ws", nargs="?", metavar="WS", help="the workspace folder (as -w)")
    add_workspace_option(a)
    a.set_defaults(func=cmd_probes)

    a = sub.add_parser("config", help="print a run's frozen config.yaml")
    a.add_argument("id", help=ID_HELP)
    add_workspace_option(a)
    a.set_defaults(func=cmd_config)

    a = sub.add_parser("diff", help="the settings that differ between two runs' configs")
    a.add_argument("a", help=ID_HELP)
    a.add_argument("b", help=ID_HELP)
    add_workspace_option(a)
    a.set_defaults(func=cmd_diff)

    a = sub.add_parser("delete", help="delete a run folder (asks first; --yes to skip the question)")
    a.add_argument("id", help=ID_HELP)
    a.add_argument("-y", "--yes", action="store_true", help="delete without asking")
    add_workspace_option(a)
    a.set_defaults(func=cmd_delete)

    a = sub.add_parser(
        "queue",
        help="the runs waiting to start one after another (next first); drop or reorder one",
        description="Queued runs start one at a time, each when the one before it ends, with nobody attached "
        "(`phi3tui train --queue`, `phi3tui train --sweep`). With no option: list them.",
    )
    move = a.add_mutually_exclusive_group()
    move.add_argument("--drop", metavar="ID", help="take this run out of the queue (its folder is deleted)")
    move.add_argument("--up", metavar="ID", help="move this run one place sooner")
    move.add_argument("--down", metavar="ID", help="move this run one place later")
    add_workspace_option(a)
    a.set_defaults(func=cmd_queue)

    a = sub.add_parser(
        "resume-queue",
        help="start the next queued run now if nothing runs here (after a reboot, or a run killed hard)",
    )
    add_workspace_option(a)
    a.set_defaults(func=cmd_resume_queue)

    a = sub.add_parser(
        "sweep",
        help="a sweep's runs side by side: the values it set, best val loss, tokens/s, time, eval scores",
    )
    a.add_argument("id", help="a sweep id, or the id of one of its runs (or `latest`)")
    add_workspace_option(a)
    a.set_defaults(func=cmd_sweep)

    a = sub.add_parser(
        "status", help="a run's details (machine, what keeps it awake, memory), or the live run in one line"
    )
    a.add_argument("id", nargs="?", default="latest", help=ID_HELP + " (default: latest)")
    a.add_argument("--oneline", action="store_true", help="the live run (or the newest run) in one line, for a tmux status bar")
    add_workspace_option(a)
    a.set_defaults(func=cmd_status)


def _fail(message: str, code: int = 2) -> int:
    print(f"phi3tui runs: {message}", file=sys.stderr)
    return code


def _workspace(args, backstop: bool = True):
    """The workspace of -w. backstop: start the queue's next run if the queue stalled (its last runner died
    without handing on, or the machine rebooted); commands that change the queue do it themselves."""
    from phi3tui.core.workspace import NotAWorkspace, Workspace

    try:
        ws = Workspace.open(args.workspace)
    except NotAWorkspace as exc:
        # Named by the command that asked (train, export, runs …), not always `runs`.
        command = getattr(getattr(args, "func", None), "__module__", "phi3tui.commands.runs").rsplit(".", 1)[-1]
        print(f"phi3tui {command}: {exc}\nhint: {exc.hint}", file=sys.stderr)
        raise SystemExit(2)
    if backstop:
        from phi3tui.core.runs import resume_queue_quietly

        started = resume_queue_quietly(ws)
        if started is not None:
            print(f"phi3tui: the queue had stalled; started its next run {started.name}", file=sys.stderr)
    return ws


def _run_dir(args, ref: str | None = None):
    from phi3tui.core.runs import RunError, find_run

    ws = _workspace(args)
    try:
        return find_run(ws, ref or args.id)
    except RunError as exc:
        raise SystemExit(_fail(str(exc)))


def _loss(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


def cmd_list(args) -> int:
    from phi3tui.core.runs import UNREADABLE, list_runs

    runs = list_runs(_workspace(args))
    if not runs:
        print("no runs yet; start one with `phi3tui train`")
        return 0
    print(f"{'id':<22} {'state':<10} {'progress':>11} {'best val':>9}  age")
    for s in runs:
        if s.state == UNREADABLE:  # nothing in it can be trusted: no progress, no age, only why
            print(f"{s.id:<22} {s.state:<10} {'-':>11} {'-':>9}  -")
            print(f"  {s.reason}")
            continue
        progress = f"{s.iteration}/{s.iters}"
        print(f"{s.id:<22} {s.state:<10} {progress:>11} {_loss(s.best_val_loss):>9}  {s.age_text()}")
    return 0


def format_record(r: dict) -> str:
    from phi3tui.core.runs import parse_float

    kind = r.get("kind")
    loss = parse_float(r.get("loss"))
    if kind == "train":
        return (
            f"iter {r['iteration']:>6}  train loss {loss:.4f}  lr {r.get('lr', 0):.2e}  "
            f"{r.get('it_per_s', 0):.2f} it/s  {r.get('tokens_per_s', 0):,.0f} tok/s  "
            f"peak {r.get('peak_mem', 0):.2f} GB"
        )
    if kind == "val":
        return f"iter {r['iteration']:>6}  val loss   {loss:.4f}  ({r.get('val_time', 0):.1f} s)"
    if kind == "test":
        # A DPO/ORPO run records no perplexity (of its loss it means nothing): its reward margin instead.
        if "ppl" in r:
            return f"test loss {loss:.4f}  perplexity {parse_float(r.get('ppl')):.3f}"
        margin = f"  reward margin {parse_float(r['reward_margin']):.3f}" if "reward_margin" in r else ""
        return f"test loss {loss:.4f}{margin}"
    return str(r)


def follow(run_dir, out=sys.stdout, poll: float = 0.5) -> int:
    """Print the run's history, then new records and alarms as they come, until the run ends."""
    from phi3tui.core.runs import END_STATES, UNREADABLE, RunState
    from phi3tui.core.runs import MetricsTail, run_info

    tail = MetricsTail(run_dir)
    seen_alarms = 0
    print(f"run {run_dir.name} (ctrl+c detaches; the run goes on)", file=out, flush=True)
    while True:
        info = run_info(run_dir)  # read before the metrics, so nothing written before the end is missed
        records, reset = tail.poll()
        if reset:
            print("-- the run was resumed: its history after the checkpoint was replaced --", file=out)
        for r in records:
            print(format_record(r), file=out)
        alarms = info.get("alarms") or []
        for alarm in alarms[seen_alarms:]:
            print(f"\a⚠ {alarm.get('kind')} at iteration {alarm.get('iteration')}: {alarm.get('message')}", file=out)
        seen_alarms = len(alarms)
        out.flush()
        if info.get("state") == UNREADABLE:  # it will not get better by waiting (wait_for_run says the same)
            print(f"run {run_dir.name}: {info.get('reason')}", file=out, flush=True)
            return 1
        if info.get("state") in END_STATES:
            print(f"run {run_dir.name} {info['state']}: {info.get('reason') or ''}", file=out, flush=True)
            if info["state"] == RunState.FAILED:
                for line in info.get("log_tail") or []:
                    print(f"  | {line}", file=out)
            return 0 if info["state"] in (RunState.FINISHED, RunState.STOPPED) else 1
        time.sleep(poll)


def cmd_attach(args) -> int:
    run_dir = _run_dir(args)
    try:
        return follow(run_dir)
    except KeyboardInterrupt:
        print(f"\ndetached; the run goes on (`phi3tui runs attach {run_dir.name}` to come back)")
        return 0


def _control(args, action, done: str) -> int:
    from phi3tui.core.runs import RunError

    run_dir = _run_dir(args)
    try:
        result = action(run_dir)
    except RunError as exc:
        return _fail(str(exc), 1)
    print(done.format(id=run_dir.name, result=result))
    return 0


def cmd_stop(args) -> int:
    from phi3tui.core.runs import stop_run, wait_for_run

    code = _control(args, stop_run, "{result}")
    if code == 0 and args.wait:
        info = wait_for_run(_run_dir(args))
        print(f"run {info.get('id')} {info.get('state')}: {info.get('reason')}")
    return code


def cmd_kill(args) -> int:
    from phi3tui.core.runs import kill_run

    return _control(args, kill_run, "killed run {id}; `phi3tui runs resume {id}` continues it from its last checkpoint")


def cmd_resume(args) -> int:
    from phi3tui.core.runs import resume_run

    done = "resumed run {id} from iteration {result}"
    if args.smaller:
        done += " with half the batch and twice grad_accumulation_steps (see `phi3tui runs status {id}`)"
    code = _control(args, lambda d: resume_run(d, smaller=args.smaller), done)
    if code == 0 and args.attach:
        return cmd_attach(args)
    return code


def cmd_promote(args) -> int:
    from phi3tui.core.runs import promote_best

    name = args.by.replace("_", " ")
    return _control(
        args,
        lambda d: "iteration {} ({name} {:.4f})".format(*promote_best(d, args.by), name=name),
        "run {id}: " + LATEST_WEIGHTS + " is now the checkpoint of {result}",
    )


def cmd_probes(args) -> int:
    from phi3tui.core.eval import read_probes

    if args.ws:
        args.workspace = args.ws
    run_dir = _run_dir(args)
    probes = read_probes(run_dir)
    if not probes:
        print(f"run {run_dir.name} has no probe answers: set probe_prompts in the config (a file of prompts, or N "
              "for the first N test prompts) and the run answers them after each checkpoint")
        return 0
    for iteration, answers in reversed(probes.items()):
        print(f"iteration {iteration}")
        for a in answers:
            print(f"  Q: {a.get('prompt', '')}")
            print(f"  A: {a.get('answer', '')}")
    return 0


def cmd_config(args) -> int:
    from phi3tui.core.runs import run_config_text

    run_dir = _run_dir(args)
    try:
        print(run_config_text(run_dir), end="")
    except (OSError, UnicodeDecodeError) as exc:  # a run folder cut short before its config was written
        return _fail(f"run {run_dir.name} has no readable config.yaml ({exc}); delete the run folder if it is "
                     f"left over (`phi3tui runs delete {run_dir.name}`)", 1)
    return 0


def cmd_diff(args) -> int:
    from phi3tui.core.runs import config_diff

    a, b = _run_dir(args, args.a), _run_dir(args, args.b)
    from phi3tui.core.config import ConfigError

    try:
        rows = config_diff(a, b)
    except ConfigError as exc:  # a run folder cut short before its config was written
        return _fail(f"cannot compare: {exc}", 1)
    if not rows:
        print(f"runs {a.name} and {b.name} have the same settings")
        return 0
    print(f"{'setting':<28} {a.name:<24} {b.name}")
    for key, va, vb in rows:
        print(f"{key:<28} {str(va):<24} {vb}")
    return 0


def cmd_delete(args) -> int:
    from phi3tui.core.runs import RunError, delete_run

    run_dir = _run_dir(args)
    if not args.yes:
        if not sys.stdin.isatty():
            return _fail(f"refusing to delete run {run_dir.name} without --yes (no terminal to ask)")
        if input(f"delete run {run_dir.name} and its adapters? [y/N] ").strip().lower() not in ("y", "yes"):
            print("kept")
            return 1
    try:
        delete_run(run_dir)
    except RunError as exc:
        return _fail(str(exc), 1)
    print(f"deleted run {run_dir.name}")
    return 0


def cmd_status(args) -> int:
    from phi3tui.core.runs import run_details, run_info, status_oneline
    from phi3tui.core.workspace import NotAWorkspace, Workspace

    if not args.oneline:
        run_dir = _run_dir(args)
        for label, value in run_details(run_info(run_dir)):
            print(f"{label + ':':<14} {value}")
        return 0
    try:
        ws = Workspace.open(args.workspace)
    except NotAWorkspace:
        print("no workspace")  # a status bar shows this rather than an error
        return 0
    print(status_oneline(ws))
    return 0


def cmd_queue(args) -> int:
    from phi3tui.core.config import point_label
    from phi3tui.core.runs import RunError, drop_queued, live_here, move_queued, queued_runs, read_run_json

    ws = _workspace(args, backstop=False)
    try:
        if args.drop:
            print(f"dropped run {drop_queued(ws, args.drop).name} from the queue")
        elif args.up or args.down:
            ref = args.up or args.down
            print(f"run {ref} is now #{move_queued(ws, ref, -1 if args.up else 1)} in the queue")
    except RunError as exc:
        return _fail(str(exc))
    queued = queued_runs(ws)
    live = live_here(ws)
    if live:
        print(f"running: {', '.join(d.name for d in live)}")
    if not queued:
        print("the queue is empty; add to it with `phi3tui train --queue` or `phi3tui train --sweep SPEC`")
        return 0
    print(f"{'#':>3}  {'id':<22} {'sweep':<28} values")
    for i, run_dir in enumerate(queued, 1):
        info = read_run_json(run_dir)
        print(f"{i:>3}  {run_dir.name:<22} {info.get('sweep_id') or '-':<28} {point_label(info.get('sweep_point') or {})}")
    return 0


def cmd_resume_queue(args) -> int:
    from phi3tui.core.runs import live_here, queued_runs, start_next

    ws = _workspace(args, backstop=False)
    started = start_next(ws)
    if started is not None:
        print(f"started queued run {started.name} ({len(queued_runs(ws))} still waiting)")
    elif not queued_runs(ws):
        print("the queue is empty; nothing to start")
    elif live_here(ws):
        print(f"run {live_here(ws)[0].name} is running; the queue goes on when it ends")
    else:
        return _fail("the queued runs could not be started; `phi3tui runs list` says why", 1)
    return 0


def cmd_sweep(args) -> int:
    from phi3tui.core.runs import RunError, find_run, read_run_json, sweep_rows, sweep_table

    ws = _workspace(args)
    sweep_id = args.id
    if not sweep_id.startswith("sweep-"):
        try:
            sweep_id = read_run_json(find_run(ws, args.id)).get("sweep_id")
        except (RunError, ValueError) as exc:
            return _fail(str(exc))
        if not sweep_id:
            return _fail(f"run {args.id} is not part of a sweep; `phi3tui train --sweep SPEC` makes one")
    rows = sweep_rows(ws, sweep_id)
    if not rows:
        return _fail(f"no runs of sweep {sweep_id} in {ws.runs_dir}")
    print(f"sweep {sweep_id}")
    print(sweep_table(rows))
    return 0
