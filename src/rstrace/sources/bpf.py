"""BPF prefilters, built per link type.

The findings need only control packets (SYN, FIN, RST) and ICMP unreachables, so
libpcap drops the bulk in C. A filter must never hide a packet it cannot
classify, so it passes, for the decoder to judge:
  * non-first IPv4 fragments (counted as skipped by the decoder);
  * IPv6 with a next header other than TCP/UDP/ICMPv6: `ip6[6] == 6` misses TCP
    behind extension headers, and `tcp[tcpflags]` matches IPv4 only;
  * VLAN-tagged Ethernet frames: `vlan` shifts offsets for what follows and does
    not compile for SLL or NULL, so we pass tagged frames whole.
`icmp6[icmp6type]` does not compile on libpcap 1.9.1 (the pcapy-ng wheel's), so
ICMPv6 type is read as `ip6[40]` (no extension headers before it).
"""

from __future__ import annotations

from rstrace.sources.decode import DLT_EN10MB

_TCP4_CONTROL = "(tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0)"
_IP4_LATER_FRAGMENT = "(ip[6:2] & 0x1fff != 0)"
_ICMP4_UNREACH = "(icmp[icmptype] == icmp-unreach)"
_TCP6_CONTROL = "(ip6 and ip6[6] == 6 and ip6[53] & 7 != 0)"
_ICMP6_UNREACH = "(ip6 and ip6[6] == 58 and ip6[40] == 1)"
_IP6_UNCLASSIFIED = "(ip6 and ip6[6] != 6 and ip6[6] != 17 and ip6[6] != 58)"
_VLAN_FRAMES = "(ether proto 0x8100 or ether proto 0x88a8 or ether proto 0x9100)"

# Every TCP packet (for the connection log), still dropping what is surely not TCP.
_TCP4_ALL = "tcp"
_TCP6_ALL = "(ip6 and ip6[6] == 6)"

# `rstrace capture`: RSTs only, or RSTs with SYN and SYN-ACK (--handshake).
# TCP flags are byte 13 of the TCP header: byte 53 of an IPv6 packet without
# extension headers; RST is 0x04, SYN 0x02.
_TCP4_RST = "(tcp[tcpflags] & tcp-rst != 0)"
_TCP6_RST = "(ip6 and ip6[6] == 6 and ip6[53] & 4 != 0)"
_TCP4_RST_SYN = "(tcp[tcpflags] & (tcp-syn|tcp-rst) != 0)"
_TCP6_RST_SYN = "(ip6 and ip6[6] == 6 and ip6[53] & 6 != 0)"


def control_filter(linktype: int) -> str:
    """Filter for the findings path: control packets and the unclassifiable."""
    return _filter(_TCP4_CONTROL, _TCP6_CONTROL, linktype)


def all_tcp_filter(linktype: int) -> str:
    """Filter for the connection log: every TCP packet, ICMP unreachables, the unclassifiable."""
    return _filter(_TCP4_ALL, _TCP6_ALL, linktype)


def rst_filter(linktype: int) -> str:
    """Filter for `rstrace capture`: TCP RSTs (IPv4 and IPv6) and the unclassifiable."""
    return _filter(_TCP4_RST, _TCP6_RST, linktype, icmp=False)


def rst_syn_filter(linktype: int) -> str:
    """Filter for `rstrace capture --handshake`: RSTs, SYNs and SYN-ACKs, the unclassifiable."""
    return _filter(_TCP4_RST_SYN, _TCP6_RST_SYN, linktype, icmp=False)


def _filter(tcp4: str, tcp6: str, linktype: int, *, icmp: bool = True) -> str:
    if icmp:
        parts = [tcp4, _IP4_LATER_FRAGMENT, _ICMP4_UNREACH, tcp6, _ICMP6_UNREACH, _IP6_UNCLASSIFIED]
    else:
        parts = [tcp4, _IP4_LATER_FRAGMENT, tcp6, _IP6_UNCLASSIFIED]
    if linktype == DLT_EN10MB:
        parts.append(_VLAN_FRAMES)
    return " or ".join(parts)
