"""Write pcapng: one interface block per interface, named, so a reader knows where
each packet was seen.

Hand-written because libpcap (pcap_dump) writes only classic pcap, which has one
link type and no interface names; python-pcapng and scapy would be a dependency
for ~60 lines of struct packing. Blocks follow the pcapng spec
(draft-ietf-opsawg-pcapng): a Section Header Block, an Interface Description
Block per (name, link type) written when the interface is first seen (pcapng
allows them anywhere before their first packet), Enhanced Packet Blocks, and an
Interface Statistics Block per interface at close. Each block is written whole
and the file is flushed after every batch, so an interrupted capture leaves a
file that every reader accepts up to its last packet.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from rstrace.sources.decode import DLT_RAW, DLT_RAW_ALT, LINKTYPE_RAW

_SHB, _IDB, _ISB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000005, 0x00000006
_BOM = 0x1A2B3C4D
_OPT_END, _SHB_USERAPPL, _IF_NAME, _IF_TSRESOL = 0, 4, 2, 9
_ISB_STARTTIME, _ISB_ENDTIME, _ISB_IFRECV, _ISB_IFDROP = 2, 3, 4, 5
_TSRESOL_US = 6  # timestamps in 10**-6 s, the pcapng default, written out for clarity


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def _ts_words(ts_us: int) -> bytes:
    return struct.pack("<II", ts_us >> 32, ts_us & 0xFFFFFFFF)


def linktype_of(dlt: int) -> int:
    """The LINKTYPE_* value a file stores for a libpcap DLT_* (they differ for raw IP)."""
    return LINKTYPE_RAW if dlt in (DLT_RAW, DLT_RAW_ALT) else dlt


class PcapngWriter:
    """Write one pcapng section to a binary stream."""

    def __init__(self, stream: BinaryIO, application: str = "rstrace") -> None:
        self._f = stream
        self._ids: dict[tuple[str, int], int] = {}
        opts = _option(_SHB_USERAPPL, application.encode()) + _option(_OPT_END, b"")
        # Section length -1: unknown, the file is written as a stream.
        self._f.write(_block(_SHB, struct.pack("<IHHq", _BOM, 1, 0, -1) + opts))

    def interface(self, name: str, dlt: int, snaplen: int = 262144) -> int:
        """The interface id for (name, link type), writing its description block once."""
        key = (name, dlt)
        iface_id = self._ids.get(key)
        if iface_id is None:
            iface_id = self._ids[key] = len(self._ids)
            opts = (_option(_IF_NAME, name.encode()) + _option(_IF_TSRESOL, bytes([_TSRESOL_US]))
                    + _option(_OPT_END, b""))  # fmt: skip
            body = struct.pack("<HHI", linktype_of(dlt), 0, snaplen) + opts
            self._f.write(_block(_IDB, body))
        return iface_id

    def packet(self, iface_id: int, ts_us: int, data: bytes, wire_len: int) -> None:
        """One Enhanced Packet Block (microsecond timestamp)."""
        head = struct.pack("<I", iface_id) + _ts_words(ts_us)
        head += struct.pack("<II", len(data), max(wire_len, len(data)))
        self._f.write(_block(_EPB, head + data + b"\0" * (-len(data) % 4)))

    def statistics(self, iface_id: int, start_us: int, end_us: int,
                   received: int, dropped: int) -> None:  # fmt: skip
        """An Interface Statistics Block: packets received and dropped (libpcap's counts)."""
        opts = (
            _option(_ISB_STARTTIME, _ts_words(start_us))
            + _option(_ISB_ENDTIME, _ts_words(end_us))
            + _option(_ISB_IFRECV, struct.pack("<Q", received))
            + _option(_ISB_IFDROP, struct.pack("<Q", dropped))
            + _option(_OPT_END, b"")
        )
        self._f.write(_block(_ISB, struct.pack("<I", iface_id) + _ts_words(end_us) + opts))

    def flush(self) -> None:
        self._f.flush()
