"""Runs on several machines (core/runs/hosts.py): hostfiles read as mlx.launch reads them, names resolved or refused
before launch, rank 0 here, the batch split evenly, the mlx.launch command per backend, and real runs through
mlx.launch: two local ranks, and a rank started through a real sshd on 127.0.0.1, each ended by kill."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from phi3tui.core import runs
from phi3tui.core.runs import hosts
from phi3tui.core.run_folder import read_run_json
from phi3tui.core.workspace import Workspace
from tests.conftest import run_cli

SSHD = Path("/usr/sbin/sshd")


def mlx_hostfile(path: Path):
    """mlx.launch's own reading of a hostfile (what the launched job will see)."""
    from mlx._distributed_utils.common import Hostfile

    return Hostfile.from_file(str(path))


# -- hostfiles ---------------------------------------------------------------------------------------------
def test_hostfiles_in_both_formats_read_as_mlx_launch_reads_them(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"ssh": "mac1", "ips": ["10.0.0.1"]}, {"ssh": "mac2", "ips": ["10.0.0.2"]}]))
    written = tmp_path / "distributed_config.json"  # the object mlx.distributed_config writes
    written.write_text(json.dumps({"backend": "jaccl", "envs": ["MLX_METAL_FAST_SYNCH=1"], "hosts": [
        {"ssh": "mac1", "ips": ["10.0.0.1"], "rdma": [None, "rdma_en3"]},
        {"ssh": "mac2", "ips": ["10.0.0.2"], "rdma": ["rdma_en3", None]}]}, indent=4))
    for path in (listed, written):
        ours, theirs = hosts.read_hostfile(path), mlx_hostfile(path)
        assert ours.backend == theirs.backend and ours.envs == theirs.envs
        assert [(h.ssh, h.ips, h.rdma) for h in ours.hosts] == [(h.ssh_hostname, h.ips, h.rdma) for h in theirs.hosts]
    assert hosts.read_hostfile(written).backend == "jaccl"


def test_bad_hostfiles_are_refused_naming_the_file_and_host(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"ssh": "mac1"}, {"ips": ["10.0.0.2"]}]')
    with pytest.raises(hosts.HostsError, match=r'bad.json: host 2 has no "ssh" name'):
        hosts.read_hostfile(bad)
    bad.write_text("mac1\nmac2\n")
    with pytest.raises(hosts.HostsError, match="bad.json is not readable JSON"):
        hosts.read_hostfile(bad)
    bad.write_text('{"backend": "mpi", "hosts": [{"ssh": "mac1"}]}')
    with pytest.raises(hosts.HostsError, match="backend 'mpi' is not one phi3tui launches"):
        hosts.read_hostfile(bad)


# -- checks before launch -------------------------------------------------------------------------------
def test_names_are_resolved_to_addresses_or_refused_with_the_reason():
    plan = hosts.plan_hosts(["localhost", "127.0.0.1"], None, None)
    assert plan.backend == "ring"
    assert plan.hosts[0].ips == ["127.0.0.1"] and plan.hosts[0].ssh == hosts.LOCAL  # rank 0 starts here
    assert plan.names == ["localhost", "127.0.0.1"]
    with pytest.raises(hosts.HostsError, match=r"host mac2\.invalid does not resolve to an IP address \(.+\)"):
        hosts.plan_hosts(["127.0.0.1", "mac2.invalid"], None, None)
    with pytest.raises(hosts.HostsError, match="the first host, 203.0.113.7 .* is not this machine"):
        hosts.plan_hosts(["203.0.113.7", "127.0.0.1"], None, None)


def test_cli_refuses_an_unresolvable_host_and_an_uneven_batch_before_any_run(demo_workspace):
    result = run_cli("train", "-w", str(demo_workspace), "--hosts", "127.0.0.1,mac2.invalid")
    assert result.returncode == 2
    assert "mac2.invalid does not resolve" in result.stderr
    # the demo config's batch_size is 4: three ranks cannot share it evenly
    result = run_cli("train", "-w", str(demo_workspace), "--hosts", "127.0.0.1,127.0.0.1,127.0.0.1")
    assert result.returncode == 2
    assert "batch_size 4 is not divisible by the 3 ranks (hosts)" in result.stderr and "3 or 6" in result.stderr
    assert not (demo_workspace / "runs").is_dir() or not any((demo_workspace / "runs").iterdir())


def test_batch_must_split_evenly_over_the_ranks():
    hosts.check_batch(8, 4)
    hosts.check_batch(3, 1)
    with pytest.raises(hosts.HostsError, match=r"batch_size 2 is not divisible by the 4 ranks .* set batch_size to 4$"):
        hosts.check_batch(2, 4)


def test_launch_command_keeps_the_hostfiles_backend_and_passes_the_environment(tmp_path):
    jaccl = tmp_path / "jaccl.json"
    jaccl.write_text(json.dumps({"backend": "jaccl", "hosts": [
        {"ssh": "this-mac", "ips": ["127.0.0.1"], "rdma": [None, "rdma_en3"]},
        {"ssh": "mac2", "ips": ["10.0.0.2"], "rdma": ["rdma_en3", None]}]}))
    env = {"PYTHONPATH": "/src", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "HOME": "/root"}
    command = ["python", "-m", "phi3tui.core.runs.runner", "/ws/runs/x"]

    plan = hosts.plan_hosts(None, jaccl, None)  # the hostfile asks for jaccl: not overridden
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    written = hosts.write_plan(run_dir, plan)
    cmd = hosts.launch_command("mlx.launch", plan, written, Path("/ws"), env, command, 40001)
    assert cmd[:5] == ["mlx.launch", "--backend", "jaccl", "--hostfile", str(written)]
    assert cmd[cmd.index("--starting-port") + 1] == "40001"
    assert cmd[cmd.index("--") + 1:] == command
    passed = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--env"]
    assert sorted(passed) == ["HF_HUB_OFFLINE=1", "PYTHONPATH=/src", "PYTHONUNBUFFERED=1"]  # not HOME
    seen = mlx_hostfile(written)  # the hostfile mlx.launch gets: rank 0 started here, mac2 through ssh
    assert [h.ssh_hostname for h in seen.hosts] == ["127.0.0.1", "mac2"] and seen.hosts[1].rdma == ["rdma_en3", None]
    assert [rank for rank, _ in plan.remote()] == [1]

    ring = hosts.plan_hosts(None, jaccl, "ring")  # asked for on the command line: ring
    assert hosts.launch_command("mlx.launch", ring, written, Path("/ws"), env, command, 40001)[1:3] == ["--backend", "ring"]
    with pytest.raises(hosts.HostsError, match="jaccl backend needs every host's RDMA devices.*mlx.distributed_config"):
        hosts.plan_hosts(["127.0.0.1", "127.0.0.1"], None, "jaccl")


# -- real runs through mlx.launch -------------------------------------------------------------------------
def runner_processes(run_dir: Path, trainers_only: bool = True) -> list[psutil.Process]:
    """Each rank's trainer (the runner forks its trainer, same command line, and supervises it), or with
    trainers_only=False every runner process, supervisors included."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline[1:4] == ["-m", "phi3tui.core.runs.runner", str(run_dir)]:  # a rank, not mlx.launch
            found.append(proc)
    if not trainers_only:
        return found
    pids = {p.pid for p in found}
    trainers = []
    for proc in found:
        try:
            if proc.ppid() in pids:
                trainers.append(proc)
        except psutil.NoSuchProcess:
            continue
    return trainers


def wait_for(predicate, what: str, run_dir: Path, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while not predicate():
        state = read_run_json(run_dir).get("state")
        assert state in runs.LIVE_STATES, f"{what}: run ended {state}\n{(run_dir / 'log.txt').read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{(run_dir / 'log.txt').read_text()[-3000:]}"
        time.sleep(0.2)


def kill_and_check_every_rank_ends(run_dir: Path, peer_gone: bool = False) -> None:
    """`runs kill`, then every rank process (and supervisor) is gone and the run is failed. peer_gone: a rank was
    killed already, so rank 0 may have found its ring broken and ended the run itself before the kill."""
    try:
        runs.kill_run(run_dir)
    except runs.RunError:
        if not peer_gone:
            raise
    deadline = time.monotonic() + 20
    while runner_processes(run_dir, trainers_only=False) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runner_processes(run_dir, trainers_only=False) == [], "a rank (or its supervisor) outlived kill"
    assert read_run_json(run_dir)["state"] == "failed"


LONG = dict(iters=100000, steps_per_report=5, steps_per_eval=100000, save_every=100000, val_batches=1)


@pytest.mark.mlx_ring
def test_two_local_ranks_are_both_ended_by_kill(demo_workspace):
    run_dir = runs.start_run(Workspace.open(demo_workspace), overrides=LONG, hosts=["127.0.0.1", "127.0.0.1"])
    wait_for(lambda: hosts.pid_file(run_dir, 1).is_file() and (read_run_json(run_dir).get("iteration") or 0) >= 5,
             "both ranks training", run_dir)
    assert len(runner_processes(run_dir)) == 2
    kill_and_check_every_rank_ends(run_dir)


def test_each_run_gets_its_own_starting_port_past_ports_taken_here(tmp_path):
    """mlx.launch's ring ranks listen from --starting-port up, one port per host and IP: each run starts at a place
    of its own (from its id), and a port something listens on here moves it on."""
    four = hosts.plan_hosts(["127.0.0.1"] * 4, None, "ring")
    assert hosts.ports_needed(four) == 4
    first = hosts.starting_port(four, "20261207-0600-aaaa")
    assert first == hosts.starting_port(four, "20261207-0600-aaaa")  # a resume asks again and gets the same
    assert hosts.PORTS_FROM <= first and first + 4 <= hosts.PORTS_TO
    others = {hosts.starting_port(four, f"20261207-0600-{i:04d}") for i in range(20)}
    assert len(others) >= 18, others  # different runs, different places
    with socket.socket() as taken:
        taken.bind(("", first + 2))  # a port of the first run's range is in use here
        taken.listen()
        moved = hosts.starting_port(four, "20261207-0600-aaaa")
    assert moved != first and not (moved <= first + 2 < moved + 4)


@pytest.mark.mlx_ring
def test_two_distributed_runs_at_once_on_the_same_machines_both_train(demo_workspace):
    """Two runs of two local ranks each, started together: with one fixed port their ranks would collide at the
    start; each has its own, so both train, and both are ended by kill."""
    ws = Workspace.open(demo_workspace)
    both = [runs.start_run(ws, overrides=LONG, hosts=["127.0.0.1", "127.0.0.1"]) for _ in range(2)]
    for run_dir in both:
        wait_for(lambda: hosts.pid_file(run_dir, 1).is_file() and (read_run_json(run_dir).get("iteration") or 0) >= 5,
                 "both ranks training", run_dir)
    for run_dir in both:
        assert len(runner_processes(run_dir)) == 2
        kill_and_check_every_rank_ends(run_dir)


def stop_and_check_every_rank_ends(run_dir: Path, workspace: Path) -> None:
    """`phi3tui runs stop --wait`: the stop reaches every rank (they agree on the step through all_sum), every
    rank process ends, and the run is stopped with a checkpoint at that step."""
    ranks = runner_processes(run_dir, trainers_only=False)
    assert len(ranks) >= 4, ranks  # two trainers and their supervisors
    stop = run_cli("runs", "stop", run_dir.name, "--wait", "-w", str(workspace))
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stdout + stop.stderr
    gone, alive = psutil.wait_procs(ranks, timeout=60)
    assert alive == [], f"a rank outlived runs stop: {alive}"
    info = read_run_json(run_dir)
    assert info["state"] == "stopped", info
    at = int(info["reason"].rsplit(" ", 1)[-1])
    assert info["last_checkpoint"] == at and (run_dir / "adapters" / f"{at:07d}_adapters.safetensors").is_file()
    # Each rank ended as stopped at that same step by itself (not cut off when rank 0 left the ring).
    log = (run_dir / "log.txt").read_text()
    assert log.count(f"phi3tui runner: stopped: stopped at iteration {at}") == 2, log[-3000:]


@pytest.mark.mlx_ring
def test_two_local_ranks_are_both_ended_by_runs_stop(demo_workspace):
    run_dir = runs.start_run(Workspace.open(demo_workspace), overrides=LONG, hosts=["127.0.0.1", "127.0.0.1"])
    wait_for(lambda: hosts.pid_file(run_dir, 1).is_file() and (read_run_json(run_dir).get("iteration") or 0) >= 5,
             "both ranks training", run_dir)
    assert len(runner_processes(run_dir)) == 2
    stop_and_check_every_rank_ends(run_dir, demo_workspace)


@pytest.fixture
def sshd_peer(tmp_path, monkeypatch):
    """A real sshd on 127.0.0.1 with throwaway keys, reachable as host `peer` (an ssh alias, as a Mac's would be).
    ssh finds the alias through a wrapper first on PATH that adds `-F` (ssh reads only ~/.ssh/config otherwise)."""
    if not SSHD.is_file():
        pytest.skip(f"{SSHD} is absent (Debian: apt-get install openssh-server)")
    if not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("the ssh client (openssh-client) is not installed")
    try:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    except OSError as exc:
        pytest.skip(f"sshd cannot start: /run/sshd cannot be created ({exc})")
    d = tmp_path / "ssh"
    d.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n"
        f"PidFile {d}/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n")
    (d / "ssh_config").write_text(
        f"Host peer\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {d}/ssh_config "$@"\n')
    wrapper.chmod(0o755)
    sshd = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stderr=open(d / "sshd.log", "wb"))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["ssh", "-o", "BatchMode=yes", "peer", "true"], capture_output=True).returncode:
            if sshd.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"sshd did not start: {(d / 'sshd.log').read_text()[-500:]}")
            time.sleep(0.2)
        yield "peer"
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)


@pytest.mark.mlx_ring
def test_rank_through_a_real_sshd_gets_the_environment_and_is_ended_by_kill(demo_workspace, sshd_peer):
    ws = Workspace.open(demo_workspace)
    run_dir = runs.start_run(ws, overrides=LONG, hosts=["127.0.0.1", sshd_peer])
    info = read_run_json(run_dir)
    assert info["hosts"] == ["127.0.0.1", "peer"] and info["backend"] == "ring"
    # the run's files were checked on the peer (the same folder here, so the same checksums: nothing sent)
    assert "phi3tui: host peer (rank 1): already holds the run's files (same checksums)" in (run_dir / "log.txt").read_text()
    # rank 1 wrote its pid: it ran this checkout's phi3tui, which it imports only through the PYTHONPATH passed
    wait_for(lambda: hosts.pid_file(run_dir, 1).is_file() and (read_run_json(run_dir).get("iteration") or 0) >= 5,
             "both ranks training", run_dir)
    rank1 = psutil.Process(int(hosts.pid_file(run_dir, 1).read_text()))
    assert any(p.name().startswith("sshd") for p in rank1.parents()), "rank 1 was not started through sshd"
    status = run_cli("runs", "status", "--oneline", "-w", str(demo_workspace))
    assert status.stdout.strip().endswith("on 127.0.0.1,peer"), status.stdout
    # kill's reach over ssh, on its own: rank 1 ends while rank 0 (here) has not been touched yet
    rank0 = [p for p in runner_processes(run_dir) if p.pid != rank1.pid]
    assert hosts.signal_remote_ranks(hosts.load_plan(run_dir), run_dir, "KILL") == []
    rank1.wait(timeout=20)
    assert len(rank0) == 1
    kill_and_check_every_rank_ends(run_dir, peer_gone=True)


@pytest.mark.mlx_ring
def test_runs_stop_reaches_a_rank_through_a_real_sshd(demo_workspace, sshd_peer):
    run_dir = runs.start_run(Workspace.open(demo_workspace), overrides=LONG, hosts=["127.0.0.1", sshd_peer])
    wait_for(lambda: hosts.pid_file(run_dir, 1).is_file() and (read_run_json(run_dir).get("iteration") or 0) >= 5,
             "both ranks training", run_dir)
    rank1 = psutil.Process(int(hosts.pid_file(run_dir, 1).read_text()))
    assert any(p.name().startswith("sshd") for p in rank1.parents()), "rank 1 was not started through sshd"
    stop_and_check_every_rank_ends(run_dir, demo_workspace)
    assert not rank1.is_running()


def test_a_host_without_the_workspace_paths_is_refused_before_launch(tmp_path, sshd_peer):
    run_dir = tmp_path / "ws" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("model: model\n")
    plan = hosts.plan_hosts(["127.0.0.1", sshd_peer], None, None)
    with pytest.raises(hosts.HostsError, match=r"host peer \(rank 1\) lacks .*/ws/no-such-data: every rank works"):
        hosts.send_run_files(plan, run_dir, ["config.yaml"], ["no-such-data"])
    assert hosts.send_run_files(plan, run_dir, ["config.yaml"], []) == [
        "peer (rank 1): already holds the run's files (same checksums)"]
