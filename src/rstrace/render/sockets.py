"""`rstrace sockets` as text: listeners like `ss -ltnp`, plus queue, unit and container."""

from __future__ import annotations

from typing import TextIO

from ..model import ExpectedListener, Listener, Process, SockInfo


def endpoint(addr: str, port: int) -> str:
    """addr:port, with brackets around an IPv6 address."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def process_line(p: Process) -> str:
    """`name (pid N, user U, unit X, container Y)`: what is known of a process."""
    facts = [f"pid {p.pid}"]
    if p.user or p.uid is not None:
        facts.append(f"user {p.user or p.uid}")
    if p.unit:
        facts.append(f"unit {p.unit}")
    if p.container:
        facts.append(f"container {p.container}")
    return f"{p.name} ({', '.join(facts)})"


def _owners(procs: list[Process]) -> str:
    if not procs:
        return "-"
    first = process_line(procs[0])
    return first if len(procs) == 1 else f"{first} +{len(procs) - 1} more"


def _queue(lst: Listener) -> str:
    if lst.backlog is None:
        return f"{lst.accept_queue}/?"
    full = "  FULL" if lst.accept_queue > lst.backlog else ""
    return f"{lst.accept_queue}/{lst.backlog}{full}"


def render_listeners(listeners: list[Listener], out: TextIO) -> None:
    """One line per listener: address, accept queue/backlog, owner."""
    rows = [(endpoint(x.addr, x.port), _queue(x), _owners(x.processes)) for x in listeners]
    w0 = max([len("LISTEN"), *(len(r[0]) for r in rows)])
    w1 = max([len("QUEUE/BACKLOG"), *(len(r[1]) for r in rows)])
    out.write(f"{'LISTEN':<{w0}}  {'QUEUE/BACKLOG':<{w1}}  PROCESS\n")
    for a, q, p in rows:
        out.write(f"{a:<{w0}}  {q:<{w1}}  {p}\n")


def render_sockets(socks: list[SockInfo], owners: dict[int, list[Process]], out: TextIO) -> None:
    """One line per socket: state, local and remote end, owner."""
    rows = [
        (
            s.state,
            endpoint(s.src, s.sport),
            "*" if s.state == "LISTEN" else endpoint(s.dst, s.dport),
            owners.get(s.inode, []),
        )
        for s in socks
    ]
    w = [
        max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(("STATE", "LOCAL", "PEER"))
    ]
    out.write(f"{'STATE':<{w[0]}}  {'LOCAL':<{w[1]}}  {'PEER':<{w[2]}}  PROCESS\n")
    for st, a, b, procs in rows:
        out.write(f"{st:<{w[0]}}  {a:<{w[1]}}  {b:<{w[2]}}  {_owners(procs)}\n")


def render_port(
    port: int,
    listeners: list[Listener],
    expected: list[ExpectedListener],
    service: str | None,
    out: TextIO,
) -> None:
    """Who listens on *port*, and if nobody: what the port is and who should listen."""
    known = f" ({service} in /etc/services)" if service else ""
    if listeners:
        out.write(f"TCP port {port}{known}:\n")
        render_listeners(listeners, out)
    else:
        out.write(f"nothing listens on TCP port {port}{known}\n")
    for e in expected:
        if e.guess:
            out.write(f"maybe (systemd): {e.unit} says {e.directive}  [{e.path}]\n")
        else:
            starts = f", starts {e.service}" if e.service else ""
            out.write(f"should listen (systemd): {e.unit}: {e.directive}{starts}  [{e.path}]\n")
    if not listeners and not expected:
        out.write("no systemd unit declares this port\n")
