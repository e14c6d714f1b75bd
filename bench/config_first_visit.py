"""First visit to Config: the time from pressing 2 on the Data screen to a full Config form, in a fresh process.

Each sample is a new Python process that opens the app on the demo workspace headless at 80×24 (Textual's Pilot),
waits for the Data screen's first paint and its start-up work, presses 2 and polls every 5 ms: `form` is when the
whole form (every key's row) is on the screen, `checked` when the first check of the file (model, data, memory) has
filled the findings too. Also CPU time (user + system of the process over the same span). The samples of each tree
alternate (`--also-tree DIR`: another checkout, e.g. main, to see what a change gains); prints each sample, the
medians, then the ratio last. Goal: form ≤ 0.5 s.

    python bench/config_first_visit.py [--repeats 5] [--also-tree DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

ONE_SAMPLE = r"""
import asyncio, json, os, sys, time
from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace

def cpu():
    t = os.times()
    return t.user + t.system

async def main(root):
    app = Phi3App(Workspace.open(root))
    async with app.run_test(size=(80, 24)) as pilot:
        # The Data screen's start-up check (it starts 0.6 s after the paint, on a thread that imports transformers):
        # until its report is there, so that its thread's CPU time is not counted as the visit's.
        for _ in range(600):
            await pilot.pause(0.05)
            if getattr(app.screen, "report", None) is not None and not any(w.is_running for w in app.workers):
                break
        await pilot.pause(0.3)
        t0, c0 = time.perf_counter(), cpu()
        # Pilot's press returns only once the app is idle again (after the first check): poll beside it instead.
        press = asyncio.create_task(pilot.press("2"))
        form = checked = None
        while checked is None and time.perf_counter() - t0 < 30:
            screen = app.screen
            if form is None and type(screen).__name__ == "ConfigScreen":
                rows = screen.query("FieldRow")
                if screen.fields and len(rows) == len(screen.fields):
                    form = (time.perf_counter() - t0, cpu() - c0)
            if form is not None and getattr(screen, "review", None) is not None:
                checked = (time.perf_counter() - t0, cpu() - c0)
            await asyncio.sleep(0.005)
        await press
        print(json.dumps({"form": form, "checked": checked}))

asyncio.run(main(sys.argv[1]))
"""


def sample(tree: Path, root: Path, env: dict, cache: Path) -> dict:
    # Each tree its own cache folder: the saved Config keys are keyed by the tree's own sources, so one shared
    # folder would have each tree overwrite the other's copy and every sample import mlx-lm.
    proc = subprocess.run([sys.executable, "-c", ONE_SAMPLE, str(root)], cwd=tree,
                          env={**env, "PYTHONPATH": str(tree), "PHI3TUI_CACHE_DIR": str(cache)},
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"sample in {tree} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--also-tree", type=Path, help="another checkout, sampled alternately with this one")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    tmp = Path(tempfile.mkdtemp(prefix="config-visit-"))
    try:
        run(tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, args) -> None:
    from phi3tui.core.demo import build_demo

    root = tmp / "ws"
    build_demo(root)
    env = dict(os.environ, PHI3TUI_CONFIG_DIR=str(tmp / "config"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
    # This box's shells set PYTHONDONTWRITEBYTECODE, which would make every sample compile phi3tui's sources
    # again (an installed package has its .pyc files): the untimed first sample writes them to the cache above.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    trees = {"this tree": REPO}
    if args.also_tree:
        trees["other tree"] = args.also_tree.resolve()
    caches = {name: tmp / f"cache-{i}" for i, name in enumerate(trees)}
    for name, tree in trees.items():
        sample(tree, root, env, caches[name])  # untimed: compiles the bytecode once, as an installed package has it
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for i in range(args.repeats):
        for name, tree in trees.items():
            got = sample(tree, root, env, caches[name])
            results[name].append(got)
            form, checked = got["form"], got["checked"]
            print(f"{i + 1} {name}: form {form[0]:.3f} s (CPU {form[1]:.2f}) · checked {checked[0]:.3f} s (CPU {checked[1]:.2f})",
                  flush=True)
    medians = {}
    for name, got in results.items():
        medians[name] = {key: (statistics.median(g[key][0] for g in got), statistics.median(g[key][1] for g in got))
                         for key in ("form", "checked")}
        m = medians[name]
        print(f"median {name}: form {m['form'][0]:.3f} s (CPU {m['form'][1]:.2f}) · checked {m['checked'][0]:.3f} s "
              f"(CPU {m['checked'][1]:.2f}); goal form ≤ 0.5 s")
    if args.also_tree:
        a, b = medians["this tree"], medians["other tree"]
        print(f"ratio this ÷ other: form wall {a['form'][0] / b['form'][0]:.2f}, CPU {a['form'][1] / max(b['form'][1], 0.01):.2f}; "
              f"checked wall {a['checked'][0] / b['checked'][0]:.2f}")


if __name__ == "__main__":
    main()
