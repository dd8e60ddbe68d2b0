"""Build packets and capture files byte by byte, for edge cases real traffic cannot make
on this machine (other link types, byte orders, nanosecond stamps, IPv6 extension
headers, VLAN tags). The real-traffic captures live in tests/data/captures/.
"""

from __future__ import annotations

import socket
import struct


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_header(sport: int, dport: int, seq: int, ack: int, flags: int, win: int = 65535,
               payload: bytes = b"") -> bytes:  # fmt: skip
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, win, 0, 0) + payload


def ipv4_tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
             payload: bytes = b"", ttl: int = 64, ip_id: int = 0, df: bool = True,
             options: bytes = b"", frag_offset: int = 0) -> bytes:  # fmt: skip
    tcp = tcp_header(sport, dport, seq, ack, flags, payload=payload)
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    pseudo = s + d + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
    ihl = 5 + len(options) // 4
    frag = (0x4000 if df else 0) | frag_offset
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(tcp), ip_id, frag, ttl, 6,
                      0, s, d) + options  # fmt: skip
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + tcp


def ipv6_tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
             payload: bytes = b"", hlim: int = 64, ext: bytes = b"",
             ext_nh: int = 0) -> bytes:  # fmt: skip
    """IPv6 + optional extension header chain `ext` (first header type `ext_nh`)."""
    tcp = tcp_header(sport, dport, seq, ack, flags, payload=payload)
    s, d = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    pseudo = s + d + struct.pack("!IxxxB", len(tcp), 6)
    tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
    nh = ext_nh if ext else 6
    return struct.pack("!IHBB", 6 << 28, len(ext) + len(tcp), nh, hlim) + s + d + ext + tcp


def hop_by_hop(next_header: int = 6) -> bytes:
    """An 8-byte hop-by-hop options header holding PadN."""
    return bytes([next_header, 0, 1, 4, 0, 0, 0, 0])


def ethernet(ip: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    etype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    out = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"
    for i, vid in enumerate(vlans):
        tpid = 0x88A8 if i == 0 and len(vlans) > 1 else 0x8100
        out += struct.pack("!HH", tpid, vid)
    return out + struct.pack("!H", etype) + ip


def sll(ip: bytes) -> bytes:
    etype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    return struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, etype) + ip


def sll2(ip: bytes, ifindex: int = 1) -> bytes:
    etype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    return struct.pack("!HHIHBB8s", etype, 0, ifindex, 772, 0, 6, b"\0" * 8) + ip


def null_loop(ip: bytes, big_endian: bool = False, v6_af: int = 30) -> bytes:
    af = 2 if ip[0] >> 4 == 4 else v6_af
    return struct.pack(">I" if big_endian else "<I", af) + ip


LINKTYPE = {"ether": 1, "raw": 101, "sll": 113, "sll2": 276, "null": 0, "loop": 108}


def wrap(link: str, ip: bytes) -> bytes:
    if link == "ether":
        return ethernet(ip)
    if link == "raw":
        return ip
    if link == "sll":
        return sll(ip)
    if link == "sll2":
        return sll2(ip)
    if link == "null":
        return null_loop(ip)
    if link == "loop":
        return null_loop(ip, big_endian=True)
    raise ValueError(link)


def pcap(packets: list[tuple[int, bytes]], linktype: int, nano: bool = False,
         big_endian: bool = False) -> bytes:  # fmt: skip
    """packets: (ts in microseconds, frame)."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for ts, frame in packets:
        frac = (ts % 1_000_000) * (1000 if nano else 1)
        out.append(struct.pack(e + "IIII", ts // 1_000_000, frac, len(frame), len(frame)) + frame)
    return b"".join(out)


def _block(btype: int, body: bytes, e: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def _opt(code: int, value: bytes, e: str = "<") -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def pcapng(interfaces: list[tuple[int, str]], packets: list[tuple[int, int, bytes]],
           big_endian: bool = False, tsresol: int | None = None) -> bytes:  # fmt: skip
    """interfaces: (linktype, name); packets: (iface index, ts in microseconds, frame)."""
    e = ">" if big_endian else "<"
    shb = _block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)
    out = [shb]
    for lt, name in interfaces:
        opts = _opt(2, name.encode(), e)
        if tsresol is not None:
            opts += _opt(9, bytes([tsresol]), e)
        opts += struct.pack(e + "HH", 0, 0)
        out.append(_block(1, struct.pack(e + "HHI", lt, 0, 262144) + opts, e))
    mul = 1000 if tsresol == 9 else 1
    for idx, ts, frame in packets:
        t = ts * mul
        body = struct.pack(e + "IIIII", idx, t >> 32, t & 0xFFFFFFFF, len(frame), len(frame))
        out.append(_block(6, body + frame, e))
    return b"".join(out)


def refused_exchange(version: int = 4, t0: int = 1_700_000_000_000_000, n: int = 3,
                     port: int = 7211) -> list[tuple[int, bytes]]:  # fmt: skip
    """n SYNs to a closed port, each answered by RST+ACK: the case study on loopback."""
    pkts = []
    for i in range(n):
        ts = t0 + i * 500_000
        sport = 41838 + i
        isn = 1000 + i * 7919
        if version == 4:
            syn = ipv4_tcp("127.0.0.1", "127.0.0.1", sport, port, isn, 0, 0x02, ip_id=100 + i)
            rst = ipv4_tcp("127.0.0.1", "127.0.0.1", port, sport, 0, isn + 1, 0x14)
        else:
            syn = ipv6_tcp("::1", "::1", sport, port, isn, 0, 0x02)
            rst = ipv6_tcp("::1", "::1", port, sport, 0, isn + 1, 0x14)
        pkts += [(ts, syn), (ts + 40, rst)]
    return pkts
