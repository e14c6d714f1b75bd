"""The runner's parent process: it forks the trainer before MLX is imported, keeps the machine awake while the
trainer lives, passes a polite stop on, and records how a trainer ended that could not say so itself (killed by
the OS for memory, crashed). It also hands on to the queue as a run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from phi3tui.core.run_folder import LOG_FILE, METRICS_FILE, QUEUE_FILE, log_tail, read_run_json, update_run_json
from phi3tui.core.runs.failures import is_memory_text, watchdog_hint
from phi3tui.core.runs.state import LIVE_STATES, IllegalTransition, RunState, as_state, transition

OOM_KILL_SHARE = 0.8  # a SIGKILLed runner that had reached this share of the memory MLX can use died of memory



def hand_on_queue(run_dir: Path) -> None:
    """As this run ends, start the next queued one (core/runs/queue.py) with nobody attached. In a
    process of its own, detached, which waits for this one to exit first: this one still holds its model's memory,
    and a supervisor alive keeps its run live."""
    queue_file = run_dir.parent / QUEUE_FILE
    try:
        if queue_file.stat().st_size == 0:
            return
        with open(run_dir / LOG_FILE, "ab") as log:
            # -c, not -m: the package's __init__ imports queue, which -m would run a second time.
            start = "import sys; from phi3tui.core.runs.queue import main; sys.exit(main(sys.argv[1:]))"
            subprocess.Popen([sys.executable, "-c", start, str(run_dir.parent.parent), str(os.getpid())],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError:  # no queue, or it cannot start now: the next `phi3tui` starts it
        return


def _oom_kills() -> int | None:
    """The kernel's count of OOM kills in this process's memory cgroup (Linux), None where unknown."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for base, name in (("/sys/fs/cgroup", "memory.events"), ("/sys/fs/cgroup/memory", "memory.oom_control")):
            if (controllers == "" and name == "memory.events") or "memory" in controllers.split(","):
                try:
                    text = Path(base + path.rstrip("/"), name).read_text()
                except OSError:
                    continue
                for row in text.splitlines():
                    key, _, value = row.partition(" ")
                    if key == "oom_kill":
                        return int(value)
    return None


def recorded_peak_bytes(run_dir: Path) -> int:
    """The highest MLX peak (peak_mem, GB) the trainer recorded in metrics.jsonl; 0 when none."""
    import json

    peak = 0.0
    try:
        with open(run_dir / METRICS_FILE, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:  # a line cut by the kill
                    continue
                if isinstance(record, dict) and isinstance(record.get("peak_mem"), (int, float)):
                    peak = max(peak, float(record["peak_mem"]))
    except OSError:
        return 0
    return int(peak * 1e9)


def died_of_memory(signal_number: int, peak_bytes: int, budget_bytes: float, kills_before, kills_after) -> bool:
    """Whether a trainer that ended by `signal_number` was killed by the OS for memory: SIGKILL and either
    the kernel counted an OOM kill meanwhile, or it had reached most of the memory MLX can use
    (macOS's jetsam leaves no count to read)."""
    if signal_number != signal.SIGKILL:
        return False
    if kills_before is not None and kills_after is not None and kills_after > kills_before:
        return True
    return bool(budget_bytes) and peak_bytes >= OOM_KILL_SHARE * budget_bytes


def supervise(run_dir: Path, child: int) -> int:
    """The runner's parent: keeps the machine awake while the trainer lives, passes a polite stop on,
    and records how a trainer ended that could not say so itself (killed by the OS, crashed)."""
    from phi3tui.core.awake import keep_awake_plan, start_keep_awake, watch_power

    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGTERM))
    kills_before = _oom_kills()
    info = read_run_json(run_dir)
    writer = int(os.environ.get("MLX_RANK", "0") or 0) == 0
    plan = keep_awake_plan(os.getpid(), info.get("keep_awake") or "auto", why=f"phi3tui training run {run_dir.name}")
    holder, how = start_keep_awake(plan)
    if writer:
        update_run_json(run_dir, awake=how, supervisor_pid=os.getpid())
    print(f"phi3tui runner: keeping awake: {how}", flush=True)
    power_stop = threading.Event()
    if writer and holder is not None and sys.platform == "darwin":
        # What caffeinate cannot hold (a lid closed on battery, a low battery), looked at while the run lives.
        threading.Thread(target=watch_power, args=(run_dir, power_stop), name="phi3tui-power", daemon=True).start()
    try:
        while True:
            try:
                _, status, usage = os.wait4(child, 0)
                break
            except ChildProcessError:
                return 1
    finally:
        power_stop.set()
        if holder is not None:
            holder.terminate()
            holder.wait()
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    number = os.WTERMSIG(status)
    info = read_run_json(run_dir)
    if writer and as_state(info.get("state")) in (RunState.STALLED, RunState.STOPPED):
        # Killed as stalled (stalled_run: kill), or stopped by the user while stalled (launcher.stop_run): that
        # end is recorded already; the queue goes on.
        hand_on_queue(run_dir)
        return 128 + number
    if not writer or as_state(info.get("state")) not in LIVE_STATES:
        return 128 + number
    # MLX's own peak as the trainer recorded it (metrics.jsonl): ru_maxrss leaves out Metal's buffers on a Mac and
    # counts Python's own memory everywhere. Only before the first report is ru_maxrss (kilobytes on Linux, bytes on
    # macOS) all there is.
    peak = recorded_peak_bytes(run_dir) or usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    budget = float(info.get("memory_budget_gb") or 0) * 1e9
    name = signal.Signals(number).name
    at = info.get("iteration", 0)
    tail = log_tail(run_dir)
    said = next((line for line in reversed(tail) if is_memory_text(line) or watchdog_hint(line)), "")
    if said and is_memory_text(said):
        # Metal's command buffer ran out of memory: its uncaught error aborted the trainer.
        reason = (f"out of memory at iteration {at}: the trainer ended by {name} after Metal said \"{said.strip()}\" "
                  f"(MLX can use {budget / 1e9:.2f} GB here); "
                  f"`phi3tui runs resume {run_dir.name} --smaller` halves the batch")
        end, why = RunState.OUT_OF_MEMORY, dict(peak_memory_gb=peak / 1e9)
    elif died_of_memory(number, peak, budget, kills_before, _oom_kills()):
        reason = (f"out of memory: the OS killed the runner ({name}) at iteration {at}, having reached "
                  f"{peak / 1e9:.2f} GB of the {budget / 1e9:.2f} GB MLX can use; "
                  f"`phi3tui runs resume {run_dir.name} --smaller` halves the batch")
        end, why = RunState.OUT_OF_MEMORY, dict(peak_memory_gb=peak / 1e9)
    elif said:
        reason = (f"the runner (pid {child}) ended by {name} at iteration {at} after \"{said.strip()}\" "
                  f"({watchdog_hint(said)})")
        end, why = RunState.FAILED, {}
    else:
        reason = (f"the runner (pid {child}) was ended by {name} without recording a result "
                  f"at iteration {at}; resume it from its last checkpoint")
        end, why = RunState.FAILED, {}
    try:  # only a run still live: another process may have ended it since it was read
        transition(run_dir, end, expect=(RunState.QUEUED, RunState.RUNNING), reason=reason, error=reason,
                   log_tail=tail, **why)
    except IllegalTransition:
        return 128 + number
    print(f"phi3tui runner: {reason}", flush=True)
    hand_on_queue(run_dir)  # the trainer could not: the next queued run starts all the same
    return 128 + number
