"""The kernel's protocol counters: /proc/net/snmp, /proc/net/netstat, /proc/net/snmp6.

Keys are "Group.Name" ("Tcp.AttemptFails", "TcpExt.ListenOverflows",
"Icmp6.OutDestUnreachs"). The files belong to the network namespace of the reader
(see netns.enter). Linux keeps one set of TCP counters for IPv4 and IPv6 together:
snmp's Tcp line and netstat's TcpExt line count both; snmp6 has no TCP group.

The parsers take text and are tested on files recorded from a real kernel
(tests/data/proc/); read_counters() is the thin reader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


class CounterParseError(ValueError):
    """A counters file not in the kernel's format (names the file and the group)."""


@dataclass(frozen=True)
class CounterInfo:
    """What one counter means as Linux counts it, and where the kernel increments it."""

    meaning: str
    kernel: str
    """The kernel function(s) that change it, with their source file."""
    gauge: bool = False
    """A level (sockets now open), not an event count: a rate of it means nothing."""


# The counters that matter to failed connections, in display order (grouped by Group).
# Each `kernel` entry was read in the kernel source (net/ipv4/tcp*.c, syncookies.c,
# icmp.c, ipv6/icmp.c); RFC 1213's wording is not what Linux does, so say what Linux does.
COUNTERS: dict[str, CounterInfo] = {
    "Tcp.ActiveOpens": CounterInfo(
        "connect()s started by this host (SYN sent, CLOSED -> SYN-SENT)",
        "tcp_connect() (tcp_output.c)",
    ),
    "Tcp.PassiveOpens": CounterInfo(
        "incoming connections whose handshake completed (child socket created on the "
        "final ACK, not on the SYN as RFC 1213 says)",
        "tcp_create_openreq_child() (tcp_minisocks.c)",
    ),
    "Tcp.AttemptFails": CounterInfo(
        "this host's own connect()s that failed: refused (RST), timed out (SYN retries "
        "spent) or ICMP-unreachable; also a RST or bad SYN hitting a half-open incoming "
        "connection (which counts EmbryonicRsts as well)",
        "tcp_done() for a socket in SYN-SENT/SYN-RECV (tcp.c); tcp_check_req() on RST/SYN "
        "(tcp_minisocks.c)",
    ),
    "Tcp.EstabResets": CounterInfo(
        "connections that went straight from ESTABLISHED or CLOSE-WAIT to CLOSED: a RST "
        "received or sent (abort), or a timeout",
        "tcp_set_state(TCP_CLOSE) (tcp.c)",
    ),
    "Tcp.CurrEstab": CounterInfo(
        "connections open now: ESTABLISHED and CLOSE-WAIT (older kernels counted only ESTABLISHED)",
        "tcp_set_state() (tcp.c)",
        gauge=True,
    ),
    "Tcp.InErrs": CounterInfo(
        "segments received in error: bad checksum or header, and SYNs arriving on an "
        "established connection (answered by a challenge ACK)",
        "tcp_v4_rcv()/tcp_v6_rcv() (tcp_ipv4.c), tcp_validate_incoming() (tcp_input.c)",
    ),
    "Tcp.OutRsts": CounterInfo(
        "RST segments sent: answers to segments for no socket (refused ports, stale "
        "connections) and aborts of our own connections",
        "tcp_v4_send_reset() (tcp_ipv4.c), tcp_v6_send_response() (tcp_ipv6.c), "
        "tcp_send_active_reset() (tcp_output.c)",
    ),
    "Tcp.RetransSegs": CounterInfo(
        "segments retransmitted, SYN and SYN-ACK retransmissions included",
        "__tcp_retransmit_skb() (tcp_output.c), tcp_rtx_synack() (tcp_output.c)",
    ),
    "TcpExt.ListenOverflows": CounterInfo(
        "a listener's accept queue was full: an incoming SYN, or the handshake's final "
        "ACK, was dropped (the application does not accept() fast enough)",
        "tcp_conn_request() (tcp_input.c), tcp_v4_syn_recv_sock()/tcp_v6_syn_recv_sock() "
        "(tcp_ipv4.c)",
    ),
    "TcpExt.ListenDrops": CounterInfo(
        "segments to a listener dropped for any reason (overflows included, so it is "
        "at least ListenOverflows)",
        "tcp_listendrop() (include/net/tcp.h), from tcp_conn_request() and tcp_v4_syn_recv_sock()",
    ),
    "TcpExt.TCPReqQFullDrop": CounterInfo(
        "incoming SYNs dropped because the listener's SYN queue (as long as its listen() "
        "backlog) was full and SYN cookies are off",
        "tcp_syn_flood_action() (tcp_input.c)",
    ),
    "TcpExt.TCPReqQFullDoCookies": CounterInfo(
        "SYN queue full (or tcp_syncookies=2): answered with a SYN cookie, not dropped",
        "tcp_syn_flood_action() (tcp_input.c)",
    ),
    "TcpExt.SyncookiesSent": CounterInfo(
        "SYN-ACKs sent with a SYN cookie (the SYN queue is full, or tcp_syncookies=2)",
        "cookie_init_sequence() (include/net/tcp.h), called from tcp_conn_request()",
    ),
    "TcpExt.SyncookiesRecv": CounterInfo(
        "ACKs carrying a valid SYN cookie (a connection made without a queue entry)",
        "cookie_v4_check()/cookie_v6_check() (syncookies.c)",
    ),
    "TcpExt.SyncookiesFailed": CounterInfo(
        "ACKs to a listener that sent SYN cookies in the last seconds that carried no valid "
        "cookie (late, forged, or the cookie expired); not counted when no cookie was sent",
        "cookie_v4_check()/cookie_v6_check() (syncookies.c)",
    ),
    "TcpExt.EmbryonicRsts": CounterInfo(
        "half-open incoming connections (SYN-RECV request sockets) reset: the client "
        "sent RST or a bad SYN, or the accept queue overflowed with "
        "tcp_abort_on_overflow=1",
        "tcp_check_req() (tcp_minisocks.c)",
    ),
    "TcpExt.TCPAbortOnData": CounterInfo(
        "connections reset by close() with SO_LINGER 0, or data arriving after this end "
        "closed its socket",
        "__tcp_close() (tcp.c), tcp_rcv_state_process() (tcp_input.c)",
    ),
    "TcpExt.TCPAbortOnClose": CounterInfo(
        "connections reset because the application closed them with unread data",
        "__tcp_close() (tcp.c)",
    ),
    "TcpExt.TCPAbortOnMemory": CounterInfo(
        "orphaned connections killed for too many orphans or memory pressure (RST sent)",
        "tcp_out_of_resources() (tcp_timer.c), tcp_close()",
    ),
    "TcpExt.TCPAbortOnTimeout": CounterInfo(
        "connections given up after retransmissions, keepalive or zero-window probes ran "
        "out; includes connect()s whose SYN was never answered",
        "tcp_write_err() (tcp_timer.c)",
    ),
    "TcpExt.TCPAbortOnLinger": CounterInfo(
        "closed connections reset in FIN-WAIT-2 because TCP_LINGER2 is negative",
        "__tcp_close() (tcp.c)",
    ),
    "TcpExt.TCPAbortFailed": CounterInfo(
        "RSTs the kernel wanted to send but could not (no memory)",
        "tcp_send_active_reset() (tcp_output.c)",
    ),
    "TcpExt.TCPSynRetrans": CounterInfo(
        "SYN and SYN-ACK retransmissions: handshakes not answered in time",
        "__tcp_retransmit_skb() (tcp_output.c), tcp_rtx_synack() (tcp_output.c)",
    ),
    "TcpExt.TCPTimeouts": CounterInfo(
        "retransmission timer expiries (RTOs), SYN-SENT sockets and SYN-ACK timers included",
        "tcp_retransmit_timer(), tcp_syn_ack_timeout() (tcp_timer.c)",
    ),
    "TcpExt.TCPBacklogDrop": CounterInfo(
        "segments dropped because a socket busy in a system call had its backlog full",
        "tcp_add_backlog() (tcp_ipv4.c)",
    ),
    "TcpExt.TCPRcvQDrop": CounterInfo(
        "data segments dropped because the receive buffer could not grow (memory)",
        "tcp_data_queue() (tcp_input.c)",
    ),
    "TcpExt.PAWSEstab": CounterInfo(
        "segments on established connections dropped by PAWS (timestamp older than the "
        "last one seen)",
        "tcp_validate_incoming() (tcp_input.c)",
    ),
    "TcpExt.TCPChallengeACK": CounterInfo(
        "challenge ACKs sent (RFC 5961) for a RST or SYN in the window but not exact: "
        "an injected or stale RST",
        "tcp_send_challenge_ack() (tcp_input.c)",
    ),
    "TcpExt.TCPSYNChallenge": CounterInfo(
        "SYNs received on an established connection (answered with a challenge ACK)",
        "tcp_validate_incoming() (tcp_input.c)",
    ),
    "Ip.OutNoRoutes": CounterInfo(
        "IPv4 packets and connect()s with no route (connect() fails with ENETUNREACH "
        "before any packet leaves)",
        "tcp_v4_connect() (tcp_ipv4.c), __ip_queue_xmit() (ip_output.c)",
    ),
    "Icmp.InDestUnreachs": CounterInfo(
        "ICMP destination-unreachable received (a REJECT with icmp-port-unreachable, a "
        "router without a route); one per SYN: when it arrives while connect() holds its "
        "socket it is a soft error and the SYN is retried, so a refusal can count twice",
        "icmp_rcv() (icmp.c); the error reaches TCP in tcp_v4_err() (tcp_ipv4.c)",
    ),
    "Icmp.OutDestUnreachs": CounterInfo(
        "ICMP destination-unreachable sent by this host",
        "icmp_out_count() (icmp.c), from __icmp_send()",
    ),
    "Icmp6.InDestUnreachs": CounterInfo(
        "ICMPv6 destination-unreachable received", "icmpv6_rcv() (ipv6/icmp.c)"
    ),
    "Icmp6.OutDestUnreachs": CounterInfo(
        "ICMPv6 destination-unreachable sent by this host", "icmp6_send() (ipv6/icmp.c)"
    ),
}

# snmp6 names carry their group as a prefix ending in 6: Ip6InReceives, Icmp6InMsgs,
# Udp6NoPorts, UdpLite6InErrors.
_SNMP6_NAME = re.compile(r"([A-Za-z]+?6)(\w+)")


def parse_pairs(text: str, source: str = "snmp") -> dict[str, int]:
    """Parse /proc/net/snmp or /proc/net/netstat: per group a header line and a value line.

    "Tcp: ActiveOpens PassiveOpens ..." then "Tcp: 38 2 ...". A value line whose length
    differs from its header is an error that names the file and the group.
    """
    out: dict[str, int] = {}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) % 2:
        raise CounterParseError(f"{source}: odd number of lines (header without values)")
    for head, vals in zip(lines[::2], lines[1::2], strict=True):
        hgroup, _, names = head.partition(":")
        vgroup, _, values = vals.partition(":")
        if hgroup != vgroup or not hgroup:
            raise CounterParseError(f"{source}: header {hgroup!r} followed by {vgroup!r}")
        n, v = names.split(), values.split()
        if len(n) != len(v):
            raise CounterParseError(f"{source}: {hgroup} has {len(n)} names but {len(v)} values")
        try:
            for name, value in zip(n, v, strict=True):
                out[f"{hgroup}.{name}"] = int(value)
        except ValueError as e:
            raise CounterParseError(f"{source}: {hgroup}: {e}") from None
    return out


def parse_snmp6(text: str, source: str = "snmp6") -> dict[str, int]:
    """Parse /proc/net/snmp6: one "Icmp6OutDestUnreachs   12" per line."""
    out: dict[str, int] = {}
    for ln in text.splitlines():
        words = ln.split()
        if not words:
            continue
        m = _SNMP6_NAME.fullmatch(words[0])
        if len(words) != 2 or not m:
            raise CounterParseError(f"{source}: not a counter line: {ln.strip()!r}")
        try:
            out[f"{m.group(1)}.{m.group(2)}"] = int(words[1])
        except ValueError:
            raise CounterParseError(f"{source}: not a number: {ln.strip()!r}") from None
    return out


def parse_counters(snmp: str, netstat: str = "", snmp6: str = "") -> dict[str, int]:
    """All three files' counters in one dict."""
    out = parse_pairs(snmp, "snmp")
    out.update(parse_pairs(netstat, "netstat"))
    out.update(parse_snmp6(snmp6))
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:  # snmp6 is absent when IPv6 is off: fewer counters, no error
        return ""


def read_counters(proc_root: Path = Path("/proc")) -> dict[str, int]:
    """Read every counter of the caller's network namespace (see netns.enter)."""
    net = proc_root / "net"
    snmp = net / "snmp"
    if not snmp.exists():
        raise FileNotFoundError(f"{snmp} not found: is /proc mounted?")
    return parse_counters(snmp.read_text(), _read(net / "netstat"), _read(net / "snmp6"))


def deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """after - before for every counter of *after*.

    A counter missing from *before* was 0: the kernel prints the per-type ICMP counters
    (IcmpMsg.InType3, Icmp6.OutType1 ...) only once they are non-zero.
    """
    return {k: v - before.get(k, 0) for k, v in after.items()}
