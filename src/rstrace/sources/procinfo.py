"""Processes behind sockets: socket inode -> pids, and who a pid is (name, user, unit, container).

psutil gives name, cmdline and uids portably. Two things it does not give, so they are
read here: the cgroup (psutil has no cgroup API; parse_cgroup() reads systemd units and
container ids from it), and socket inodes: psutil's net_connections() does scan
/proc/*/fd, but it joins what it finds to /proc/net/tcp of *its own* namespace and returns
no inode and no cookie, so it cannot be joined to sock_diag (queue lengths, cookies) nor
see sockets of another network namespace. One readlink scan here gives inode -> pids for
every namespace at once (socket inodes are host-wide).

Processes come and go while we read: every per-process read tolerates the process being
gone (or forbidden) and just leaves it out.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable
from contextlib import suppress

import psutil

from ..model import Process

PROC = "/proc"

# Container ids as the runtimes name their cgroups (cgroupfs and systemd drivers):
#   /docker/<id>                       docker, cgroupfs driver
#   /system.slice/docker-<id>.scope    docker, systemd driver
#   .../cri-containerd-<id>.scope, ...:cri-containerd:<id>, /containerd/<id>
#   .../crio-<id>.scope                CRI-O
#   .../libpod-<id>.scope, /libpod_parent/libpod-<id>   podman
#   /lxc/<name>, /lxc.payload.<name>   LXC (the latter since LXC 4)
_HEX = r"([0-9a-f]{12,64})"
_CONTAINER_PATTERNS = (
    (re.compile(rf"(?:^|/)docker[-/]{_HEX}(?:\.scope)?(?:/|$)"), "docker"),
    (re.compile(rf"cri-containerd[-:]{_HEX}(?:\.scope)?(?:/|$)"), "containerd"),
    (re.compile(rf"(?:^|/)containerd/{_HEX}(?:/|$)"), "containerd"),
    (re.compile(rf"(?:^|/)crio-{_HEX}(?:\.scope)?(?:/|$)"), "cri-o"),
    (re.compile(rf"(?:^|/)libpod-{_HEX}(?:\.scope)?(?:/|$)"), "podman"),
    (re.compile(r"(?:^|/)lxc(?:/|\.payload\.)([^/]+)"), "lxc"),
)
# kubepods: the pod uid sits in a parent cgroup (pod<uid> or ...-pod<uid_with_underscores>.slice)
_KUBEPOD = re.compile(r"kubepods.*?pod([0-9a-f]{8}[-_][0-9a-f-_]{27})(?:\.slice)?(?:/|$)")
# The container's bare id under kubepods with the cgroupfs driver: /kubepods/<qos>/pod<uid>/<id>
_KUBE_BARE = re.compile(rf"kubepods/(?:[a-z]+/)?pod[0-9a-f-]+/{_HEX}$")


def _container(path: str) -> tuple[str | None, str]:
    """(runtime:id, the path inside the container) for a container's cgroup path."""
    found, inside = None, ""
    for pattern, runtime in _CONTAINER_PATTERNS:
        m = pattern.search(path)
        if m:
            found, inside = f"{runtime}:{m.group(1)}", path[m.end() :]
            break
    else:
        m = _KUBE_BARE.search(path)
        if m:
            found = f"cri:{m.group(1)}"
    pod = _KUBEPOD.search(path)
    if pod:
        uid = pod.group(1).replace("_", "-")
        return (f"k8s-pod:{uid}/{found}" if found else f"k8s-pod:{uid}"), inside
    return found, inside


def _unit(path: str) -> str | None:
    # The innermost .service wins: /user.slice/user-1000.slice/user@1000.service/app.slice/
    # foo.service is the user's foo.service, not the user manager. A .scope (a login
    # session, a systemd-run --scope) only when no service is nested deeper.
    for part in reversed(path.split("/")):
        if part.endswith((".service", ".scope")):
            return part
    return None


def parse_cgroup(text: str) -> tuple[str | None, str | None]:
    """(systemd unit, container) from the text of /proc/PID/cgroup, cgroup v1 or v2.

    Lines are ``hierarchy-id:controllers:path``. The unit is read from the v2 line
    (``0::``) when it names one, else from v1's ``name=systemd`` hierarchy, else from any
    controller. For a process in a container the unit is the one systemd runs *inside*
    the container (LXC), if any; the scope the host made for the container is not a unit
    a person acts on.
    """
    return _parse(text)[:2]


def _parse(text: str) -> tuple[str | None, str | None, str | None]:
    v2 = named = None
    others: list[str] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2 = path
        elif controllers == "name=systemd":
            named = path
        else:
            others.append(path)
    paths = [p for p in (v2, named, *others) if p and p != "/"]
    for path in paths:
        container, inside = _container(path)
        if container:
            return _unit(inside), container, path
    for path in paths:
        unit = _unit(path)
        if unit:
            return unit, None, path
    return None, None, paths[0] if paths else None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # gone, or not ours to read
        return None


def process_info(pid: int, proc: str = PROC) -> Process | None:
    """Who *pid* is; None when the process is gone (or was never there)."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            # The kernel's comm, as tracepoints print it: psutil's name() swaps a full
            # 15-byte comm for the longer argv[0] when that starts with it.
            comm = _read(f"{proc}/{pid}/comm")
            name = comm.rstrip("\n") if comm is not None else p.name()
            uid = p.uids().real
            try:
                cmdline = p.cmdline()
            except (psutil.ZombieProcess, psutil.AccessDenied):
                cmdline = []
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        name, uid, cmdline = (_read(f"{proc}/{pid}/comm") or "?").strip(), None, []
    user = None
    if uid is not None:
        with suppress(KeyError):  # a uid without a passwd entry (containers)
            user = pwd.getpwuid(uid).pw_name
    unit, container, cgroup = _parse(_read(f"{proc}/{pid}/cgroup") or "")
    try:
        netns: int | None = os.stat(f"{proc}/{pid}/ns/net").st_ino
    except OSError:
        netns = None
    return Process(pid, name, cmdline, uid, user, unit, container, cgroup, netns)


def _pids(proc: str) -> list[int]:
    return [int(d) for d in os.listdir(proc) if d.isdigit()]


def socket_inodes(pid: int, proc: str = PROC) -> set[int]:
    """Inodes of the sockets in *pid*'s fd table; empty if it is gone or not readable."""
    fd_dir = f"{proc}/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return set()
    out: set[int] = set()
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:  # fd closed, or the process ended, between listdir and readlink
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def owners_by_inode(
    pids: Iterable[int] | None = None, *, inodes: set[int] | None = None, proc: str = PROC
) -> dict[int, list[Process]]:
    """Socket inode -> processes holding it, from one scan of /proc/*/fd.

    *pids* limits the scan (default: every process). *inodes* keeps only those sockets
    (and looks up only the processes that hold one). Processes that end mid-scan are
    left out; without root, other users' processes cannot be read and are missing.
    """
    holders: dict[int, list[int]] = {}
    for pid in _pids(proc) if pids is None else pids:
        for inode in socket_inodes(pid, proc):
            if inodes is None or inode in inodes:
                holders.setdefault(inode, []).append(pid)
    infos: dict[int, Process | None] = {}
    out: dict[int, list[Process]] = {}
    for inode, owner_pids in holders.items():
        procs = []
        for pid in owner_pids:
            if pid not in infos:
                infos[pid] = process_info(pid, proc)
            info = infos[pid]
            if info is not None:
                procs.append(info)
        if procs:
            out[inode] = procs
    return out
