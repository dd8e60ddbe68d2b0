"""Byte-identical re-implementation of ``TZ=UTC tcpdump -n -v`` (4.99.3) output.

Pure Python, stdlib only. ``format_packet(ts_us, raw)`` returns what tcpdump
prints for a capture holding only that packet; ``TcpdumpPrinter`` keeps the
per-connection state tcpdump keeps (relative sequence numbers), so feeding it a
capture in order reproduces the whole ``tcpdump -n -v -r`` output.

``raw`` starts at the IP header (link layer stripped). The structure mirrors
tcpdump's printers (print-ip.c, print-ip6.c, print-ip6opts.c, print-rt6.c,
print-frag6.c, print-tcp.c, print-udp.c, print-icmp.c, print-icmp6.c), since the
output quirks only make sense against that code: tcpdump bails out of a
truncated packet with a longjmp that prints `` [|proto]``, which is modelled
here by the ``_Trunc`` exception.

Covered exactly: IPv4 header and options, IPv6 header and extension headers
(hop-by-hop, destination options, routing types 0/2/4, fragment), TCP (flags,
checksums, relative seq/ack, all options tcpdump names except MPTCP, RST data),
ICMP and ICMPv6 errors with the quoted packet, echo, truncation.
Not covered (the output stays one plausible line, but may differ from tcpdump):
application payload dissectors (only plain HTTP request/response lines on ports
80/8080 are rendered; DNS, TLS, SSH, BGP, ... are not), UDP port dissectors
(UDP always prints ``UDP, length N``), MPTCP options, IPv6 jumbograms, ICMPv6
router advertisements/MLD/redirects and NDP prefix/RDNSS options (neighbor
solicitation/advertisement and router solicitation are covered), ICMP
timestamp/mask replies and router adverts, MPLS extensions, IP protocols other
than TCP/UDP/ICMP/ICMPv6 (printed as ``ip-proto-N``), and link-layer prefixes
(``-e``, the Linux "any" device's ``ifname Out``).
"""

from __future__ import annotations

import time

__all__ = ["TcpdumpPrinter", "format_packet"]


class _Trunc(Exception):
    """tcpdump's longjmp out of a printer on a short capture: prints `` [|proto]``."""

    def __init__(self, proto: str) -> None:
        super().__init__(proto)
        self.proto = proto


# --------------------------------------------------------------------- tables

_IPPROTO = {
    0: "Options",
    1: "ICMP",
    2: "IGMP",
    4: "IPIP",
    6: "TCP",
    8: "EGP",
    9: "IGRP",
    17: "UDP",
    33: "DCCP",
    41: "IPv6",
    43: "Routing",
    44: "Fragment",
    46: "RSVP",
    47: "GRE",
    50: "ESP",
    51: "AH",
    55: "Mobile IP",
    58: "ICMPv6",
    62: "Mobile IP (old)",
    88: "EIGRP",
    89: "OSPF",
    103: "PIM",
    108: "Compressed IP",
    112: "VRRP",
    113: "PGM",
    132: "SCTP",
    135: "Mobility",
}

_TCP_FLAGS = (
    (0x01, "F"),
    (0x02, "S"),
    (0x04, "R"),
    (0x08, "P"),
    (0x10, "."),
    (0x20, "U"),
    (0x40, "E"),
    (0x80, "W"),
)

_TCP_OPT_NAMES = {
    0: "eol",
    1: "nop",
    2: "mss",
    3: "wscale",
    4: "sackOK",
    5: "sack",
    6: "echo",
    7: "echoreply",
    8: "TS",
    11: "cc",
    12: "ccnew",
    13: "",
    19: "md5",
    20: "scps",
    28: "uto",
    29: "tcp-ao",
    30: "mptcp",
    34: "tfo",
    254: "exp",
}

_IP_OPT_NAMES = {
    0: "EOL",
    1: "NOP",
    68: "timestamp",
    130: "security",
    7: "RR",
    137: "SSRR",
    131: "LSRR",
    148: "RA",
    82: "traceroute",
}

# ICMP destination unreachable codes 5..15; %s is the quoted destination.
_UNREACH = {
    5: "%s unreachable - source route failed",
    6: "net %s unreachable - unknown",
    7: "host %s unreachable - unknown",
    8: "%s unreachable - source host isolated",
    9: "net %s unreachable - admin prohibited",
    10: "host %s unreachable - admin prohibited",
    11: "net %s unreachable - tos prohibited",
    12: "host %s unreachable - tos prohibited",
    13: "host %s unreachable - admin prohibited filter",
    14: "host %s unreachable - host precedence violation",
    15: "host %s unreachable - precedence cutoff",
}

_ICMP_NAMES = {
    0: "echo reply",
    4: "source quench",
    8: "echo request",
    10: "router solicitation",
    13: "time stamp request",
    14: "time stamp reply",
    15: "information request",
    16: "information reply",
    17: "address mask request",
}

_ICMP6_NAMES = {
    1: "destination unreachable",
    2: "packet too big",
    3: "time exceeded in-transit",
    4: "parameter problem",
    128: "echo request",
    129: "echo reply",
    130: "multicast listener query",
    131: "multicast listener report",
    132: "multicast listener done",
    133: "router solicitation",
    134: "router advertisement",
    135: "neighbor solicitation",
    136: "neighbor advertisement",
    137: "redirect",
    138: "router renumbering",
    141: "inverse neighbor solicitation",
    142: "inverse neighbor advertisement",
    143: "multicast listener report v2",
    144: "ha discovery request",
    145: "ha discovery reply",
    146: "mobile router solicitation",
    147: "mobile router advertisement",
    139: "node information query",
    140: "node information reply",
    200: "mtrace response",
    201: "mtrace message",
    155: "RPL",
}

_ICMP6_UNREACH = {
    0: "unreachable route",
    1: " unreachable prohibited",
    2: "beyond scope",
    3: "unreachable address",
    4: "unreachable port",
}

_HTTP_CMDS = (
    "options",
    "get",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "connect",
    "propfind",
    "proppatch",
    "copy",
    "move",
    "lock",
    "unlock",
    "mkcol",
)


# --------------------------------------------------------------------- helpers


def _fold(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def _cksum(*parts: bytes) -> int:
    """Internet checksum over the concatenation; 0 means the stored sum is right."""
    return ~_fold(_sum16(b"".join(parts))) & 0xFFFF


def _shouldbe(stored: int, computed: int) -> int:
    # in_cksum_shouldbe(): what the checksum field should have held.
    s = stored + computed
    s = (s & 0xFFFF) + (s >> 16)
    return ((s & 0xFFFF) + (s >> 16)) & 0xFFFF


def _ip4(b: bytes) -> str:
    return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}"


def _ip6(b: bytes) -> str:
    """addrtostr6(): BSD inet_ntop rules (IPv4-mapped/compatible in dotted form)."""
    words = [int.from_bytes(b[i : i + 2], "big") for i in range(0, 16, 2)]
    best_base, best_len, cur_base, cur_len = -1, 0, -1, 0
    for i, w in enumerate(words):
        if w == 0:
            if cur_base < 0:
                cur_base, cur_len = i, 1
            else:
                cur_len += 1
        elif cur_base >= 0:
            if cur_len > best_len:
                best_base, best_len = cur_base, cur_len
            cur_base = -1
    if cur_base >= 0 and cur_len > best_len:
        best_base, best_len = cur_base, cur_len
    if best_len < 2:
        best_base = -1
    out: list[str] = []
    i = 0
    while i < 8:
        if best_base >= 0 and best_base <= i < best_base + best_len:
            if i == best_base:
                out.append(":")
            i += 1
            continue
        if i:
            out.append(":")
        if i == 6 and best_base == 0 and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF)):
            out.append(_ip4(b[12:16]))
            break
        out.append(f"{words[i]:x}")
        i += 1
    if best_base >= 0 and best_base + best_len == 8:
        out.append(":")
    return "".join(out)


def _ts(ts_us: int) -> str:
    sec, usec = divmod(ts_us, 1_000_000)
    t = time.gmtime(sec)
    return f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{usec:06d}"


def _char(c: int) -> str:
    """fn_print_char(): M- for 8-bit, ^X for control characters."""
    s = ""
    if c & 0x80:
        c &= 0x7F
        s = "M-"
    if not 0x20 <= c < 0x7F:
        c ^= 0x40
        s += "^"
    return s + chr(c)


class _Ctx:
    """One packet being printed: the bytes, the captured end, the output."""

    def __init__(self, buf: bytes, tables: tuple[dict, dict]) -> None:
        self.buf = buf
        self.snapend = len(buf)
        self.proto = ""
        self.out: list[str] = []
        self.tables = tables

    def p(self, s: str) -> None:
        self.out.append(s)

    def avail(self, off: int, n: int) -> bool:
        return off >= 0 and n >= 0 and off + n <= self.snapend

    def check(self, off: int, n: int) -> None:
        if not self.avail(off, n):
            raise _Trunc(self.proto)

    def u8(self, off: int) -> int:
        self.check(off, 1)
        return self.buf[off]

    def u16(self, off: int) -> int:
        self.check(off, 2)
        return int.from_bytes(self.buf[off : off + 2], "big")

    def u32(self, off: int) -> int:
        self.check(off, 4)
        return int.from_bytes(self.buf[off : off + 4], "big")

    def a4(self, off: int) -> str:
        self.check(off, 4)
        return _ip4(self.buf[off : off + 4])

    def a6(self, off: int) -> str:
        self.check(off, 16)
        return _ip6(self.buf[off : off + 16])

    def push_snap(self, off: int, length: int) -> int:
        """nd_push_snaplen(): never extends the captured end; returns the old one."""
        old = self.snapend
        self.snapend = min(self.snapend, max(off, 0) + max(length, 0))
        return old


# --------------------------------------------------------------------- IPv4


def _ip_optprint(c: _Ctx, cp: int, length: int) -> None:
    sep = ""
    while length > 0:
        c.p(sep)
        sep = ","
        code = c.u8(cp)
        c.p(_IP_OPT_NAMES.get(code, f"unknown {code}"))
        if code in (0, 1):
            olen = 1
        else:
            olen = c.u8(cp + 1)
            if olen < 2:
                c.p(f" [bad length {olen}]")
                return
        if olen > length:
            c.p(f" [bad length {olen}]")
            return
        if code == 0:
            return
        if code == 68:
            _ip_printts(c, cp, olen)
        elif code in (7, 131, 137):
            _ip_printroute(c, cp, olen)
        elif code == 148:
            if olen < 4:
                c.p(f" [bad length {olen}]")
            else:
                v = c.u16(cp + 2)
                if v:
                    c.p(f" value {v}")
        cp += olen
        length -= olen


def _ip_printroute(c: _Ctx, cp: int, length: int) -> None:
    if length < 3:
        c.p(f" [bad length {length}]")
        return
    if (length + 1) & 3:
        c.p(f" [bad length {length}]")
    ptr = c.u8(cp + 2) - 1
    if ptr < 3 or ((ptr + 1) & 3) or ptr > length + 1:
        c.p(f" [bad ptr {c.u8(cp + 2)}]")
    off = 3
    while off < length:
        c.p(" " + c.a4(cp + off))
        if ptr > off:
            c.p(",")
        off += 4


def _ip_printts(c: _Ctx, cp: int, length: int) -> None:
    if length < 4:
        c.p(f"[bad length {length}]")
        return
    c.p(" TS{")
    flg = c.u8(cp + 3)
    hoplen = 8 if (flg & 0xF) != 0 else 4
    if (length - 4) & (hoplen - 1):
        c.p(f"[bad length {length}]")
    ptr = c.u8(cp + 2) - 1
    off = 0
    if ptr < 4 or ((ptr - 4) & (hoplen - 1)) or ptr > length + 1:
        c.p(f"[bad ptr {c.u8(cp + 2)}]")
    kind = flg & 0xF
    if kind in (0, 1, 3):
        c.p({0: "TSONLY", 1: "TS+ADDR", 3: "PRESPEC"}[kind])
        typ = " "
        off = 4
        while off < length:
            if ptr == off:
                typ = " ^ "
            c.p(f"{typ}{c.u32(cp + off + hoplen - 4)}@{(c.a4(cp + off) if hoplen == 8 else '')}")
            typ = " "
            off += hoplen
    else:
        c.p(f"[bad ts type {kind}]")
    c.p(" ^ " if ptr == off else "")
    if flg >> 4:
        c.p(f" [{flg >> 4} hops not recorded]}} ")
    else:
        c.p("}")


def _ip_finddst(c: _Ctx, ip: int) -> bytes:
    """Final destination for the pseudo-header: last hop of a source route."""
    length = (c.buf[ip] & 0xF) * 4 - 20
    cp = ip + 20
    while length > 0:
        tt = c.u8(cp)
        if tt == 0:
            break
        if tt == 1:
            olen = 1
        else:
            olen = c.u8(cp + 1)
            if olen < 2:
                break
        if length < olen:
            break
        if tt in (131, 137) and olen >= 7:
            c.check(cp + olen - 4, 4)
            return c.buf[cp + olen - 4 : cp + olen]
        cp += olen
        length -= olen
    c.check(ip + 16, 4)
    return c.buf[ip + 16 : ip + 20]


def _ip_print(c: _Ctx, ip: int, length: int) -> None:
    c.proto = "ip"
    ver = c.u8(ip) >> 4
    if ver != 4:
        c.p("IP6, wrong link-layer encapsulation" if ver == 6 else f"IP{ver}")
        c.p(" (invalid)")
        return
    c.p("IP ")
    c.check(ip, 20)
    if length < 20:
        c.p(f"truncated-ip {length}")
        return
    hlen = (c.buf[ip] & 0xF) * 4
    if hlen < 20:
        c.p(f"bad-hlen {hlen}")
        return
    ip_len = c.u16(ip + 2)
    if length < ip_len:
        c.p(f"truncated-ip - {ip_len - length} bytes missing! ")
    if ip_len < hlen:
        c.p(f"bad-len {ip_len}")
        return
    saved = c.push_snap(ip, min(length, ip_len))
    off = c.u16(ip + 6)
    proto = c.u8(ip + 9)
    tos = c.u8(ip + 1)
    c.p(f"(tos 0x{tos:x}")
    c.p(("", ",ECT(1)", ",ECT(0)", ",CE")[tos & 3])
    ttl = c.u8(ip + 8)
    if ttl >= 1:
        c.p(f", ttl {ttl}")
    flags = [n for bit, n in ((0x2000, "+"), (0x4000, "DF"), (0x8000, "rsvd")) if off & bit]
    fl = ", ".join(flags) or "none"
    name = _IPPROTO.get(proto, "unknown")
    c.p(f", id {c.u16(ip + 4)}, offset {(off & 0x1FFF) * 8}, flags [{fl}], proto {name} ({proto})")
    c.p(f", length {ip_len}")
    if hlen > 20:
        c.p(", options (")
        _ip_optprint(c, ip + 20, hlen - 20)
        c.p(")")
    if c.avail(ip, hlen):
        s = _cksum(c.buf[ip : ip + hlen])
        if s:
            stored = c.u16(ip + 10)
            c.p(f", bad cksum {stored:x} (->{_shouldbe(stored, s):x})!")
    c.p(")\n    ")
    if off & 0x1FFF == 0:
        if proto not in (6, 17, 132, 33):
            c.p(f"{c.a4(ip + 12)} > {c.a4(ip + 16)}: ")
        if not c.avail(ip, hlen):
            c.p(f" [remaining caplen({max(c.snapend - ip, 0)}) < header length({hlen})]")
            raise _Trunc(c.proto)
        _demux(c, ip + hlen, ip_len - hlen, 4, bool(off & 0x2000), proto, ip)
    else:
        c.p(f"{c.a4(ip + 12)} > {c.a4(ip + 16)}: ip-proto-{proto}")
    c.snapend = saved


# --------------------------------------------------------------------- IPv6


def _ip6_finddst(c: _Ctx, ip6: int) -> bytes:
    cp, advance, nh = ip6, 40, c.u8(ip6 + 6)
    dst = ip6 + 24
    while cp < c.snapend:
        cp += advance
        if nh in (0, 60, 135, 62):
            advance = (c.u8(cp + 1) + 1) << 3
            nh = c.u8(cp)
        elif nh == 44:
            advance = 8
            nh = c.u8(cp)
        elif nh == 43:
            rtype = c.u8(cp + 2)
            if rtype in (0, 2):
                n = c.u8(cp + 1) // 2
                p = cp + 8
                for _ in range(n):
                    if not c.avail(p, 16):
                        break
                    dst = p
                    p += 16
            elif rtype == 4:
                dst = cp + 8
            break
        else:
            break
    c.check(dst, 16)
    return c.buf[dst : dst + 16]


def _ip6_cksum(c: _Ctx, ip6: int, data: int, length: int, nxt: int) -> int:
    nh = c.u8(ip6 + 6)
    dst = _ip6_finddst(c, ip6) if nh in (0, 60, 62, 135, 44, 43) else c.buf[ip6 + 24 : ip6 + 40]
    pseudo = c.buf[ip6 + 8 : ip6 + 24] + dst + length.to_bytes(4, "big") + b"\0\0\0" + bytes([nxt])
    return _cksum(pseudo, c.buf[data : data + length])


def _ip6_opt_print(c: _Ctx, bp: int, length: int, hbh: bool) -> bool:
    """ip6_opt_process(); False means tcpdump gave up (it then prints nothing more)."""
    i = 0
    jumbo_seen = False
    while i < length:
        t = c.u8(bp + i)
        if t == 0:
            optlen = 1
        elif i + 1 < length:
            optlen = c.u8(bp + i + 1) + 2
        else:
            return False
        if i + optlen > length:
            return False
        if t == 0:
            c.p("(pad1)")
        elif t == 1:
            if length - i < 2:
                c.p("(padn: trunc)")
                return False
            c.p("(padn)")
        elif t == 5:
            if length - i < 4:
                c.p("(rtalert: trunc)")
                return False
            if c.u8(bp + i + 1) != 2:
                c.p(f"(rtalert: invalid len {c.u8(bp + i + 1)})")
                return False
            c.p(f"(rtalert: 0x{c.u16(bp + i + 2):04x}) ")
        elif t == 0xC2:
            if length - i < 6:
                c.p("(jumbo: trunc)")
                return False
            if c.u8(bp + i + 1) != 4:
                c.p(f"(jumbo: invalid len {c.u8(bp + i + 1)})")
                return False
            jl = c.u32(bp + i + 2)
            if jumbo_seen:
                c.p(f"(jumbo: {jl} - already seen) ")
            elif not hbh:
                c.p(f"(jumbo: {jl} - not a hop-by-hop option) ")
            else:
                c.p(f"(jumbo: {jl} - payload len != 0) ")
            jumbo_seen = True
        elif t == 0xC9:
            if length - i < 18:
                c.p("(homeaddr: trunc)")
                return False
            if c.u8(bp + i + 1) < 16:
                c.p(f"(homeaddr: invalid len {c.u8(bp + i + 1)})")
                return False
            c.p(f"(homeaddr: {c.a6(bp + i + 2)}")
            if c.u8(bp + i + 1) > 16:
                return False  # sub-options: not reproduced
            c.p(")")
        else:
            if length - i < 2:
                c.p(f"(type {t}: trunc)")
                return False
            c.p(f"(opt_type 0x{t:02x}: len={c.u8(bp + i + 1)})")
        i += optlen
    c.p(" ")
    return True


def _rt6_print(c: _Ctx, bp: int) -> int:
    c.proto = "rt6"
    c.p("RT6")
    rlen = c.u8(bp + 1)
    c.p(f" (len={rlen}")
    rtype = c.u8(bp + 2)
    c.p(f", type={rtype}")
    if rtype == 0:
        c.p(" [Deprecated]")
    c.p(f", segleft={c.u8(bp + 3)}")
    if rtype in (0, 2):
        c.p(f", rsv=0x{c.u32(bp + 4):x}")
        if rlen % 2 == 1:
            c.p(" (invalid)")
            return -1
        for i in range(rlen >> 1):
            c.p(f", [{i}]{c.a6(bp + 8 + 16 * i)}")
        c.p(") ")
        return (rlen + 1) << 3
    if rtype == 4:
        last = c.u8(bp + 4)
        c.p(f", last-entry={last}")
        c.p(f", flags=0x{c.u8(bp + 5):x}")
        c.p(f", tag={c.u16(bp + 6):x}")
        for i in range(last + 1):
            c.p(f", [{i}]{c.a6(bp + 8 + 16 * i)}")
        c.p(") ")
        return (rlen + 1) << 3
    c.p(" (unknown type) (invalid)")
    return -1


def _ip6_print(c: _Ctx, ip6: int, length: int) -> None:
    c.proto = "ip6"
    c.check(ip6, 40)
    if length < 40:
        c.p(f"IP6 truncated-ip6 {length}")
        return
    c.p("IP6 ")
    plen = c.u16(ip6 + 4)
    if plen:
        total = plen + 40
        if length < total:
            c.p(f"truncated-ip6 - {total - length} bytes missing!")
    else:
        total = 40  # jumbograms are not reproduced
    nh = c.u8(ip6 + 6)
    flow = c.u32(ip6)
    c.p("(")
    if flow & 0x0FF00000:
        c.p(f"class 0x{(flow & 0x0FF00000) >> 20:02x}, ")
    if flow & 0x000FFFFF:
        c.p(f"flowlabel 0x{flow & 0x000FFFFF:05x}, ")
    name = _IPPROTO.get(nh, "unknown")
    c.p(f"hlim {c.u8(ip6 + 7)}, next-header {name} ({nh}) payload length: {plen}) ")
    saved = c.push_snap(ip6, min(total, length))
    cp, advance, rem = ip6, 40, total
    fragmented = False
    while cp < c.snapend and advance > 0:
        if rem < advance:
            raise _Trunc(c.proto)
        cp += advance
        rem -= advance
        if cp == ip6 + 40 and nh not in (6, 17, 33, 132):
            c.p(f"{c.a6(ip6 + 8)} > {c.a6(ip6 + 24)}: ")
        if nh in (0, 60):
            c.proto = "hbhopt" if nh == 0 else "dstopt"
            hl = (c.u8(cp + 1) + 1) << 3
            c.check(cp, hl)
            c.p("HBH " if nh == 0 else "DSTOPT ")
            if not _ip6_opt_print(c, cp + 2, hl - 2, nh == 0):
                raise _Trunc(c.proto)
            advance = hl
            nh = c.u8(cp)
        elif nh == 44:
            c.proto = "frag6"
            c.check(cp, 8)
            offlg = c.u16(cp + 2)
            c.p(f"frag (0x{c.u32(cp + 4):08x}:{offlg & 0xFFF8}|{40 + plen - (cp - ip6) - 8})")
            if offlg & 0xFFF8:
                break
            c.p(" ")
            advance = 8
            if c.snapend <= cp + advance:
                break
            nh = c.u8(cp)
            fragmented = True
        elif nh == 43:
            c.u8(cp)
            advance = _rt6_print(c, cp)
            if advance < 0:
                break
            nh = c.u8(cp)
        else:
            _demux(c, cp, rem, 6, fragmented, nh, ip6)
            break
        c.proto = "ip6"
    c.snapend = saved


# --------------------------------------------------------------------- demux


def _demux(c: _Ctx, bp: int, length: int, ver: int, fragmented: bool, nh: int, ip: int) -> None:
    if nh == 6:
        _tcp_print(c, bp, length, ip, fragmented)
    elif nh == 17:
        _udp_print(c, bp, length, ip, fragmented)
    elif nh == 1 and ver == 4:
        _icmp_print(c, bp, length, ip, fragmented)
    elif nh == 58 and ver == 6:
        _icmp6_print(c, bp, length, ip, fragmented)
    elif nh == 59:
        c.p("no next header")
    else:
        c.p(f" ip-proto-{nh} {length}")


def _addrs(c: _Ctx, ip: int) -> tuple[str, str]:
    if c.buf[ip] >> 4 == 6:
        return c.a6(ip + 8), c.a6(ip + 24)
    return c.a4(ip + 12), c.a4(ip + 16)


def _l3_proto(c: _Ctx, ip: int) -> int:
    return c.u8(ip + 6) if c.buf[ip] >> 4 == 6 else c.u8(ip + 9)


# --------------------------------------------------------------------- TCP


def _tcp_cksum(c: _Ctx, ip: int, tp: int, length: int) -> int:
    if c.buf[ip] >> 4 == 6:
        return _ip6_cksum(c, ip, tp, length, 6)
    dst = _ip_finddst(c, ip)
    pseudo = c.buf[ip + 12 : ip + 16] + dst + bytes([0, 6]) + (length & 0xFFFF).to_bytes(2, "big")
    return _cksum(pseudo, c.buf[tp : tp + length])


def _tcp_print(c: _Ctx, tp: int, length: int, ip: int, fragmented: bool) -> None:
    c.proto = "tcp"
    v6 = c.buf[ip] >> 4 == 6
    if not c.avail(tp + 2, 2):
        src, dst = _addrs(c, ip)
        c.p(f"{src} > {dst}:")
        raise _Trunc(c.proto)
    sport, dport = c.u16(tp), c.u16(tp + 2)
    if _l3_proto(c, ip) == 6:
        src, dst = _addrs(c, ip)
        c.p(f"{src}.{sport} > {dst}.{dport}: ")
    else:
        c.p(f"{sport} > {dport}: ")
    c.check(tp, 20)
    hlen = (c.buf[tp + 12] >> 4) * 4
    if hlen < 20:
        c.p(f" tcp {(length - hlen) & 0xFFFFFFFF} [bad hdr length {hlen} - too short, < 20]")
        return
    seq, ack = c.u32(tp + 4), c.u32(tp + 8)
    win, urp = c.u16(tp + 14), c.u16(tp + 18)
    flags = c.u8(tp + 13)
    c.p(f"Flags [{''.join(n for bit, n in _TCP_FLAGS if flags & bit) or 'none'}]")
    thseq = thack = 0
    rev = False
    if flags & 0x10:
        # tcpdump's tcp_seq_hash: one entry per connection, keyed in a fixed order.
        if v6:
            a, b = c.buf[ip + 8 : ip + 24], c.buf[ip + 24 : ip + 40]
        else:
            a, b = c.buf[ip + 12 : ip + 16], c.buf[ip + 16 : ip + 20]
        rev = sport > dport or (sport == dport and a > b)
        key = (b, a, dport, sport) if rev else (a, b, sport, dport)
        table = c.tables[1 if v6 else 0]
        th = table.get(key)
        if th is None or flags & 0x02:
            th = [ack - 1 & 0xFFFFFFFF, seq] if rev else [seq, ack - 1 & 0xFFFFFFFF]
            table[key] = th
        elif rev:
            seq, ack = (seq - th[1]) & 0xFFFFFFFF, (ack - th[0]) & 0xFFFFFFFF
        else:
            seq, ack = (seq - th[0]) & 0xFFFFFFFF, (ack - th[1]) & 0xFFFFFFFF
        thseq, thack = th
    if hlen > length:
        c.p(f" [bad hdr length {hlen} - too long, > {length}]")
        return
    if not fragmented and c.avail(tp, length) and (not v6 or c.u16(ip + 4)):
        s = _tcp_cksum(c, ip, tp, length)
        stored = c.u16(tp + 16)
        c.p(f", cksum 0x{stored:04x}")
        c.p(f" (incorrect -> 0x{_shouldbe(stored, s):04x})" if s else " (correct)")
    length -= hlen
    if length > 0 or flags & 0x07:
        c.p(f", seq {seq}")
        if length > 0:
            c.p(f":{(seq + length) & 0xFFFFFFFF}")
    if flags & 0x10:
        c.p(f", ack {ack}")
    c.p(f", win {win}")
    if flags & 0x20:
        c.p(f", urg {urp}")
    if hlen > 20 and not _tcp_options(c, tp, hlen - 20, length, flags, rev, thseq, thack, ip):
        return
    c.p(f", length {length}")
    if length <= 0:
        return
    bp = tp + hlen
    if flags & 0x04:
        # print_tcp_rst_data(): RFC 1122 says a RST may carry a reason text.
        c.p(" [RST" if c.avail(bp, length) else " [!RST")
        if length > 30:
            length = 30
            c.p("+")
        c.p(" ")
        while length and bp < c.snapend:
            c.p(_char(c.buf[bp]))
            bp += 1
            length -= 1
        c.p("]")
        return
    if 80 in (sport, dport) or 8080 in (sport, dport):
        c.p(": ")
        _http_print(c, bp, length)


def _tcp_options(
    c: _Ctx, tp: int, hlen: int, length: int, flags: int, rev: bool, thseq: int, thack: int, ip: int
) -> bool:
    """The ``, options [...]`` part; False when tcpdump stopped printing the packet."""
    cp = tp + 20
    ch = ""
    c.p(", options [")

    def bad() -> bool:
        c.p("[bad opt]")
        if ch:
            c.p("]")
        return False

    def lencheck(n: int) -> bool:
        if n > hlen:
            return False
        if not c.avail(cp, n):
            # tcpdump's "trunc:" label in tcp_print still closes with '>'.
            c.p(" [|tcp]")
            if ch:
                c.p(">")
            raise _Done
        return True

    while hlen > 0:
        c.p(ch)
        opt = c.u8(cp)
        cp += 1
        if opt in (0, 1):
            olen = 1
        else:
            olen = c.u8(cp)
            cp += 1
            if olen < 2 or olen > hlen:
                return bad()
            hlen -= 1
        hlen -= 1
        datalen = 0
        c.p(_TCP_OPT_NAMES.get(opt, f"unknown-{opt}"))
        if opt == 2:
            datalen = 2
            if not lencheck(2):
                return bad()
            c.p(f" {c.u16(cp)}")
        elif opt == 3:
            datalen = 1
            if not lencheck(1):
                return bad()
            c.p(f" {c.u8(cp)}")
        elif opt == 5:
            datalen = olen - 2
            if datalen % 8:
                c.p(" invalid sack")
            else:
                c.p(f" {datalen // 8} ")
                for i in range(0, datalen, 8):
                    if not lencheck(i + 4):
                        return bad()
                    s = c.u32(cp + i)
                    if not lencheck(i + 8):
                        return bad()
                    e = c.u32(cp + i + 4)
                    base = thseq if rev else thack
                    c.p(f"{{{(s - base) & 0xFFFFFFFF}:{(e - base) & 0xFFFFFFFF}}}")
        elif opt in (6, 7, 11, 12, 13):
            datalen = 4
            if not lencheck(4):
                return bad()
            c.p(f" {c.u32(cp)}")
        elif opt == 8:
            datalen = 8
            if not lencheck(8):
                return bad()
            c.p(f" val {c.u32(cp)} ecr {c.u32(cp + 4)}")
        elif opt == 19:
            datalen = 16
            if not lencheck(16):
                return bad()
            c.p(" ")
            data = tp + (c.buf[tp + 12] >> 4) * 4
            if not c.avail(data, length):
                c.p("snaplen too short, ")
            else:
                c.p("shared secret not supplied with -M, ")
            c.p("can't check - " + c.buf[cp : cp + 16].hex())
        elif opt == 20:
            datalen = 2
            if not lencheck(2):
                return bad()
            c.p(f" cap {c.u8(cp):02x} id {c.u8(cp + 1)}")
        elif opt == 29:
            datalen = olen - 2
            if datalen < 2:
                c.p(" (invalid)")
            else:
                if not lencheck(1):
                    return bad()
                c.p(f" keyid {c.u8(cp)}")
                if not lencheck(2):
                    return bad()
                c.p(f" rnextkeyid {c.u8(cp + 1)}")
                if datalen > 2:
                    c.p(" mac 0x")
                    for i in range(2, datalen):
                        if not lencheck(i + 1):
                            return bad()
                        c.p(f"{c.u8(cp + i):02x}")
        elif opt in (0, 1, 4):
            pass
        elif opt == 28:
            datalen = 2
            if not lencheck(2):
                return bad()
            uto = c.u16(cp)
            c.p(f" 0x{uto:x}")
            c.p(f" {((uto >> 1) * 60 if uto & 1 else uto >> 1)}")
        elif opt == 34:
            datalen = olen - 2
            if not lencheck(datalen):
                return bad()
            c.p(" ")
            _tfo(c, cp, datalen, False)
        elif opt == 254:
            datalen = olen - 2
            if not lencheck(datalen):
                return bad()
            if datalen < 2:
                return bad()
            magic = c.u16(cp)
            c.p("-")
            if magic == 0xF989:
                _tfo(c, cp + 2, datalen - 2, True)
            else:
                c.p(f"{magic:04x}")
        else:
            # includes MPTCP (30), whose sub-option decoding is not reproduced
            datalen = olen - 2
            if datalen:
                c.p(" 0x")
            for i in range(datalen):
                if not lencheck(i + 1):
                    return bad()
                c.p(f"{c.u8(cp + i):02x}")
        cp += datalen
        hlen -= datalen
        datalen += 1 if opt in (0, 1) else 2
        if datalen != olen:
            c.p(f"[len {olen}]")
        ch = ","
        if opt == 0:
            break
    c.p("]")
    return True


class _Done(Exception):
    """Printing already finished (tcpdump returned early after its own message)."""


def _tfo(c: _Ctx, cp: int, datalen: int, exp: bool) -> None:
    if exp:
        c.p("tfo")
    if datalen == 0:
        c.p(" cookiereq")
    elif datalen % 2 or datalen < 4 or datalen > 16:
        c.p(" (invalid)")
    else:
        c.p(" cookie " + "".join(f"{c.u8(cp + i):02x}" for i in range(datalen)))


def _http_print(c: _Ctx, bp: int, length: int) -> None:
    """txtproto_print() for HTTP: request/response lines as text in -v mode."""
    c.proto = "http"

    def token(idx: int) -> tuple[int, str]:
        # fetch_token(): 0 means "no token" (binary data, or past the capture).
        tok = bytearray()
        while idx < length:
            if not c.avail(bp + idx, 1):
                return 0, ""
            ch = c.buf[bp + idx]
            if ch & 0x80:
                return 0, ""
            if ch in b" \t\r\n":
                break
            if not 0x20 <= ch < 0x7F or len(tok) + 2 > 129:
                return 0, ""
            tok.append(ch)
            idx += 1
        if not tok:
            return 0, ""
        while idx < length and c.avail(bp + idx, 1):
            ch = c.buf[bp + idx]
            if ch in b"\r\n" or not 0x20 <= ch < 0x7F or ch not in b" \t":
                break
            idx += 1
        return idx, tok.decode("ascii")

    show = False
    idx, tok = token(0)
    if idx:
        if tok.lower() in _HTTP_CMDS:
            show = True
        idx, tok = token(idx)
        if idx and len(tok) == 3 and tok.isdigit():
            show = True
    c.p("HTTP")
    if not show:
        return
    c.p(f", length: {length}")
    idx = 0
    while idx < length:
        # print_txt_line(): stops quietly at binary data, " [|http]" at a cut line.
        start = idx
        while True:
            if idx >= length:
                c.p("\n\t" + c.buf[bp + start : bp + idx].decode("ascii"))
                raise _Trunc(c.proto)
            ch = c.u8(bp + idx)
            if ch == 0x0A:
                c.p("\n\t" + c.buf[bp + start : bp + idx].decode("ascii"))
                idx += 1
                break
            if ch == 0x0D:
                if idx + 1 >= length or c.u8(bp + idx + 1) != 0x0A:
                    return
                c.p("\n\t" + c.buf[bp + start : bp + idx].decode("ascii"))
                idx += 2
                break
            if not (0x20 <= ch < 0x7F or ch == 0x09):
                return
            idx += 1


# --------------------------------------------------------------------- UDP


def _udp_print(c: _Ctx, up: int, length: int, ip: int, fragmented: bool) -> None:
    c.proto = "udp"
    is_udp = _l3_proto(c, ip) == 17

    def addrs(sport: int | None, dport: int | None) -> None:
        src, dst = _addrs(c, ip)
        if sport is None:
            c.p(f"{src} > {dst}: ")
        elif is_udp:
            c.p(f"{src}.{sport} > {dst}.{dport}: ")
        else:
            c.p(f"{sport} > {dport}: ")

    if not c.avail(up + 2, 2):
        addrs(None, None)
        raise _Trunc(c.proto)
    sport, dport = c.u16(up), c.u16(up + 2)
    if length < 8:
        addrs(sport, dport)
        c.p(f"truncated-udp {length}")
        return
    if not c.avail(up + 4, 2):
        addrs(sport, dport)
        raise _Trunc(c.proto)
    ulen = c.u16(up + 4)
    if ulen < 8:
        addrs(sport, dport)
        c.p(f"truncated-udplength {ulen}")
        return
    ulen -= 8
    length -= 8
    length = min(length, ulen)
    if up + 8 > c.snapend:
        addrs(sport, dport)
        raise _Trunc(c.proto)
    addrs(sport, dport)
    if c.buf[ip] >> 4 == 6 and not fragmented and c.avail(up + 8, length):
        s = _ip6_cksum(c, ip, up, length + 8, 17)
        stored = c.u16(up + 6)
        if s:
            c.p(f"[bad udp cksum 0x{stored:04x} -> 0x{_shouldbe(stored, s):04x}!] ")
        else:
            c.p("[udp sum ok] ")
    c.p(f"UDP, length {ulen}")


# --------------------------------------------------------------------- ICMP


def _icmp_print(c: _Ctx, dp: int, plen: int, ip: int, fragmented: bool) -> None:
    c.proto = "icmp"
    typ, code = c.u8(dp), c.u8(dp + 1)
    oip = dp + 8
    if typ in (0, 8):
        s = f"echo {('request' if typ == 8 else 'reply')}, id {c.u16(dp + 4)}, seq {c.u16(dp + 6)}"
    elif typ == 3:
        if code == 0:
            s = f"net {c.a4(oip + 16)} unreachable"
        elif code == 1:
            s = f"host {c.a4(oip + 16)} unreachable"
        elif code == 2:
            s = f"{c.a4(oip + 16)} protocol {c.u8(oip + 9)} unreachable"
        elif code == 3:
            c.check(oip + 9, 1)
            ohl = (c.u8(oip) & 0xF) * 4
            oport = c.u16(oip + ohl + 2)
            op = c.u8(oip + 9)
            if op == 6:
                s = f"{c.a4(oip + 16)} tcp port {oport} unreachable"
            elif op == 17:
                s = f"{c.a4(oip + 16)} udp port {oport} unreachable"
            else:
                s = f"{c.a4(oip + 16)} protocol {op} port {oport} unreachable"
        elif code == 4:
            mtu = c.u16(dp + 6)
            s = f"{c.a4(oip + 16)} unreachable - need to frag"
            if mtu:
                s += f" (mtu {mtu})"
        elif code in _UNREACH:
            s = _UNREACH[code] % c.a4(oip + 16)
        else:
            s = f"{c.a4(oip + 16)} unreachable - #{code}"
    elif typ == 5:
        fmt = {
            0: "redirect %s to net %s",
            1: "redirect %s to host %s",
            2: "redirect-tos %s to net %s",
            3: "redirect-tos %s to host %s",
        }
        if code in fmt:
            s = fmt[code] % (c.a4(oip + 16), c.a4(dp + 4))
        else:
            s = f"redirect-#{code} {c.a4(oip + 16)} to {c.a4(dp + 4)}"
    elif typ == 11:
        s = {0: "time exceeded in-transit", 1: "ip reassembly time exceeded"}.get(
            code, f"time exceeded-#{code}"
        )
    elif typ == 12:
        if code:
            s = f"parameter problem - code {code}"
        else:
            s = f"parameter problem - octet {c.u8(dp + 4)}"
    elif typ == 13:
        s = f"time stamp query id {c.u16(dp + 4)} seq {c.u16(dp + 6)}"
    else:
        s = _ICMP_NAMES.get(typ, f"type-#{typ}")
    c.p(f"ICMP {s}, length {plen}")
    if not fragmented and c.avail(dp, plen):
        sm = _cksum(c.buf[dp : dp + plen])
        if sm:
            stored = c.u16(dp + 2)
            c.p(f" (wrong icmp cksum {stored:x} (->{_shouldbe(stored, sm):x})!)")
    if typ in (3, 4, 5, 11, 12):
        c.p("\n\t")
        qlen = c.u16(oip + 2)
        saved = c.snapend
        c.snapend = min(oip + qlen, c.snapend)
        _ip_print(c, oip, qlen)
        c.snapend = saved


def _icmp6_upper(c: _Ctx, oip: int) -> tuple[int, int] | None:
    """get_upperlayer(): (protocol, offset) of the TCP/UDP header in a quoted packet."""
    if not c.avail(oip, 40):
        return None
    nh = c.buf[oip + 6]
    cp = oip + 40
    while True:
        if nh in (6, 17):
            return (nh, cp) if c.avail(cp + 2, 2) else None
        if nh in (0, 60, 43):
            if not c.avail(cp, 2):
                return None
            nh, cp = c.buf[cp], cp + ((c.buf[cp + 1] + 1) << 3)
        elif nh == 44:
            if not c.avail(cp, 8):
                return None
            if int.from_bytes(c.buf[cp + 2 : cp + 4], "big") & 0xFFF8:
                return None
            nh, cp = c.buf[cp], cp + 8
        elif nh == 51:
            if not c.avail(cp, 2):
                return None
            nh, cp = c.buf[cp], cp + ((c.buf[cp + 1] + 2) << 2)
        else:
            return None


def _hexdump(c: _Ctx, bp: int, length: int) -> None:
    """print_unknown_data(bp, "\\n\\t", length)."""
    n = max(0, min(length, c.snapend - bp))
    data = c.buf[bp : bp + n]
    for i in range(0, n, 2):
        if i % 16 == 0:
            c.p(f"\n\t0x{i:04x}: ")
        c.p(" " + data[i : i + 2].hex())


_ND_OPTS = {
    1: "source link-address",
    2: "destination link-address",
    3: "prefix info",
    4: "redirected header",
    5: "mtu",
    7: "advertisement interval",
    8: "homeagent information",
    24: "route info",
    25: "rdnss",
    31: "dnssl",
}


def _icmp6_opt_print(c: _Ctx, cp: int, resid: int) -> None:
    """icmp6_opt_print() for link-layer address and MTU options (NDP)."""
    while cp < c.snapend:
        c.check(cp + 1, 1)
        if resid <= 0:
            return
        otype, olen = c.buf[cp], c.buf[cp + 1]
        if olen == 0 or cp + (olen << 3) > c.snapend:
            raise _Trunc(c.proto)
        name = _ND_OPTS.get(otype, "unknown")
        c.p(f"\n\t  {name} option ({otype}), length {olen << 3} ({olen}): ")
        if otype in (1, 2):
            c.p(":".join(f"{b:02x}" for b in c.buf[cp + 2 : cp + (olen << 3)]))
        elif otype == 5:
            c.p(f" {c.u32(cp + 4)}")
        else:
            # prefix info, RDNSS, ... have their own layouts: not reproduced
            n = max(0, min((olen << 3) - 2, c.snapend - cp - 2))
            data = c.buf[cp + 2 : cp + 2 + n]
            for i in range(0, n, 2):
                if i % 16 == 0:
                    c.p(f"\n\t  0x{i:04x}: ")
                c.p(" " + data[i : i + 2].hex())
            return
        cp += olen << 3
        resid -= olen << 3


def _icmp6_print(c: _Ctx, dp: int, length: int, ip6: int, fragmented: bool) -> None:
    c.proto = "icmp6"
    oip = dp + 8
    if length == 0:
        c.p("ICMP6, length 0 (invalid)")
        return
    if not fragmented and c.avail(dp, length):
        stored = c.u16(dp + 2)
        s = _ip6_cksum(c, ip6, dp, length, 58)
        if s:
            c.p(f"[bad icmp6 cksum 0x{stored:04x} -> 0x{_shouldbe(stored, s):04x}!] ")
        else:
            c.p("[icmp6 sum ok] ")
    typ = c.u8(dp)
    c.p("ICMP6, {}".format(_ICMP6_NAMES.get(typ, f"unknown icmp6 type ({typ})")))
    if typ in (133, 134, 135, 136, 137, 145, 147):
        c.p(f", length {length}")
    code = c.u8(dp + 1)
    if typ == 1:
        c.p(", {}".format(_ICMP6_UNREACH.get(code, f"unknown unreach code ({code})")))
        if code in (0, 1, 3):
            c.p(f" {c.a6(oip + 24)}")
        elif code == 2:
            c.p(f" {c.a6(oip + 24)}, source address {c.a6(oip + 8)}")
        elif code == 4:
            up = _icmp6_upper(c, oip)
            if up is None:
                raise _Trunc(c.proto)
            prot, uo = up
            port = c.u16(uo + 2)
            c.p(f", {c.a6(oip + 24)} {('tcp' if prot == 6 else 'udp')} port {port}")
        else:
            _hexdump(c, dp, length)
    elif typ == 2:
        c.p(f", mtu {c.u32(dp + 4)}")
    elif typ == 3:
        if code == 0:
            c.p(f" for {c.a6(oip + 24)}")
        elif code == 1:
            c.p(" (reassembly)")
        else:
            c.p(f", unknown code ({code})")
    elif typ == 4:
        c.check(oip + 24, 16)
        what = {0: "erroneous", 1: "next header", 2: "option"}
        if code in what:
            c.p(f", {what[code]} - octet {c.u32(dp + 4)}")
        else:
            c.p(f", code-#{code}")
    elif typ in (128, 129):
        c.p(f", id {c.u16(dp + 4)}, seq {c.u16(dp + 6)}")
    elif typ == 133:
        _icmp6_opt_print(c, dp + 8, length - 8)
    elif typ == 135:
        c.p(f", who has {c.a6(dp + 8)}")
        _icmp6_opt_print(c, dp + 24, length - 24)
    elif typ == 136:
        c.p(f", tgt is {c.a6(dp + 8)}")
        fl = c.u32(dp + 4)
        names = [
            n
            for bit, n in ((1 << 31, "router"), (1 << 30, "solicited"), (1 << 29, "override"))
            if fl & bit
        ]
        c.p(f", Flags [{', '.join(names) or 'none'}]")
        _icmp6_opt_print(c, dp + 24, length - 24)
    elif typ not in _ICMP6_NAMES:
        c.p(f", length {length}")
        _hexdump(c, dp, length)


# --------------------------------------------------------------------- API


class TcpdumpPrinter:
    """Formats packets like ``tcpdump -n -v``; feed them in capture order.

    The state is tcpdump's TCP sequence table: once a connection's packet with
    ACK set has been seen, later seq/ack numbers are printed relative to it.
    """

    def __init__(self) -> None:
        self._tables: tuple[dict, dict] = ({}, {})

    def format(self, ts_us: int, raw: bytes, wire_len: int | None = None) -> str:
        raw = bytes(raw)
        length = len(raw) if wire_len is None else max(wire_len, len(raw))
        c = _Ctx(raw, self._tables)
        c.p(_ts(ts_us) + " ")
        try:
            if raw and raw[0] >> 4 == 6:
                _ip6_print(c, 0, length)
            else:
                _ip_print(c, 0, length)
        except _Trunc as t:
            c.p(f" [|{t.proto}]")
        except _Done:
            pass
        return "".join(c.out)


def format_packet(ts_us: int, raw: bytes, wire_len: int | None = None) -> str:
    """tcpdump's output for a capture holding only this packet (no prior state)."""
    return TcpdumpPrinter().format(ts_us, raw, wire_len)
