"""Training tokens/s through phi3tui's detached runner ÷ mlx-lm's own trainer, same config, same run.

Three ways, alternating, REPEATS times each, medians:
  plain     mlx-lm's own path (bench/run_reference.py: lora.train_model and its trainer)
  phi3tui   `python -m phi3tui.core.runs.runner` started by core.runs.start_run, nothing attached
  attached  the same, with the app (Train screen, live plot) attached in another process; that
            process's own CPU time over the run is the app's cost (share of one core)
  awake     phi3tui with keep_awake auto (caffeinate on macOS, systemd-inhibit on Linux; the others run
            with it off), to show that holding the machine awake costs the run nothing
  reporter  phi3tui with `report_to: wandb`, WANDB_MODE=offline (a wandb run written beside the run
            folder's files, nothing sent): what mlx-lm's reporter costs; left out when wandb is not installed

--model 30m widens the demo model to about 30M parameters (hidden 512, 9 blocks), whose step takes
well over 50 ms on a CPU, so per-step costs of the runner show against a step of realistic weight.

Tokens/s is measured on the wall clock between the first and the last train report (see wall_tps).

Usage: python bench/train_throughput.py [--iters N] [--repeats R] [--model demo|30m] [--no-attached] [--no-reporter]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


ATTACHED_APP = r"""
import asyncio, json, resource, sys, time
from pathlib import Path
from phi3tui.app import Phi3App
from phi3tui.core import runs
from phi3tui.core.workspace import Workspace
ws_root, ready, out = sys.argv[1:4]
async def follow():
    app = Phi3App(Workspace.open(ws_root), start_mode="train")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(2.0)  # started and settled before the run begins: start-up is not the running cost
        cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        Path(ready).touch()
        first = app.screen.run_dir
        while app.screen.run_dir == first:  # the Train screen follows the run the bench starts
            await pilot.pause(0.5)
        run_dir = app.screen.run_dir
        while runs.run_info(run_dir).get("state") not in ("finished", "failed", "stopped", "diverged"):
            await pilot.pause(0.5)
        cpu1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        plot = app.screen.query_one("LossPlot")
        json.dump({"cpu_s": cpu, "wall_s": wall1 - wall0, "draws": plot.draws, "run": str(run_dir)}, open(out, "w"))
asyncio.run(follow())
"""


def wall_tps(train_records: list[dict]) -> float:
    """Tokens per wall-clock second from the first report to the last (compilation is before the first).

    mlx-lm's own tokens/s times only the step itself, so it cannot see a runner's per-step hooks;
    the wall clock between reports does (the final validation falls inside it in both paths).
    """
    first, last = train_records[0], train_records[-1]
    return (last["trained_tokens"] - first["trained_tokens"]) / (last["time"] - first["time"])


STEP_S: list[float] = []  # wall seconds per iteration of the plain runs, between their first and last report


def run_plain(ws: Path, config: Path, tmp: Path) -> float:
    out = tmp / "plain.json"
    subprocess.run(
        [sys.executable, "-m", "bench.run_reference", str(config), str(tmp / "plain-adapters"), str(out)],
        cwd=ws, check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    return wall_tps([r for r in json.loads(out.read_text()) if r["kind"] == "train"])


WIDE = {"hidden_size": 512, "num_hidden_layers": 9, "intermediate_size": 1376, "num_attention_heads": 8,
        "num_key_value_heads": 8}


def widen_model(model_dir: Path) -> int:
    """Replace the demo model's weights by a wider, deeper random Phi-3 (same tokenizer). Returns its parameters."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import phi3

    config = json.loads((model_dir / "config.json").read_text())
    config.update(WIDE)
    mx.random.seed(0)
    model = phi3.Model(phi3.ModelArgs.from_dict(config))
    mx.eval(model.parameters())
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(model_dir / "model.safetensors"), weights, metadata={"format": "mlx"})
    (model_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return sum(w.size for w in weights.values())


def run_phi3tui(ws, overrides, attach: bool, tmp: Path, keep_awake: str = "off") -> tuple[float, dict | None]:
    from phi3tui.core import runs

    app_proc = None
    if attach:
        ready, out = tmp / "app.ready", tmp / "app.json"
        ready.unlink(missing_ok=True)
        app_proc = subprocess.Popen(
            [sys.executable, "-c", ATTACHED_APP, str(ws.root), str(ready), str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        while not ready.exists():
            assert app_proc.poll() is None, app_proc.stderr.read().decode()[-2000:]
            time.sleep(0.1)
    run_dir = runs.start_run(ws, overrides=overrides, keep_awake=keep_awake)
    info = runs.wait_for_run(run_dir, timeout=1800)
    if keep_awake != "off":
        print(f"  keep-awake: {info.get('awake')}", flush=True)
    assert info["state"] == "finished", info
    if overrides.get("report_to") == "wandb":
        assert glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb")), "the run wrote no wandb run"
    app = None
    if app_proc:
        _, err = app_proc.communicate(timeout=120)
        assert app_proc.returncode == 0, err.decode()[-2000:]
        app = json.loads(out.read_text())
        assert app["run"] == str(run_dir), app
    lines = (json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines())
    return wall_tps([r for r in lines if r["kind"] == "train"]), app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", choices=("demo", "30m"), default="demo")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-length", type=int, default=256, help="longer examples are cut (as in mlx-lm)")
    parser.add_argument("--val-batches", type=int, default=-1, help="validation batches (-1: the whole set)")
    parser.add_argument("--no-attached", action="store_true", help="leave out the attached-app way (saves time)")
    parser.add_argument("--no-reporter", action="store_true", help="leave out the reporter (wandb offline) way")
    opts = parser.parse_args()
    reporter = not opts.no_reporter and importlib.util.find_spec("wandb") is not None
    if not opts.no_reporter and not reporter:
        print("the reporter way is left out: wandb is not installed (pip install 'phi3tui[wandb]')", flush=True)
    if reporter:  # the runner inherits these: a wandb run on disk only, no prompt, no network
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")

    from phi3tui.core.demo import build_demo
    from phi3tui.core.runs.launcher import freeze_config

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    ws = build_demo(tmp / "ws").workspace
    model_text = "demo model (hidden 64, 4 blocks)"
    if opts.model == "30m":
        n = widen_model(ws.root / "model")
        model_text = f"demo model widened to {n / 1e6:.1f}M parameters (hidden 512, 9 blocks)"
    # Reports every 10 iterations, or 4 reports at least in a short run (tokens/s is timed between reports).
    overrides = dict(iters=opts.iters, steps_per_report=max(1, min(10, opts.iters // 4)), steps_per_eval=opts.iters, save_every=opts.iters, batch_size=opts.batch_size,
                     max_seq_length=opts.max_seq_length, val_batches=opts.val_batches)
    import yaml

    config = tmp / "plain-config.yaml"
    config.write_text(yaml.safe_dump(freeze_config(ws, None, "plain", overrides)[0]))

    plain, ours, awake, reported, attached, app_share, draws = [], [], [], [], [], [], []
    for r in range(opts.repeats):
        plain.append(run_plain(ws.root, config, tmp))
        ours.append(run_phi3tui(ws, overrides, False, tmp)[0])
        awake.append(run_phi3tui(ws, overrides, False, tmp, keep_awake="auto")[0])
        line = f"repeat {r + 1}: plain {plain[-1]:,.0f} tok/s  phi3tui {ours[-1]:,.0f}  awake {awake[-1]:,.0f}"
        if reporter:
            reported.append(run_phi3tui(ws, {**overrides, "report_to": "wandb", "project_name": "phi3tui-bench"},
                                        False, tmp)[0])
            line += f"  reporter {reported[-1]:,.0f}"
        if not opts.no_attached:
            tps, app = run_phi3tui(ws, overrides, True, tmp)
            attached.append(tps)
            app_share.append(app["cpu_s"] / app["wall_s"])
            draws.append(app["draws"])
            line += f"  attached {attached[-1]:,.0f}  app CPU {100 * app_share[-1]:.1f}% of a core ({draws[-1]} plot draws)"
        print(line, flush=True)
    if STEP_S:
        print(f"one step (plain mlx-lm, wall clock): {1000 * statistics.median(STEP_S):.0f} ms")
    print(f"{model_text}, {opts.iters} iterations, batch {opts.batch_size}, max_seq_length {opts.max_seq_length}, {opts.repeats} repeats, alternating, medians")
    if attached:
        print(f"app CPU while attached and plotting: {100 * statistics.median(app_share):.1f}% of one core")
        print(f"tokens/s phi3tui attached ÷ mlx-lm: {statistics.median(attached) / statistics.median(plain):.3f}")
    print(f"tokens/s phi3tui ÷ mlx-lm: {statistics.median(ours) / statistics.median(plain):.3f}")
    print(f"tokens/s phi3tui with keep-awake ÷ mlx-lm: {statistics.median(awake) / statistics.median(plain):.3f}")
    if reported:
        print(f"tokens/s phi3tui with a reporter (wandb offline) ÷ mlx-lm: "
              f"{statistics.median(reported) / statistics.median(plain):.3f}")


if __name__ == "__main__":
    main()
