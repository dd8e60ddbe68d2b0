#!/usr/bin/env python3
"""Write the synthetic test captures of tests/data/printer/ (stdlib only).

Real loopback/namespace traffic (capture_real.sh) cannot easily produce IPv4
options, IPv6 extension headers, odd TCP flags, truncation or bad checksums,
so these packets are built by hand here. The expected output still comes from
the real tcpdump (regen.sh); this script only writes the .pcap files.

    python3 tests/data/printer/make_synthetic.py   # then: sh tests/data/printer/regen.sh
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def a4(s: str) -> bytes:
    return ipaddress.IPv4Address(s).packed


def a6(s: str) -> bytes:
    return ipaddress.IPv6Address(s).packed


def tcp(
    sport: int,
    dport: int,
    seq: int = 0,
    ack: int = 0,
    flags: int = 0x02,
    win: int = 65535,
    opts: bytes = b"",
    payload: bytes = b"",
    urp: int = 0,
    off: int | None = None,
    res: int = 0,
) -> bytes:
    """TCP segment with a zero checksum; ip4()/ip6() fill it in (see fix_l4)."""
    if len(opts) % 4:
        opts += b"\0" * (4 - len(opts) % 4)
    doff = off if off is not None else (20 + len(opts)) // 4
    hdr = struct.pack(
        "!HHIIBBHHH", sport, dport, seq, ack, (doff << 4) | res, flags, win, 0, urp
    )
    return hdr + opts + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp4(typ: int, code: int, rest: bytes, body: bytes = b"") -> bytes:
    msg = struct.pack("!BBH", typ, code, 0) + rest + body
    c = csum(msg)
    return msg[:2] + struct.pack("!H", c) + msg[4:]


def icmp6_raw(typ: int, code: int, rest: bytes, body: bytes = b"") -> bytes:
    return struct.pack("!BBH", typ, code, 0) + rest + body


CK_OFF = {6: 16, 17: 6, 58: 2}


def fix_l4(proto: int, seg: bytes, pseudo: bytes, bad: int | None) -> bytes:
    """Fill in the TCP/UDP/ICMPv6 checksum; bad=N writes N instead (on purpose)."""
    if proto not in CK_OFF or len(seg) < CK_OFF[proto] + 2:
        return seg
    o = CK_OFF[proto]
    c = csum(pseudo + seg) if bad is None else bad
    return seg[:o] + struct.pack("!H", c) + seg[o + 2 :]


def ip4(
    src: str,
    dst: str,
    proto: int,
    seg: bytes,
    *,
    tos: int = 0,
    ttl: int = 64,
    ident: int = 0,
    frag: int = 0x4000,
    opts: bytes = b"",
    tot_len: int | None = None,
    bad_l4: int | None = None,
    bad_ip: int | None = None,
    l4_dst: str | None = None,
    ihl: int | None = None,
) -> bytes:
    if len(opts) % 4:
        opts += b"\0" * (4 - len(opts) % 4)
    hl = ihl if ihl is not None else 5 + len(opts) // 4
    length = 20 + len(opts) + len(seg) if tot_len is None else tot_len
    pseudo = a4(src) + a4(l4_dst or dst) + struct.pack("!BBH", 0, proto, len(seg))
    if proto != 1:
        seg = fix_l4(proto, seg, pseudo, bad_l4)
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | hl, tos, length, ident, frag, ttl, proto, 0, a4(src), a4(dst)
    ) + opts
    c = csum(hdr) if bad_ip is None else bad_ip
    hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
    return hdr + seg


def ip6(
    src: str,
    dst: str,
    nh: int,
    body: bytes,
    *,
    tc: int = 0,
    flow: int = 0,
    hlim: int = 64,
    plen: int | None = None,
    l4: tuple[int, int] | None = None,
    bad_l4: int | None = None,
) -> bytes:
    """IPv6 packet. body may start with extension headers; l4=(proto, offset)
    says where the upper-layer segment starts so its checksum can be filled in."""
    proto, at = l4 if l4 is not None else (nh, 0)
    seg = body[at:]
    pseudo = a6(src) + a6(dst) + struct.pack("!I3xB", len(seg), proto)
    seg = fix_l4(proto, seg, pseudo, bad_l4)
    body = body[:at] + seg
    length = len(body) if plen is None else plen
    first = (6 << 28) | (tc << 20) | flow
    return struct.pack("!IHBB16s16s", first, length, nh, hlim, a6(src), a6(dst)) + body


def ext(nh: int, data: bytes) -> bytes:
    """Generic hop-by-hop / destination-options style header padded to 8n."""
    total = 2 + len(data)
    pad = (-total) % 8
    if pad == 1:
        data += b"\x00"
    elif pad:
        data += bytes([1, pad - 2]) + b"\0" * (pad - 2)
    total = 2 + len(data)
    return bytes([nh, total // 8 - 1]) + data


# ----------------------------------------------------------------- pcap writer


def write_pcap(
    name: str,
    pkts: list[tuple[bytes, int | None]],
    linktype: int = LINKTYPE_ETHERNET,
    snaplen: int = 262144,
) -> None:
    """pkts: (ip packet, orig_len or None). Wraps each in the link layer."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for i, (ip, orig) in enumerate(pkts):
        v = ip[0] >> 4 if ip else 4
        if linktype == LINKTYPE_ETHERNET:
            et = 0x86DD if v == 6 else 0x0800
            link = MAC_B + MAC_A + struct.pack("!H", et)
        elif linktype == LINKTYPE_LINUX_SLL:
            et = 0x86DD if v == 6 else 0x0800
            link = struct.pack("!HHH", 0, 1, 6) + MAC_A + b"\0\0" + struct.pack("!H", et)
        elif linktype == LINKTYPE_NULL:
            link = struct.pack("<I", 30 if v == 6 else 2)
        else:
            link = b""
        frame = link + ip
        wire = len(link) + (orig if orig is not None else len(ip))
        ts = T0 + i
        usec = (i * 123457) % 1_000_000
        out.append(struct.pack("<IIII", ts, usec, len(frame), wire) + frame)
    (HERE / name).write_bytes(b"".join(out))


def p(ip: bytes, orig: int | None = None) -> tuple[bytes, int | None]:
    return (ip, orig)


# ----------------------------------------------------------------- cases

C4, S4 = "192.0.2.10", "198.51.100.20"
C6, S6 = "2001:db8::10", "2001:db8:1::20"
MSS = bytes([2, 4, 0x05, 0xB4])
SACKOK = bytes([4, 2])
NOP = b"\x01"
WS7 = bytes([3, 3, 7])


def ts_opt(val: int, ecr: int) -> bytes:
    return bytes([8, 10]) + struct.pack("!II", val, ecr)


LINUX_SYN_OPTS = MSS + SACKOK + ts_opt(123456, 0) + NOP + WS7


def tcp_flags_cases() -> None:
    pk = []
    combos = [
        0x02, 0x12, 0x04, 0x14, 0x11, 0x18, 0x10, 0x19, 0x00, 0x01, 0x08, 0x20, 0x30,
        0xC2, 0x52, 0x42, 0x80, 0xFF, 0x3F, 0x0C, 0x06, 0x07, 0x29,
    ]
    for i, fl in enumerate(combos):
        seg = tcp(40000 + i, 7211, seq=1000 + i, ack=5000 if fl & 0x10 else 0, flags=fl,
                  win=1024, urp=7 if fl & 0x20 else 0)
        pk.append(p(ip4(C4, S4, 6, seg, ident=i)))
    # reserved bits in the offset byte (tcpdump 4.99 ignores them)
    pk.append(p(ip4(C4, S4, 6, tcp(40100, 80, flags=0x02, res=0x0F), ident=99)))
    write_pcap("syn_tcp_flags.pcap", pk)


def tcp_options_cases() -> None:
    pk = []
    o = [
        LINUX_SYN_OPTS,
        MSS + NOP + WS7 + SACKOK + ts_opt(1, 2),
        NOP + NOP + ts_opt(0xFFFFFFFF, 0x80000000),
        NOP + NOP + bytes([5, 10]) + struct.pack("!II", 1100, 1200),  # sack 1 block
        NOP + NOP + bytes([5, 18]) + struct.pack("!IIII", 1100, 1200, 1300, 1400),
        NOP + NOP + bytes([5, 7]) + b"\1\2\3\4\5",  # malformed sack
        bytes([19, 18]) + bytes(range(16)),  # md5
        bytes([6, 6]) + struct.pack("!I", 77) + bytes([7, 6]) + struct.pack("!I", 88),  # echo
        bytes([11, 6, 0, 0, 0, 9]) + bytes([12, 6, 0, 0, 0, 10]) + bytes([13, 6, 0, 0, 0, 11]),
        bytes([28, 4, 0x01, 0x2D]),  # uto
        bytes([99, 5, 0xAA, 0xBB, 0xCC]),  # unknown
        bytes([99, 2]),  # unknown, no data
        b"\x00" + b"\x00\x00\x00",  # eol
        MSS + b"\x00\x00\x00\x00",  # mss then eol padding
        NOP + NOP + NOP + NOP,
        bytes([2, 3, 5]),  # mss with bad length
        bytes([2, 40]),  # option length beyond header
        bytes([2]),  # option byte but length missing? (padded by zero: len 0)
        bytes([3, 4, 7, 0]),  # wscale with len 4
        bytes([34, 2]),  # tfo cookie request
        bytes([34, 10]) + bytes(range(8)),  # tfo cookie
        bytes([254, 4, 0xF9, 0x89]),  # exp tfo cookie request
        bytes([254, 6, 0x12, 0x34, 0x56, 0x78]),  # exp unknown
        bytes([29, 6, 1, 2, 3, 4]),  # tcp-ao
        bytes([20, 4, 0x00, 0x01]),  # scps
        bytes([8, 6, 0, 0, 0, 1]),  # TS with bad length
    ]
    for i, opts in enumerate(o):
        fl = 0x02 if i % 2 == 0 else 0x12
        seg = tcp(41000 + i, 7211, seq=2000 + i, ack=9000 if fl & 0x10 else 0, flags=fl,
                  opts=opts, win=64240)
        pk.append(p(ip4(C4, S4, 6, seg, ident=100 + i)))
    write_pcap("syn_tcp_options.pcap", pk)


def ip4_header_cases() -> None:
    pk = []
    seg = lambda i: tcp(42000 + i, 443, seq=3000, flags=0x02)  # noqa: E731
    for i, tos in enumerate([0x00, 0x01, 0x02, 0x03, 0x10, 0xB8, 0xFF, 0xC0]):
        pk.append(p(ip4(C4, S4, 6, seg(i), tos=tos, ident=i)))
    for j, frag in enumerate([0x0000, 0x4000, 0x2000, 0x8000, 0xE000, 0x6000, 0xA000, 0xC000]):
        pk.append(p(ip4(C4, S4, 6, seg(20 + j), frag=frag, ident=20 + j)))
    pk.append(p(ip4(C4, S4, 6, seg(30), ttl=0, ident=30)))
    pk.append(p(ip4(C4, S4, 6, seg(31), ttl=255, ident=65535)))
    pk.append(p(ip4(C4, S4, 6, seg(32), bad_ip=0x1234, ident=32)))
    # non-first fragment carrying the rest of a TCP segment
    pk.append(p(ip4(C4, S4, 6, b"\x00" * 16, frag=0x0003, ident=33)))
    pk.append(p(ip4(C4, S4, 6, b"\x00" * 16, frag=0x2005, ident=34)))
    # first fragment (MF set): checksum is not verified
    pk.append(p(ip4(C4, S4, 6, tcp(42035, 443, flags=0x18, payload=b"x" * 24, ack=1), frag=0x2000, ident=35)))
    # unknown protocols / UDP
    pk.append(p(ip4(C4, S4, 17, udp(40000, 9999, b"hello"), ident=36)))
    pk.append(p(ip4(C4, S4, 250, b"\x00" * 8, ident=37)))
    pk.append(p(ip4(C4, S4, 253, b"\x00" * 8, ident=38)))
    write_pcap("syn_ip4_header.pcap", pk)


def ip4_options_cases() -> None:
    pk = []
    rr = bytes([7, 11, 4]) + a4("192.0.2.1") + a4("0.0.0.0")
    rr_full = bytes([7, 11, 12]) + a4("192.0.2.1") + a4("192.0.2.2")
    tsonly = bytes([68, 12, 5, 0]) + struct.pack("!II", 1000, 0)
    tsaddr = bytes([68, 12, 13, 1]) + a4("192.0.2.1") + struct.pack("!I", 4242)
    tsaddr_ovf = bytes([68, 12, 5, 0x31]) + a4("192.0.2.1") + struct.pack("!I", 0)
    tspre = bytes([68, 12, 5, 3]) + a4("192.0.2.1") + struct.pack("!I", 0)
    lsrr = bytes([131, 7, 4]) + a4("203.0.113.5")
    ssrr = bytes([137, 11, 8]) + a4("203.0.113.5") + a4("203.0.113.6")
    ra = bytes([148, 4, 0, 0])
    ra1 = bytes([148, 4, 0, 1])
    sec = bytes([130, 11]) + b"\0" * 9
    unknown = bytes([200, 4, 1, 2])
    cases = [
        NOP * 4,
        b"\x00" * 4,
        NOP + rr,
        rr_full + NOP,
        tsonly,
        tsaddr,
        tsaddr_ovf,
        tspre,
        NOP + lsrr,
        ssrr + NOP,
        ra,
        ra1,
        sec + NOP,
        unknown,
        NOP + NOP + bytes([7, 2]),  # RR too short
        bytes([7, 40]) + b"\0\0",  # option longer than header
        bytes([68, 3, 5, 0]),  # timestamp too short
        bytes([68, 8, 5, 7]) + b"\0" * 4,  # bad ts type
        bytes([1, 0, 0, 0]),  # NOP then EOL
        bytes([7, 1, 0, 0]),  # length < 2
    ]
    for i, opts in enumerate(cases):
        seg = tcp(43000 + i, 22, seq=4000, flags=0x02)
        dst_for_ck = None
        if opts in (lsrr, NOP + lsrr):
            dst_for_ck = "203.0.113.5"
        if opts == ssrr + NOP:
            dst_for_ck = "203.0.113.6"
        pk.append(p(ip4(C4, S4, 6, seg, opts=opts, ident=200 + i, l4_dst=dst_for_ck)))
    # source route but the TCP checksum computed over the header dst: shows tcpdump's choice
    pk.append(p(ip4(C4, S4, 6, tcp(43100, 22, flags=0x02), opts=NOP + lsrr, ident=299)))
    write_pcap("syn_ip4_options.pcap", pk)


def ip6_cases() -> None:
    pk = []
    seg = tcp(44000, 7211, seq=5000, flags=0x02, opts=LINUX_SYN_OPTS)
    pk.append(p(ip6(C6, S6, 6, seg)))
    pk.append(p(ip6(C6, S6, 6, seg, flow=0x12345, tc=0)))
    pk.append(p(ip6(C6, S6, 6, seg, tc=0x02, flow=0xABCDE)))
    pk.append(p(ip6(C6, S6, 6, seg, tc=0xB8)))
    pk.append(p(ip6(C6, S6, 6, seg, tc=0x03, hlim=1)))
    pk.append(p(ip6(C6, S6, 6, seg, hlim=0)))
    pk.append(p(ip6(C6, S6, 6, seg, bad_l4=0xBEEF)))
    pk.append(p(ip6("::1", "::1", 6, tcp(7211, 41838, seq=0, ack=77, flags=0x14, win=0))))
    pk.append(p(ip6("fe80::1", "ff02::1", 6, tcp(1, 2, flags=0x04))))
    pk.append(p(ip6("::ffff:192.0.2.1", "2001:db8::", 6, tcp(1, 2, flags=0x01))))
    # hop-by-hop with router alert + PadN
    hbh = ext(6, bytes([5, 2, 0, 0]))
    pk.append(p(ip6(C6, S6, 0, hbh + seg, l4=(6, len(hbh)))))
    # hop-by-hop with jumbo-less unknown option and Pad1s
    hbh2 = ext(6, bytes([0x3E, 2, 0xAA, 0xBB]) + b"\x00\x00")
    pk.append(p(ip6(C6, S6, 0, hbh2 + seg, l4=(6, len(hbh2)))))
    # destination options (tunnel encap limit / unknown)
    dst = ext(6, bytes([4, 1, 4]) + bytes([0xC2, 4, 0, 0, 0, 0]))
    pk.append(p(ip6(C6, S6, 60, dst + seg, l4=(6, len(dst)))))
    # routing header type 0 with 1 address and type 2
    rt0 = bytes([6, 2, 0, 1, 0, 0, 0, 0]) + a6("2001:db8:2::1")
    pk.append(p(ip6(C6, S6, 43, rt0 + seg, l4=(6, len(rt0)))))
    rt2 = bytes([6, 2, 2, 1, 0, 0, 0, 0]) + a6("2001:db8:3::1")
    pk.append(p(ip6(C6, S6, 43, rt2 + seg, l4=(6, len(rt2)))))
    # segment routing (type 4)
    srh = bytes([6, 4, 4, 1, 1, 0, 0, 0]) + a6("2001:db8:4::1") + a6("2001:db8:4::2")
    pk.append(p(ip6(C6, S6, 43, srh + seg, l4=(6, len(srh)))))
    # fragment headers: first fragment (with TCP), later fragment
    fr0 = struct.pack("!BBHI", 6, 0, 0x0001, 0xDEADBEEF)
    pk.append(p(ip6(C6, S6, 44, fr0 + seg, l4=(6, len(fr0)))))
    fr1 = struct.pack("!BBHI", 6, 0, (8 << 3), 0xDEADBEEF)
    pk.append(p(ip6(C6, S6, 44, fr1 + b"\x00" * 16)))
    fr_atomic = struct.pack("!BBHI", 6, 0, 0, 7)
    pk.append(p(ip6(C6, S6, 44, fr_atomic + seg, l4=(6, len(fr_atomic)))))
    # chain: hbh -> dstopts -> routing -> frag -> tcp
    chain_frag = struct.pack("!BBHI", 6, 0, 0, 9)
    chain_rt = bytes([44, 2, 0, 0, 0, 0, 0, 0]) + a6("2001:db8:5::1")
    chain_dst = ext(43, bytes([0x1E, 2, 1, 2]))
    chain_hbh = ext(60, b"")
    body = chain_hbh + chain_dst + chain_rt + chain_frag
    pk.append(p(ip6(C6, S6, 0, body + seg, l4=(6, len(body)))))
    # no next header / unknown / UDP
    pk.append(p(ip6(C6, S6, 59, b"")))
    pk.append(p(ip6(C6, S6, 253, b"\x00" * 8)))
    pk.append(p(ip6(C6, S6, 17, udp(40000, 9999, b"abc"))))
    # payload length 0 (jumbogram-ish): tcpdump skips the checksum
    pk.append(p(ip6(C6, S6, 6, seg, plen=0)))
    # payload length longer than captured / shorter than data
    pk.append(p(ip6(C6, S6, 6, seg, plen=len(seg) + 10)))
    pk.append(p(ip6(C6, S6, 6, seg + b"trailer!", plen=len(seg))))
    write_pcap("syn_ip6.pcap", pk)


def icmp_cases() -> None:
    pk = []
    inner_tcp = tcp(41838, 7211, seq=2154306034, flags=0x02, opts=LINUX_SYN_OPTS, win=65495)
    inner = ip4("127.0.0.1", "127.0.0.1", 6, inner_tcp, ident=4321)
    for code in range(16):
        rest = struct.pack("!HH", 0, 1400 if code == 4 else 0)
        msg = icmp4(3, code, rest, inner)
        pk.append(p(ip4("198.51.100.1", C4, 1, msg, tos=0xC0, ident=code, frag=0)))
    # router style: only 8 bytes of the TCP header quoted
    msg = icmp4(3, 1, b"\0" * 4, inner[:28])
    pk.append(p(ip4("198.51.100.1", C4, 1, msg, tos=0xC0, frag=0)))
    # quoted UDP
    qudp = ip4(C4, S4, 17, udp(5000, 9999, b"q" * 12), ident=5)
    pk.append(p(ip4(S4, C4, 1, icmp4(3, 3, b"\0" * 4, qudp), frag=0)))
    # unknown code
    pk.append(p(ip4(S4, C4, 1, icmp4(3, 99, b"\0" * 4, inner), frag=0)))
    # bad ICMP checksum
    m = bytearray(icmp4(3, 3, b"\0" * 4, inner))
    m[2:4] = b"\x12\x34"
    pk.append(p(ip4(S4, C4, 1, bytes(m), frag=0)))
    # echo request / reply, time exceeded, redirect, source quench, param problem
    pk.append(p(ip4(C4, S4, 1, icmp4(8, 0, struct.pack("!HH", 0x1234, 1), b"ping" * 4))))
    pk.append(p(ip4(S4, C4, 1, icmp4(0, 0, struct.pack("!HH", 0x1234, 1), b"ping" * 4))))
    pk.append(p(ip4(S4, C4, 1, icmp4(11, 0, b"\0" * 4, inner), frag=0)))
    pk.append(p(ip4(S4, C4, 1, icmp4(5, 1, a4("192.0.2.99"), inner), frag=0)))
    pk.append(p(ip4(S4, C4, 1, icmp4(12, 0, bytes([20, 0, 0, 0]), inner), frag=0)))
    pk.append(p(ip4(S4, C4, 1, icmp4(13, 0, struct.pack("!HH", 1, 2), b"\0" * 12))))
    # ICMPv6 destination unreachable, all codes
    inner6 = ip6("::1", "::1", 6, tcp(41838, 7211, seq=1, flags=0x02, opts=LINUX_SYN_OPTS))
    for code in range(9):
        m6 = icmp6_raw(1, code, b"\0" * 4, inner6)
        pk.append(p(ip6("2001:db8::1", C6, 58, m6)))
    pk.append(p(ip6("2001:db8::1", C6, 58, icmp6_raw(1, 4, b"\0" * 4, inner6[:48]))))
    pk.append(p(ip6("2001:db8::1", C6, 58, icmp6_raw(1, 4, b"\0" * 4, inner6), bad_l4=0x4242)))
    pk.append(p(ip6(C6, S6, 58, icmp6_raw(128, 0, struct.pack("!HH", 7, 1), b"abcd"))))
    pk.append(p(ip6(S6, C6, 58, icmp6_raw(129, 0, struct.pack("!HH", 7, 1), b"abcd"))))
    pk.append(p(ip6(S6, C6, 58, icmp6_raw(2, 0, struct.pack("!I", 1280), inner6))))
    pk.append(p(ip6(S6, C6, 58, icmp6_raw(3, 0, b"\0" * 4, inner6))))
    pk.append(p(ip6(S6, C6, 58, icmp6_raw(4, 1, struct.pack("!I", 6), inner6))))
    # neighbor discovery (seen in every real IPv6 capture): NS, NA, RS, odd options
    sll = bytes([1, 1]) + bytes.fromhex("020000000010")
    tll = bytes([2, 1]) + bytes.fromhex("020000000020")
    pk.append(p(ip6(C6, "ff02::1:ff00:20", 58, icmp6_raw(135, 0, b"\0" * 4, a6(S6) + sll),
                    hlim=255)))
    pk.append(p(ip6(S6, C6, 58, icmp6_raw(136, 0, struct.pack("!I", 0x60000000), a6(S6) + tll),
                    hlim=255)))
    pk.append(p(ip6(S6, C6, 58, icmp6_raw(136, 0, struct.pack("!I", 0xE0000000), a6(S6)),
                    hlim=255)))
    pk.append(p(ip6(C6, "ff02::2", 58, icmp6_raw(133, 0, b"\0" * 4, sll), hlim=255)))
    mtu = bytes([5, 1, 0, 0]) + struct.pack("!I", 1500)
    odd = bytes([99, 1]) + b"\xaa" * 6
    pk.append(p(ip6(C6, "ff02::2", 58, icmp6_raw(133, 0, b"\0" * 4, mtu + odd), hlim=255)))
    pk.append(p(ip6(C6, "ff02::2", 58, icmp6_raw(135, 0, b"\0" * 4, a6(S6) + bytes([1, 0])),
                    hlim=255)))
    write_pcap("syn_icmp.pcap", pk)


def truncated_cases() -> None:
    """Captured bytes cut short of what the headers claim (snaplen)."""
    seg = tcp(45000, 7211, seq=6000, ack=7000, flags=0x18, opts=NOP + NOP + ts_opt(5, 6),
              payload=b"GET / HTTP/1.0\r\n\r\n")
    full4 = ip4(C4, S4, 6, seg, ident=1)
    full6 = ip6(C6, S6, 6, seg)
    pk = []
    for cut in (0, 1, 10, 19, 20, 21, 22, 23, 24, 30, 39, 40, 44, 50, 51, 52, 53, 60, 61, 70):
        pk.append(p(full4[:cut], len(full4)))
    for cut in (0, 1, 8, 39, 40, 41, 42, 44, 50, 59, 60, 64, 70, 72, 73, 80, 90):
        pk.append(p(full6[:cut], len(full6)))
    # the IP header says more than the capture and the wire had (no snaplen cut)
    pk.append(p(ip4(C4, S4, 6, tcp(45001, 80, flags=0x02), tot_len=80, ident=2)))
    pk.append(p(ip4(C4, S4, 6, tcp(45002, 80, flags=0x02), tot_len=30, ident=3)))
    pk.append(p(ip4(C4, S4, 6, tcp(45003, 80, flags=0x02), tot_len=10, ident=4)))
    pk.append(p(ip4(C4, S4, 6, tcp(45004, 80, flags=0x02), ihl=4, ident=5)))
    pk.append(p(ip4(C4, S4, 6, tcp(45005, 80, flags=0x02), ihl=15, ident=6)))
    # IP version mismatches
    bad_v = bytearray(ip4(C4, S4, 6, tcp(45006, 80, flags=0x02)))
    bad_v[0] = 0x55
    pk.append(p(bytes(bad_v)))
    # TCP data offset too small / too big
    pk.append(p(ip4(C4, S4, 6, tcp(45007, 80, flags=0x02, off=4), ident=7)))
    pk.append(p(ip4(C4, S4, 6, tcp(45008, 80, flags=0x02, off=15), ident=8)))
    pk.append(p(ip6(C6, S6, 6, tcp(45009, 80, flags=0x02, off=2))))
    # RST with payload (tcpdump -v prints it), long and short, non-printable
    pk.append(p(ip4(S4, C4, 6, tcp(80, 45010, flags=0x04, seq=1, payload=b"reset: no listener"))))
    pk.append(p(ip4(S4, C4, 6, tcp(80, 45011, flags=0x14, seq=1, ack=2,
                                  payload=b"A" * 40 + b"\x00\x01\x7f\x80\xff"))))
    pk.append(p(ip4(S4, C4, 6, tcp(8080, 45012, flags=0x04, seq=1,
                                  payload=b"\x00\x01\n\r\t\x7f\x80\xc3\xa9 ok"))))
    # data segments on ports tcpdump does not decode
    pk.append(p(ip4(C4, S4, 6, tcp(45013, 7211, flags=0x18, seq=10, ack=20, payload=b"hello\n"))))
    pk.append(p(ip4(C4, S4, 6, tcp(45014, 7211, flags=0x18, seq=10, ack=20, payload=b"x" * 300),
                   ident=9)))
    # odd-length payload checksum, correct and incorrect
    pk.append(p(ip4(C4, S4, 6, tcp(45015, 7211, flags=0x18, seq=10, ack=20, payload=b"abc"))))
    pk.append(p(ip4(C4, S4, 6, tcp(45016, 7211, flags=0x18, seq=10, ack=20, payload=b"abc"),
                   bad_l4=0)))
    pk.append(p(ip4(C4, S4, 6, tcp(45017, 7211, flags=0x10, seq=10, ack=20), bad_l4=0xFFFF)))
    pk.append(p(ip4(C4, S4, 6, tcp(45018, 7211, flags=0x10, seq=10, ack=20), bad_l4=0x0000)))
    pk.append(p(ip6(C6, S6, 6, tcp(45019, 7211, flags=0x11, seq=10, ack=20, payload=b"abc"))))
    # wire length bigger than captured for a complete TCP header: no checksum shown
    seg2 = tcp(45020, 7211, flags=0x10, seq=1, ack=1, payload=b"z" * 100)
    full = ip4(C4, S4, 6, seg2, ident=10)
    pk.append(p(full[:54], len(full)))
    pk.append(p(full[:40], len(full)))
    write_pcap("syn_truncated.pcap", pk, snaplen=262144)


def sequence_cases() -> None:
    """Relative sequence numbers: tcpdump keeps per-connection state."""
    pk = []
    a, b = ("192.0.2.1", 40001), ("192.0.2.2", 7211)

    def seg4(src, dst, **kw):
        return p(ip4(src[0], dst[0], 6, tcp(src[1], dst[1], **kw)))

    # full handshake, data, SACK, FIN
    pk.append(seg4(a, b, seq=1000, flags=0x02, opts=LINUX_SYN_OPTS))
    pk.append(seg4(b, a, seq=5000, ack=1001, flags=0x12, opts=LINUX_SYN_OPTS))
    pk.append(seg4(a, b, seq=1001, ack=5001, flags=0x10))
    pk.append(seg4(a, b, seq=1001, ack=5001, flags=0x18, payload=b"x" * 10))
    pk.append(seg4(b, a, seq=5001, ack=1011, flags=0x10,
                   opts=NOP + NOP + bytes([5, 10]) + struct.pack("!II", 1021, 1031)))
    pk.append(seg4(a, b, seq=1011, ack=5001, flags=0x11))
    pk.append(seg4(b, a, seq=5001, ack=1012, flags=0x14))
    # RST (no ACK) on the same connection: absolute, state untouched
    pk.append(seg4(b, a, seq=5001, flags=0x04))
    # mid-stream connection: first ACK packet seen defines the base
    c, d = ("192.0.2.3", 50000), ("192.0.2.4", 443)
    pk.append(seg4(c, d, seq=777777, ack=888888, flags=0x18, payload=b"y" * 5))
    pk.append(seg4(d, c, seq=888888, ack=777782, flags=0x10))
    pk.append(seg4(c, d, seq=777782, ack=888888, flags=0x10))
    # new SYN-ACK on the same tuple resets the base (reused port)
    pk.append(seg4(b, a, seq=9000, ack=3001, flags=0x12))
    pk.append(seg4(a, b, seq=3001, ack=9001, flags=0x10))
    # wrap-around
    e, f = ("192.0.2.5", 1000), ("192.0.2.6", 1000)
    pk.append(seg4(e, f, seq=0xFFFFFFF0, ack=0, flags=0x12))
    pk.append(seg4(f, e, seq=5, ack=0xFFFFFFF1, flags=0x10))
    pk.append(seg4(e, f, seq=0xFFFFFFF1, ack=6, flags=0x18, payload=b"w" * 32))
    # same ports, address order decides the direction key
    pk.append(seg4(f, e, seq=6, ack=0x11, flags=0x10))
    # IPv6 connection with same ports as an IPv4 one: separate tables
    g, h = ("2001:db8::1", 40001), ("2001:db8::2", 7211)
    pk.append(p(ip6(g[0], h[0], 6, tcp(g[1], h[1], seq=1000, ack=42, flags=0x10))))
    pk.append(p(ip6(h[0], g[0], 6, tcp(h[1], g[1], seq=42, ack=1010, flags=0x10))))
    pk.append(p(ip6(g[0], h[0], 6, tcp(g[1], h[1], seq=1010, ack=52, flags=0x14))))
    write_pcap("syn_relative_seq.pcap", pk)


def linktypes() -> None:
    seg = tcp(46000, 7211, seq=1, flags=0x02, opts=LINUX_SYN_OPTS)
    rst = tcp(7211, 46000, seq=0, ack=2, flags=0x14, win=0)
    pk = [p(ip4("127.0.0.1", "127.0.0.1", 6, seg)), p(ip4("127.0.0.1", "127.0.0.1", 6, rst)),
          p(ip6("::1", "::1", 6, seg))]
    write_pcap("syn_linktype_raw.pcap", pk, LINKTYPE_RAW)
    write_pcap("syn_linktype_sll.pcap", pk, LINKTYPE_LINUX_SLL)
    write_pcap("syn_linktype_null.pcap", pk, LINKTYPE_NULL)


def main() -> None:
    tcp_flags_cases()
    tcp_options_cases()
    ip4_header_cases()
    ip4_options_cases()
    ip6_cases()
    icmp_cases()
    truncated_cases()
    sequence_cases()
    linktypes()


if __name__ == "__main__":
    main()
