"""The live window: counters, packets, kernel events and sockets together -> findings.

Only wiring and bookkeeping: packets go through the same tracker and rules as a
capture file (track.py, diagnose.py); what only a live host knows (processes,
listeners, kernel reasons, counter deltas, firewall rules) is joined to the
findings afterwards by attribute.py. Every source is optional: when one cannot
run (not root, no tracefs, no nft) the window still runs with the others and
`missing` says in one line each what could not be seen.
"""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

from rstrace.attribute import Attribution, HostView, attribute, norm_addr
from rstrace.diagnose import Diagnoser, Verdict, build_findings
from rstrace.model import Connection, Finding, KernelEvent
from rstrace.sources import counters as counters_src
from rstrace.sources import firewall, host, procinfo, sockets
from rstrace.sources import netns as netns_src
from rstrace.sources.bpf import control_filter
from rstrace.sources.decode import DecodeStats, decode_frame
from rstrace.track import ConnectionTable

POLL_S = 0.1
"""How long one poll of the capture handles waits for packets."""
SOCKETS_EVERY_S = 1.0
"""How often listeners and connecting sockets are sampled (sock_diag + a /proc scan)."""
SNAPLEN = 320
"""Bytes kept per packet: the headers of a control packet (link + IPv6 with extension
headers + TCP with options, or ICMP with its quote). A small snaplen also keeps libpcap's
TPACKET_V3 ring in small blocks: with the default 262144 a 2 MB ring has only 4 blocks,
and a reader busy for 40 ms loses packets."""
MAX_TUPLES_PER_KEY = 2000
"""Failed 4-tuples remembered per (kind, server, port), to join kernel events and owners."""


@dataclass
class Investigation:
    """What one diagnose window saw."""

    findings: list[Finding]
    attributions: list[Attribution]
    """One per finding, same order."""
    window_s: float
    start_ts: int
    end_ts: int
    connections: int
    failed: int
    series: dict[str, dict[int, int]]
    counters: dict[str, int]
    """Counter deltas over the window (name -> increase), failure-related ones only."""
    netns: str | None
    interfaces: list[str]
    packets: int
    """Packets libpcap delivered (after the BPF filter)."""
    dropped: int
    """Packets the kernel dropped before libpcap read them (pcap stats, all handles; on lo
    the kernel counts both copies of a packet, so up to twice the packets lost)."""
    kernel_events: int
    kernel_lost: int
    missing: list[str] = field(default_factory=list)
    """One line per source or fact that could not be seen, and why."""
    warnings: list[str] = field(default_factory=list)


class _Tuples:
    """Failed connections' 4-tuples per verdict key, bounded, for the joins."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str, int, str], list[tuple[str, int, str, int, int]]] = {}

    def add(self, conn: Connection, v: Verdict) -> None:
        key = (v.kind, v.server, v.port, v.client)
        got = self.by_key.setdefault(key, [])
        if len(got) < MAX_TUPLES_PER_KEY:
            got.append((conn.orig_h, conn.orig_p, conn.resp_h, conn.resp_p, conn.ts))


def investigate(
    duration_s: float,
    *,
    interfaces: list[str] | None = None,
    netns: str | None = None,
    kernel: bool = True,
    syscalls: bool = True,
    capture: bool = True,
    progress: Callable[[float, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_ready: Callable[[list[str], bool], None] | None = None,
) -> Investigation:
    """Watch this host (or namespace) for duration_s seconds and diagnose what failed.

    progress(elapsed_s, failed_so_far) is called a few times a second.
    should_stop() ends the window early (Ctrl-C).
    on_ready(interfaces, kernel_on) is called once every source is open.
    """
    missing: list[str] = []
    warnings: list[str] = []  # what went wrong during the window (missing: never opened)
    if netns is not None:
        netns_src.enter(netns)  # raises a one-line error when it cannot

    view = HostView(netns=netns, netns_inode=_netns_inode(), local_addrs=_local_addrs())
    before = _read_counters(missing)
    fw_before = _firewall(missing)
    view.sysctls = _sysctls(missing)
    view.conntrack_before = _conntrack()

    table = ConnectionTable(uids=False)
    diag = Diagnoser()
    tuples = _Tuples()
    dstats = DecodeStats()
    events: list[KernelEvent] = []
    next_sockets = 0.0
    cap = None
    kt = None
    with ExitStack() as stack:
        if kernel:
            kt = _open_kernel(stack, syscalls, missing)
        if capture:
            cap = _open_capture(stack, interfaces, missing)
        connecting = kt is None  # without connect() events, owners of SYN_SENT sockets
        if not _sample_sockets(view, missing, connecting):
            next_sockets = float("inf")
        start_ts = _now_us()
        deadline = time.monotonic() + duration_s
        if on_ready is not None:
            on_ready(sorted(cap.interfaces) if cap is not None else [], kt is not None)

        def finish(conns: list[Connection], now: int) -> None:
            for conn in conns:
                v = diag.add(conn, now)
                if v is not None:
                    tuples.add(conn, v)

        old_gc = gc.get_threshold()
        gc.set_threshold(200_000, 50, 100)
        try:
            while True:
                now_mono = time.monotonic()
                if now_mono >= deadline or (should_stop is not None and should_stop()):
                    break
                if cap is not None:
                    pkts = cap.poll(min(POLL_S, max(deadline - now_mono, 0.0)))
                    recs = []
                    for p in pkts:
                        rec = decode_frame(p.linktype, p.data, p.ts, p.iface, dstats)
                        if rec is not None:
                            recs.append(rec)
                    recs.sort(key=lambda r: r.ts)
                    if recs:
                        finish(table.feed(recs), recs[-1].ts)
                else:
                    time.sleep(min(POLL_S, max(deadline - now_mono, 0.0)))
                if kt is not None:
                    events.extend(kt.poll())
                if now_mono >= next_sockets:
                    _sample_sockets(view, missing, connecting)
                    next_sockets = now_mono + SOCKETS_EVERY_S
                if progress is not None:
                    progress(duration_s - max(deadline - time.monotonic(), 0.0), diag.failed)
            end_ts = _now_us()
            finish(table.flush(), end_ts)
            if kt is not None:
                events.extend(kt.poll())
        finally:
            gc.set_threshold(*old_gc)
        cap_ifaces, packets, dropped = _capture_totals(cap)
        if cap is not None:  # interfaces that failed during the window (the first are in missing)
            warnings += [w for w in cap.warnings if f"packets: {w}" not in missing]
        lost = kt.lost() if kt is not None else 0
    if next_sockets != float("inf"):
        _sample_sockets(view, missing, connecting)
    after = _read_counters([])
    view.conntrack = _conntrack()
    fw_after = _firewall([])

    window_s = max((end_ts - start_ts) / 1e6, 1.0)
    findings, series = build_findings(diag.settle(), window_s)
    view.counters = _delta(before, after)
    if fw_before is not None and fw_after:
        view.firewall = firewall.moved(fw_before, fw_after)
    view.events = events
    view.tuples = dict(tuples.by_key)
    view.final_kind = diag.final_kind
    attributions = attribute(findings, view, window_s)
    # Failures no packet showed (connect() errors before any packet left).
    findings, attributions = _with_local(findings, attributions, view, window_s)
    return Investigation(
        findings=findings,
        attributions=attributions,
        window_s=window_s,
        start_ts=start_ts,
        end_ts=end_ts,
        connections=diag.connections,
        failed=diag.failed + sum(f.count for f in findings if f.kind == "local"),
        series=series,
        counters=view.counters,
        netns=netns,
        interfaces=cap_ifaces,
        packets=packets,
        dropped=dropped,
        kernel_events=len(events),
        kernel_lost=lost,
        missing=missing,
        warnings=warnings,
    )


def _now_us() -> int:
    return time.time_ns() // 1000


def _netns_inode() -> int | None:
    try:
        return netns_src.inode()
    except OSError:
        return None


def _local_addrs() -> set[str]:
    """This namespace's addresses (getifaddrs answers for the namespace we are in)."""
    import psutil

    from rstrace.attribute import norm_addr

    out = {"127.0.0.1", "::1"}
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                out.add(norm_addr(a.address.split("%", 1)[0]))
    return out


def _read_counters(missing: list[str]) -> dict[str, int]:
    try:
        return counters_src.read_counters()
    except OSError as e:
        missing.append(f"TCP counters: cannot read /proc/net/snmp ({e.strerror})")
        return {}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Counters that went up (a counter the kernel had not printed yet counts from 0)."""
    return {k: n for k, n in counters_src.deltas(before, after).items() if n > 0}


def _firewall(missing: list[str]) -> dict[firewall.RuleKey, firewall.Rule] | None:
    try:
        return firewall.snapshot()
    except firewall.FirewallUnavailable as e:
        missing.append(f"firewall: {e}")
        return None


def _sysctls(missing: list[str]) -> dict[str, str]:
    try:
        return host.read_sysctls()
    except OSError as e:
        missing.append(f"sysctls: {e}")
        return {}


def _conntrack() -> host.ConntrackState | None:
    try:
        return host.read_conntrack()
    except (OSError, ValueError):
        return None


def _open_kernel(stack: ExitStack, syscalls: bool, missing: list[str]):  # type: ignore[no-untyped-def]
    from rstrace.sources import kernel as kernel_src

    try:
        kt = stack.enter_context(kernel_src.KernelTrace(syscalls=syscalls))
    except kernel_src.KernelUnavailable as e:
        missing.append(f"{e} (no process names from the kernel, no reset or drop reasons)")
        return None
    # Not the connect() destination caveat: it matters only for `local` findings, and
    # those say "destination unknown" themselves.
    missing.extend(f"kernel: {m}" for m in kt.missing if not m.startswith("connect(): dest"))
    return kt


def _open_capture(stack: ExitStack, interfaces: list[str] | None, missing: list[str]):  # type: ignore[no-untyped-def]
    from rstrace.sources import live

    try:
        cap = stack.enter_context(live.LiveCapture(interfaces, bpf=control_filter, snaplen=SNAPLEN))
    except (live.LiveCaptureError, OSError) as e:
        missing.append(f"packets: {e}")
        return None
    missing.extend(f"packets: {w}" for w in getattr(cap, "warnings", []))
    return cap


def _capture_totals(cap) -> tuple[list[str], int, int]:  # type: ignore[no-untyped-def]
    if cap is None:
        return [], 0, 0
    stats = cap.stats()
    names = sorted(stats)
    # captured: packets delivered to us. The kernel's received/dropped count each lo
    # packet twice (sent and received copies), libpcap keeps one.
    return names, sum(s.captured for s in stats.values()), sum(s.dropped for s in stats.values())


def _sample_sockets(view: HostView, missing: list[str], connecting: bool) -> bool:
    """Listeners (and, without kernel events, connecting sockets) now, with their owners.

    sock_diag is cheap; the owner lookup scans every process's fds, so it runs only
    for sockets not seen before: an idle host costs one netlink dump per sample.
    False when sock_diag fails.
    """
    try:
        listeners = sockets.list_listeners(owners=False)
        socks = sockets.tcp_sockets(states=("SYN_SENT",)) if connecting else []
    except OSError as e:
        if not any(m.startswith("sockets:") for m in missing):
            missing.append(f"sockets: {e} (no listener or socket owner facts)")
        return False
    # A connecting socket's owner is looked up once per destination: under a flood of
    # connects to one port, the /proc scan would otherwise run every sample.
    socks = [s for s in socks if (norm_addr(s.dst), s.dport) not in view.dest_owners]
    inodes = {lst.inode for lst in listeners} | {s.inode for s in socks if s.inode}
    new = inodes - view.owner_cache.keys()
    if new:
        found = procinfo.owners_by_inode(inodes=new)
        for inode in new:
            view.owner_cache[inode] = found.get(inode, [])
    view.sample(listeners, socks, view.owner_cache)
    return True


def _with_local(
    findings: list[Finding], attributions: list[Attribution], view: HostView, window_s: float
) -> tuple[list[Finding], list[Attribution]]:
    from rstrace.attribute import local_findings

    extra = local_findings(view, window_s)
    if not extra:
        return findings, attributions
    pairs = list(zip(findings, attributions, strict=True)) + extra
    pairs.sort(key=lambda fa: (-fa[0].rate, -fa[0].count, fa[0].kind, fa[0].server or ""))
    return [f for f, _ in pairs], [a for _, a in pairs]
