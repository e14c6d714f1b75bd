"""First paint: `phi3tui WS` against a bare Textual app (Header, Static, Footer), in a real terminal.

Each launch runs in a fresh tmux session of 80×24 on a private tmux server; the clock runs from just
before `tmux new-session` until the first screen's header text shows in `tmux capture-pane` (polled
every 5 ms): for phi3tui "phi3tui · Data" (the Data screen's header), for the bare app its own title.
The two alternate; prints each launch, the medians, then the ratio last. The demo workspace is built
once in a temporary folder; both sides' bytecode is compiled by one untimed launch each into a private
cache (PYTHONPYCACHEPREFIX), as an installed package has its .pyc files. User settings come from an empty config folder, as on a first start.

    python bench/first_paint.py [--repeats 5] [--screen data] [--also-tree DIR]

--also-tree DIR adds a third side: phi3tui from another checkout (e.g. main), to see what a change gains.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BARE_APP = r"""
from textual.app import App
from textual.widgets import Footer, Header, Static

class Bare(App):
    TITLE = "bare textual app"
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self):
        yield Header()
        yield Static("hello")
        yield Footer()

Bare().run()
"""


def tmux(sock: str, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"tmux {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def first_paint(sock: str, name: str, command: list[str], needle: str, env: dict, timeout: float = 30.0) -> float:
    """Seconds from launch until `needle` is on the 80×24 screen."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    # -u: this box's shells set PYTHONDONTWRITEBYTECODE, which would make every launch compile phi3tui's
    # sources again (an installed package has its .pyc files; the bare side's Textual has them too).
    line = f"env -u PYTHONDONTWRITEBYTECODE {exports} {shlex.join(command)}; sleep 30"
    t0 = time.perf_counter()
    tmux(sock, "new-session", "-d", "-x", "80", "-y", "24", "-s", name, line)
    try:
        while time.perf_counter() - t0 < timeout:
            if needle in tmux(sock, "capture-pane", "-p", "-t", name, check=False):
                return time.perf_counter() - t0
            time.sleep(0.005)
        screen = tmux(sock, "capture-pane", "-p", "-t", name, check=False)
        raise SystemExit(f"{needle!r} did not appear within {timeout} s; the screen shows:\n{screen}")
    finally:
        tmux(sock, "kill-session", "-t", name, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--screen", default="data", choices=["data", "config", "train", "chat", "export"])
    parser.add_argument("--also-tree", metavar="DIR", help="also time phi3tui from this checkout")
    args = parser.parse_args()
    if not shutil.which("tmux"):
        raise SystemExit("tmux is not installed: this benchmark needs a real terminal")
    tmp = Path(tempfile.mkdtemp(prefix="phi3tui-bench-paint-"))
    sock = f"phi3tui-bench-{os.getpid()}"
    try:
        sys.path.insert(0, str(REPO))
        from phi3tui.core.demo import build_demo

        ws = tmp / "ws"
        build_demo(ws)
        (tmp / "config").mkdir()
        (tmp / "bare.py").write_text(BARE_APP)
        env = {
            "PYTHONPATH": str(REPO), "PHI3TUI_CONFIG_DIR": str(tmp / "config"), "TERM": "xterm-256color",
            # Both sides' bytecode in one private cache, written by the untimed first launch.
            "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        }
        app = [sys.executable, "-m", "phi3tui", "--screen", args.screen, str(ws)]
        header = f"phi3tui · {args.screen.capitalize()}"
        sides = {"bare": ([sys.executable, str(tmp / "bare.py")], "bare textual app", env), "phi3tui": (app, header, env)}
        if args.also_tree:
            sides["other tree"] = (app, header, {**env, "PYTHONPATH": str(Path(args.also_tree).resolve())})
        # A session that lives through the whole run: a tmux server whose last session ends exits, racing the next start.
        tmux(sock, "new-session", "-d", "-s", "hold", "sleep 100000")
        # One untimed launch each: the first start pays for compiling .pyc files and a cold page cache.
        for i, (command, needle, side_env) in enumerate(sides.values()):
            first_paint(sock, f"warm-{i}", command, needle, side_env)
        times: dict[str, list[float]] = {side: [] for side in sides}
        for i in range(args.repeats):
            for side in list(sides) if i % 2 == 0 else list(sides)[::-1]:
                command, needle, side_env = sides[side]
                t = first_paint(sock, f"{side.replace(' ', '-')}-{i}", command, needle, side_env)
                times[side].append(t)
                print(f"  {side:8s} run {i + 1}: {t:.3f} s", flush=True)
        med = {side: statistics.median(v) for side, v in times.items()}
        for side in sides:
            print(f"{side:8s} median {med[side]:.3f} s")
        if args.also_tree:
            print(f"phi3tui / {args.also_tree} {med['phi3tui'] / med['other tree']:.2f}")
        print(f"first paint ratio {med['phi3tui'] / med['bare']:.2f} (phi3tui {med['phi3tui']:.3f} s / bare Textual app "
              f"{med['bare']:.3f} s, {args.screen} screen, tmux 80x24, median of {args.repeats}; goal <= 1.5)")
    finally:
        tmux(sock, "kill-server", check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
