"""A run on several machines: its hosts, checked before `mlx.launch` starts them, and reached again to stop them.

What mlx.launch (mlx 0.32) needs and does not check for phi3tui: the ring backend takes IP addresses, not names
(so names are resolved here, through ssh's own configuration first, or refused with the reason); a hostfile's
backend must not be overridden; remote ranks start through ssh with none of the launching shell's environment
(so the variables a rank needs go through `--env`); every rank reads the run folder at the same path (so its
config.yaml, run.json and the checkpoint a resume starts from are sent to every other host, or found there with
the same checksum); a batch is split evenly over the ranks; and a SIGKILL to mlx.launch leaves the remote ranks
running (they ignore SIGHUP), so each rank leaves its pid on its own machine, and kill reaches it over ssh.
Rank 0 writes the run folder, so it must be this machine: listed first.

Hostfiles are mlx.launch's JSON: a list of hosts, or the object `mlx.distributed_config` writes
({"backend": ..., "envs": [...], "hosts": [{"ssh": ..., "ips": [...], "rdma": [...]}]}).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from phi3tui.core.files import atomic_write_text
from phi3tui.core.runs.store import RunError

BACKENDS = ("ring", "jaccl")  # `phi3tui train --backend`; a hostfile may also say jaccl-ring
HOSTFILE_BACKENDS = ("ring", "jaccl", "jaccl-ring")
LAUNCH_HOSTFILE = "hostfile.json"  # in the run folder: the checked hosts, as mlx.launch reads them
RANKS_DIR = "ranks"  # in the run folder, on each rank's machine: <rank>.pid
LOCAL = "127.0.0.1"  # mlx.launch starts a host of this ssh name here, without ssh
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")  # detached: never wait for a password prompt
PASSED_ENV_PREFIXES = ("HF_", "TRANSFORMERS_", "TOKENIZERS_", "PHI3TUI_", "WANDB_")
DISTRIBUTED_CONFIG_HINT = "mlx.distributed_config --hosts H1,H2 --backend jaccl --over thunderbolt --output-hostfile FILE"


class HostsError(RunError):
    """The hosts cannot run this run; str() says which host, why, and what to do."""


@dataclass
class Host:
    ssh: str  # the name ssh connects to (LOCAL: this machine, no ssh)
    ips: list[str] = field(default_factory=list)
    rdma: list = field(default_factory=list)
    name: str = ""  # as the user wrote it (shown in `runs status`)


@dataclass
class HostPlan:
    backend: str
    hosts: list[Host]
    envs: list[str] = field(default_factory=list)
    source: str = ""  # `--hosts a,b` or the hostfile read

    @property
    def ranks(self) -> int:
        return len(self.hosts)

    @property
    def names(self) -> list[str]:
        return [h.name or h.ssh for h in self.hosts]

    def to_json(self) -> dict:
        """The hostfile mlx.launch reads (the format mlx.distributed_config writes), plus the names as written."""
        return {"backend": self.backend, "envs": list(self.envs),
                "hosts": [{"ssh": h.ssh, "ips": h.ips, "rdma": h.rdma, "name": h.name} for h in self.hosts]}

    def remote(self) -> list[tuple[int, Host]]:
        """(rank, host) of the ranks mlx.launch starts through ssh."""
        return [(rank, h) for rank, h in enumerate(self.hosts) if h.ssh != LOCAL]


# -- reading what the user gave ----------------------------------------------------------------------
def read_hostfile(path: Path | str) -> HostPlan:
    """A hostfile in either of mlx.launch's formats. Raises HostsError naming the file and the entry."""
    path = Path(path)
    fix = ('write it as mlx.launch reads it: {"backend": "ring", "hosts": [{"ssh": "mac1", "ips": ["10.0.0.1"]}, ...]}'
           f", or let `{DISTRIBUTED_CONFIG_HINT}` write it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HostsError(f"hostfile {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HostsError(f"hostfile {path} is not readable JSON ({exc}); {fix}") from None
    backend, envs = "", []
    if isinstance(data, dict):
        backend, envs, entries = data.get("backend") or "", data.get("envs") or [], data.get("hosts")
    else:
        entries = data
    if not isinstance(entries, list) or not entries:
        raise HostsError(f"hostfile {path} lists no hosts; {fix}")
    if not isinstance(backend, str) or (backend and backend not in HOSTFILE_BACKENDS):
        raise HostsError(f"hostfile {path}: backend {backend!r} is not one phi3tui launches; "
                         f"use {', '.join(HOSTFILE_BACKENDS)}")
    if not isinstance(envs, list) or not all(isinstance(e, str) and "=" in e for e in envs):
        raise HostsError(f'hostfile {path}: "envs" must be a list of "NAME=value" texts')
    hosts = []
    for i, entry in enumerate(entries, 1):
        ssh = entry.get("ssh") if isinstance(entry, dict) else None
        if not isinstance(ssh, str) or not ssh.strip():
            raise HostsError(f'hostfile {path}: host {i} has no "ssh" name; {fix}')
        ips, rdma = entry.get("ips") or [], entry.get("rdma") or []
        if not isinstance(ips, list) or not all(isinstance(ip, str) for ip in ips):
            raise HostsError(f'hostfile {path}: host {i} ({ssh}): "ips" must be a list of addresses')
        for ip in ips:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise HostsError(f'hostfile {path}: host {i} ({ssh}): "ips" entry {ip!r} is not an IP address; '
                                 'give the address (e.g. "10.0.0.2"), or leave "ips" out and phi3tui resolves '
                                 f'"{ssh}"') from None
        if not isinstance(rdma, list):
            raise HostsError(f'hostfile {path}: host {i} ({ssh}): "rdma" must be a list (null for itself)')
        hosts.append(Host(ssh.strip(), list(ips), list(rdma), entry.get("name") or ssh.strip()))
    return HostPlan(backend, hosts, list(envs), str(path))


def hosts_from_names(names: list[str]) -> HostPlan:
    """`--hosts a,b`: a literal IP address is its own address; a name is resolved later."""
    hosts = []
    for name in names:
        try:
            ips = [str(ipaddress.ip_address(name))]
        except ValueError:
            ips = []
        hosts.append(Host(name, ips, [], name))
    return HostPlan("", hosts, [], "--hosts " + ",".join(names))


# -- checking -------------------------------------------------------------------------------------------
def ssh_hostname(name: str) -> str:
    """The host ssh would connect to for `name` (its HostName in ~/.ssh/config), without connecting."""
    if not shutil.which("ssh"):
        return name
    try:
        out = subprocess.run(["ssh", "-G", name], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return name
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "hostname" and value.strip():
            return value.strip()
    return name


def resolve(name: str) -> list[str]:
    """The IP addresses of a host name (IPv4 first). Raises HostsError with the resolver's reason."""
    target = ssh_hostname(name)
    try:
        infos = socket.getaddrinfo(target, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        via = f" (ssh's HostName for it: {target})" if target != name else ""
        raise HostsError(f"host {name}{via} does not resolve to an IP address ({exc}); mlx.launch's ring backend "
                         "connects by IP: give the address, fix the name (DNS, /etc/hosts, ~/.ssh/config HostName), "
                         "or use a hostfile with \"ips\"") from None
    found = []
    for family, *_, address in sorted(infos, key=lambda i: i[0] != socket.AF_INET):
        if address[0] not in found:
            found.append(address[0])
    return found[:1]


def local_addresses() -> set[str]:
    import psutil

    found = {"127.0.0.1", "::1"}
    for addresses in psutil.net_if_addrs().values():
        found.update(a.address.split("%")[0] for a in addresses if a.family in (socket.AF_INET, socket.AF_INET6))
    return found


def is_this_machine(ips: list[str]) -> bool:
    local = local_addresses()
    return any(ip in local or ipaddress.ip_address(ip).is_loopback for ip in ips)


def plan_hosts(names: list[str] | None, hostfile: str | Path | None, backend: str | None) -> HostPlan | None:
    """The checked hosts of a run (None: one process here). Raises HostsError before anything is started."""
    if not names and not hostfile:
        if backend:
            raise HostsError(f"--backend {backend} needs --hosts or --hostfile: the machines to train on")
        return None
    if names and hostfile:
        raise HostsError("give --hosts or --hostfile, not both")
    plan = read_hostfile(hostfile) if hostfile else hosts_from_names(list(names))
    if backend and backend not in BACKENDS:
        raise HostsError(f"--backend {backend}: use {' or '.join(BACKENDS)}")
    # mlx.launch's order: the command line, then the hostfile, then ring.
    plan.backend = backend or plan.backend or "ring"
    ring = plan.backend == "ring"
    for rank, host in enumerate(plan.hosts):
        if not host.ips and (ring or rank == 0):  # jaccl needs an address for rank 0, the coordinator, only
            host.ips = resolve(host.ssh)
    if not is_this_machine(plan.hosts[0].ips):
        raise HostsError(f"the first host, {plan.names[0]} ({', '.join(plan.hosts[0].ips)}), is not this machine: "
                         "rank 0 writes the run folder here, so list this machine first")
    plan.hosts[0].ssh = LOCAL  # started here by mlx.launch, with this process's environment
    if plan.backend.startswith("jaccl"):
        n = plan.ranks
        bad = [h.name for i, h in enumerate(plan.hosts) if len(h.rdma) != n or h.rdma[i] is not None]
        if bad:
            raise HostsError(f"the jaccl backend needs every host's RDMA devices (one per host, null for itself), "
                             f"which {', '.join(bad)} lack{'s' if len(bad) == 1 else ''}: write the hostfile with "
                             f"`{DISTRIBUTED_CONFIG_HINT}`, or use --backend ring")
    return plan


def check_batch(batch_size: int, ranks: int) -> None:
    if ranks > 1 and batch_size % ranks:
        lower, upper = batch_size // ranks * ranks, (batch_size // ranks + 1) * ranks
        choices = f"{lower} or {upper}" if lower else f"{upper}"
        raise HostsError(f"batch_size {batch_size} is not divisible by the {ranks} ranks (hosts): mlx-lm splits "
                         f"each batch evenly over them; set batch_size to {choices}")


# -- launching ----------------------------------------------------------------------------------------
def rank_environment(env: dict) -> dict:
    """What every rank needs from the launching environment (a remote rank gets only what `--env` gives it)."""
    keep = {k: v for k, v in env.items() if k.startswith(PASSED_ENV_PREFIXES)}
    for key in ("PYTHONPATH", "PYTHONUNBUFFERED"):
        if env.get(key):
            keep[key] = env[key]
    return keep


# Where a run's --starting-port is picked: mlx.launch's own default (32323) is the first, so a lone run uses the
# ports it always did; the range stays below macOS's ephemeral ports (49152 on).
PORTS_FROM, PORTS_TO = 32323, 48000
PORT_TRIES = 64


def ports_needed(plan: HostPlan) -> int:
    """Ports from --starting-port a run listens on: ring, one per host and IP (mlx.launch counts them up);
    jaccl, its coordinator's one."""
    return max(1, sum(len(h.ips) for h in plan.hosts)) if plan.backend == "ring" else 1


def _free_here(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def starting_port(plan: HostPlan, run_id: str) -> int:
    """This run's --starting-port. With mlx.launch's fixed default, a second run on the same machines (`train
    --now` beside a running one, two queues) would listen on the first's ports and fail at its start. Each run
    starts at a place of its own, from its id, and moves on past ports taken on this machine (another run's
    ranks here); the remote hosts' own ports cannot be seen from here, and the place from the id keeps two runs
    apart there too."""
    needed = ports_needed(plan)
    stride = max(16, needed)
    slots = max(1, (PORTS_TO - PORTS_FROM - needed) // stride)
    first = zlib.crc32(run_id.encode()) % slots
    for attempt in range(min(PORT_TRIES, slots)):
        base = PORTS_FROM + ((first + attempt) % slots) * stride
        if all(_free_here(base + i) for i in range(needed)):
            return base
    return PORTS_FROM + first * stride  # all taken here: mlx.launch's own error then names the port


def launch_command(mlx_launch: str, plan: HostPlan, hostfile: Path, workspace_root: Path, env: dict,
                   command: list[str], port: int) -> list[str]:
    cmd = [mlx_launch, "--backend", plan.backend, "--hostfile", str(hostfile), "--cwd", str(workspace_root),
           "--starting-port", str(port)]
    for key, value in sorted(rank_environment(env).items()):
        cmd += ["--env", f"{key}={value}"]
    return cmd + ["--", *command]


def ssh(host: str, command: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", *SSH_OPTIONS, host, command], input=stdin, capture_output=True, text=True,
                          timeout=timeout, stdin=None if stdin is not None else subprocess.DEVNULL)


# Run on each remote host by phi3tui's own python (the same path there): checks the workspace and the paths the
# config names, writes each file whose checksum differs (atomically), and answers in one JSON line.
_SYNC = r"""
import base64, hashlib, json, os, sys
job = json.load(sys.stdin)
ws, run = job["workspace"], job["run_dir"]
answer = {"missing": [p for p in [ws] + [os.path.join(ws, p) for p in job["paths"]] if not os.path.exists(p)]}
if not answer["missing"]:
    written = []
    for rel, (digest, data) in job["files"].items():
        path = os.path.join(run, rel)
        try:
            same = hashlib.sha256(open(path, "rb").read()).hexdigest() == digest
        except OSError:
            same = False
        if not same:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".phi3tui-part", "wb") as out:
                out.write(base64.b64decode(data))
            os.replace(path + ".phi3tui-part", path)
            written.append(rel)
    answer["written"] = written
print(json.dumps(answer))
"""


def send_run_files(plan: HostPlan, run_dir: Path, files: list[str], needed_paths: list[str]) -> list[str]:
    """Make each remote host's copy of the run folder hold `files` (paths inside the run folder) byte for byte,
    after checking that it has the workspace and the `needed_paths` (workspace-relative: model, data).
    Returns a note per host; raises HostsError naming the host and what to do."""
    payload = {}
    for rel in files:
        data = (run_dir / rel).read_bytes()
        payload[rel] = (hashlib.sha256(data).hexdigest(), base64.b64encode(data).decode())
    job = json.dumps({"workspace": str(run_dir.parent.parent), "run_dir": str(run_dir), "paths": needed_paths,
                      "files": payload})
    notes = []
    for rank, host in plan.remote():
        command = f"{shlex.quote(sys.executable)} -c {shlex.quote(_SYNC)}"
        try:
            done = ssh(host.ssh, command, stdin=job)
        except subprocess.TimeoutExpired:
            raise HostsError(f"host {host.name} (rank {rank}) did not answer over ssh within 60 s") from None
        except OSError as exc:
            raise HostsError(f"ssh could not be started ({exc}): mlx.launch starts remote ranks through ssh") from None
        last = (done.stderr.strip().splitlines() or [""])[-1]
        if done.returncode == 255:
            raise HostsError(f"host {host.name} (rank {rank}) cannot be reached over ssh ({last}): mlx.launch starts "
                             f"its rank through ssh, so `ssh {host.ssh}` must log in without a password (a key)")
        if done.returncode == 127 or "No such file" in last and done.returncode:
            raise HostsError(f"host {host.name} (rank {rank}) has no {sys.executable}: install phi3tui at the same "
                             "path on every machine (the ranks run the same command)")
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise HostsError(f"host {host.name} (rank {rank}) could not take the run's files: {last or done.stdout}") from None
        if answer["missing"]:
            raise HostsError(f"host {host.name} (rank {rank}) lacks {', '.join(answer['missing'])}: every rank works in "
                             "the same workspace folder; copy the workspace (model and data) to the same path there")
        notes.append(f"{host.name} (rank {rank}): " + (f"sent {', '.join(answer['written'])}" if answer["written"]
                                                         else "already holds the run's files (same checksums)"))
    return notes


def pid_file(run_dir: Path, rank: int) -> Path:
    return run_dir / RANKS_DIR / f"{rank}.pid"


def signal_remote_ranks(plan: HostPlan, run_dir: Path, signame: str = "KILL") -> list[str]:
    """Signal every rank mlx.launch started through ssh (its pid, left on its machine, checked to still be this
    run's runner). Returns a line per rank that could not be reached."""
    problems = []
    for rank, host in plan.remote():
        f = shlex.quote(str(pid_file(run_dir, rank)))
        marker = shlex.quote(str(run_dir))
        command = (f'pid=$(cat {f} 2>/dev/null) || exit 0; '
                   f'if ps -o command= -p "$pid" | grep -qF -- {marker}; then kill -{signame} "$pid"; fi')
        try:
            done = ssh(host.ssh, command, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(f"rank {rank} on {host.name}: {exc}")
            continue
        if done.returncode != 0:
            problems.append(f"rank {rank} on {host.name}: {(done.stderr.strip().splitlines() or ['ssh failed'])[-1]}")
    return problems


def load_plan(run_dir: Path) -> HostPlan | None:
    """The run's checked hosts (runs/<id>/hostfile.json), None for a run on this machine alone."""
    path = run_dir / LAUNCH_HOSTFILE
    if not path.is_file():
        return None
    return read_hostfile(path)


def write_plan(run_dir: Path, plan: HostPlan) -> Path:
    path = run_dir / LAUNCH_HOSTFILE
    atomic_write_text(path, json.dumps(plan.to_json(), indent=2) + "\n")
    return path


def write_rank_pid(run_dir: Path, rank: int) -> None:
    """A rank other than 0 leaves its pid on its own machine, for kill_run to reach it."""
    path = pid_file(run_dir, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, f"{os.getpid()}\n")
