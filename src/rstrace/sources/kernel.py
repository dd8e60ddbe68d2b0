"""The kernel source: TCP socket events and failing syscalls through tracefs.

``KernelTrace`` owns an ftrace instance (tracefs.Instance), enables only the events
this kernel offers (read from their format files), and turns the binary records of
``per_cpu/cpuN/trace_pipe_raw`` into :class:`~rstrace.model.KernelEvent`.

Why the binary pages and not the text ``trace_pipe``: the text of
``sock:inet_sock_set_state`` has no ``skaddr``, and CLOSE->SYN_SENT (the one event
that runs in connect()'s context and so names the process) carries source port 0,
so only the socket pointer joins it to the later events of that connection.  The
binary records carry every field (IPv6 arrays too, which the ``fields`` option
prints as ``<INVALID-SIZE>``) and cost the kernel no printf; bench/kernel_bench.py
measures both readers.  comm is looked up from pid (``/proc``, then tracefs's
``saved_cmdlines``), which is where the text pipe takes it from too.

Events (all filtered in the kernel, so Python sees few records):

* ``sock:inet_sock_set_state`` (protocol TCP; transitions into/out of SYN_SENT, into
  LISTEN, ESTABLISHED->CLOSE): CLOSE->SYN_SENT runs in connect()'s context: its
  pid/comm name the connecting process; other transitions mostly run in softirq
  context and their comm is whatever task ran.
* ``tcp:tcp_send_reset`` (state, and ``reason`` on kernel >= 6.10),
  ``tcp:tcp_receive_reset`` (sock_cookie).
* ``skb:kfree_skb`` filtered to the drop reasons that explain TCP failures; their
  numbers come from the format file's symbolic table.
* With ``syscalls=True``: connect()/socket()/accept()/accept4() failing with errors
  that mean "no packet ever left" (finding kind ``local``).  connect()'s destination
  comes from the socket's CLOSE->SYN_SENT event in the same thread (tcp_v4_connect
  sets the state before picking a local port, so EADDRNOTAVAIL has it); it is
  unknown (None) when connect() fails before that, e.g. no route.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rstrace.model import KernelEvent
from rstrace.sources import tracefs
from rstrace.sources.tracefs import EventFormat, Instance, PageLayout, TracefsError

#: Drop reasons of skb:kfree_skb worth reporting, besides every TCP_* reason.
# NO_SOCKET is left out: tcp_send_reset says the same with the addresses, and under a
# flood of refused connects it would be one more event per connect to read.
DROP_REASONS = frozenset({"NETFILTER_DROP", "SOCKET_BACKLOG", "IP_RPFILTER"})

#: Syscall errors that mean the connection failed on this host before packets could
#: tell. Refusals, timeouts and resets are left out: packets show them, and the
#: CLOSE->SYN_SENT event already names their process; under a flood of refused
#: connects they would be one more event per connect. EINPROGRESS/EAGAIN are normal.
CONNECT_ERRORS = (
    "EADDRNOTAVAIL", "ENETUNREACH", "EHOSTUNREACH", "EADDRINUSE", "EACCES", "EPERM",
    "ENOBUFS", "ENOMEM",
)  # fmt: skip
FD_ERRORS = ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")

IPPROTO = {6: "tcp", 132: "sctp", 262: "mptcp"}
AF_INET, AF_INET6 = 2, 10
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD

# common_flags bits (kernel/trace/trace.h TRACE_FLAG_*).
_HARDIRQ, _SOFTIRQ = 0x08, 0x10

#: Short name per tracepoint, the fields we need, and the fields whose absence only
#: loses detail (with what is lost).
_SOCK_EVENTS = {
    ("sock", "inet_sock_set_state"): "set_state",
    ("tcp", "tcp_send_reset"): "send_reset",
    ("tcp", "tcp_receive_reset"): "receive_reset",
    ("skb", "kfree_skb"): "kfree_skb",
}
_SYSCALL_EVENTS = {
    ("syscalls", "sys_enter_connect"): "enter_connect",
    ("syscalls", "sys_exit_connect"): "connect",
    ("syscalls", "sys_exit_socket"): "socket",
    ("syscalls", "sys_exit_accept"): "accept",
    ("syscalls", "sys_exit_accept4"): "accept",
}
_REQUIRED = {
    "set_state": ("skaddr", "oldstate", "newstate", "sport", "dport", "family", "saddr",
                  "daddr", "saddr_v6", "daddr_v6"),
    "send_reset": ("skaddr",),
    "receive_reset": ("skaddr", "sport", "dport", "family", "saddr", "daddr"),
    "kfree_skb": ("reason",),
    "enter_connect": ("fd",),
    "connect": ("ret",),
    "socket": ("ret",),
    "accept": ("ret",),
}  # fmt: skip
_WHY = {
    "set_state": "the connecting process (pid/comm at CLOSE->SYN_SENT) is not known",
    "send_reset": "RSTs this host sends are seen without the kernel's reason",
    "receive_reset": "RSTs this host receives are seen only as packets",
    "kfree_skb": "dropped packets are not classified (listen overflow, firewall drop)",
    "enter_connect": "failing connect() calls are not tied to their socket",
    "connect": "connect() failures before any packet (EADDRNOTAVAIL...) are not seen",
    "socket": "socket() failures (EMFILE, ENFILE) are not seen",
    "accept": "accept() failures (EMFILE, ENFILE) are not seen",
}


class KernelUnavailable(RuntimeError):
    """tracefs cannot be used at all; the message says why in one line."""


# --------------------------------------------------------------------------- decoding


def record_struct(fmt: EventFormat) -> tuple[struct.Struct, tuple[str, ...]]:
    """One Struct that unpacks every non-common field of *fmt* at its offset, and the names.

    One unpack_from per record instead of one per field: decoding is most of the
    per-event cost (bench/kernel_bench.py).
    """
    fields = sorted(
        (f for f in fmt.fields.values() if not f.name.startswith("common_")),
        key=lambda f: f.offset,
    )
    parts, names, pos = ["<"], [], 0
    for f in fields:
        if f.offset < pos:
            continue  # overlapping field (a union): keep the first
        if f.offset > pos:
            parts.append(f"{f.offset - pos}x")
        if "[" in f.type or f.size not in (1, 2, 4, 8):
            parts.append(f"{f.size}s")
        else:
            code = {1: "b", 2: "h", 4: "i", 8: "q"}[f.size]
            parts.append(code if f.signed else code.upper())
        names.append(f.name)
        pos = f.offset + f.size
    return struct.Struct("".join(parts)), tuple(names)


def _inet(raw: bytes, family: int) -> str:
    if family == AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return socket.inet_ntop(socket.AF_INET, raw[:4])


_V4_MAPPED = bytes(10) + b"\xff\xff"


def _addresses(v: dict[str, object]) -> tuple[int, str, str]:
    """(IP version, saddr, daddr) of an event with family and v4/v6 address arrays.

    An IPv6 socket talking to an IPv4-mapped address (::ffff:a.b.c.d) sends IPv4
    packets: report it as IPv4, as packets and sock_diag show it, so joins by
    4-tuple match (the v4 arrays hold inet_saddr/inet_daddr for every socket).
    """
    fam = int(v["family"])  # type: ignore[call-overload]
    if fam == AF_INET6 and not bytes(v["daddr_v6"]).startswith(_V4_MAPPED):  # type: ignore[call-overload]
        return 6, _inet(v["saddr_v6"], fam), _inet(v["daddr_v6"], fam)  # type: ignore[arg-type]
    return 4, _inet(v["saddr"], AF_INET), _inet(v["daddr"], AF_INET)  # type: ignore[arg-type]


def _sockaddr(raw: bytes) -> tuple[int | None, str | None, int | None]:
    """(version, address, port) of a struct sockaddr_in/_in6 copied into a tracepoint."""
    family = int.from_bytes(raw[0:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if family == AF_INET:
        return 4, _inet(raw[4:8], AF_INET), port
    if family == AF_INET6 and len(raw) >= 24:
        if raw[8:20] == _V4_MAPPED:
            return 4, _inet(raw[20:24], AF_INET), port
        return 6, _inet(raw[8:24], AF_INET6), port
    return None, None, None


def _strip_tcp(name: str | None) -> str | None:
    return name[4:] if name and name.startswith("TCP_") else name


def _errno_name(ret: int) -> str | None:
    return errno_mod.errorcode.get(-ret) if ret < 0 else None


@dataclass(slots=True)
class Raw:
    """One record before task lookup: what the ring buffer holds."""

    ts_ns: int
    cpu: int
    kind: str
    tid: int
    flags: int
    values: dict[str, object]


class Decoder:
    """Turns raw records of the enabled events into dicts of field values."""

    def __init__(self, formats: dict[str, EventFormat], state_names: dict[int, str]) -> None:
        self.state_names = state_names
        self._by_id: dict[int, tuple[str, struct.Struct, tuple[str, ...]]] = {}
        self.reason_names: dict[str, dict[int, str]] = {}
        for kind, fmt in formats.items():
            self._by_id[fmt.id] = (kind, *record_struct(fmt))
            self.reason_names[kind] = fmt.symbols.get("reason", {})

    def decode(self, ts_ns: int, cpu: int, rec: bytes) -> Raw | None:
        if len(rec) < 8:
            return None
        etype, flags, _pc, tid = struct.unpack_from("<HBBi", rec, 0)
        entry = self._by_id.get(etype)
        if entry is None:
            return None
        kind, st, names = entry
        try:
            values = dict(zip(names, st.unpack_from(rec), strict=True))
        except struct.error:
            return None  # truncated record
        return Raw(ts_ns, cpu, kind, tid, flags, values)

    def event(self, raw: Raw, ts: int, pid: int, comm: str) -> KernelEvent | None:
        """The KernelEvent of a decoded socket record (syscalls are paired elsewhere)."""
        v = raw.values
        ctx = "irq" if raw.flags & _HARDIRQ else "softirq" if raw.flags & _SOFTIRQ else "process"
        ev = KernelEvent(ts, raw.kind, pid, raw.tid, comm, ctx, raw.cpu)
        if raw.kind in ("set_state", "receive_reset"):
            ev.family, ev.saddr, ev.daddr = _addresses(v)
            ev.sport, ev.dport = v["sport"], v["dport"]  # type: ignore[assignment]
            ev.skaddr = v["skaddr"]  # type: ignore[assignment]
            ev.protocol = "tcp"
            if raw.kind == "set_state":
                ev.protocol = IPPROTO.get(v.get("protocol", 6))  # type: ignore[arg-type]
                ev.oldstate = _strip_tcp(self.state_names.get(v["oldstate"]))  # type: ignore[arg-type]
                ev.newstate = _strip_tcp(self.state_names.get(v["newstate"]))  # type: ignore[arg-type]
            else:
                ev.sock_cookie = v.get("sock_cookie")  # type: ignore[assignment]
        elif raw.kind == "send_reset":
            self._send_reset(ev, v)
        elif raw.kind == "kfree_skb":
            ev.reason = self.reason_names["kfree_skb"].get(v["reason"])  # type: ignore[arg-type]
            proto = v.get("protocol")
            ev.family = 4 if proto == ETH_P_IP else 6 if proto == ETH_P_IPV6 else None
            ev.skaddr = v.get("rx_sk") or None  # type: ignore[assignment]
        else:
            return None
        return ev

    def _send_reset(self, ev: KernelEvent, v: dict[str, object]) -> None:
        ev.protocol = "tcp"
        ev.skaddr = v["skaddr"] or None  # type: ignore[assignment]
        state = v.get("state")
        ev.state = _strip_tcp(self.state_names.get(state)) if state else None  # type: ignore[arg-type]
        if "reason" in v:
            ev.reason = self.reason_names["send_reset"].get(v["reason"])  # type: ignore[arg-type]
        if "sport" in v:  # kernels before 6.10: separate port/address fields
            ev.family, ev.saddr, ev.daddr = _addresses({"family": AF_INET, **v})
            ev.sport, ev.dport = v["sport"], v["dport"]  # type: ignore[assignment]
        else:  # 6.10+: two struct sockaddr copies (src = the side sending the RST)
            ev.family, ev.saddr, ev.sport = _sockaddr(v["saddr"])  # type: ignore[arg-type]
            _, ev.daddr, ev.dport = _sockaddr(v["daddr"])  # type: ignore[arg-type]


class Assembler:
    """Decoded records -> KernelEvents: task names, epoch time, syscall pairing by thread.

    connect()'s exit has only ``ret``: its socket (fd) comes from the same thread's
    sys_enter_connect, its destination from the CLOSE->SYN_SENT that connect() made
    in between.  Pure apart from *lookup* (tid -> pid, comm), so it runs on fixtures.
    """

    def __init__(
        self,
        decoder: Decoder,
        offset_ns: int,
        lookup: Callable[[int], tuple[int, str]],
        netns: Callable[[int], int | None] = lambda tid: None,
    ) -> None:
        self.decoder = decoder
        self.offset_ns = offset_ns
        self.lookup = lookup
        self.netns = netns
        self._pending: dict[int, dict[str, object]] = {}

    def feed(self, raws: list[Raw]) -> list[KernelEvent]:
        """KernelEvents of *raws* (sorted by time), keeping syscall state across calls."""
        events: list[KernelEvent] = []
        for raw in raws:
            ts = (raw.ts_ns + self.offset_ns) // 1000
            pid, comm = self.lookup(raw.tid)
            if raw.kind == "enter_connect":
                self._pending[raw.tid] = {"fd": raw.values["fd"]}
                continue
            if raw.kind in ("connect", "socket", "accept"):
                ev = self._syscall(raw, ts, pid, comm)
            else:
                ev = self.decoder.event(raw, ts, pid, comm)  # type: ignore[assignment]
                if ev is None:
                    continue
            if ev.context == "process" and pid:
                ev.netns = self.netns(raw.tid)
            if raw.kind in ("connect", "socket", "accept"):
                events.append(ev)
                continue
            pend = self._pending.get(raw.tid)
            if (
                pend is not None
                and ev.event == "set_state"
                and ev.context == "process"
                and (ev.oldstate, ev.newstate) == ("CLOSE", "SYN_SENT")
            ):
                pend["dest"] = (ev.family, ev.daddr, ev.dport)
            events.append(ev)
        if len(self._pending) > 4096:  # successful connects leave entries: bound them
            for tid in list(self._pending)[:2048]:
                del self._pending[tid]
        return events

    def _syscall(self, raw: Raw, ts: int, pid: int, comm: str) -> KernelEvent:
        ret = int(raw.values["ret"])  # type: ignore[call-overload]
        ev = KernelEvent(ts, raw.kind, pid, raw.tid, comm, "process", raw.cpu)
        ev.ret, ev.errno = ret, _errno_name(ret)
        if raw.kind == "connect":
            pend = self._pending.pop(raw.tid, None) or {}
            ev.fd = pend.get("fd")  # type: ignore[assignment]
            dest = pend.get("dest")
            if dest:
                ev.family, ev.daddr, ev.dport = dest  # type: ignore[misc]
                ev.protocol = "tcp"
        return ev


# --------------------------------------------------------------------------- planning


@dataclass(slots=True)
class Plan:
    """What to enable on this kernel: formats, kernel filters, and what is missing."""

    formats: dict[str, EventFormat]
    """Short kind -> format (enter_connect and the four exits share kinds as listed)."""
    paths: dict[str, list[str]]
    """Short kind -> event directories (relative to events/)."""
    filters: dict[str, str]
    """Event directory -> filter expression."""
    state_names: dict[int, str]
    missing: list[str]


def plan(read_format: Callable[[str, str], str | None], *, syscalls: bool) -> Plan:
    """Decide what to enable from the format files (``read_format(system, event)``).

    Pure: the format reader is the only I/O, so this runs on recorded fixtures.
    """
    formats: dict[str, EventFormat] = {}
    paths: dict[str, list[str]] = {}
    filters: dict[str, str] = {}
    missing: list[str] = []
    wanted = dict(_SOCK_EVENTS)
    if syscalls:
        wanted.update(_SYSCALL_EVENTS)
    for (system, name), kind in wanted.items():
        text = read_format(system, name)
        if text is None:
            missing.append(f"{system}:{name}: not in this kernel; {_WHY[kind]}")
            continue
        fmt = tracefs.parse_format(text, system)
        lacking = [f for f in _REQUIRED[kind] if f not in fmt.fields]
        if kind == "send_reset" and "saddr" not in fmt.fields and "sport" not in fmt.fields:
            lacking.append("saddr")
        if lacking:
            missing.append(
                f"{system}:{name}: no field {', '.join(lacking)} in this kernel; {_WHY[kind]}"
            )
            continue
        if kind == "send_reset" and "reason" not in fmt.fields:
            missing.append(
                f"{system}:{name}: no field reason (kernel < 6.10); "
                "RSTs this host sends are seen without the kernel's reason"
            )
        formats[kind] = fmt
        paths.setdefault(kind, []).append(f"{system}/{name}")
        flt = _filter(kind, fmt, missing)
        if flt:
            filters[f"{system}/{name}"] = flt
    state_names = formats["set_state"].symbols.get("oldstate", {}) if "set_state" in formats else {}
    if not state_names:
        # The TCP states are UAPI (include/net/tcp_states.h), unlike the reason enums.
        state_names = {1: "TCP_ESTABLISHED", 2: "TCP_SYN_SENT", 3: "TCP_SYN_RECV",
                       4: "TCP_FIN_WAIT1", 5: "TCP_FIN_WAIT2", 6: "TCP_TIME_WAIT",
                       7: "TCP_CLOSE", 8: "TCP_CLOSE_WAIT", 9: "TCP_LAST_ACK", 10: "TCP_LISTEN",
                       11: "TCP_CLOSING", 12: "TCP_NEW_SYN_RECV"}  # fmt: skip
    if syscalls and "connect" in formats:
        missing.append(
            "connect(): destination from the socket's CLOSE->SYN_SENT event only "
            "(no event probe); unknown when connect() fails before it (no route)"
        )
    return Plan(formats, paths, filters, state_names, missing)


def _set_state_filter(fmt: EventFormat) -> str | None:
    """TCP only, and only the transitions a failure shows in: into or out of SYN_SENT
    (who connects; how it ended), out of LISTEN (a listener's socket pointer, which
    kfree_skb names as rx_sk), and ESTABLISHED->CLOSE (reset by the peer).  A normal
    connection's other ~6 transitions on both ends would triple the events to read."""
    states = {_strip_tcp(n): v for v, n in fmt.symbols.get("newstate", {}).items()}
    terms = []
    if "protocol" in fmt.fields:
        terms.append("protocol == 6")
    if {"SYN_SENT", "LISTEN", "ESTABLISHED", "CLOSE"} <= states.keys():
        syn, lis = states["SYN_SENT"], states["LISTEN"]
        est, close = states["ESTABLISHED"], states["CLOSE"]
        terms.append(
            f"(oldstate == {syn} || newstate == {syn} || newstate == {lis} || "
            f"(oldstate == {est} && newstate == {close}))"
        )
    return " && ".join(terms) or None


def _filter(kind: str, fmt: EventFormat, missing: list[str]) -> str | None:
    """The kernel-side filter for one event (ftrace filter syntax)."""
    if kind == "set_state":
        return _set_state_filter(fmt)
    if kind == "enter_connect" and "addrlen" in fmt.fields:
        return "addrlen == 16 || addrlen == 28"  # sockaddr_in / sockaddr_in6 only
    if kind == "kfree_skb":
        table = fmt.symbols.get("reason", {})
        if not table:
            missing.append(f"skb:kfree_skb: no reason table in its format; {_WHY[kind]}")
            return "reason == 0xffffffff"  # keep it quiet rather than flood
        for want in ("TCP_LISTEN_OVERFLOW", "NETFILTER_DROP", "NO_SOCKET"):
            if want not in table.values():
                missing.append(f"skb:kfree_skb: no drop reason {want} in this kernel")
        keep = sorted(v for v, n in table.items() if n in DROP_REASONS or n.startswith("TCP_"))
        return " || ".join(f"reason == {v}" for v in keep)
    if kind in ("connect", "socket", "accept"):
        names = CONNECT_ERRORS if kind == "connect" else FD_ERRORS
        codes = sorted({getattr(errno_mod, n) for n in names})
        return " || ".join(f"ret == -{c}" for c in codes)
    return None


# --------------------------------------------------------------------------- tasks


class Tasks:
    """tid -> (pid, comm), from /proc while the task lives, else tracefs's saved tables."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[int, tuple[int, str]] = {}
        self._netns: dict[int, int | None] = {}
        self._saved: tuple[dict[int, str], dict[int, int]] | None = None

    def reset(self) -> None:
        """Forget lookups (tids are reused): called once per poll."""
        self._cache.clear()
        self._netns.clear()
        self._saved = None

    def _saved_tables(self) -> tuple[dict[int, str], dict[int, int]]:
        if self._saved is None:
            comms: dict[int, str] = {}
            tgids: dict[int, int] = {}
            with contextlib.suppress(OSError):
                for line in (self.root / "saved_cmdlines").read_text().splitlines():
                    tid, _, comm = line.partition(" ")
                    if tid.isdigit():
                        comms[int(tid)] = comm
            with contextlib.suppress(OSError):
                for line in (self.root / "saved_tgids").read_text().splitlines():
                    tid, _, tgid = line.partition(" ")
                    if tid.isdigit() and tgid.isdigit():
                        tgids[int(tid)] = int(tgid)
            self._saved = (comms, tgids)
        return self._saved

    def netns(self, tid: int) -> int | None:
        """Network namespace inode of a running task, or None (gone, or not ours to see)."""
        if tid not in self._netns:
            try:
                self._netns[tid] = os.stat(f"/proc/{tid}/ns/net").st_ino
            except OSError:
                self._netns[tid] = None
        return self._netns[tid]

    def lookup(self, tid: int) -> tuple[int, str]:
        if tid == 0:
            return 0, "swapper"
        hit = self._cache.get(tid)
        if hit is None:
            pid, comm = None, None
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{tid}/status").read_text().splitlines():
                    if line.startswith("Name:"):
                        comm = line[5:].strip()
                    elif line.startswith("Tgid:"):
                        pid = int(line[5:])
                        break
            if pid is None or comm is None:
                comms, tgids = self._saved_tables()
                pid = pid or tgids.get(tid, tid)
                comm = comm or comms.get(tid, "<...>")
            hit = self._cache[tid] = (pid, comm)
        return hit


# --------------------------------------------------------------------------- the trace


class KernelTrace:
    """Kernel events for diagnose: a context manager with a non-blocking :meth:`poll`.

    ``KernelTrace(syscalls=True)`` also traces failing connect()/socket()/accept():
    this makes every syscall on the host a little slower (bench/kernel_bench.py), so
    turn it on only for diagnose's window.

    Attributes: ``missing`` (one line per event or field this kernel lacks and what
    is lost), ``notes`` (what we did: mounted tracefs, removed stale instances),
    ``fds`` (non-blocking per-CPU fds, readable when :meth:`poll` has events: put
    them in a select()/poll() loop beside the capture handles).
    """

    def __init__(self, *, syscalls: bool = False, buffer_kb: int | None = None) -> None:
        self.syscalls = syscalls
        self.missing: list[str] = []
        self.notes: list[str] = []
        """What we did to the system (mounted tracefs, removed stale instances)."""
        try:
            self.root, note = tracefs.find_tracefs()
        except TracefsError as exc:
            raise KernelUnavailable(f"kernel events unavailable: {exc}") from None
        if note:
            self.notes.append(note)
        stale = tracefs.remove_stale_instances(self.root)
        if stale:
            self.notes.append(f"removed stale tracefs instances of dead runs: {', '.join(stale)}")
        self.plan = plan(self._read_format, syscalls=syscalls)
        self.missing = list(self.plan.missing)
        if "set_state" not in self.plan.formats and "send_reset" not in self.plan.formats:
            raise KernelUnavailable(
                "kernel events unavailable: this kernel has no TCP tracepoints "
                "(sock:inet_sock_set_state, tcp:tcp_send_reset)"
            )
        try:
            layout = tracefs.parse_header_page((self.root / "events/header_page").read_text())
            self.instance = Instance(self.root)
        except (OSError, ValueError, TracefsError) as exc:
            raise KernelUnavailable(f"kernel events unavailable: {exc}") from None
        if buffer_kb is None:
            # 4 MB per CPU holds ~50k events (a second of a 10k/s failure flood); cap
            # the total at 64 MB on many-CPU hosts.
            buffer_kb = max(1024, min(4096, 65536 // (os.cpu_count() or 1)))
        try:
            self._setup(buffer_kb)
            self._layout: PageLayout = layout
            self._decoder = Decoder(self.plan.formats, self.plan.state_names)
            self._tasks = Tasks(self.root)
            self._assembler = Assembler(
                self._decoder, self._offset_ns, self._tasks.lookup, self._tasks.netns
            )
            self._page = self._page_size()
            self.fds = self.instance.open_raw()
            self._cpus = self.instance.cpus()
        except OSError as exc:
            self.instance.close()
            raise KernelUnavailable(
                f"kernel events unavailable: cannot configure {self.instance.path}: {exc}"
            ) from None

    def _page_size(self) -> int:
        """Bytes per ring-buffer page: trace_pipe_raw reads must ask for a whole one."""
        try:
            return int(self.instance.read("buffer_subbuf_size_kb")) * 1024
        except (OSError, ValueError):  # before 6.8 the sub-buffer is one system page
            return os.sysconf("SC_PAGE_SIZE")

    def _read_format(self, system: str, name: str) -> str | None:
        try:
            return (self.root / "events" / system / name / "format").read_text()
        except OSError:
            return None

    def _setup(self, buffer_kb: int) -> None:
        inst = self.instance
        clocks = inst.read("trace_clock")
        if "mono" not in clocks.replace("[", " ").replace("]", " ").split():
            raise OSError("trace clock 'mono' is not offered")
        inst.write("trace_clock", "mono")
        with contextlib.suppress(OSError):
            inst.write("buffer_size_kb", str(buffer_kb))
        with contextlib.suppress(OSError):
            inst.write("buffer_percent", "0")  # wake poll() on the first event
        with contextlib.suppress(OSError):
            inst.write("options/record-tgid", "1")  # fills saved_tgids for dead tasks
        for kind, dirs in list(self.plan.paths.items()):
            for d in list(dirs):
                try:
                    if d in self.plan.filters:
                        inst.write(f"events/{d}/filter", self.plan.filters[d])
                    inst.write(f"events/{d}/enable", "1")
                except OSError as exc:  # a filter this kernel rejects, a locked event
                    self.missing.append(f"{d.replace('/', ':')}: cannot enable ({exc.strerror})")
                    dirs.remove(d)
            if not dirs:
                del self.plan.paths[kind]
                del self.plan.formats[kind]
        # Epoch offset of CLOCK_MONOTONIC, from the tightest of a few samples.
        best = None
        for _ in range(5):
            a = time.monotonic_ns()
            wall = time.time_ns()
            b = time.monotonic_ns()
            if best is None or b - a < best[0]:
                best = (b - a, wall - (a + b) // 2)
        assert best is not None
        self._offset_ns = best[1]
        inst.write("tracing_on", "1")

    # ---------------------------------------------------------------- reading

    def _read_pages(self) -> list[Raw]:
        out: list[Raw] = []
        for cpu, fd in zip(self._cpus, self.fds, strict=False):
            for _ in range(4096):  # bounded: at most this many pages per CPU per poll
                try:
                    page = os.read(fd, self._page)
                except BlockingIOError:
                    break
                except InterruptedError:
                    continue
                if not page:
                    break
                for ts_ns, rec in tracefs.iter_page(page, self._layout):
                    raw = self._decoder.decode(ts_ns, cpu, rec)
                    if raw is not None:
                        out.append(raw)
        out.sort(key=lambda r: r.ts_ns)
        return out

    def poll(self) -> list[KernelEvent]:
        """Events recorded since the last call, oldest first; never blocks."""
        self._tasks.reset()
        return self._assembler.feed(self._read_pages())

    def lost(self) -> int:
        """Events the kernel could not hand us (buffer overrun or full), all CPUs."""
        return self.instance.lost()

    def close(self) -> None:
        """Stop tracing and remove the instance (idempotent)."""
        self.instance.close()

    def __enter__(self) -> KernelTrace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
