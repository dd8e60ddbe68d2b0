"""TCP sockets of the current network namespace, and the listeners with their queues.

Read with netlink sock_diag (sockdiag.py), the mechanism of ``ss``: it gives a
listener's accept-queue length (idiag_rqueue) and backlog (idiag_wqueue), and the socket
cookie that tcp tracepoints carry. /proc/net/tcp{,6} is the fallback when sock_diag is
missing (no CONFIG_INET_DIAG, or the inet_diag module not loaded): it has the 4-tuple,
state, inode and accept-queue length, but neither the backlog nor the cookie.

All of this is per network namespace: call ``rstrace.sources.netns.enter(name)`` first to
look into another one. Socket inodes, and so owners_by_inode(), are host-wide.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from collections.abc import Iterable

from ..model import Listener, SockInfo
from .procinfo import owners_by_inode, process_info
from .sockdiag import dump
from .units import expected_listeners, service_name

__all__ = [
    "expected_listeners",
    "list_listeners",
    "listeners_for",
    "owners_by_inode",
    "parse_proc_net_tcp",
    "process_info",
    "service_name",
    "tcp_sockets",
]

# include/net/tcp_states.h; NEW_SYN_RECV is a request socket, which users know as SYN_RECV.
STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "SYN_RECV",
    13: "BOUND_INACTIVE",
}
_ALL_STATES = (1 << 14) - 1


def _state_mask(states: Iterable[str] | None) -> int:
    if states is None:
        return _ALL_STATES
    wanted = set(states)
    unknown = wanted - set(STATES.values())
    if unknown:
        raise ValueError(f"unknown TCP state(s): {', '.join(sorted(unknown))}")
    return sum(1 << n for n, name in STATES.items() if name in wanted)


def _ntop(raw: bytes) -> str:
    return _unmap(socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw))


def _diag(mask: int) -> list[SockInfo] | None:
    """Sockets from sock_diag; None when this kernel does not offer it."""
    out: list[SockInfo] = []
    for family, version in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
        try:
            records = dump(family, mask)
        except OSError as e:
            if version == 6 and e.errno == errno.ENOENT:
                continue  # IPv6 off (no inet6_diag): there are no IPv6 sockets
            return None  # no NETLINK_SOCK_DIAG, or no inet_diag/tcp_diag
        for _fam, st, src, sport, dst, dport, cookie, rq, wq, uid, inode, v6only in records:
            out.append(
                SockInfo(version, STATES.get(st, str(st)), _ntop(src), sport, _ntop(dst), dport,
                         inode, uid, cookie, rq, wq, v6only)
            )  # fmt: skip
    return out


def _unmap(addr: str) -> str:
    # An IPv6 socket talking IPv4 shows ::ffff:a.b.c.d; packets and tracepoints show a.b.c.d.
    return addr[7:] if addr.startswith("::ffff:") and "." in addr else addr


def _addr(hexaddr: str) -> str:
    # The kernel prints each 32-bit word of the address in host byte order (%08X).
    raw = b"".join(
        int(hexaddr[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(hexaddr), 8)
    )
    ip = ipaddress.ip_address(raw)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


def parse_proc_net_tcp(text: str, version: int) -> list[SockInfo]:
    """Sockets from the text of /proc/net/tcp (version 4) or /proc/net/tcp6 (6).

    IPv4-mapped addresses of IPv6 sockets are given as plain IPv4 (as sock_diag's are).

    Columns (net/ipv4/tcp_ipv4.c get_tcp4_sock): sl local rem st tx_queue:rx_queue tr:when
    retrnsmt uid timeout inode ... For a listener rx_queue is the accept-queue length;
    the backlog is not printed (None).
    """
    out: list[SockInfo] = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        local, remote = f[1].split(":"), f[2].split(":")
        txq, rxq = (int(x, 16) for x in f[4].split(":"))
        state = int(f[3], 16)
        out.append(
            SockInfo(
                version=version,
                state=STATES.get(state, str(state)),
                src=_addr(local[0]),
                sport=int(local[1], 16),
                dst=_addr(remote[0]),
                dport=int(remote[1], 16),
                inode=int(f[9]),
                uid=int(f[7]),
                cookie=None,
                rqueue=rxq,
                wqueue=None if state == 10 else txq,
            )
        )
    return out


def _proc_net(mask: int) -> list[SockInfo]:
    out: list[SockInfo] = []
    for name, version in (("tcp", 4), ("tcp6", 6)):
        try:
            with open(f"/proc/net/{name}", encoding="ascii") as f:
                text = f.read()
        except OSError:  # tcp6 is absent when IPv6 is off
            continue
        out += [s for s in parse_proc_net_tcp(text, version) if mask & (1 << _number(s.state))]
    return out


def _number(state: str) -> int:
    return next((n for n, name in STATES.items() if name == state), 0)


def tcp_sockets(states: Iterable[str] | None = None) -> list[SockInfo]:
    """TCP sockets (IPv4 and IPv6) of the current network namespace, optionally by state.

    *states* are names from STATES (e.g. ``["LISTEN"]``, ``["SYN_SENT"]``).
    """
    mask = _state_mask(states)
    found = _diag(mask)
    return _proc_net(mask) if found is None else found


def list_listeners(*, owners: bool = True) -> list[Listener]:
    """Listening TCP sockets with accept-queue length, backlog and (if *owners*) processes."""
    socks = tcp_sockets(["LISTEN"])
    who = owners_by_inode(inodes={s.inode for s in socks}) if owners else {}
    return [
        Listener(
            version=s.version,
            addr=s.src,
            port=s.sport,
            inode=s.inode,
            uid=s.uid,
            cookie=s.cookie,
            accept_queue=s.rqueue,
            backlog=s.wqueue,
            processes=who.get(s.inode, []),
            v6only=s.v6only,
        )
        for s in sorted(socks, key=lambda s: (s.sport, s.version, s.src))
    ]


def listeners_for(addr: str, port: int, listeners: Iterable[Listener]) -> list[Listener]:
    """The listeners a SYN to *addr*:*port* would reach, as the kernel picks them.

    An exact address, the wildcard of its family (0.0.0.0 / ::), or, for IPv4, a [::]
    listener without IPV6_V6ONLY (unknown from /proc/net/tcp6: Linux's default is
    dual-stack). Most specific first; empty when nothing would take it.
    """
    ip = ipaddress.ip_address(addr)
    exact, wild, dual = [], [], []
    for lst in listeners:
        if lst.port != port:
            continue
        if ipaddress.ip_address(lst.addr) == ip:
            exact.append(lst)
        elif lst.version == ip.version and lst.addr in ("0.0.0.0", "::"):
            wild.append(lst)
        elif ip.version == 4 and lst.addr == "::" and lst.v6only is not True:
            dual.append(lst)
    return exact + wild + dual
