"""Decode captured frames into Segment / Unreachable records.

Pure functions over bytes: no I/O here, so every capture reader (libpcap, our own
pcapng reader, live handles) shares one decoder and tests can feed it bytes.

Hand-written on purpose: dpkt/scapy build an object per header and cost 10-50x
more per packet; we need a handful of fields from the IP and TCP headers only.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from rstrace.model import Segment, Unreachable

# libpcap DLT_* values as pcapy's datalink() returns them, and the LINKTYPE_*
# values pcap/pcapng files store (they differ only for raw IP).
DLT_NULL = 0
DLT_EN10MB = 1
DLT_RAW = 12
DLT_RAW_ALT = 14  # OpenBSD's DLT_RAW
LINKTYPE_RAW = 101
DLT_LOOP = 108
DLT_LINUX_SLL = 113
DLT_IPV4 = 228
DLT_IPV6 = 229
DLT_LINUX_SLL2 = 276

LINK_NAMES = {
    DLT_NULL: "NULL",
    DLT_EN10MB: "EN10MB",
    DLT_RAW: "RAW",
    DLT_RAW_ALT: "RAW",
    LINKTYPE_RAW: "RAW",
    DLT_LOOP: "LOOP",
    DLT_LINUX_SLL: "LINUX_SLL",
    DLT_IPV4: "IPV4",
    DLT_IPV6: "IPV6",
    DLT_LINUX_SLL2: "LINUX_SLL2",
}
SUPPORTED_LINKTYPES = frozenset(LINK_NAMES)

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)

# IPv6 extension headers we walk over to reach TCP/ICMPv6 (RFC 8200 order).
_IPV6_EXT = {0, 43, 60, 135, 139, 140}  # hop-by-hop, routing, dest opts, mobility, HIP, shim6
_IPV6_FRAG = 44
_IPV6_AH = 51

_U16 = struct.Struct("!H")
_IPV4_HDR = struct.Struct("!BBHHHBBH4s4s")
_TCP_HDR = struct.Struct("!HHIIBBH")


@dataclass(slots=True)
class DecodeStats:
    """What the decoder saw besides TCP segments, for the run summary."""

    packets: int = 0
    tcp: int = 0
    unreachable: int = 0
    fragments_skipped: int = 0
    """Non-first IP fragments: no TCP header to read."""
    truncated: int = 0
    """Frames too short for the headers they announce."""
    other: int = 0
    """Not IPv4/IPv6 TCP or ICMP unreachable (ARP, UDP, other ICMP...)."""
    linktypes: set[int] = field(default_factory=set)


def ip_offset(linktype: int, frame: bytes) -> tuple[int, int] | None:
    """Where the IP header starts and which version it should be, for one frame.

    Returns (offset, ethertype-like protocol) or None if the frame carries no IP.
    """
    if linktype == DLT_EN10MB:
        if len(frame) < 14:
            return None
        etype = _U16.unpack_from(frame, 12)[0]
        off = 14
        while etype in VLAN_TPIDS:  # 802.1Q and QinQ
            if len(frame) < off + 4:
                return None
            etype = _U16.unpack_from(frame, off + 2)[0]
            off += 4
        return off, etype
    if linktype in (DLT_RAW, DLT_RAW_ALT, LINKTYPE_RAW, DLT_IPV4, DLT_IPV6):
        if not frame:
            return None
        v = frame[0] >> 4
        return 0, ETH_IPV4 if v == 4 else ETH_IPV6 if v == 6 else 0
    if linktype == DLT_LINUX_SLL:
        if len(frame) < 16:
            return None
        return 16, _U16.unpack_from(frame, 14)[0]
    if linktype == DLT_LINUX_SLL2:
        if len(frame) < 20:
            return None
        return 20, _U16.unpack_from(frame, 0)[0]
    if linktype in (DLT_NULL, DLT_LOOP):
        if len(frame) < 4:
            return None
        # NULL stores the AF in host order of the writer, LOOP in network order;
        # AF_INET is 2 everywhere, AF_INET6 is 10 (Linux), 24, 28 or 30 (BSDs, macOS).
        fam = int.from_bytes(frame[:4], "little")
        if fam > 0xFFFF:
            fam = int.from_bytes(frame[:4], "big")
        if fam == 2:
            return 4, ETH_IPV4
        if fam in (10, 24, 28, 30):
            return 4, ETH_IPV6
        return None
    return None


def decode_frame(
    linktype: int, frame: bytes, ts: int, iface: str | None, stats: DecodeStats
) -> Segment | Unreachable | None:
    """One frame -> a record, or None (counted in stats)."""
    stats.packets += 1
    where = ip_offset(linktype, frame)
    if where is None:
        stats.other += 1
        return None
    off, etype = where
    if etype == ETH_IPV4:
        return _decode_ipv4(frame[off:] if off else frame, ts, iface, stats)
    if etype == ETH_IPV6:
        return _decode_ipv6(frame[off:] if off else frame, ts, iface, stats)
    stats.other += 1
    return None


def _decode_ipv4(
    pkt: bytes, ts: int, iface: str | None, stats: DecodeStats
) -> Segment | Unreachable | None:
    if len(pkt) < 20:
        stats.truncated += 1
        return None
    vihl, _tos, total, ip_id, frag, ttl, proto, _ck, s, d = _IPV4_HDR.unpack_from(pkt)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20:
        stats.other += 1
        return None
    if frag & 0x1FFF:
        stats.fragments_skipped += 1
        return None
    if proto == 6:
        return _decode_tcp(
            pkt, ihl, total - ihl, 4, socket.inet_ntoa(s), socket.inet_ntoa(d),
            ttl, ip_id, bool(frag & 0x4000), ts, iface, stats,
        )  # fmt: skip
    if proto == 1 and len(pkt) >= ihl + 8 and pkt[ihl] == 3:
        return _decode_icmp_unreach(pkt, ihl, 4, s, d, ttl, ts, iface, stats)
    stats.other += 1
    return None


def _ipv6_payload(pkt: bytes) -> tuple[int, int] | None:
    """Walk extension headers: (next header, offset of its header) or None.

    Returns next header 44 when a non-first fragment stops the walk.
    """
    nh = pkt[6]
    off = 40
    while True:
        if nh in _IPV6_EXT:
            if len(pkt) < off + 2:
                return None
            nh, off = pkt[off], off + (pkt[off + 1] + 1) * 8
        elif nh == _IPV6_AH:
            if len(pkt) < off + 2:
                return None
            nh, off = pkt[off], off + (pkt[off + 1] + 2) * 4
        elif nh == _IPV6_FRAG:
            if len(pkt) < off + 8:
                return None
            if _U16.unpack_from(pkt, off + 2)[0] & 0xFFF8:
                return _IPV6_FRAG, off
            nh, off = pkt[off], off + 8
        else:
            return nh, off


def _decode_ipv6(
    pkt: bytes, ts: int, iface: str | None, stats: DecodeStats
) -> Segment | Unreachable | None:
    if len(pkt) < 40 or pkt[0] >> 4 != 6:
        stats.truncated += 1
        return None
    walked = _ipv6_payload(pkt)
    if walked is None:
        stats.truncated += 1
        return None
    nh, off = walked
    if nh == _IPV6_FRAG:
        stats.fragments_skipped += 1
        return None
    total = 40 + _U16.unpack_from(pkt, 4)[0]
    s, d = pkt[8:24], pkt[24:40]
    if nh == 6:
        return _decode_tcp(
            pkt, off, total - off, 6, socket.inet_ntop(socket.AF_INET6, s),
            socket.inet_ntop(socket.AF_INET6, d), pkt[7], -1, False, ts, iface, stats,
        )  # fmt: skip
    if nh == 58 and len(pkt) >= off + 8 and pkt[off] == 1:
        return _decode_icmp_unreach(pkt, off, 6, s, d, pkt[7], ts, iface, stats)
    stats.other += 1
    return None


def _decode_tcp(
    pkt: bytes,
    off: int,
    l4_len: int,
    version: int,
    src: str,
    dst: str,
    ttl: int,
    ip_id: int,
    df: bool,
    ts: int,
    iface: str | None,
    stats: DecodeStats,
) -> Segment | None:
    if len(pkt) < off + 20:
        stats.truncated += 1
        return None
    sport, dport, seq, ack, doff, flags, win = _TCP_HDR.unpack_from(pkt, off)
    hlen = (doff >> 4) * 4
    stats.tcp += 1
    return Segment(
        ts, iface, version, src, dst, sport, dport, flags, seq, ack, win,
        max(l4_len - hlen, 0), ttl, ip_id, df, pkt,
    )  # fmt: skip


def _decode_icmp_unreach(
    pkt: bytes,
    off: int,
    version: int,
    src: bytes,
    dst: bytes,
    ttl: int,
    ts: int,
    iface: str | None,
    stats: DecodeStats,
) -> Unreachable | None:
    """ICMP type 3 / ICMPv6 type 1: read the quoted IP + first 8 bytes of TCP."""
    icmp_type, icmp_code = pkt[off], pkt[off + 1]
    q = off + 8
    quoted = pkt[q:]
    fam = socket.AF_INET if version == 4 else socket.AF_INET6
    if version == 4:
        if len(quoted) < 20 or quoted[0] >> 4 != 4 or quoted[9] != 6:
            stats.other += 1
            return None
        qoff = (quoted[0] & 0x0F) * 4
        qs, qd = quoted[12:16], quoted[16:20]
    else:
        if len(quoted) < 40 or quoted[0] >> 4 != 6:
            stats.other += 1
            return None
        walked = _ipv6_payload(quoted)
        if walked is None or walked[0] != 6:
            stats.other += 1
            return None
        qoff = walked[1]
        qs, qd = quoted[8:24], quoted[24:40]
    if len(quoted) < qoff + 4:
        stats.truncated += 1
        return None
    qsport, qdport = struct.unpack_from("!HH", quoted, qoff)
    qseq = struct.unpack_from("!I", quoted, qoff + 4)[0] if len(quoted) >= qoff + 8 else None
    stats.unreachable += 1
    return Unreachable(
        ts, iface, version, socket.inet_ntop(fam, src), socket.inet_ntop(fam, dst),
        icmp_type, icmp_code, ttl, socket.inet_ntop(fam, qs), socket.inet_ntop(fam, qd),
        qsport, qdport, qseq, pkt,
    )  # fmt: skip


def ip_packet(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a frame (for printers), or None."""
    where = ip_offset(linktype, frame)
    if where is None or where[1] not in (ETH_IPV4, ETH_IPV6):
        return None
    return frame[where[0] :]


def tcp_checksum_ok(pkt: bytes) -> bool | None:
    """Verify the TCP checksum of an IP packet; None when it cannot be checked (truncated)."""
    v = pkt[0] >> 4
    if v == 4:
        ihl = (pkt[0] & 0x0F) * 4
        total = _U16.unpack_from(pkt, 2)[0]
        seg = pkt[ihl:total]
        if len(pkt) < total:
            return None
        pseudo = pkt[12:20] + struct.pack("!BBH", 0, 6, len(seg))
    elif v == 6:
        walked = _ipv6_payload(pkt)
        if walked is None or walked[0] != 6:
            return None
        total = 40 + _U16.unpack_from(pkt, 4)[0]
        if len(pkt) < total:
            return None
        seg = pkt[walked[1] : total]
        pseudo = pkt[8:40] + struct.pack("!IxxxB", len(seg), 6)
    else:
        return None
    return _ones_complement_sum(pseudo + seg) == 0xFFFF


def _ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total
