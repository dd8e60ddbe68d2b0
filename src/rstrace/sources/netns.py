"""Enter a named network namespace (/run/netns/NAME, as `ip netns add` makes them).

Python 3.11 has no os.setns, so pyroute2's netns.setns does the system call.
setns(2) moves only the calling thread: call enter() on the main thread before any
other thread starts and before opening sockets. After it, /proc/net/* and
/proc/sys/net/* (and every new socket) belong to that namespace.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class NetnsError(RuntimeError):
    """A namespace that cannot be entered; the message is one line for the user."""


def path_of(name: str) -> Path:
    """The bind-mount file of namespace *name*; refuses names that are paths."""
    if not name or "/" in name or name in (".", ".."):
        raise NetnsError(f"{name!r} is not a network namespace name (see `ip netns list`)")
    return NETNS_DIR / name


def inode(pid: int | str = "self") -> int:
    """Identity of a process's network namespace (equal inodes: same namespace)."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def enter(name: str) -> None:
    """Switch this process into network namespace *name*, or raise NetnsError."""
    from pyroute2 import netns

    path = path_of(name)
    if not path.exists():
        raise NetnsError(
            f"no network namespace {name!r}: {path} does not exist (`ip netns list` shows them)"
        )
    if threading.current_thread() is not threading.main_thread():
        # /proc/net follows the main thread's namespace, not this thread's.
        raise NetnsError("netns.enter() must run on the main thread")
    try:
        # flags=0: pyroute2 creates a missing namespace by default (O_CREAT); we never do.
        netns.setns(str(path), flags=0)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EACCES):
            raise NetnsError(
                f"entering network namespace {name!r} needs root (CAP_SYS_ADMIN); "
                "without --netns the host's own namespace still works"
            ) from None
        raise NetnsError(f"cannot enter network namespace {name!r}: {e.strerror}") from None
