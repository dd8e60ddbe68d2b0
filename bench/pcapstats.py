"""Quick stdlib statistics of an Ethernet pcap: packets, 4-tuples, control and IPv6 shares.

python3 bench/pcapstats.py FILE [--json]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import struct
from dataclasses import asdict, dataclass

_GLOBAL = 24
_REC = struct.Struct("<IIII")
_TCP_SYN, _TCP_FIN, _TCP_RST = 0x02, 0x01, 0x04


@dataclass
class PcapStats:
    path: str
    bytes: int
    packets: int = 0
    ipv4: int = 0
    ipv6: int = 0
    other: int = 0
    tcp: int = 0
    syn: int = 0
    fin: int = 0
    rst: int = 0
    control: int = 0
    """Packets with SYN, FIN or RST set (what the tcpdump comparison filter passes)."""
    syn_only: int = 0
    """SYN without ACK: connection attempts, retransmissions included."""
    tuples: int = 0
    """Distinct TCP 4-tuples, direction-independent."""
    first_ts: float = 0.0
    last_ts: float = 0.0

    @property
    def control_share(self) -> float:
        return self.control / self.packets if self.packets else 0.0

    @property
    def ipv6_share(self) -> float:
        return self.ipv6 / self.packets if self.packets else 0.0

    def as_dict(self, shares: bool = True) -> dict[str, object]:
        d: dict[str, object] = asdict(self)
        if shares:
            d["control_share"] = round(self.control_share, 4)
            d["ipv6_share"] = round(self.ipv6_share, 4)
        return d

    def summary(self) -> str:
        dur = self.last_ts - self.first_ts
        return (
            f"{self.path}: {self.bytes / 1e6:.1f} MB, {self.packets} packets over {dur:.1f} s, "
            f"{self.tuples} distinct TCP 4-tuples\n"
            f"  SYN/FIN/RST packets {self.control} ({self.control_share * 100:.2f} %: "
            f"SYN {self.syn}, FIN {self.fin}, RST {self.rst}; {self.syn_only} bare SYNs)\n"
            f"  IPv6 {self.ipv6} ({self.ipv6_share * 100:.1f} %), IPv4 {self.ipv4}, "
            f"other {self.other}"
        )


def pcap_stats(path: str) -> PcapStats:
    st = PcapStats(path=path, bytes=os.path.getsize(path))
    tuples: set[tuple[bytes, int, bytes, int]] = set()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        magic = m[:4]
        if magic != b"\xd4\xc3\xb2\xa1" and magic != b"\x4d\x3c\xb2\xa1":
            raise ValueError(f"{path}: not a little-endian pcap (tcpdump -w writes one)")
        nano = magic == b"\x4d\x3c\xb2\xa1"
        linktype = struct.unpack_from("<I", m, 20)[0]
        if linktype != 1:
            raise ValueError(f"{path}: link type {linktype}, expected Ethernet (1)")
        off, end = _GLOBAL, len(m)
        unpack = _REC.unpack_from
        first = last = None
        while off + 16 <= end:
            sec, frac, caplen, _ = unpack(m, off)
            p = off + 16
            off = p + caplen
            if off > end:
                break
            st.packets += 1
            ts = sec + frac / (1e9 if nano else 1e6)
            if first is None:
                first = ts
            last = ts
            et = m[p + 12] << 8 | m[p + 13]
            if et == 0x0800:
                st.ipv4 += 1
                if m[p + 23] != 6:
                    continue
                t = p + 14 + (m[p + 14] & 0x0F) * 4
                src, dst = m[p + 26 : p + 30], m[p + 30 : p + 34]
            elif et == 0x86DD:
                st.ipv6 += 1
                if m[p + 20] != 6:
                    continue
                t = p + 54
                src, dst = m[p + 22 : p + 38], m[p + 38 : p + 54]
            else:
                st.other += 1
                continue
            st.tcp += 1
            sport, dport = m[t] << 8 | m[t + 1], m[t + 2] << 8 | m[t + 3]
            fl = m[t + 13]
            if fl & (_TCP_SYN | _TCP_FIN | _TCP_RST):
                st.control += 1
                if fl & _TCP_SYN:
                    st.syn += 1
                    if not fl & 0x10:
                        st.syn_only += 1
                if fl & _TCP_FIN:
                    st.fin += 1
                if fl & _TCP_RST:
                    st.rst += 1
            a, b = (src, sport), (dst, dport)
            tuples.add((*a, *b) if a <= b else (*b, *a))
        st.first_ts = first or 0.0
        st.last_ts = last or 0.0
    st.tuples = len(tuples)
    return st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    st = pcap_stats(a.file)
    print(json.dumps(st.as_dict(shares=False), indent=1) if a.json else st.summary())


if __name__ == "__main__":
    main()
