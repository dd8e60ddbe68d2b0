"""Our own reader for pcap and pcapng byte streams.

libpcap (through pcapy-ng) is the fast path for plain files. It cannot do four
things we need, so this reader takes over for them:
  * pcapng with several interfaces: libpcap exposes no interface id per packet
    (so "seen on lo" is lost) and refuses interfaces of different link types;
  * gzip-compressed captures (libpcap reads no gzip);
  * stdin and other streams, once we have read the magic to sniff the format;
  * knowing the byte offset where a corrupt file stops being readable.
It reads sequentially from any binary stream and never seeks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D

# pcapng block types we read; all others are skipped by their length.
_IDB = 0x00000001
_OPB = 0x00000002  # obsolete packet block, still written by old tools
_SPB = 0x00000003
_EPB = 0x00000006

_MAX_BLOCK = 64 * 1024 * 1024  # a block larger than this is corruption, not a packet


class CaptureFormatError(Exception):
    """The stream is not a capture, or is corrupt; `offset` says where."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(slots=True)
class Interface:
    linktype: int
    name: str | None
    units_per_s: int
    """Timestamp units per second (if_tsresol): 10**6 by default, 10**9 for nanoseconds."""
    offset_s: int = 0
    """Seconds to add to every timestamp (if_tsoffset)."""

    def micros(self, raw_ts: int) -> int:
        # Exact integer arithmetic: a power-of-2 resolution (2**-20 s) does not
        # divide a microsecond evenly.
        return raw_ts * 1_000_000 // self.units_per_s + self.offset_s * 1_000_000


@dataclass(slots=True)
class RawPacket:
    ts: int
    """Microseconds since the epoch (nanosecond captures truncated, as libpcap does)."""
    iface: int
    """Index into the reader's interface table."""
    data: bytes
    wire_len: int


class StreamReader:
    """Iterate the packets of a pcap or pcapng stream.

    `head` is bytes already read from the stream (the magic sniffed by the caller).
    After iteration, `offset` is the number of bytes consumed; a truncated or
    corrupt tail raises CaptureFormatError after every readable packet was yielded.
    """

    def __init__(self, stream: BinaryIO, head: bytes = b"") -> None:
        self._stream = stream
        self._head = head
        self.offset = 0
        self.interfaces: list[Interface] = []
        self.format = ""
        self._last_ts = 0

    def _read(self, n: int) -> bytes:
        if self._head:
            out, self._head = self._head[:n], self._head[n:]
            if len(out) < n:
                out += self._stream.read(n - len(out))
        else:
            out = self._stream.read(n)
        self.offset += len(out)
        return out

    def __iter__(self) -> Iterator[RawPacket]:
        magic_bytes = self._read(4)
        if len(magic_bytes) < 4:
            raise CaptureFormatError("empty file or shorter than any capture header", 0)
        le = int.from_bytes(magic_bytes, "little")
        be = int.from_bytes(magic_bytes, "big")
        if le in (PCAP_MAGIC_US, PCAP_MAGIC_NS) or be in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            self.format = "pcap"
            yield from self._pcap(magic_bytes)
        elif le == PCAPNG_SHB:
            self.format = "pcapng"
            yield from self._pcapng(magic_bytes)
        else:
            raise CaptureFormatError("not a pcap or pcapng capture (unknown magic)", 0)

    # -- classic pcap ------------------------------------------------------

    def _pcap(self, magic_bytes: bytes) -> Iterator[RawPacket]:
        endian = (
            "<" if int.from_bytes(magic_bytes, "little") in (PCAP_MAGIC_US, PCAP_MAGIC_NS) else ">"
        )
        magic = struct.unpack(endian + "I", magic_bytes)[0]
        rest = self._read(20)
        if len(rest) < 20:
            raise CaptureFormatError("pcap file header cut short", self.offset)
        _vmaj, _vmin, _zone, _sigfigs, _snaplen, linktype = struct.unpack(endian + "HHiIII", rest)
        # The upper 16 bits of the link type field carry FCS info (pcap-savefile(5)).
        nano = magic == PCAP_MAGIC_NS
        self.interfaces.append(Interface(linktype & 0xFFFF, None, 10**9 if nano else 10**6))
        rec = struct.Struct(endian + "IIII")
        div = 1000 if nano else 1
        while True:
            start = self.offset
            hdr = self._read(16)
            if not hdr:
                return
            if len(hdr) < 16:
                raise CaptureFormatError("packet record header cut short", start)
            sec, frac, caplen, wire_len = rec.unpack(hdr)
            if caplen > _MAX_BLOCK:
                raise CaptureFormatError(f"impossible packet length {caplen}", start)
            data = self._read(caplen)
            if len(data) < caplen:
                raise CaptureFormatError("packet data cut short", start)
            yield RawPacket(sec * 1_000_000 + frac // div, 0, data, wire_len)

    # -- pcapng --------------------------------------------------------------

    def _pcapng(self, magic_bytes: bytes) -> Iterator[RawPacket]:
        endian = "<"
        first = True
        while True:
            start = self.offset
            head = magic_bytes if first else self._read(4)
            first = False
            if not head:
                return
            if len(head) < 4:
                raise CaptureFormatError("block header cut short", start)
            more = self._read(4)
            if len(more) < 4:
                raise CaptureFormatError("block header cut short", start)
            if int.from_bytes(head, "little") == PCAPNG_SHB:
                # A new section: its byte-order magic decides the endianness.
                bom = self._read(4)
                if len(bom) < 4:
                    raise CaptureFormatError("section header cut short", start)
                if int.from_bytes(bom, "little") == PCAPNG_BOM:
                    endian = "<"
                elif int.from_bytes(bom, "big") == PCAPNG_BOM:
                    endian = ">"
                else:
                    raise CaptureFormatError("bad pcapng byte-order magic", start)
                length = struct.unpack(endian + "I", more)[0]
                if length < 28 or length % 4 or length > _MAX_BLOCK:
                    raise CaptureFormatError(f"bad section header length {length}", start)
                body = self._read(length - 12)
                if len(body) < length - 12:
                    raise CaptureFormatError("section header cut short", start)
                self.interfaces = []  # interface ids restart in each section
                continue
            btype = struct.unpack(endian + "I", head)[0]
            length = struct.unpack(endian + "I", more)[0]
            if length < 12 or length % 4 or length > _MAX_BLOCK:
                raise CaptureFormatError(f"bad block length {length}", start)
            body = self._read(length - 8)
            if len(body) < length - 8:
                raise CaptureFormatError("block cut short", start)
            if struct.unpack_from(endian + "I", body, length - 12)[0] != length:
                raise CaptureFormatError("block trailer length differs from header", start)
            body = body[: length - 12]
            if btype == _EPB:
                pkt = self._epb(body, endian, start)
                if pkt is not None:
                    yield pkt
            elif btype == _IDB:
                self._idb(body, endian, start)
            elif btype == _SPB:
                if not self.interfaces or len(body) < 4:
                    raise CaptureFormatError("simple packet block before any interface", start)
                wire_len = struct.unpack_from(endian + "I", body)[0]
                # SPBs carry no timestamp: give them the previous packet's, the best guess.
                yield RawPacket(self._last_ts, 0, body[4 : 4 + wire_len], wire_len)
            elif btype == _OPB:
                pkt = self._epb(body, endian, start, obsolete=True)
                if pkt is not None:
                    yield pkt

    def _idb(self, body: bytes, endian: str, start: int) -> None:
        if len(body) < 8:
            raise CaptureFormatError("interface block cut short", start)
        linktype = struct.unpack_from(endian + "H", body)[0]
        name = None
        units, offset = 10**6, 0
        for code, value in _options(body, 8, endian):
            if code == 2:
                name = value.rstrip(b"\0").decode("utf-8", "replace") or None
            elif code == 9 and value:
                res = value[0]
                # High bit: power of 2, else power of 10 (pcapng spec, if_tsresol).
                units = 2 ** (res & 0x7F) if res & 0x80 else 10 ** (res & 0x7F)
            elif code == 14 and len(value) >= 8:
                offset = struct.unpack_from(endian + "q", value)[0]
        self.interfaces.append(Interface(linktype, name, max(units, 1), offset))

    def _epb(
        self, body: bytes, endian: str, start: int, obsolete: bool = False
    ) -> RawPacket | None:
        if len(body) < 20:
            raise CaptureFormatError("packet block cut short", start)
        if obsolete:
            iface, _drops, hi, lo, caplen, wire_len = struct.unpack_from(endian + "HHIIII", body)
        else:
            iface, hi, lo, caplen, wire_len = struct.unpack_from(endian + "IIIII", body)
        if iface >= len(self.interfaces):
            raise CaptureFormatError(f"packet for undeclared interface {iface}", start)
        if caplen > len(body) - 20:
            raise CaptureFormatError("packet longer than its block", start)
        ts = self.interfaces[iface].micros((hi << 32) | lo)
        self._last_ts = ts
        return RawPacket(ts, iface, body[20 : 20 + caplen], wire_len)


def _options(body: bytes, off: int, endian: str) -> Iterator[tuple[int, bytes]]:
    fmt = endian + "HH"
    while off + 4 <= len(body):
        code, length = struct.unpack_from(fmt, body, off)
        if code == 0:
            return
        value = body[off + 4 : off + 4 + length]
        yield code, value
        off += 4 + length + (-length % 4)
