"""`phi3tui train [--config FILE] [--queue | --sweep SPEC | --now]`: start (or queue) a detached training run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phi3tui.commands.runs import add_workspace_option
from phi3tui.core.files import shell_command


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="start a detached training run of the workspace's config (or queue it, or queue a sweep)",
        description=(
            "Check and migrate the LoRA config, freeze it into runs/<id>/config.yaml and start the runner "
            "detached: closing the terminal or the SSH connection does not stop it. "
            "Follow it with `phi3tui runs attach ID` or in the app (F3). "
            "One run at a time on this machine: while one runs, add --queue to start this one after it "
            "(the queue is files in runs/ and goes on with nobody attached), or --now to run both at once. "
            "A `sweep:` block in the config (or --sweep) queues the whole grid."
        ),
    )
    p.add_argument("-c", "--config", metavar="FILE", help="the config to run (default: WORKSPACE/lora_config.yaml)")
    add_workspace_option(p)
    p.add_argument("--iters", type=int, metavar="N", help="iterations to train for (overrides the config)")
    p.add_argument(
        "--hosts",
        metavar="H1,H2",
        help="train data-parallel on these machines through `mlx.launch` (this machine first: rank 0 writes the run; "
        "names are resolved to IP addresses; each host needs the workspace and phi3tui at the same paths)",
    )
    p.add_argument(
        "--hostfile",
        metavar="FILE",
        help="an mlx.launch hostfile instead of --hosts (JSON, e.g. written by `mlx.distributed_config`)",
    )
    p.add_argument(
        "--backend",
        choices=("ring", "jaccl"),
        help="mlx.launch's backend: ring (TCP, the default) or jaccl (RDMA over Thunderbolt, needs a hostfile "
        "with the RDMA devices); default: the hostfile's, else ring",
    )
    p.add_argument("--attach", action="store_true", help="follow the run here until it ends (ctrl+c detaches)")
    p.add_argument(
        "--keep-awake",
        choices=("auto", "off"),
        help="keep the machine from sleeping while the run lives (caffeinate on macOS, systemd-inhibit on Linux); "
        "default: the keep_awake setting",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument("--queue", action="store_true",
                     help="start this run when the runs queued before it have ended (at once when nothing runs)")
    how.add_argument("--sweep", metavar="SPEC",
                     help='queue a grid of runs, e.g. "lora_parameters.rank=8,16 learning_rate=1e-5,1e-4" '
                          "(dotted config keys, comma-separated values); overrides the config's sweep: block")
    how.add_argument("--now", action="store_true",
                     help="start now even while another run is running here, if both fit in memory (the running "
                          "run's recorded MLX peak counts as in use)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from phi3tui.commands.runs import _workspace, cmd_attach
    from phi3tui.core.config import ConfigError, load_config_values
    from phi3tui.core.config import SweepError, parse_sweep_spec, sweep_block
    from phi3tui.core.runs import RunError, start_alone, start_beside

    ws = _workspace(args, backstop=False)
    if args.iters is not None and args.iters < 1:
        print("phi3tui train: --iters must be at least 1", file=sys.stderr)
        return 2
    if args.hostfile and not Path(args.hostfile).is_file():
        print(f"phi3tui train: --hostfile {args.hostfile} does not exist", file=sys.stderr)
        return 2
    overrides = {"iters": args.iters} if args.iters else None
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()] if args.hosts else None
    hostfile = str(Path(args.hostfile).resolve()) if args.hostfile else None
    config_path = Path(args.config) if args.config else ws.config_path
    try:
        sweep = parse_sweep_spec(args.sweep) if args.sweep is not None else None
        has_block = not args.now and sweep is None and sweep_block(load_config_values(config_path), str(config_path))
        if args.queue or sweep or has_block:
            if args.attach:
                print("phi3tui train: --attach follows one run; with a queue, attach later with "
                      "`phi3tui runs attach ID` (`phi3tui runs queue` lists it)", file=sys.stderr)
                return 2
            return _queue(ws, args.config, overrides, sweep, hosts, hostfile, args.backend)
        # Without --now the check "is a run live here" and the start are one step under the queue's lock:
        # of two `phi3tui train` typed at once, one starts and the other is refused (RunBusy). With --now the
        # memory check counts what the runs live here hold: both must fit.
        start = start_beside if args.now else start_alone
        run_dir = start(ws, args.config, overrides, hosts=hosts, hostfile=hostfile, backend=args.backend,
                        keep_awake=args.keep_awake)
    except (ConfigError, RunError, SweepError) as exc:
        print(f"phi3tui train: {exc}", file=sys.stderr)
        return 2
    print(f"started run {run_dir.name} (detached; log: {run_dir / 'log.txt'})")
    if hosts or hostfile:
        from phi3tui.core.runs import read_run_json

        info = read_run_json(run_dir)
        print(f"on {len(info.get('hosts') or [])} hosts through mlx.launch --backend {info.get('backend')}: "
              f"{', '.join(info.get('hosts') or [])}")
    # Commands that work as typed from here: the workspace named unless it is the current folder.
    where = "" if ws.root.resolve() == Path.cwd().resolve() else f" -w {shell_command(ws.root)}"
    print(f"follow it: phi3tui runs attach {run_dir.name}{where}   stop it: phi3tui runs stop {run_dir.name}{where}")
    if args.attach:
        args.id = run_dir.name
        return cmd_attach(args)
    return 0


def _queue(ws, config, overrides, sweep, hosts, hostfile, backend) -> int:
    from phi3tui.core.config import point_label
    from phi3tui.core.runs import WAITING, queue_runs, queued_runs, read_run_json

    made = queue_runs(ws, config, overrides, sweep, hosts=hosts, hostfile=hostfile, backend=backend)
    order = [d.name for d in queued_runs(ws)]
    first = read_run_json(made[0])
    if first.get("sweep_id"):
        print(f"sweep {first['sweep_id']}: {len(made)} runs")
    for run_dir in made:
        info = read_run_json(run_dir)
        label = point_label(info.get("sweep_point") or {})
        where = (f"queued #{order.index(run_dir.name) + 1}" if info.get("state") == WAITING
                 else "started (nothing else was running)")
        print(f"{run_dir.name}  {where}" + (f"  {label}" if label else ""))
    print("the queue goes on with nobody attached: `phi3tui runs queue` lists it")
    return 0
