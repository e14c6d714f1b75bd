"""`phi3tui train [--config FILE]`: start a detached training run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phi3tui.commands.runs import add_workspace_option
from phi3tui.core.files import shell_command


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="start a detached training run of the workspace's config",
        description=(
            "Check and migrate the LoRA config, freeze it into runs/<id>/config.yaml and start the runner "
            "detached: closing the terminal or the SSH connection does not stop it. "
            "Follow it with `phi3tui runs attach ID` or in the app (F3)."
        ),
    )
    p.add_argument("-c", "--config", metavar="FILE", help="the config to run (default: WORKSPACE/lora_config.yaml)")
    add_workspace_option(p)
    p.add_argument("--iters", type=int, metavar="N", help="iterations to train for (overrides the config)")
    p.add_argument(
        "--hosts",
        metavar="H1,H2",
        help="train data-parallel on these machines through `mlx.launch --backend ring` (rank 0 writes the run)",
    )
    p.add_argument("--hostfile", metavar="FILE", help="an mlx.launch hostfile instead of --hosts")
    p.add_argument("--attach", action="store_true", help="follow the run here until it ends (ctrl+c detaches)")
    p.add_argument(
        "--keep-awake",
        choices=("auto", "off"),
        help="keep the machine from sleeping while the run lives (caffeinate on macOS, systemd-inhibit on Linux); "
        "default: the keep_awake setting",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from phi3tui.commands.runs import _workspace, cmd_attach
    from phi3tui.core.config import ConfigError
    from phi3tui.core.runs import RunError, start_run

    ws = _workspace(args)
    if args.iters is not None and args.iters < 1:
        print("phi3tui train: --iters must be at least 1", file=sys.stderr)
        return 2
    if args.hostfile and not Path(args.hostfile).is_file():
        print(f"phi3tui train: --hostfile {args.hostfile} does not exist", file=sys.stderr)
        return 2
    overrides = {"iters": args.iters} if args.iters else None
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()] if args.hosts else None
    hostfile = str(Path(args.hostfile).resolve()) if args.hostfile else None
    try:
        run_dir = start_run(ws, args.config, overrides, hosts=hosts, hostfile=hostfile, keep_awake=args.keep_awake)
    except (ConfigError, RunError) as exc:
        print(f"phi3tui train: {exc}", file=sys.stderr)
        return 2
    print(f"started run {run_dir.name} (detached; log: {run_dir / 'log.txt'})")
    # Commands that work as typed from here: the workspace named unless it is the current folder.
    where = "" if ws.root.resolve() == Path.cwd().resolve() else f" -w {shell_command(ws.root)}"
    print(f"follow it: phi3tui runs attach {run_dir.name}{where}   stop it: phi3tui runs stop {run_dir.name}{where}")
    if args.attach:
        args.id = run_dir.name
        return cmd_attach(args)
    return 0
