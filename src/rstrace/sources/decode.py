"""Decode captured frames into Segment / Unreachable records.

Pure functions over bytes: no I/O here, so every capture reader (libpcap, our own
pcapng reader, live handles) shares one decoder and tests can feed it bytes.

Hand-written on purpose: dpkt/scapy build an object per header and cost 10-50x
more per packet; we need a handful of fields from the IP and TCP headers only.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

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
_META = struct.Struct("=IIII")  # pcapy next_batch: sec, usec, offset, caplen per frame


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
    copies: int = 0
    """The same packet captured again on another interface (see capfile.Copies)."""
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


# -- headers only, for the tracker's fast lane -------------------------------------------
#
# One unpack reads, from the ethertype on: the IP fields the decoder checks, the
# addresses and ports as one bytes object (the direction's connection key, no
# inet_ntop), and the TCP fields the state machine needs. IPv4 without options and
# IPv6 without extension headers only; everything else takes decode_frame().
# IPv4: vihl, total, id, frag, ttl, proto, addrs+ports, seq, ack, doff, flags, win.
_FAST_V4 = "BxHHHBB2x12sIIBBH"
# IPv6: version/class, payload length, next header, hop limit, addrs+ports, seq, ...
_FAST_V6 = "B3xHBB36sIIBBH"
_PORTS = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
class FastLayout:
    """Where a link type keeps its ethertype and IP header, for the fast header unpack."""

    etype_off: int
    """Offset of the 16-bit ethertype in the frame; the unpack starts there."""
    v4: struct.Struct
    """ethertype, then _FAST_V4 at the IP header."""
    v6: struct.Struct
    min_v4: int
    """Shortest frame decode_frame() would read as IPv4 + TCP (IP offset + 40)."""
    min_v6: int
    ip_off: int


def _layout(etype_off: int, ip_off: int) -> FastLayout:
    gap = ip_off - etype_off - 2
    pad = f"{gap}x" if gap else ""
    return FastLayout(
        etype_off,
        struct.Struct(f"!H{pad}{_FAST_V4}"),
        struct.Struct(f"!H{pad}{_FAST_V6}"),
        ip_off + 40,
        ip_off + 60,
        ip_off,
    )


# Link types whose ethertype sits at a fixed place (no VLAN walk: 802.1Q frames carry
# another ethertype there and take the full decoder).
_FAST_LAYOUTS = {
    DLT_EN10MB: _layout(12, 14),
    DLT_LINUX_SLL: _layout(14, 16),
    DLT_LINUX_SLL2: _layout(0, 20),
}


def fast_layout(linktype: int) -> FastLayout | None:
    """The header layout for the fast lane, or None: decode every frame in full."""
    return _FAST_LAYOUTS.get(linktype)


class FrameBatch(Sequence["Segment | Unreachable"]):
    """The frames of one libpcap batch, decoded on demand.

    As a Sequence it is the list of records decode_frame() makes of the frames
    (decoded once, when first indexed or iterated). ConnectionTable.feed() instead
    walks the frames itself: it unpacks headers only for data/ACK packets of
    established connections and calls decode() for the rest, so most packets never
    become a Segment. Either way every frame is decoded (and counted) exactly once.
    """

    __slots__ = (
        "_last",
        "_recs",
        "iface",
        "interfaces",
        "linktype",
        "meta",
        "note",
        "pkts",
        "stats",
    )

    def __init__(
        self,
        pkts: bytes,
        meta: bytes,
        linktype: int,
        iface: str | None,
        stats: DecodeStats,
        note: Callable[[Segment | Unreachable, str | None], object],
        interfaces: set[str],
    ) -> None:
        self.pkts = pkts
        self.meta = meta
        self.linktype = linktype
        self.iface = iface
        self.stats = stats
        self.note = note
        """The reader's per-record bookkeeping (time window, interfaces)."""
        self.interfaces = interfaces
        """The reader's set of interface names seen with a record."""
        self._recs: list[Segment | Unreachable] | None = None
        self._last: Segment | Unreachable | bool | None = False  # False: not looked for

    def frames(self) -> Iterator[tuple[int, int, int, int]]:
        """(seconds, microseconds, offset in pkts, captured length) per frame."""
        return _META.iter_unpack(self.meta)

    def decode(self, ts: int, off: int, caplen: int) -> Segment | Unreachable | None:
        """decode_frame() for one frame, with the reader's bookkeeping."""
        rec = decode_frame(self.linktype, self.pkts[off : off + caplen], ts, self.iface, self.stats)
        if rec is not None:
            self.note(rec, self.iface)
        return rec

    def tcp_segment(
        self, ts: int, off: int, caplen: int, ip_off: int, v6: bool, key: bytes,
        seq: int, ack: int, flags: int, win: int, payload: int, ttl: int, ip_id: int, df: bool,
    ) -> Segment:  # fmt: skip
        """decode() for a frame whose headers the fast unpack already read and checked
        (IPv4 without options or IPv6 without extension headers, TCP, long enough):
        the same Segment decode_frame() makes, without reading the headers again."""
        stats = self.stats
        stats.packets += 1
        stats.tcp += 1
        sport, dport = _PORTS.unpack_from(key, 32 if v6 else 8)
        if v6:
            src = socket.inet_ntop(socket.AF_INET6, key[:16])
            dst = socket.inet_ntop(socket.AF_INET6, key[16:32])
        else:
            src = socket.inet_ntoa(key[:4])
            dst = socket.inet_ntoa(key[4:8])
        seg = Segment(
            ts, self.iface, 6 if v6 else 4, src, dst, sport, dport, flags, seq, ack, win,
            max(payload, 0), ttl, ip_id, df, self.pkts[off + ip_off : off + caplen],
        )  # fmt: skip
        self.note(seg, self.iface)
        return seg

    def fast_counted(self, n: int) -> None:
        """n frames went through the fast lane: count them as decode_frame() would."""
        if n:
            self.stats.packets += n
            self.stats.tcp += n
            if self.iface:
                self.interfaces.add(self.iface)

    @property
    def decoded(self) -> bool:
        """True once the records were made (indexed or iterated): feed() then uses them."""
        return self._recs is not None

    def records(self) -> list[Segment | Unreachable]:
        if self._recs is None:
            recs = []
            for sec, usec, off, caplen in self.frames():
                rec = self.decode(sec * 1_000_000 + usec, off, caplen)
                if rec is not None:
                    recs.append(rec)
            self._recs = recs
        return self._recs

    def _last_record(self) -> Segment | Unreachable | None:
        """The last record, without decoding (and counting) the whole batch."""
        if self._recs is not None:
            return self._recs[-1] if self._recs else None
        if self._last is False:
            self._last = None
            scratch = DecodeStats()
            meta = self.meta
            for i in range(len(meta) - _META.size, -1, -_META.size):
                sec, usec, off, caplen = _META.unpack_from(meta, i)
                rec = decode_frame(self.linktype, self.pkts[off : off + caplen],
                                   sec * 1_000_000 + usec, self.iface, scratch)  # fmt: skip
                if rec is not None:
                    self._last = rec
                    break
        return self._last  # type: ignore[return-value]

    def __bool__(self) -> bool:
        return self._last_record() is not None

    def __len__(self) -> int:
        return len(self.records())

    @overload
    def __getitem__(self, i: int) -> Segment | Unreachable: ...
    @overload
    def __getitem__(self, i: slice) -> list[Segment | Unreachable]: ...
    def __getitem__(self, i: int | slice) -> Segment | Unreachable | list[Segment | Unreachable]:
        if isinstance(i, int) and i == -1:
            last = self._last_record()
            if last is None:
                raise IndexError("empty batch")
            return last
        return self.records()[i]

    def __iter__(self) -> Iterator[Segment | Unreachable]:
        return iter(self.records())


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
    # Type 3 code 4 is "fragmentation needed" (path MTU discovery): not a failure.
    if proto == 1 and len(pkt) >= ihl + 8 and pkt[ihl] == 3 and pkt[ihl + 1] != 4:
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
