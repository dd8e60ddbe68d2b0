"""Processes behind sockets: cgroup parsing (fixtures) and /proc lookups (this host).

cgroup/v1-this-host is this machine's real /proc/self/cgroup; the v2, systemd and
container files are hand-written from the documented formats, because this host has
cgroup v1 only, PID 1 is not systemd and no container runtime runs here (see
tests/data/proc/README.md).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rstrace.sources.procinfo import owners_by_inode, parse_cgroup, process_info, socket_inodes

CGROUP = Path(__file__).parent / "data" / "proc" / "cgroup"
DOCKER_ID = "3f2a9c41b7d04e5e8a61f0c2d9b7e4a1c5f6d8e9a0b1c2d3e4f5a6b7c8d9e0f1"
POD = "8b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e"
CTR = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"
PODMAN = "5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"


@pytest.mark.parametrize(
    ("name", "unit", "container"),
    [
        ("v1-this-host", None, None),
        ("v1-systemd-service", "nginx.service", None),
        ("v2-system-service", "metrics-push.service", None),
        ("v2-user-service", "metrics-push.service", None),
        ("v2-session-scope", "session-3.scope", None),
        ("v1-docker-cgroupfs", None, f"docker:{DOCKER_ID}"),
        ("v2-docker-systemd", None, f"docker:{DOCKER_ID}"),
        ("v2-kubepods-containerd", None, f"k8s-pod:{POD}/containerd:{CTR}"),
        ("v2-kubepods-crio", None, f"k8s-pod:{POD}/cri-o:{CTR}"),
        ("v1-kubepods-cgroupfs", None, f"k8s-pod:{POD}/cri:{CTR}"),
        ("v2-podman-root", None, f"podman:{PODMAN}"),
        ("v2-podman-rootless", None, f"podman:{PODMAN}"),
        ("v1-lxc", "nginx.service", "lxc:web01"),
        ("v2-lxc-payload", "nginx.service", "lxc:web01"),
    ],
)
def test_parse_cgroup_fixtures(name: str, unit: str | None, container: str | None) -> None:
    assert parse_cgroup((CGROUP / name).read_text()) == (unit, container)


def test_parse_cgroup_garbage() -> None:
    assert parse_cgroup("") == (None, None)
    assert parse_cgroup("not a cgroup line\n0::\n") == (None, None)


def test_process_info_of_this_process() -> None:
    me = process_info(os.getpid())
    assert me is not None
    assert me.pid == os.getpid()
    assert me.cmdline == Path("/proc/self/cmdline").read_text().split("\0")[:-1]
    assert me.uid == os.getuid()
    assert me.netns == os.stat("/proc/self/ns/net").st_ino
    assert me.name == Path("/proc/self/comm").read_text().strip()


def test_owners_of_own_socket() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        inode = os.fstat(s.fileno()).st_ino
        assert inode in socket_inodes(os.getpid())
        owners = owners_by_inode(inodes={inode})
        assert [p.pid for p in owners[inode]] == [os.getpid()]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    return child.pid  # reaped: nothing under /proc/PID any more (until the pid is reused)


def test_process_gone_before_lookup() -> None:
    pid = _dead_pid()
    if os.path.exists(f"/proc/{pid}"):
        pytest.skip("pid reused at once")  # pragma: no cover - needs a very busy host
    assert process_info(pid) is None
    assert socket_inodes(pid) == set()


def test_scan_survives_a_process_ending_mid_scan() -> None:
    """The pid list is read first, the fds later: a process ending between must not crash.

    Made deterministic by handing the scan a pid list that holds a process already gone.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        inode = os.fstat(s.fileno()).st_ino
        owners = owners_by_inode([_dead_pid(), os.getpid()])
        assert [p.pid for p in owners[inode]] == [os.getpid()]


def test_zombie_lookup_does_not_crash() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import os; os.close(0)"])
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:  # wait for it to exit, without reaping it
            if Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] == "Z":
                break
            time.sleep(0.01)
        info = process_info(child.pid)
        assert info is None or (info.pid == child.pid and info.cmdline == [])
        assert socket_inodes(child.pid) == set()
    finally:
        child.wait(timeout=10)


def test_name_is_the_kernel_comm(tmp_path: Path) -> None:
    """A program with a long name: the kernel keeps 15 bytes of it (what tracepoints print);
    psutil's name() would give the whole argv[0]. The record keeps the comm."""
    import shutil

    prog = tmp_path / "rsts-long-sleeper-program"
    shutil.copy("/bin/sleep", prog)
    child = subprocess.Popen([str(prog), "30"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until exec() has replaced the forked python
            if Path(f"/proc/{child.pid}/comm").read_text().startswith("rsts-"):
                break
            time.sleep(0.01)
        info = process_info(child.pid)
        assert info is not None
        assert info.name == "rsts-long-sleep"
        assert info.cmdline == [str(prog), "30"]
    finally:
        child.kill()
        child.wait(timeout=10)
