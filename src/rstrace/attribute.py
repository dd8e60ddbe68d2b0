"""Join what only a live host knows to the findings: who, who answered, why.

Pure functions over records the sources gathered during the window (HostView):
kernel events, socket samples with their owners, counter deltas, firewall rule
deltas. The rules (diagnose.py) decided the findings from packets alone; this
module only adds names and reasons, so a capture file and a live host give the
same findings.

Namespaces: tracepoints are global and carry no namespace, and 127.0.0.1 exists
in every namespace. A kernel event is joined to a finding only through a 4-tuple
that this namespace's own capture saw fail (or, for syscall errors, through the
calling process's /proc/PID/ns/net), never through an address alone.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rstrace.diagnose import Verdict
from rstrace.explain import hhmmss
from rstrace.model import ExpectedListener, Finding, KernelEvent, Listener, Process, SockInfo
from rstrace.sources.host import ConntrackState
from rstrace.sources.kernel import CONNECT_ERRORS, FD_ERRORS

Tuple4 = tuple[str, int, str, int]

# Counter deltas worth showing beside each kind (names as sources/counters.py keys them).
KIND_COUNTERS: dict[str, tuple[str, ...]] = {
    "refused": ("Tcp.AttemptFails", "Tcp.OutRsts"),
    "firewall-reject": ("Tcp.AttemptFails",),
    "timeout": ("Tcp.AttemptFails", "TcpExt.TCPSynRetrans", "TcpExt.TCPTimeouts"),
    "listen-overflow": ("TcpExt.ListenOverflows", "TcpExt.ListenDrops", "TcpExt.TCPReqQFullDrop"),
    "half-open": ("TcpExt.EmbryonicRsts", "TcpExt.SyncookiesSent", "TcpExt.TCPReqQFullDrop",
                  "TcpExt.ListenDrops", "TcpExt.TCPSynRetrans"),
    "abort": ("Tcp.EstabResets", "TcpExt.TCPAbortOnData", "TcpExt.TCPAbortOnClose",
              "TcpExt.TCPAbortOnLinger", "TcpExt.TCPAbortOnTimeout", "Tcp.OutRsts"),
    "stale": ("Tcp.OutRsts", "Tcp.EstabResets"),
    "injected": ("Tcp.EstabResets", "TcpExt.TCPChallengeACK"),
    "scan": ("Tcp.OutRsts", "Tcp.AttemptFails"),
    "unreachable": ("Tcp.AttemptFails", "Icmp.InDestUnreachs", "Icmp6.Icmp6InDestUnreachs"),
    "local": (),
}  # fmt: skip


# Errors of connect()/socket()/accept() that mean no packet left (or none could): the
# ones the kernel source traces. ECONNREFUSED, ETIMEDOUT... are the packet rules' job.
LOCAL_ERRNOS = frozenset(CONNECT_ERRORS + FD_ERRORS)


# kfree_skb reasons that corroborate a kind (prefixes). kfree_skb has no addresses, so
# these are host-wide counts: they support a finding, never make one.
DROP_REASONS: dict[str, tuple[str, ...]] = {
    "timeout": ("NETFILTER_DROP", "IP_", "NEIGH_", "NOMEM", "QDISC_"),
    "firewall-reject": ("NETFILTER_DROP",),
    "listen-overflow": ("TCP_LISTEN_OVERFLOW", "TCP_REQQFULLDROP"),
    "half-open": ("TCP_REQQFULLDROP", "TCP_LISTEN_OVERFLOW"),
    "stale": ("TCP_",),
    "injected": ("TCP_",),
}


@dataclass
class ListenerSeen:
    """A listening socket as sampled during the window."""

    listener: Listener
    owners: list[Process]
    first_ts: int
    last_ts: int


@dataclass
class HostView:
    """Everything the window gathered besides packets; filled by investigate.py."""

    netns: str | None = None
    netns_inode: int | None = None
    local_addrs: set[str] = field(default_factory=set)
    sysctls: dict[str, str] = field(default_factory=dict)
    conntrack: ConntrackState | None = None
    """The conntrack table at the end of the window (None: nf_conntrack not loaded)."""
    conntrack_before: ConntrackState | None = None
    counters: dict[str, int] = field(default_factory=dict)
    firewall: list = field(default_factory=list)
    events: list[KernelEvent] = field(default_factory=list)
    tuples: dict[tuple[str, str, int, str], list[tuple[str, int, str, int, int]]] = field(
        default_factory=dict
    )
    final_kind: Callable[[Verdict], str] = lambda v: v.kind
    listeners: dict[tuple[str, int], ListenerSeen] = field(default_factory=dict)
    """(address, port) -> the listener last seen there (kept after it went away)."""
    listening_now: set[tuple[str, int]] = field(default_factory=set)
    sock_owners: dict[Tuple4, list[Process]] = field(default_factory=dict)
    owner_cache: dict[int, list[Process]] = field(default_factory=dict)
    dest_owners: dict[tuple[str, int], list[Process]] = field(default_factory=dict)
    """(remote addr, port) -> owners of a connecting socket to it (first seen)."""
    """Socket inode -> its processes, looked up once per inode."""
    """Owners of non-listening sockets by (local addr, port, remote addr, port)."""

    def sample(self, listeners: Iterable[Listener], socks: Iterable[SockInfo],
               owners: dict[int, list[Process]]) -> None:  # fmt: skip
        """Fold one sample of sock_diag + the /proc fd scan into the view."""
        now = time.time_ns() // 1000
        self.listening_now = set()
        for lst in listeners:
            key = (norm_addr(lst.addr), lst.port)
            self.listening_now.add(key)
            seen = self.listeners.get(key)
            procs = owners.get(lst.inode) or lst.processes
            if seen is None:
                self.listeners[key] = ListenerSeen(lst, procs, now, now)
            else:
                seen.listener, seen.last_ts = lst, now
                seen.owners = procs or seen.owners
        for s in socks:
            procs = owners.get(s.inode) if s.inode else None
            if procs and len(self.sock_owners) < 100_000:
                self.sock_owners[(norm_addr(s.src), s.sport, norm_addr(s.dst), s.dport)] = procs
                self.dest_owners.setdefault((norm_addr(s.dst), s.dport), procs)


@dataclass
class ClientProcess:
    pid: int
    comm: str
    count: int
    """Failed connections of this finding made by this process."""
    process: Process | None
    """Details when the process was still there to look at (psutil)."""


@dataclass
class Attribution:
    """What the host adds to one finding."""

    headline: str
    """One sentence: who, what, why (the issue's 'metrics-push connects to ... and is refused')."""
    clients: list[ClientProcess] = field(default_factory=list)
    server_local: bool = False
    """The server address is one of this host's (namespace's) addresses."""
    listener: ListenerSeen | None = None
    """The listener on the port now (or last seen in the window, see listener_gone)."""
    listener_gone: bool = False
    expected: list[str] = field(default_factory=list)
    """What should listen on the port (systemd units/sockets declaring it)."""
    service: str | None = None
    kernel_reasons: dict[str, int] = field(default_factory=dict)
    """tcp_send_reset / tcp_receive_reset reasons for this finding's 4-tuples."""
    drop_reasons: dict[str, int] = field(default_factory=dict)
    """kfree_skb reasons in the window (host-wide: kfree_skb has no addresses)."""
    counters: dict[str, int] = field(default_factory=dict)
    firewall_rules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def attribute(findings: list[Finding], view: HostView, window_s: float) -> list[Attribution]:
    """One Attribution per finding, same order."""
    by_tuple = _connect_events(view.events)
    resets = _reset_events(view.events)
    drops = Counter(e.reason or "?" for e in view.events if e.event == "kfree_skb")
    out = []
    for f in findings:
        tuples = _finding_tuples(f, view)
        a = Attribution(headline="")
        a.clients = _client_processes(tuples, by_tuple, view)
        if tuples and len(tuples) < f.count:
            # Only a bounded sample of 4-tuples is kept per client address (investigate.py):
            # scale each process's share of the sample to the finding's count.
            for c in a.clients:
                c.count = round(c.count * f.count / len(tuples))
        a.server_local = bool(f.server) and norm_addr(f.server or "") in view.local_addrs
        if f.server and f.ports and a.server_local and f.kind != "scan":
            _server_side(a, f, view)
        reasons: Counter[str] = Counter()
        for t in tuples:
            for key in ((t[0], t[1], t[2], t[3]), (t[2], t[3], t[0], t[1])):
                reasons.update(resets.get(key, ()))
        a.kernel_reasons = dict(reasons.most_common())
        wanted = DROP_REASONS.get(f.kind, ())
        a.drop_reasons = {r: n for r, n in drops.most_common() if r.startswith(wanted)}
        a.counters = {k: view.counters[k] for k in KIND_COUNTERS.get(f.kind, ()) if
                      view.counters.get(k)}  # fmt: skip
        a.firewall_rules = _rules_for(f, view)
        if f.kind == "refused" and a.server_local:
            _host_firewall_reject(f, a, view, window_s)
        _conntrack_note(a, f, view)
        a.headline = headline(f, a, window_s)
        out.append(a)
    return out


def local_findings(view: HostView, window_s: float) -> list[tuple[Finding, Attribution]]:
    """Findings of kind `local`: connect()/socket()/accept() failing before any packet."""
    from rstrace.explain import explain

    groups: dict[tuple[int, str, str, str | None, int | None], list[KernelEvent]] = {}
    for e in view.events:
        if e.errno not in LOCAL_ERRNOS or e.event not in ("connect", "socket", "accept"):
            continue
        if e.event == "connect" and e.family not in (4, 6, None):
            continue  # a unix socket's connect()
        if view.netns_inode is not None and e.netns != view.netns_inode:
            continue  # another namespace's process (the source reads it with the event),
            # or one gone before it could look
        key = (e.pid, e.comm, e.errno, e.daddr, e.dport)
        groups.setdefault(key, []).append(e)
    out = []
    for (pid, comm, errno_name, daddr, dport), evs in groups.items():
        f = Finding(
            kind="local",
            server=daddr,
            ports=[dport] if dport is not None else [],
            count=len(evs),
            rate=len(evs) / max(window_s, 1.0),
            first_ts=min(e.ts for e in evs),
            last_ts=max(e.ts for e in evs),
            clients=[],
            ifaces=[],
            summary="",
            next_steps=[],
            details={
                "errno": {errno_name: len(evs)},
                "syscall": dict(Counter(e.event for e in evs)),
            },
        )
        f.summary, f.next_steps = explain(f, window_s)
        a = Attribution(headline="")
        a.clients = [ClientProcess(pid, comm, len(evs), _process(pid))]
        a.headline = headline(f, a, window_s)
        out.append((f, a))
    return out


# -- joins ----------------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)
def norm_addr(addr: str) -> str:
    """One spelling per address (v4-mapped IPv6 as IPv4), so joins can compare strings."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _state(name: str | None) -> str:
    return (name or "").removeprefix("TCP_")


def _connect_events(events: list[KernelEvent]) -> dict[Tuple4, list[KernelEvent]]:
    """4-tuple -> the CLOSE -> SYN_SENT events of the sockets that used it.

    That transition runs in connect()'s context, so its pid/comm are the caller's;
    but it happens before the kernel picks the source port (tcp_v4_connect() calls
    tcp_set_state() before inet_hash_connect()), so its sport is 0. We join it by
    the socket's kernel address (skaddr) to a later event of the same socket that
    has the whole 4-tuple (SYN_SENT -> CLOSE/ESTABLISHED, receive_reset).
    """
    out: dict[Tuple4, list[KernelEvent]] = {}
    opened: dict[int, KernelEvent] = {}  # skaddr -> its latest CLOSE -> SYN_SENT so far
    for e in sorted(events, key=lambda ev: ev.ts):
        if e.event == "set_state" and _state(e.newstate) == "SYN_SENT":
            if e.sport:  # a kernel that sets the port first: the tuple is here already
                out.setdefault(_key(e), []).append(e)
            elif e.skaddr:
                opened[e.skaddr] = e  # socket memory is reused: the latest one counts
            continue
        if e.sport and e.event in ("set_state", "receive_reset"):
            syn_sent = opened.get(e.skaddr or 0)
            if syn_sent is not None:
                got = out.setdefault(_key(e), [])
                if not got or got[-1] is not syn_sent:
                    got.append(syn_sent)
    return out


def _key(e: KernelEvent) -> Tuple4:
    return (norm_addr(e.saddr or ""), e.sport or 0, norm_addr(e.daddr or ""), e.dport or 0)


def _reset_events(events: list[KernelEvent]) -> dict[Tuple4, list[str]]:
    out: dict[Tuple4, list[str]] = {}
    for e in events:
        if e.event in ("send_reset", "receive_reset"):
            key = (norm_addr(e.saddr or ""), e.sport or 0, norm_addr(e.daddr or ""), e.dport or 0)
            what = "sent" if e.event == "send_reset" else "received"
            why = ", ".join(x for x in (e.reason, e.state and f"in {_state(e.state)}") if x)
            label = f"{what} ({why})" if why else what
            out.setdefault(key, []).append(label)
    return out


def _finding_tuples(f: Finding, view: HostView) -> list[tuple[str, int, str, int, int]]:
    out = []
    for (kind, server, port, client), tuples in view.tuples.items():
        v = Verdict(kind, server, port, client)
        final = view.final_kind(v)
        if final != f.kind:
            continue
        if f.kind == "scan":
            if f.clients and client == f.clients[0]:
                out.extend(tuples)
        elif server == f.server and port in f.ports:
            out.extend(tuples)
    return out


def _client_processes(
    tuples: list[tuple[str, int, str, int, int]],
    by_tuple: dict[Tuple4, list[KernelEvent]],
    view: HostView,
) -> list[ClientProcess]:
    counts: Counter[tuple[int, str]] = Counter()
    for src, sport, dst, dport, ts in tuples:
        key = (norm_addr(src), sport, norm_addr(dst), dport)
        evs = by_tuple.get(key)
        if evs:
            # Port reuse: the connect() nearest in time to the connection's first packet.
            e = min(evs, key=lambda ev: abs(ev.ts - ts))
            counts[(e.pid, e.comm)] += 1
            continue
        # Without kernel events: the owner of that socket, or of a connecting socket
        # of this namespace to the same destination, as sampled during the window.
        procs = view.sock_owners.get(key) or view.dest_owners.get((key[2], key[3]))
        if procs:
            counts[(procs[0].pid, procs[0].name)] += 1
    return [ClientProcess(pid, comm, n, _process(pid)) for (pid, comm), n in counts.most_common()]


def _server_side(a: Attribution, f: Finding, view: HostView) -> None:
    from rstrace.sources.sockets import listeners_for

    port = f.ports[0]
    seen_by_id = {id(s.listener): (key, s) for key, s in view.listeners.items()}
    # The listener a SYN to server:port reaches, as the kernel picks it (exact,
    # wildcard, dual-stack [::]); preferring one that is still there.
    known = [s.listener for s in view.listeners.values()]
    hits = [seen_by_id[id(lst)] for lst in listeners_for(f.server or "", port, known)]
    hits.sort(key=lambda ks: ks[0] not in view.listening_now)
    if hits:
        key, a.listener = hits[0]
        a.listener_gone = key not in view.listening_now
    if a.listener is None or a.listener_gone:
        from rstrace.sources import units

        a.service = units.service_name(port)
        try:
            a.expected = [_expected(x) for x in units.expected_listeners(port)]
        except OSError:
            a.expected = []


def _rules_for(f: Finding, view: HostView) -> list[str]:
    from rstrace.sources.firewall import describe

    if f.kind not in ("timeout", "refused", "firewall-reject", "unreachable"):
        return []
    out = []
    for d in view.firewall:
        if d.rule.dports and not set(d.rule.dports) & set(f.ports):
            continue
        out.append(f"{describe(d.rule)}: {d.packets} packets in the window")
    return out


def _host_firewall_reject(f: Finding, a: Attribution, view: HostView, window_s: float) -> None:
    """The one rule only a live host can apply: a refused port whose resets came from
    a firewall rule, not from TCP.

    On the wire a host firewall's `reject with tcp reset` is identical to the
    kernel's no-socket reset. Live we see two things a capture cannot: the reject
    rule's counter moved for this port, and no TCP socket sent the resets (nft and
    iptables send them from netfilter, which never fires tcp:tcp_send_reset).
    """
    from rstrace.explain import explain

    rejects = [d for d in view.firewall if "tcp reset" in d.rule.verdict
               and (not d.rule.dports or set(d.rule.dports) & set(f.ports))]  # fmt: skip
    sent_by_tcp = any(r.startswith("sent") for r in a.kernel_reasons)
    if not rejects or sent_by_tcp:
        return
    from rstrace.sources.firewall import describe

    f.kind = "firewall-reject"
    f.details["firewall_rule"] = {describe(d.rule): d.packets for d in rejects}
    f.summary, f.next_steps = explain(f, window_s)


def _conntrack_note(a: Attribution, f: Finding, view: HostView) -> None:
    """A full conntrack table drops new connections' SYNs: no packet, no reset, a timeout."""
    ct, before = view.conntrack, view.conntrack_before
    if f.kind != "timeout" or ct is None:
        return
    grew = {k: ct.stats.get(k, 0) - (before.stats.get(k, 0) if before else 0)
            for k in ("drop", "early_drop", "insert_failed")}  # fmt: skip
    grew = {k: n for k, n in grew.items() if n > 0}
    if ct.fill >= 0.95 or grew:
        text = f"conntrack table {ct.count} of {ct.max} entries"
        text += " (full: new connections are dropped)" if ct.full else ""
        if grew:
            text += "; during the window " + ", ".join(f"{k} +{n}" for k, n in grew.items())
        a.notes.append(text)


def _process(pid: int) -> Process | None:
    from rstrace.sources import procinfo

    return procinfo.process_info(pid)


def _expected(x: ExpectedListener) -> str:
    what = f"{x.unit} ({x.directive})"
    return f"{what}, a guess" if x.guess else what


# -- words -----------------------------------------------------------------------


def how_often(rate: float) -> str:
    """2.0 -> 'twice a second'; 0.2 -> 'once every 5 s'."""
    if rate >= 0.95 and abs(rate - round(rate)) < 0.1 and round(rate) <= 3:
        return {1: "once a second", 2: "twice a second", 3: "three times a second"}[round(rate)]
    if rate >= 1:
        return f"{rate:.1f} times a second"
    if rate > 0:
        return f"once every {1 / rate:.0f} s"
    return "once"


def _who(a: Attribution) -> str:
    if not a.clients:
        return ""
    c = a.clients[0]
    bits = [f"pid {c.pid}"]
    p = c.process
    if p is not None and getattr(p, "unit", None):
        bits.append(f"unit {p.unit}")
    if p is not None and getattr(p, "container", None):
        bits.append(f"container {p.container}")
    if len(a.clients) > 1 and len({x.comm for x in a.clients}) == 1:
        pids = ", ".join(str(x.pid) for x in a.clients[:3])
        more = ", ..." if len(a.clients) > 3 else ""
        return f"`{c.comm}` ({len(a.clients)} processes: pids {pids}{more})"
    who = f"`{c.comm}` ({', '.join(bits)})"
    if len(a.clients) > 1:
        who += f" and {len(a.clients) - 1} more process{'es' if len(a.clients) > 2 else ''}"
    return who


def _owner(seen: ListenerSeen) -> str:
    if not seen.owners:
        return "a process we could not see"
    p = seen.owners[0]
    return f"`{p.name}` (pid {p.pid})"


def headline(f: Finding, a: Attribution, window_s: float) -> str:
    """The one sentence a person on call needs first."""
    host = f"[{f.server}]" if f.server and ":" in f.server else (f.server or "?")
    dest = f"{host}:{f.ports[0]}" if len(f.ports) == 1 else f"{host} ({len(f.ports)} ports)"
    more = f" and {len(f.clients) - 2} more" if len(f.clients) > 2 else ""
    who = _who(a) or (", ".join(f.clients[:2]) + more if f.clients else "a client")
    many = len(a.clients) > 1 or (not a.clients and len(f.clients) > 1)

    def v(singular: str) -> str:
        """The verb agreeing with who: several processes or clients take the plural."""
        plural = {"is": "are", "connects": "connect", "gets": "get", "uses": "use",
                  "fails": "fail", "it": "them"}  # fmt: skip
        return plural.get(singular, singular) if many else singular

    often = how_often(f.rate) if f.count > 1 else "once"
    tries = f"{who} {v('connects')} to {dest} {often} and"
    port = f.ports[0] if f.ports else "?"
    if f.kind == "refused":
        if a.listener is not None and a.listener_gone:
            why = (f"nothing listens on {port} now; {_owner(a.listener)} listened there until "
                   f"{hhmmss(a.listener.last_ts)}")  # fmt: skip
        elif a.server_local:
            why = f"nothing listens on {port}"
            if a.expected:
                why += f" ({', '.join(a.expected[:2])} should)"
            elif a.service:
                why += f" (the {a.service} port)"
        else:
            why = f"nothing listens on {port} there"
        return f"{tries} {v('is')} refused: {why}."
    if f.kind == "timeout":
        why = "no answer, the SYNs time out"
        if a.firewall_rules:
            why = f"a firewall drops the SYNs ({a.firewall_rules[0].split(': ')[0]})"
        elif a.notes:
            why = a.notes[0]
        return f"{tries} {v('gets')} no answer: {why}."
    if f.kind == "listen-overflow":
        if a.listener is not None:
            lst = a.listener.listener
            return (f"{tries} {v('is')} not accepted: the accept queue "
                    f"of {_owner(a.listener)} is full ({lst.accept_queue} waiting, backlog "
                    f"{lst.backlog}).")  # fmt: skip
        return f"{tries} {v('is')} not accepted: the accept queue is full."
    if f.kind == "firewall-reject":
        rule = f" ({a.firewall_rules[0].split(': ')[0]})" if a.firewall_rules else ""
        return f"{tries} a firewall rejects {v('it')} with a reset{rule}."
    if f.kind == "unreachable":
        return f"{tries} {v('gets')} ICMP unreachable."
    if f.kind == "abort":
        sent = [r for r in a.kernel_reasons if r.startswith("sent")]
        reason = sent[0] if sent else next(iter(a.kernel_reasons), None)
        return (f"Connections of {who} with {dest} are reset mid-stream {often}"
                + (f" (kernel: {reason})" if reason else "") + ".")  # fmt: skip
    if f.kind == "stale":
        return (f"{who} {v('uses')} connections to {dest} that the other side no longer "
                f"knows ({often}).")  # fmt: skip
    if f.kind == "half-open":
        owner = f" of {_owner(a.listener)}" if a.listener is not None else ""
        return (f"Handshakes to the listener{owner} on {dest} are never completed by "
                f"{', '.join(f.clients[:2])}{' and more' if len(f.clients) > 2 else ''} "
                f"({often}): SYN flood or lost ACKs.")  # fmt: skip
    if f.kind == "scan":
        return f"{f.clients[0] if f.clients else '?'} scans {len(f.ports)} ports ({often})."
    if f.kind == "injected":
        return f"Resets that the peer did not send hit connections with {dest} ({often})."
    if f.kind == "local":
        err = next(iter(f.details.get("errno", {})), "an error")  # type: ignore[call-overload]
        where = f" to {dest}" if f.server else ""
        return f"{who} {v('fails')} to connect{where} {often} before any packet leaves: {err}."
    return f"{f.kind} at {dest} ({often})."
