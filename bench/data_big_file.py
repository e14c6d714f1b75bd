"""Data screen on a big train.jsonl: time to first page (1 GB vs 1 MB), memory growth, validation speed.

    .venv/bin/python bench/data_big_file.py [--size-mb 1024] [--repeats 3] [--token-seconds 180]

Builds the demo workspace (tiny Phi-3, real tokenizer) in a temporary folder, twice: one with a
1 MB train.jsonl and one with a generated train.jsonl of --size-mb (default 1 GB, never committed).
Then, alternating small/big (or plain/phi3tui) and taking medians over --repeats:

1. time to first page: core (DataFolder.open + first page of 20 records) and the app (a fresh process,
   Pilot at 80×24, from before the App is built until the record view shows train:1);
2. memory: the app on the big workspace: RSS once the first page is shown and the model's tokenizer
   is loaded (a one-off cost, whatever the file's size) vs the peak while it indexes, validates every
   line and then counts tokens (for --token-seconds at most: counting is the same streaming loop over
   the whole file, so a 1 GB file takes many minutes on a 2-core box);
3. validation speed: a plain `for line in open(f): json.loads(line)` loop (what mlx-lm does) against
   phi3tui's full validation of the same file.
The goals (issue 3): first page ≤ 2× the 1 MB time; memory growth < 5% of the file; validation ≥ 0.5×
the plain loop's speed. The last line printed is the validation speed ratio.
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
sys.path.insert(0, str(REPO))

APP_PROBE = r"""
import asyncio, json, sys, threading, time
T0 = time.perf_counter()
import psutil
import phi3tui.screens.data.screen as data_screen
from phi3tui.app import Phi3App
from phi3tui.core.workspace import Workspace

proc = psutil.Process()
result = {}
peak = [0]
stop = threading.Event()

def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.02)

async def main(root, mode):
    if mode == "memory":
        data_screen.AUTO_CHECK_DELAY = 3600  # the probe starts the check itself, after its baseline
    app = Phi3App(Workspace.open(root))
    async with app.run_test(size=(80, 24)) as pilot:
        while True:
            title = app.screen.query("#record-title")
            content = title.first().content if title else ""
            if str(getattr(content, "plain", content)).startswith("train:1 "):
                break
            await asyncio.sleep(0.005)
        result["first_page_s"] = time.perf_counter() - T0
        if mode == "memory":
            screen = app.screen
            result["rss_first_page"] = proc.memory_info().rss
            if "--tokens" in sys.argv:
                await pilot.press("v")  # the rendered view loads the model's tokenizer
                while screen.tokenizer is None:
                    await asyncio.sleep(0.05)
                await pilot.press("v", "v")
                await pilot.pause(0.5)
            result["rss_baseline"] = proc.memory_info().rss
            threading.Thread(target=sample, daemon=True).start()
            t = time.perf_counter()
            await pilot.press("c")
            while screen.report is None or not screen.report.validated:
                await asyncio.sleep(0.05)
            result["validated_s"] = time.perf_counter() - t
            result["peak_validated"] = max(peak[0], proc.memory_info().rss)
            if "--tokens" in sys.argv:
                limit = float(sys.argv[sys.argv.index("--tokens") + 1])
                t_tokens = time.perf_counter()
                while not screen.report.measured and time.perf_counter() - t_tokens < limit:
                    await asyncio.sleep(0.2)
                result["measured_s"] = time.perf_counter() - t_tokens
                result["token_fraction"] = 1.0 if screen.report.measured else screen.query_one("ProgressBar").progress / 100
                if not screen.report.measured:
                    await pilot.press("x")  # cancel: the rest would only repeat the same streaming loop
            result["peak"] = max(peak[0], proc.memory_info().rss)
            result["errors"] = screen.report.errors
            stop.set()
    print("RESULT " + json.dumps(result))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def build_workspaces(base: Path, size_mb: int) -> tuple[Path, Path]:
    from phi3tui.core.demo import build_demo

    small = base / "ws-1mb"
    build_demo(small)
    big = base / f"ws-{size_mb}mb"
    shutil.copytree(small, big)
    source = [json.loads(line)["text"] for line in (small / "data" / "train.jsonl").read_text().splitlines()]
    for ws, target in ((small, 1 << 20), (big, size_mb << 20)):
        write_train(ws / "data" / "train.jsonl", source, target)
    return small, big


def write_train(path: Path, texts: list[str], target: int) -> None:
    """Tutorial-format records, each made unique by its number, up to `target` bytes."""
    written = 0
    n = 0
    with open(path, "w", encoding="utf-8") as handle:
        while written < target:
            block = []
            for _ in range(10000):
                text = texts[n % len(texts)].replace(" <|end|>\n<|assistant|>", f" (#{n}) <|end|>\n<|assistant|>", 1)
                block.append(json.dumps({"text": text}) + "\n")
                n += 1
            chunk = "".join(block)
            if written + len(chunk) > target:
                lines = chunk.splitlines(keepends=True)
                chunk = ""
                for line in lines:
                    if written + len(chunk) + len(line) > target:
                        break
                    chunk += line
                if not chunk:
                    break
            handle.write(chunk)
            written += len(chunk)


def core_first_page(ws: Path) -> float:
    from phi3tui.core.data.folder import DataFolder, workspace_data
    from phi3tui.core.workspace import Workspace

    start = time.perf_counter()
    wd = workspace_data(Workspace.open(ws))
    folder = DataFolder.open(wd.data_dir, wd.settings)
    page = folder.page("train", 0, 20)
    elapsed = time.perf_counter() - start
    assert len(page) == 20 and page[0].line == 1
    return elapsed


def run_app(ws: Path, mode: str, token_seconds: float = 0) -> dict:
    args = [sys.executable, "-c", APP_PROBE, str(ws), mode] + (["--tokens", str(token_seconds)] if token_seconds else [])
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"app probe failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def plain_loop(path: Path) -> float:
    start = time.perf_counter()
    with open(path) as handle:
        for line in handle:
            json.loads(line)
    return time.perf_counter() - start


def phi3tui_validate(data_dir: Path) -> float:
    from phi3tui.core.data.folder import DataFolder
    from phi3tui.core.data.checks import validate_folder

    start = time.perf_counter()
    report = validate_folder(DataFolder.open(data_dir), phi3=True)
    elapsed = time.perf_counter() - start
    assert report.errors == 0, report.lines()[-5:]
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the big train.jsonl (default 1024)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each measurement (default 3, at least 3)")
    parser.add_argument(
        "--token-seconds", type=float, default=180,
        help="let the app count tokens for at most this long while memory is sampled, then cancel (0: skip; default 180)",
    )
    parser.add_argument("--keep", help="build the workspaces in this folder and keep them")
    args = parser.parse_args()
    repeats = max(3, args.repeats)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="phi3tui-bench-data-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        small, big = build_workspaces(base, args.size_mb)
        big_train = big / "data" / "train.jsonl"
        size = big_train.stat().st_size
        print(f"built {big_train} ({size / 2**20:,.0f} MiB) and a 1 MiB one in {time.perf_counter() - t:.1f} s")

        core_small, core_big, app_small, app_big = [], [], [], []
        for _ in range(repeats):
            core_small.append(core_first_page(small))
            core_big.append(core_first_page(big))
            app_small.append(run_app(small, "first-page")["first_page_s"])
            app_big.append(run_app(big, "first-page")["first_page_s"])
        med = statistics.median
        print(f"first page, core: 1 MB {med(core_small) * 1000:.2f} ms, big {med(core_big) * 1000:.2f} ms")
        print(f"first page, app (fresh process to painted record): 1 MB {med(app_small):.3f} s, big {med(app_big):.3f} s")

        memory = run_app(big, "memory", token_seconds=args.token_seconds)
        mib = 2**20
        grown_validated = memory["peak_validated"] - memory["rss_baseline"]
        grown = memory["peak"] - memory["rss_baseline"]
        print(
            f"app memory: {memory['rss_first_page'] / mib:.0f} MiB at first page, "
            f"{memory['rss_baseline'] / mib:.0f} MiB with the tokenizer loaded (baseline); "
            f"peak +{grown_validated / mib:.1f} MiB through index + validation ({memory['validated_s']:.1f} s)"
            + (
                f", +{grown / mib:.1f} MiB through token counting ({memory['measured_s']:.0f} s, "
                f"{memory['token_fraction']:.0%} of the file counted"
                + (")" if memory["token_fraction"] >= 1 else ", then cancelled)")
                if "measured_s" in memory
                else ""
            )
        )

        plain, ours = [], []
        for _ in range(repeats):
            plain.append(plain_loop(big_train))
            ours.append(phi3tui_validate(big / "data"))
        print(f"validation of {size / 2**20:,.0f} MiB: plain json.loads loop {med(plain):.2f} s, phi3tui {med(ours):.2f} s")

        print(f"first-page ratio big/1MB, core: {med(core_big) / med(core_small):.2f}x (goal <= 2)")
        print(f"first-page ratio big/1MB, app: {med(app_big) / med(app_small):.2f}x (goal <= 2)")
        print(f"memory growth / file size: {100 * grown / size:.2f}% (goal < 5%)")
        print(f"validation speed phi3tui/plain: {med(plain) / med(ours):.2f}x (goal >= 0.5)")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
