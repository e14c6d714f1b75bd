"""Training tokens/s through phi3tui's detached runner ÷ mlx-lm's own trainer, same config, same run.

Three ways, alternating, REPEATS times each, medians:
  plain     mlx-lm: lora.run's loading + lora.train_model (its trainer), a TrainingCallback records tok/s
  phi3tui   `python -m phi3tui.core.runner` started by core.runs.start_run, nothing attached
  attached  the same, with the app (Train screen, live plot) attached in another process; that
            process's own CPU time over the run is the app's cost (share of one core)

Usage: python bench/train_throughput.py [--iters N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PLAIN = r"""
import json, sys, types, yaml
import numpy as np
from mlx_lm import lora
from mlx_lm.tuner.trainer import TrainingCallback
from mlx_lm.utils import load
from mlx_lm.tuner.datasets import load_dataset
config, adapter_dir, out = sys.argv[1:4]
args = yaml.load(open(config), lora.yaml_loader)
for k, v in lora.CONFIG_DEFAULTS.items():
    if args.get(k) is None:
        args[k] = v
args["adapter_path"] = adapter_dir
args = types.SimpleNamespace(**args)
tps = []
class Recorder(TrainingCallback):
    def on_train_loss_report(self, info):
        tps.append(info["tokens_per_second"])
np.random.seed(args.seed)
model, tokenizer = load(args.model)
train_set, valid_set, _ = load_dataset(args, tokenizer)
lora.train_model(args, model, train_set, valid_set, Recorder())
json.dump(tps, open(out, "w"))
"""

ATTACHED_APP = r"""
import asyncio, json, resource, sys, time
from pathlib import Path
from phi3tui.app import Phi3App
from phi3tui.core import runs
from phi3tui.core.workspace import Workspace
ws_root, run_dir, out = sys.argv[1:4]
async def main():
    app = Phi3App(Workspace.open(ws_root), start_mode="train")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(1.0)
        assert str(app.screen.run_dir) == run_dir, (app.screen.run_dir, run_dir)
        cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        while runs.run_info(Path(run_dir)).get("state") not in ("finished", "failed", "stopped", "diverged"):
            await pilot.pause(0.5)
        cpu1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        plot = app.screen.query_one("LossPlot")
        json.dump({"cpu_s": cpu, "wall_s": wall1 - wall0, "draws": plot.draws}, open(out, "w"))
asyncio.run(main())
"""

SKIP_FIRST = 1  # the first report window includes compilation


def median_tps(values: list[float]) -> float:
    return statistics.median(values[SKIP_FIRST:] or values)


def run_plain(ws: Path, config: Path, tmp: Path) -> float:
    out = tmp / "plain.json"
    subprocess.run(
        [sys.executable, "-c", PLAIN, str(config), str(tmp / "plain-adapters"), str(out)],
        cwd=ws, check=True, capture_output=True,
    )
    return median_tps(json.loads(out.read_text()))


def run_phi3tui(ws, overrides, attach: bool, tmp: Path) -> tuple[float, dict | None]:
    from phi3tui.core import runs

    run_dir = runs.start_run(ws, overrides=overrides)
    app_proc = None
    if attach:
        out = tmp / "app.json"
        app_proc = subprocess.Popen(
            [sys.executable, "-c", ATTACHED_APP, str(ws.root), str(run_dir), str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
    info = runs.wait_for_run(run_dir, timeout=1800)
    assert info["state"] == "finished", info
    app = None
    if app_proc:
        _, err = app_proc.communicate(timeout=120)
        assert app_proc.returncode == 0, err.decode()[-2000:]
        app = json.loads((tmp / "app.json").read_text())
    m = runs.read_metrics(run_dir)
    tps = [r for r in (json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    return median_tps([r["tokens_per_s"] for r in tps]), app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()

    from phi3tui.core.demo import build_demo
    from phi3tui.core.runs import freeze_config

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    ws = build_demo(tmp / "ws").workspace
    overrides = dict(iters=opts.iters, steps_per_report=10, steps_per_eval=opts.iters, save_every=opts.iters)
    import yaml

    config = tmp / "plain-config.yaml"
    config.write_text(yaml.safe_dump(freeze_config(ws, None, "plain", overrides)[0]))

    plain, ours, attached, app_share, draws = [], [], [], [], []
    for r in range(opts.repeats):
        plain.append(run_plain(ws.root, config, tmp))
        ours.append(run_phi3tui(ws, overrides, False, tmp)[0])
        tps, app = run_phi3tui(ws, overrides, True, tmp)
        attached.append(tps)
        app_share.append(app["cpu_s"] / app["wall_s"])
        draws.append(app["draws"])
        print(
            f"repeat {r + 1}: plain {plain[-1]:,.0f} tok/s  phi3tui {ours[-1]:,.0f}  "
            f"attached {attached[-1]:,.0f}  app CPU {100 * app_share[-1]:.1f}% of a core ({draws[-1]} plot draws)",
            flush=True,
        )
    print(f"demo model (hidden 64, 4 blocks), {opts.iters} iterations, batch 4, {opts.repeats} repeats, medians")
    print(f"app CPU while attached and plotting: {100 * statistics.median(app_share):.1f}% of one core")
    print(f"tokens/s phi3tui attached ÷ mlx-lm: {statistics.median(attached) / statistics.median(plain):.3f}")
    print(f"tokens/s phi3tui ÷ mlx-lm: {statistics.median(ours) / statistics.median(plain):.3f}")


if __name__ == "__main__":
    main()
