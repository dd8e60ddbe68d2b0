"""Host settings that decide how connections fail: listen-queue sysctls and conntrack.

All of these files follow the reader's network namespace (see netns.enter), except
nf_conntrack_max, which only the initial namespace may change: the table size is
global. The parsers take text; read_sysctls()/read_conntrack() are thin readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# sysctl name -> what it decides, for a failed connection.
SYSCTLS: dict[str, str] = {
    "net.core.somaxconn": "upper bound of every listen() backlog (accept queue length)",
    "net.ipv4.tcp_max_syn_backlog": "with tcp_syncookies=0 only: SYNs from unproven peers are "
    "dropped once a listener's SYN queue fills 3/4 of it (the queue itself is as long as "
    "the listen() backlog)",
    "net.ipv4.tcp_abort_on_overflow": "1: a full accept queue answers the handshake's last ACK "
    "with RST; 0: drops it, so the client retries",
    "net.ipv4.tcp_syncookies": "1: SYN cookies when the SYN queue is full; 2: always; 0: never "
    "(full queue drops SYNs)",
    "net.ipv4.tcp_syn_retries": "how long connect() retries its SYN before ETIMEDOUT "
    "(default 6: about 2 minutes)",
    "net.ipv4.ip_local_port_range": "ephemeral ports for connect(): when all are busy to one "
    "destination, connect() fails with EADDRNOTAVAIL",
}

# /proc/net/stat/nf_conntrack columns that say a connection was hurt (per CPU, summed).
CONNTRACK_TROUBLE = ("drop", "early_drop", "insert_failed", "invalid", "search_restart")


class HostParseError(ValueError):
    """A /proc file not in the kernel's format."""


def sysctl_path(name: str, proc_root: Path = Path("/proc")) -> Path:
    """The /proc/sys file of a dotted sysctl name."""
    return proc_root / "sys" / Path(*name.split("."))


def parse_sysctl(text: str) -> str:
    """A sysctl value, whitespace normalised: "32768\\t60999\\n" -> "32768 60999"."""
    return " ".join(text.split())


def read_sysctls(
    proc_root: Path = Path("/proc"), names: tuple[str, ...] | None = None
) -> dict[str, str]:
    """Current values of *names* (default: SYSCTLS); a sysctl this kernel lacks is left out."""
    out: dict[str, str] = {}
    for name in names or tuple(SYSCTLS):
        try:
            out[name] = parse_sysctl(sysctl_path(name, proc_root).read_text())
        except (FileNotFoundError, PermissionError):
            continue
    return out


@dataclass(frozen=True)
class ConntrackState:
    """The connection-tracking table of one network namespace."""

    count: int
    """Entries now (nf_conntrack_count)."""
    max: int
    """Table size (nf_conntrack_max; global, shared by every namespace)."""
    stats: dict[str, int]
    """/proc/net/stat/nf_conntrack summed over CPUs ("entries" left out: it is the count,
    repeated on every CPU's line). Empty when the file is not readable."""

    @property
    def full(self) -> bool:
        """True when new connections cannot get an entry (new flows are dropped)."""
        return self.max > 0 and self.count >= self.max

    @property
    def fill(self) -> float:
        """count / max (0 when max is 0)."""
        return self.count / self.max if self.max else 0.0


def parse_conntrack_stat(text: str) -> dict[str, int]:
    """Parse /proc/net/stat/nf_conntrack: a header of names, one line of hex per CPU.

    Columns are summed over CPUs, except ``entries`` (nf_conntrack_count printed on
    every line), which is taken once.
    """
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise HostParseError("nf_conntrack stat: empty")
    names, rows = lines[0], lines[1:]
    out = dict.fromkeys(names, 0)
    for row in rows:
        if len(row) != len(names):
            raise HostParseError(f"nf_conntrack stat: {len(names)} names but {len(row)} values")
        try:
            values = [int(v, 16) for v in row]
        except ValueError as e:
            raise HostParseError(f"nf_conntrack stat: {e}") from None
        for name, value in zip(names, values, strict=True):
            out[name] = value if name == "entries" else out[name] + value
    out.pop("entries", None)
    return out


def conntrack_missing(proc_root: Path = Path("/proc")) -> str | None:
    """Why read_conntrack() returns None, or None when conntrack is there."""
    count = proc_root / "sys/net/netfilter/nf_conntrack_count"
    if count.exists():
        return None
    return (
        "connection tracking is not loaded here (no /proc/sys/net/netfilter/"
        "nf_conntrack_count): no conntrack table can fill up"
    )


def read_conntrack(proc_root: Path = Path("/proc")) -> ConntrackState | None:
    """The conntrack table of the caller's namespace; None when nf_conntrack is not loaded
    (conntrack_missing() says so in one line)."""
    base = proc_root / "sys/net/netfilter"
    try:
        count = int((base / "nf_conntrack_count").read_text())
        size = int((base / "nf_conntrack_max").read_text())
    except FileNotFoundError:
        return None
    try:
        stats = parse_conntrack_stat((proc_root / "net/stat/nf_conntrack").read_text())
    except (FileNotFoundError, PermissionError):
        stats = {}
    return ConntrackState(count, size, stats)
