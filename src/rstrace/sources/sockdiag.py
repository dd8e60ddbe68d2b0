"""A netlink sock_diag dump of TCP sockets (what `ss -tan` reads), decoded with struct.

Hand-written rather than pyroute2's DiagSocket, which decodes the same messages: pyroute2
0.9 runs every message through its asyncio loop and generic attribute decoder, ~0.4 ms a
socket (2001 sockets: 0.8 s, 16x `ss -tan`; bench/sockets_bench.py), too slow for a busy
host inside diagnose's window. The format is small and fixed (linux/inet_diag.h,
linux/netlink.h), and the tests check this decoder against pyroute2's on live sockets.
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
INET_DIAG_SKV6ONLY = 11

# struct nlmsghdr: len, type, flags, seq, pid
_NLMSGHDR = struct.Struct("=IHHII")
# struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 bytes)
_REQ = struct.Struct("=BBBxI48x")
# struct inet_diag_msg: family, state, timer, retrans, sockid{sport, dport (big endian),
# src[16], dst[16], if, cookie u32[2]}, expires, rqueue, wqueue, uid, inode
_MSG = struct.Struct("=BBBB2s2s16s16sIII4xIIII")
_MSG_COOKIE_HI = struct.Struct("=I")
_RTA = struct.Struct("=HH")


def request(family: int, states: int, protocol: int = socket.IPPROTO_TCP) -> bytes:
    """The dump request for *protocol* sockets of *family* in the *states* bitmask."""
    body = _REQ.pack(family, protocol, 0, states)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY,
                          NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body  # fmt: skip


def parse(data: bytes) -> tuple[list[tuple], bool]:
    """Decode one recv()'d buffer of a dump: (records, dump finished).

    Each record is (family, state, src bytes, sport, dst bytes, dport, cookie, rqueue,
    wqueue, uid, inode, v6only or None). Raises OSError for an error the kernel sent.
    """
    out: list[tuple] = []
    pos, end = 0, len(data)
    while pos + _NLMSGHDR.size <= end:
        length, mtype, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
        if length < _NLMSGHDR.size or pos + length > end:
            break  # malformed or cut short: what came before stands
        body = pos + _NLMSGHDR.size
        if mtype in (NLMSG_DONE, NLMSG_ERROR):
            # A dump reports its error in NLMSG_DONE's payload (netlink_dump_done), a
            # rejected request in NLMSG_ERROR's: a negative errno, 0 for success.
            code = -struct.unpack_from("=i", data, body)[0] if length >= _NLMSGHDR.size + 4 else 0
            if code:
                raise OSError(code, os.strerror(code))
            return out, True
        if mtype == SOCK_DIAG_BY_FAMILY and length >= _NLMSGHDR.size + _MSG.size:
            (fam, state, _timer, _retrans, sport, dport, src, dst, _if, cookie_lo, cookie_hi,
             rq, wq, uid, inode) = _MSG.unpack_from(data, body)  # fmt: skip
            v6only = None
            apos = body + _MSG.size
            while apos + _RTA.size <= pos + length:
                alen, atype = _RTA.unpack_from(data, apos)
                if alen < _RTA.size:
                    break
                if atype == INET_DIAG_SKV6ONLY:
                    v6only = bool(data[apos + _RTA.size])
                apos += (alen + 3) & ~3
            n = 4 if fam == socket.AF_INET else 16
            out.append(
                (fam, state, src[:n], int.from_bytes(sport, "big"), dst[:n],
                 int.from_bytes(dport, "big"), cookie_lo | cookie_hi << 32, rq, wq, uid,
                 inode, v6only)
            )  # fmt: skip
        pos += (length + 3) & ~3
    return out, False


def dump(family: int, states: int, protocol: int = socket.IPPROTO_TCP) -> list[tuple]:
    """Every socket of *family* in *states* in this network namespace (see parse()).

    Raises OSError when sock_diag is unavailable: EPROTONOSUPPORT (no NETLINK_SOCK_DIAG)
    or ENOENT (no inet_diag / tcp_diag in this kernel, or an unknown *protocol*);
    TimeoutError if it never answers.
    """
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sk:
        sk.settimeout(5)  # the kernel answers at once; never hang diagnose
        sk.sendto(request(family, states, protocol), (0, 0))
        out: list[tuple] = []
        while True:
            data = sk.recv(1 << 16)  # a dump batch is <= 32 KB (netlink_dump)
            records, done = parse(data)
            out += records
            if done:
                return out
