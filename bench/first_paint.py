"""First paint: `phi3tui WS` against a bare Textual app (Header, Static, Footer), in a real terminal.

Each launch runs in a fresh tmux session of 80×24 on a private tmux server; the clock runs from just
before `tmux new-session` until the first screen's header text shows in `tmux capture-pane` (polled
every 5 ms): for phi3tui "phi3tui · Data" (the Data screen's header), for the bare app its own title.
The two alternate; prints each launch, the medians, then the ratios last: CPU (user + system time of the
launched process until that moment, read from /proc; steadier on a loaded box) and wall clock. The demo workspace is built
once in a temporary folder; both sides' bytecode is compiled by one untimed launch each into a private
cache (PYTHONPYCACHEPREFIX), as an installed package has its .pyc files; that launch also leaves in a private cache
folder what phi3tui keeps between starts (core/kept_yaml.py: the start-up YAML already parsed), as any start after a
user's first has it. User settings come from an empty config folder, as on a first start.

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


def process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds the process has used so far (all its threads), from /proc; None if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return None


def launched_pid(pane_pid: int | None) -> int | None:
    """The command the pane's shell started (env, which became python), once it is there."""
    try:
        children = Path(f"/proc/{pane_pid}/task/{pane_pid}/children").read_text().split()
    except (OSError, TypeError):
        return None
    return int(children[0]) if children else None


def first_paint(sock: str, name: str, command: list[str], needle: str, env: dict, cwd: Path,
                timeout: float = 30.0) -> tuple[float, float | None]:
    """(seconds from launch until `needle` is on the 80×24 screen, CPU seconds the process had used by then)."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    # -u: this box's shells set PYTHONDONTWRITEBYTECODE, which would make every launch compile phi3tui's
    # sources again (an installed package has its .pyc files; the bare side's Textual has them too).
    line = f"env -u PYTHONDONTWRITEBYTECODE {exports} {shlex.join(command)}; sleep 30"
    t0 = time.perf_counter()
    # -c: a folder with no phi3tui in it, as `python -m` puts the working folder before PYTHONPATH.
    tmux(sock, "new-session", "-d", "-x", "80", "-y", "24", "-s", name, "-c", str(cwd), line)
    try:
        pane = tmux(sock, "display-message", "-p", "-t", name, "#{pane_pid}", check=False).strip()
        pane_pid = int(pane) if pane.isdigit() else None
        pid = None
        while time.perf_counter() - t0 < timeout:
            pid = pid or launched_pid(pane_pid)
            if needle in tmux(sock, "capture-pane", "-p", "-t", name, check=False):
                return time.perf_counter() - t0, process_cpu(pid)
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
            "PYTHONPATH": str(REPO), "PHI3TUI_CONFIG_DIR": str(tmp / "config"), "PHI3TUI_CACHE_DIR": str(tmp / "cache"),
            "TERM": "xterm-256color",
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
            first_paint(sock, f"warm-{i}", command, needle, side_env, tmp)
        times: dict[str, list[float]] = {side: [] for side in sides}
        cpus: dict[str, list[float]] = {side: [] for side in sides}
        for i in range(args.repeats):
            for side in list(sides) if i % 2 == 0 else list(sides)[::-1]:
                command, needle, side_env = sides[side]
                t, cpu = first_paint(sock, f"{side.replace(' ', '-')}-{i}", command, needle, side_env, tmp)
                times[side].append(t)
                if cpu is not None:
                    cpus[side].append(cpu)
                cpu_text = f", CPU {cpu:.2f} s" if cpu is not None else ""
                print(f"  {side:8s} run {i + 1}: {t:.3f} s{cpu_text}", flush=True)
        med = {side: statistics.median(v) for side, v in times.items()}
        cpu_med = {side: statistics.median(v) for side, v in cpus.items() if v}
        for side in sides:
            cpu_text = f", CPU {cpu_med[side]:.2f} s" if side in cpu_med else ""
            print(f"{side:8s} median {med[side]:.3f} s{cpu_text}")
        if args.also_tree:
            print(f"phi3tui / {args.also_tree} {med['phi3tui'] / med['other tree']:.2f}")
        if "phi3tui" in cpu_med and cpu_med.get("bare"):
            # CPU time (user + system, all threads, until the first paint; 10 ms ticks) moves less with the load
            # of a shared box than the wall clock does.
            print(f"first paint CPU ratio {cpu_med['phi3tui'] / cpu_med['bare']:.2f} (phi3tui {cpu_med['phi3tui']:.2f} s"
                  f" / bare {cpu_med['bare']:.2f} s)")
        print(f"first paint ratio {med['phi3tui'] / med['bare']:.2f} (phi3tui {med['phi3tui']:.3f} s / bare Textual app "
              f"{med['bare']:.3f} s, {args.screen} screen, tmux 80x24, median of {args.repeats}; goal <= 1.5)")
    finally:
        tmux(sock, "kill-server", check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
