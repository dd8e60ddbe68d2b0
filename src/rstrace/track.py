"""ConnectionTable: Zeek's TCP connection semantics, ported to Python.

Segments (and ICMP unreachables) go in, in time order; finished or idle
connections come out as model.Connection, with Zeek's conn_state, history,
byte and packet counts, plus the control-packet facts (model.Side) the rules
read.

Followed: Zeek's source as stored in the public code index (one version per
file, not one tagged release; the logic below is the same from Zeek 5.0 to
7.x except where noted):

* src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc @040d7583 (current
  master, has the RFC 7323 window-scale cap): Process(), init_endpoint(),
  get_relative_seq(), update_history(), update_window(), init_peer(),
  update_ack_seq(), update_last_seq(), UpdateStateMachine() and the
  Update*State() functions, ConnectionClosed(), IsReuse(), FlipRoles(), and the
  timers AttemptTimer / ExpireTimer / ResetTimer / ConnDeleteTimer.
* src/packet_analysis/protocol/tcp/TCP.cc @08fb5d76: WantConnection() (which
  packet may start a connection, role flip by likely_server_ports),
  DeliverPacket() (checksum check before Process(); a bad packet is not
  counted), MakeSessionAdapter() (initial inactivity timeout is
  udp_inactivity_timeout, a quirk kept as is).
* src/packet_analysis/protocol/ip/IPBasedAnalyzer.cc @022486e1: AnalyzePacket()
  (lookup, IsReuse -> remove + new connection, is_orig by address and port).
* src/analyzer/protocol/tcp/TCP_Endpoint.cc @033fdcca and TCP_Endpoint.h:
  SetState() (tcp_inactivity_timeout armed when the handshake ends), Size(),
  NoDataAcked(), ChecksumError() / DidRxmit() / ZeroWindow() / Gap().
* src/Conn.cc @01138287 and Conn.h: CheckHistory(), AddHistory(),
  ScaledHistoryEntry() (base 10), FlipRoles() ('^'), InactivityTimer().
* scripts/base/protocols/conn/main.zeek @056f9b7a: conn_state(), the history
  letters, set_conn() (duration, and bytes only when duration > 0).
* scripts/base/init-bare.zeek: tcp_SYN_timeout 5 s, tcp_session_timer 6 s,
  tcp_connection_linger 5 s, tcp_attempt_delay 5 s, tcp_close_delay 5 s,
  tcp_reset_delay 5 s, tcp_partial_close_delay 3 s, tcp_inactivity_timeout
  5 min, udp_inactivity_timeout 1 min, partial_connection_ok T, tcp_SYN_ack_ok T.
* btest scripts.base.protocols.conn.conn_state-RST-behavior (baseline
  @0b674eb8), and the newer btest on psql-aws-ssl-require.pcap whose TEST-DOC
  says ResetTimer() used to run only with a connection_reset handler: we
  always arm it (TSA @040d7583 still has the `if ( connection_reset )`).

Deliberate differences (we have no reassembler and no script layer):

* Reassembly is not modelled: a close is never deferred for pending data
  (DataPending() is taken as false), and 'g' is a simplified gap check (the
  peer acks past the contiguous data seen while both sides are ESTABLISHED).
* PartialCloseTimer only runs in Zeek when a connection_partial_close handler
  exists; base scripts have none, so it is not modelled.
* Zeek's timers fire when network time (any packet) passes them; here each
  connection's expiry is a pure function of its own state and timestamps, so
  results do not depend on chunking. The ExpireTimer chain is taken on its
  nominal grid (start + 5 s + k * 6 s) instead of drifting with dispatch time.
* Size() underflow (unsigned wrap in C++) is reported as 0.
* likely_server_ports is a fixed list of the TCP ports base scripts register.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import re
import struct
from collections.abc import Sequence

from .model import ACK, FIN, RST, SYN, Connection, Evidence, Segment, Side, Unreachable
from .sources.decode import FrameBatch, fast_layout

_META = struct.Struct("=IIII")  # pcapy next_batch: sec, usec, offset, caplen per frame
# Batches of at least this many frames (bytes of meta) try lane.bulk(); smaller ones
# would not pay for importing numpy.
_BULK_BYTES = 512 * _META.size

__all__ = ["ConnectionTable", "conn_state"]

# Endpoint states, numbered as Zeek's EndpointState and init-bare's TCP_* constants.
INACTIVE = 0
SYN_SENT = 1
SYN_ACK_SENT = 2
PARTIAL = 3
ESTABLISHED = 4
CLOSED = 5
RESET = 6
_HANDSHAKE = (INACTIVE, SYN_SENT, SYN_ACK_SENT)  # TCP_Endpoint.cc is_handshake()

# init-bare.zeek defaults, in microseconds (our timestamps).
SEC = 1_000_000
TCP_SYN_TIMEOUT = 5 * SEC
TCP_SESSION_TIMER = 6 * SEC
TCP_CONNECTION_LINGER = 5 * SEC
TCP_ATTEMPT_DELAY = 5 * SEC
TCP_CLOSE_DELAY = 5 * SEC
TCP_RESET_DELAY = 5 * SEC
TCP_INACTIVITY_TIMEOUT = 300 * SEC
UDP_INACTIVITY_TIMEOUT = 60 * SEC  # TCPAnalyzer::MakeSessionAdapter() sets this first

TOO_LARGE_SEQ_DELTA = 1048576
_TOO_LARGE = TOO_LARGE_SEQ_DELTA
MASK32 = 0xFFFFFFFF

# History masks (TCP_Endpoint.h); the responder's are shifted left by 16.
HIST_SYN_PKT = 0x1
HIST_FIN_PKT = 0x2
HIST_RST_PKT = 0x4
HIST_FIN_RST_PKT = 0x8
HIST_DATA_PKT = 0x10
HIST_ACK_PKT = 0x20
HIST_MULTI_FLAG_PKT = 0x40

# TCP ports that Zeek's base protocol scripts add to likely_server_ports
# (ftp, ssh, smtp, dns, http, krb, dce-rpc, smb, imap, ldap, ssl, irc, modbus,
# mysql, rdp, postgresql, redis, xmpp, mqtt, dnp3, socks, pop3, telnet...).
LIKELY_SERVER_PORTS = frozenset(
    {
        21, 22, 23, 25, 53, 80, 81, 88, 102, 110, 135, 139, 143, 389, 443, 445, 502,
        563, 585, 587, 614, 631, 636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2811,
        3128, 3268, 3306, 3389, 5222, 5223, 5269, 5432, 6379, 6666, 6667, 6668, 6669,
        8000, 8080, 8888, 20000,
    }
)  # fmt: skip

# Number of SYN/FIN/RST bits set, indexed by flags & 7 (update_history's bits_set).
_NBITS = (0, 1, 1, 2, 1, 2, 2, 3)

# main.zeek conn_state(): `/\^?S[^HAFGIQ]*R.*/ == c$history` is an anchored match.
_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*", re.DOTALL)

_INF = float("inf")

# The history letter of a data / pure-ACK packet, by its mask (responder's: << 16).
_DADA = (HIST_DATA_PKT | HIST_ACK_PKT) * 0x10001  # D, A, d and a all recorded
_LETTER = {
    HIST_DATA_PKT: "D",
    HIST_ACK_PKT: "A",
    HIST_DATA_PKT << 16: "d",
    HIST_ACK_PKT << 16: "a",
}
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_PAIRS = [_B62[i % 62] + _B62[i // 62] for i in range(62 * 62)]  # low digit first


def _seq_delta(a: int, b: int) -> int:
    """Zeek's seq_delta(): a - b as a signed 32-bit number."""
    d = (a - b) & MASK32
    return d - 0x100000000 if d & 0x80000000 else d


def _relative_seq(value: int, last: int, wraps: int, start: int) -> tuple[int, bool]:
    """Zeek's get_relative_seq(): value relative to start, counting 32-bit wraps from
    the last value seen (its wrap guess is used, not stored); and whether it underflows."""
    delta = _seq_delta(value, last)
    if delta < 0:
        if wraps and value > last:
            wraps -= 1
    elif delta > 0 and value < last:
        wraps += 1
    if wraps == 0:
        rel = _seq_delta(value, start)
        return rel, rel < 0
    return (wraps << 32) + value - start, False


def conn_state(os: int, rs: int, orig_size: int, resp_size: int, history: str) -> str:
    """Zeek's conn_state() for TCP (scripts/base/protocols/conn/main.zeek), in its order."""
    o_inactive = os in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)

    if rs == RESET:
        if os in (SYN_SENT, SYN_ACK_SENT) or (os == RESET and orig_size == 0 and resp_size == 0):
            return "REJ"
        elif o_inactive:
            return "RSTRH"
        else:
            return "RSTR"
    elif os == RESET:
        if r_inactive:
            if _RSTOS0.fullmatch(history):
                return "RSTOS0"
            return "OTH"
        return "RSTO"
    elif rs == CLOSED and os == CLOSED:
        return "SF"
    elif os == CLOSED:
        return "SH" if r_inactive else "S2"
    elif rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    elif os == SYN_SENT and rs == INACTIVE:
        return "S0"
    elif os == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    else:
        return "OTH"


class _Endpoint:
    """TCP_Endpoint plus our per-endpoint Side facts (role-free until finalize)."""

    __slots__ = (
        "ack_ok",
        "ack_seq",
        "ack_wraps",
        "addr",
        "after_rst",
        "chk_cnt",
        "chk_thr",
        "data_next",
        "did_close",
        "ev_rst",
        "ev_syn",
        "ev_synack",
        "fin_cnt",
        "fin_rel",
        "fin_seq0",
        "fin_ts",
        "gap_cnt",
        "gap_thr",
        "hist_last_fin",
        "hist_last_rst",
        "hist_last_syn",
        "ip_bytes",
        "is_orig",
        "last_seq",
        "payload",
        "pkts",
        "port",
        "prev_state",
        "rst_ack",
        "rst_answered",
        "rst_df",
        "rst_flags",
        "rst_ip_id",
        "rst_seq",
        "rst_ts",
        "rst_ttl",
        "rxmt_cnt",
        "rxmt_thr",
        "sa_first",
        "sa_last",
        "sa_n",
        "sa_seq0",
        "sa_seqs",
        "seq_wraps",
        "start_seq",
        "state",
        "syn_first",
        "syn_last",
        "syn_n",
        "syn_seq0",
        "syn_seqs",
        "synced",
        "ttls",
        "win0_cnt",
        "win0_thr",
    )

    def __init__(self, addr: str, port: int, is_orig: bool) -> None:
        self.addr = addr
        self.port = port
        self.is_orig = is_orig
        self.state = self.prev_state = INACTIVE
        self.start_seq = self.last_seq = self.ack_seq = 0
        self.seq_wraps = self.ack_wraps = 0
        self.ack_ok = -1  # an ack value the fast lane knows changes nothing (or -1)
        self.fin_cnt = 0
        self.fin_rel = 0  # FIN_seq: relative seq one past the FIN
        self.did_close = False
        self.hist_last_syn = self.hist_last_fin = self.hist_last_rst = 0
        self.chk_cnt = self.rxmt_cnt = self.win0_cnt = self.gap_cnt = 0
        self.chk_thr = self.rxmt_thr = self.win0_thr = self.gap_thr = 1
        self.data_next = 1  # relative seq of the next contiguous payload byte
        self.synced = False  # start_seq came from a SYN, not faked
        self.pkts = self.ip_bytes = 0  # ConnSize analyzer
        # Side facts, from control packets only.
        self.syn_n = self.sa_n = 0
        self.syn_seq0: int | None = None
        self.sa_seq0: int | None = None
        self.syn_seqs: set[int] | None = None  # only when a second seq shows up
        self.sa_seqs: set[int] | None = None
        self.syn_first: int | None = None
        self.syn_last: int | None = None
        self.sa_first: int | None = None
        self.sa_last: int | None = None
        self.fin_ts: int | None = None
        self.fin_seq0: int | None = None
        self.rst_ts: int | None = None
        self.rst_flags = self.rst_seq = self.rst_ack = self.rst_ttl = self.rst_ip_id = 0
        self.rst_df = False
        self.rst_answered = False
        self.ttls: set[int] | None = None
        self.after_rst = 0
        self.payload = 0
        # First SYN, SYN-ACK and RST segments, kept whole for evidence.
        self.ev_syn: Segment | None = None
        self.ev_synack: Segment | None = None
        self.ev_rst: Segment | None = None


class _Conn:
    """Zeek's Connection + TCPSessionAdapter state for one 4-tuple."""

    __slots__ = (
        "attempt_at",
        "chain1",
        "chain2",
        "dead",
        "delete_at",
        "expire_at",
        "first",
        "fkeys",
        "heap_at",
        "hist_seen",
        "history",
        "iface",
        "inact",
        "is_active",
        "key",
        "lane",
        "last_time",
        "orig",
        "reset_at",
        "resp",
        "seen_ts",
        "start",
        "unreachable",
        "version",
    )

    def __init__(self, key: tuple[str, int, str, int], s: Segment) -> None:
        self.key = key
        o = _Endpoint(s.src, s.sport, True)
        r = _Endpoint(s.dst, s.dport, False)
        self.orig = o
        self.resp = r
        self.start = self.last_time = self.seen_ts = s.ts
        self.first = (s.src, s.sport, s.dst, s.dport, s.seq, s.flags)  # for the uid
        self.iface = s.iface
        self.version = s.version
        self.history = ""
        self.hist_seen = 0
        self.is_active = True
        # Analyzer timers (absolute µs, None when not pending).
        self.attempt_at: int | None = None
        self.chain1: int | None = s.ts + TCP_SYN_TIMEOUT  # ExpireTimer from the constructor
        self.chain2: int | None = None  # ExpireTimer from a half close
        self.reset_at: int | None = None
        self.delete_at: int | None = None
        self.inact = UDP_INACTIVITY_TIMEOUT
        self.expire_at: float = _INF
        self.heap_at: float = _INF
        self.dead = False
        self.unreachable: Unreachable | None = None
        self.lane = False  # see ConnectionTable._lane_open()
        self.fkeys: list[bytes] | None = None  # its keys in ConnectionTable._fast


def _ip_len(s: Segment) -> int:
    """IP total length as Zeek's IP_Hdr::TotalLen() (IPv6: payload length + 40)."""
    raw = s.raw
    if s.version == 4:
        if len(raw) >= 4:
            n = raw[2] << 8 | raw[3]
            if n:
                return n
        return max(len(raw), 40 + s.payload)
    if len(raw) >= 6:
        return (raw[4] << 8 | raw[5]) + 40
    return 60 + s.payload


def _uid(first: tuple[str, int, str, int, int, int], ts: int) -> str:
    """Deterministic Zeek-like uid: 'C' + base62 of 96 bits of a hash (least significant
    digit first), two digits per division."""
    h = hashlib.blake2b(repr((ts, *first)).encode(), digest_size=12).digest()
    n = int.from_bytes(h, "big")
    out = []
    while n:
        n, d = divmod(n, 3844)
        out.append(_B62_PAIRS[d])
    s = "".join(out)
    if s and s[-1] == "0":
        s = s[:-1]  # the last pair's high digit was 0: one digit was left
    return "C" + s


class ConnectionTable:
    """Fold TCP segments into Zeek-style connections.

    feed() may be called with any chunking of a time-ordered stream; the set of
    connections returned over feed() + flush() does not depend on it.
    """

    def __init__(self, verify_checksums: bool = False, *, uids: bool = True) -> None:
        self.verify_checksums = verify_checksums
        # Zeek's uid costs a blake2b per connection; live diagnose never prints it.
        self.uids = uids
        self._conns: dict[tuple[str, int, str, int], _Conn] = {}
        self._heap: list[tuple[float, int, _Conn]] = []
        self._tick = itertools.count()
        self._now: float = -_INF
        # The fast lane's index: raw addresses+ports of one direction (as the frame
        # carries them) -> (connection, sending endpoint, its peer).
        self._fast: dict[bytes, tuple[_Conn, _Endpoint, _Endpoint]] = {}
        self.unmatched_unreachable: list[Unreachable] = []
        """ICMP unreachables that quoted no open connection (the caller drains it)."""

    def __len__(self) -> int:
        return len(self._conns)

    # -- public API ---------------------------------------------------------

    def feed(self, records: Sequence[Segment | Unreachable]) -> list[Connection]:
        """Fold one chunk of records (time order) into the table; return the connections that
        finished or went idle (Zeek's timeouts, measured in capture time) — evicted at the
        chunk's end."""
        out: list[Connection] = []
        if isinstance(records, FrameBatch) and not self.verify_checksums:
            if self._feed_frames(records, out):
                self._expire(out)
            return out
        seg = self._segment
        for rec in records:
            if isinstance(rec, Segment):
                seg(rec, out)
            else:
                self._unreachable(rec, out)
        if records:
            self._expire(out)
        return out

    def flush(self) -> list[Connection]:
        """End of input: every connection still open, finalized."""
        out = [self._finalize(c) for c in self._conns.values()]
        for c in self._conns.values():
            c.dead = True
        self._conns.clear()
        self._heap.clear()
        self._fast.clear()
        return out

    # -- per packet -----------------------------------------------------------

    @staticmethod
    def _lane_open(c: _Conn, expire_at: float) -> bool:
        """May the next data/ACK packets of c take the fast lane (_feed_frames)?

        Both endpoints ESTABLISHED and neither closed: Process() then changes no
        state for a packet without SYN/FIN/RST (UpdateStateMachine() does nothing,
        ConnectionClosed() is not called, SetLastTime() always applies), and no
        timer but inactivity is pending, so _expiry() is last_time + inact (the
        attempt timer needs an INACTIVE responder, the ExpireTimer's condition needs
        a closed or INACTIVE side): a later last_time only moves the expiry later,
        and the heap entry already there stays the earliest.
        """
        o = c.orig
        r = c.resp
        return (
            o.state == ESTABLISHED
            and r.state == ESTABLISHED
            and not o.did_close
            and not r.did_close
            and c.delete_at is None
            and (c.reset_at is None or not c.is_active)
            and expire_at == c.last_time + c.inact
        )

    def _feed_frames(self, fb: FrameBatch, out: list[Connection]) -> bool:
        """feed() for a libpcap batch; True when any frame made a record.

        The fast lane: a TCP packet without SYN/FIN/RST, nonzero window, on a
        connection whose lane is open (_lane_open), from a direction whose history
        letter for it (D/d for data, A/a for a pure ACK) is already recorded, that
        is no retransmission and acks nothing beyond the contiguous data seen. For
        it Process() reduces to the sequence/ack bookkeeping done inline below (same
        arithmetic, same order) plus the ConnSize counters. Every other frame is
        decoded in full and goes through _segment() / _unreachable().
        """
        layout = fast_layout(fb.linktype)
        if layout is None or fb.decoded:
            recs = fb.records()
            for rec in recs:
                if isinstance(rec, Segment):
                    self._segment(rec, out)
                else:
                    self._unreachable(rec, out)
            return bool(recs)
        eoff = layout.etype_off
        u4 = layout.v4.unpack_from
        u6 = layout.v6.unpack_from
        min4 = layout.min_v4
        min6 = layout.min_v6
        pkts = fb.pkts
        fast = self._fast
        get = fast.get
        segment = self._segment
        decode = fb.decode
        tcp_segment = fb.tcp_segment
        ip_off = layout.ip_off
        nfast = 0
        seen = False
        now = self._now
        meta = fb.meta
        if len(meta) >= _BULK_BYTES:
            # Busy connections' plain runs at once (lane.py); the rest below, in order.
            from rstrace import lane

            got = lane.bulk(pkts, meta, layout, fast)
            if got is not None:
                meta, nfast, last_ts = got
                if last_ts > now:
                    now = last_ts
        for sec, usec, off, cap in _META.iter_unpack(meta):
            ts = sec * 1_000_000 + usec
            key = None
            if cap >= min4:
                et, vihl, total, ip_id, frag, ttl, proto, key, seq, ack, doff, flags, win = u4(
                    pkts, off + eoff
                )
                if et == 0x0800:
                    if vihl != 0x45 or frag & 0x1FFF or proto != 6 or not total:
                        key = None
                    else:
                        v6 = False
                        iplen = total
                        length = total - 20 - (doff >> 4) * 4
                elif et == 0x86DD and cap >= min6:
                    et, vhi, plen, nh, ttl, key, seq, ack, doff, flags, win = u6(pkts, off + eoff)
                    if vhi >> 4 != 6 or nh != 6:
                        key = None
                    else:
                        v6 = True
                        iplen = plen + 40
                        length = plen - (doff >> 4) * 4
                else:
                    key = None
            # The fast lane; `ok` turns False at the first condition that fails.
            ok = key is not None and not flags & 7 and win
            if ok:
                ent = get(key)
                ok = ent is not None
            if ok:
                c, ep, peer = ent
                ok = c.lane and ts < c.expire_at  # else Zeek's timer removed it: evict
            if ok:
                if length < 0:
                    length = 0
                # get_relative_seq(): its wrap guess is used, not stored.
                last = ep.last_seq
                if seq == last:  # the next segment in order: no wrap guess, advances
                    wraps = ep.seq_wraps
                    sop = (seq + length) & MASK32
                    dl = length
                else:
                    d = (seq - last) & MASK32
                    if d & 0x80000000:
                        d -= 0x100000000
                    wraps = ep.seq_wraps
                    if d < 0:
                        if wraps and seq > last:
                            wraps -= 1
                    elif d > 0 and seq < last:
                        wraps += 1
                    # update_last_seq(): payload that does not advance is DidRxmit() ('t').
                    sop = (seq + length) & MASK32
                    dl = (sop - last) & MASK32
                    if dl & 0x80000000:
                        dl -= 0x100000000
                    ok = dl > 0 or not length
            new_ack = ok and flags & ACK and ack != ep.ack_ok
            if new_ack:
                # The ACK half of Process() (the peer is ESTABLISHED, not INACTIVE).
                pl = peer.ack_seq
                pw = peer.ack_wraps
                da = (ack - pl) & MASK32
                if da & 0x80000000:
                    da -= 0x100000000
                if da < 0:
                    if pw and ack > pl:
                        pw -= 1
                elif da > 0 and ack < pl:
                    pw += 1
                if pw == 0:
                    rel_ack = (ack - peer.start_seq) & MASK32
                    if rel_ack & 0x80000000:
                        rel_ack = 0  # ack_underflow: nothing updated
                        upd_ack = False
                    else:
                        upd_ack = da > 0 and not (ack == 0 and da > _TOO_LARGE)
                else:
                    rel_ack = (pw << 32) + ack - peer.start_seq
                    upd_ack = da > 0 and not (ack == 0 and da > _TOO_LARGE)
                # AckReceived(): acking past the contiguous data seen is a gap ('g').
                if rel_ack > 0:
                    if peer.fin_cnt and rel_ack >= peer.fin_rel:
                        rel_ack = peer.fin_rel - 1
                    ok = rel_ack <= peer.data_next
            if ok:
                # update_history(), no SYN/FIN/RST: D/d with payload, else A/a for an ACK.
                if c.hist_seen & _DADA != _DADA:
                    m = HIST_DATA_PKT if length else HIST_ACK_PKT if flags & ACK else 0
                    if m and not ep.is_orig:
                        m <<= 16
                    if m and not c.hist_seen & m:
                        c.hist_seen |= m
                        c.history += _LETTER[m]
                if ts > now:
                    now = ts
                if ts > c.last_time:
                    # SetLastTime() (neither side has closed); only inactivity is
                    # pending (_lane_open): the expiry follows.
                    c.last_time = ts
                    c.expire_at = ts + c.inact
                if new_ack:
                    if upd_ack:
                        if ack < pl:
                            peer.ack_wraps += 1
                        peer.ack_seq = ack
                    # Acked again, this value changes nothing and is no gap: the peer's
                    # ack_seq/ack_wraps/start_seq/fin stay (only this direction's lane
                    # or _segment(), which clears ack_ok, changes them) and data_next
                    # only grows. So the ACK half can be skipped for it.
                    ep.ack_ok = ack if peer.ack_seq == ack else -1
                if dl > 0:
                    if sop < last:
                        ep.seq_wraps += 1
                    ep.last_seq = sop
                if length:
                    # DataSent(): contiguous payload advances data_next.
                    if wraps == 0:
                        rel = (seq - ep.start_seq) & MASK32
                        under = rel & 0x80000000  # seq_underflow
                    else:
                        rel = (wraps << 32) + seq - ep.start_seq
                        under = 0
                    if not under and rel <= ep.data_next < rel + length:
                        ep.data_next = rel + length
                # ConnSize. (c.seen_ts is left: only _expiry() reads it, and only
                # _segment() calls that, right after setting it.)
                ep.pkts += 1
                ep.ip_bytes += iplen
                ep.payload += length
                nfast += 1
                continue
            # Everything else: the full decoder and Zeek's full logic.
            if key is None:
                rec = decode(ts, off, cap)
            elif v6:
                rec = tcp_segment(ts, off, cap, ip_off, True, key, seq, ack, flags, win, length,
                                  ttl, -1, False)  # fmt: skip
            else:
                rec = tcp_segment(ts, off, cap, ip_off, False, key, seq, ack, flags, win, length,
                                  ttl, ip_id, frag & 0x4000 != 0)  # fmt: skip
            if rec is None:
                continue
            seen = True
            self._now = now
            if isinstance(rec, Segment):
                c, ep, peer = segment(rec, out)
                if key is not None and (ep.addr != peer.addr or ep.port != peer.port):
                    old = get(key)
                    if old is None or old[0] is not c:
                        fast[key] = (c, ep, peer)
                        if c.fkeys is None:
                            c.fkeys = [key]
                        else:
                            c.fkeys.append(key)
            else:
                self._unreachable(rec, out)
            now = self._now
        self._now = now
        fb.fast_counted(nfast)
        return seen or nfast > 0

    def _segment(self, s: Segment, out: list[Connection]) -> tuple[_Conn, _Endpoint, _Endpoint]:
        ts = s.ts
        if ts > self._now:
            self._now = ts
        src = s.src
        dst = s.dst
        sp = s.sport
        dp = s.dport
        key = (src, sp, dst, dp) if (src, sp) < (dst, dp) else (dst, dp, src, sp)
        flags = s.flags
        c = self._conns.get(key)
        if c is not None:
            if ts >= c.expire_at:
                # Zeek's timer would have removed it before this packet.
                self._evict(c, out)
                c = None
            elif flags & SYN and self._is_reuse(c, flags, s.seq & MASK32):
                self._evict(c, out)  # IPBasedAnalyzer::AnalyzePacket: Remove + NewConn
                c = None
        if c is None:
            c = self._new_conn(key, s)

        o = c.orig
        if src == o.addr and sp == o.port:
            ep = o
            peer = c.resp
        else:
            ep = c.resp
            peer = o

        if self.verify_checksums and s.checksum_ok is False:
            # TCPAnalyzer::ValidateChecksum(): 'c' logarithmically, then drop.
            ep.chk_cnt += 1
            if ep.chk_cnt == ep.chk_thr:
                c.history += "C" if ep.is_orig else "c"
                ep.chk_thr *= 10
        else:
            self._process(c, ep, peer, s, ts, flags)
            # ConnSize analyzer sees the packet after Process().
            ep.pkts += 1
            ep.ip_bytes += _ip_len(s)
            ep.payload += s.payload
            if flags & 7:
                self._control(c, ep, peer, s, ts, flags)

        c.seen_ts = ts
        e = self._expiry(c)
        c.expire_at = e
        if e < c.heap_at:
            c.heap_at = e
            heapq.heappush(self._heap, (e, next(self._tick), c))
        c.lane = self._lane_open(c, e)
        ep.ack_ok = peer.ack_ok = -1
        return c, ep, peer

    def _new_conn(self, key: tuple[str, int, str, int], s: Segment) -> _Conn:
        c = _Conn(key, s)
        # TCPAnalyzer::WantConnection(): a connection starting without a SYN, or
        # with a SYN-ACK, is partial; flip it when the source looks like a server.
        flags = s.flags
        if (not flags & SYN or flags & ACK) and s.sport in LIKELY_SERVER_PORTS:
            flip = not flags & SYN and s.sport < s.dport if s.dport in LIKELY_SERVER_PORTS else True
            if flip:
                self._flip(c)
        self._conns[key] = c
        return c

    @staticmethod
    def _flip(c: _Conn) -> None:
        """Connection::FlipRoles() + TCPSessionAdapter::FlipRoles(); hist_seen stays."""
        c.orig, c.resp = c.resp, c.orig
        c.orig.is_orig = True
        c.resp.is_orig = False
        c.history += "^"

    @staticmethod
    def _is_reuse(c: _Conn, flags: int, seq: int) -> bool:
        """TCPSessionAdapter::IsReuse(): only SYNs (SYN-ACKs for half connections)."""
        conn_orig = c.orig
        if flags & ACK:
            if c.orig.state != INACTIVE:
                return False  # not a half connection
            conn_orig = c.resp
        if not (c.orig.did_close or c.resp.did_close):  # ! IsClosed()
            if seq == conn_orig.start_seq:
                return False
            if (
                not flags & ACK
                and conn_orig.state == SYN_ACK_SENT
                and c.resp.state == INACTIVE
                and seq == c.resp.start_seq
            ):
                return False  # SYN / SYN-ACK seen in reverse order: flipped later
        return True

    def _process(
        self, c: _Conn, ep: _Endpoint, peer: _Endpoint, s: Segment, t: int, flags: int
    ) -> None:
        """TCPSessionAdapter::Process(), minus events, reassembly and windows."""
        length = s.payload
        base_seq = s.seq & MASK32
        ack_seq = s.ack & MASK32

        # get_segment_len()
        seg_len = length
        if flags & SYN:
            seg_len += 1
        if flags & FIN:
            seg_len += 1
        if flags & RST:
            seg_len -= length
        seq_one_past = (base_seq + seg_len) & MASK32

        # init_endpoint()
        st = ep.state
        if st == INACTIVE:
            if flags & SYN:
                ep.ack_seq = ep.start_seq = base_seq
                ep.synced = True
                ep.last_seq = seq_one_past
            else:
                # Partial: number as though a SYN had been seen.
                ep.ack_seq = ep.start_seq = (base_seq - 1) & MASK32
                ep.last_seq = base_seq
        elif flags & SYN:
            if st in (SYN_SENT, SYN_ACK_SENT):
                if base_seq != ep.start_seq:
                    ep.start_seq = ep.ack_seq = base_seq
                    ep.last_seq = seq_one_past
                    ep.synced = True
            elif st in (ESTABLISHED, PARTIAL) or (st == RESET and ep.prev_state == INACTIVE):
                ep.start_seq = ep.ack_seq = base_seq
                ep.last_seq = seq_one_past
                ep.synced = True

        rel_seq, seq_underflow = _relative_seq(base_seq, ep.last_seq, ep.seq_wraps, ep.start_seq)

        # update_history()
        nbits = _NBITS[flags & 7]
        is_o = ep.is_orig
        shift = 0 if is_o else 16
        if nbits == 0:
            if length:
                m = HIST_DATA_PKT << shift
                if not c.hist_seen & m:
                    c.hist_seen |= m
                    c.history += "D" if is_o else "d"
            elif flags & ACK:
                m = HIST_ACK_PKT << shift
                if not c.hist_seen & m:
                    c.hist_seen |= m
                    c.history += "A" if is_o else "a"
        elif nbits > 1:
            if flags & FIN and flags & RST:
                self._check_history(c, HIST_FIN_RST_PKT << shift, "I" if is_o else "i")
            else:
                self._check_history(c, HIST_MULTI_FLAG_PKT << shift, "Q" if is_o else "q")
        else:
            if flags & SYN:
                code = "H" if flags & ACK else "S"
                if not is_o:
                    code = code.lower()
                if (
                    self._check_history(c, HIST_SYN_PKT << shift, code)
                    and rel_seq != ep.hist_last_syn
                ):
                    c.history += code
                ep.hist_last_syn = rel_seq
            if flags & FIN:
                # A FIN's sequence number comes after the packet's data.
                code = "F" if is_o else "f"
                if (
                    self._check_history(c, HIST_FIN_PKT << shift, code)
                    and rel_seq + length != ep.hist_last_fin
                ):
                    c.history += code
                ep.hist_last_fin = rel_seq + length
            if flags & RST:
                code = "R" if is_o else "r"
                if (
                    self._check_history(c, HIST_RST_PKT << shift, code)
                    and rel_seq != ep.hist_last_rst
                ):
                    c.history += code
                ep.hist_last_rst = rel_seq

        # update_window(): only the zero-window history part matters here.
        if s.win == 0 and not flags & RST and peer.state != CLOSED and ep.state != RESET:
            ep.win0_cnt += 1
            if ep.win0_cnt == ep.win0_thr:
                c.history += "W" if is_o else "w"
                ep.win0_thr *= 10

        if (not c.orig.did_close or not c.resp.did_close) and t > c.last_time:
            c.last_time = t  # Conn::SetLastTime(); kept monotonic for merged captures

        if flags & FIN:
            ep.fin_cnt += 1
            ep.fin_rel = rel_seq + seg_len

        rel_ack = 0
        if flags & ACK:
            if peer.state == INACTIVE:
                rel_ack = 1
                # init_peer(): start the peer's numbering as if its SYN was seen.
                peer.start_seq = peer.ack_seq = peer.last_seq = (ack_seq - 1) & MASK32
            else:
                pl = peer.ack_seq
                d = _seq_delta(ack_seq, pl)
                rel_ack, ack_underflow = _relative_seq(ack_seq, pl, peer.ack_wraps, peer.start_seq)
                if ack_underflow:
                    rel_ack = 0
                elif not flags & RST and d > 0 and not (ack_seq == 0 and d > TOO_LARGE_SEQ_DELTA):
                    # update_ack_seq(); acks in RSTs are not trusted.
                    if ack_seq < pl:
                        peer.ack_wraps += 1
                    peer.ack_seq = ack_seq

        # update_last_seq()
        delta_last = _seq_delta(seq_one_past, ep.last_seq)
        if flags & (SYN | RST) and (
            delta_last > TOO_LARGE_SEQ_DELTA or delta_last < -TOO_LARGE_SEQ_DELTA
        ):
            pass
        elif flags & FIN and ep.last_seq == (ep.start_seq + 1) & MASK32:
            self._update_last_seq(ep, seq_one_past)
        elif ep.state == RESET:
            pass
        elif delta_last > 0:
            self._update_last_seq(ep, seq_one_past)
        elif length > 0:
            # DidRxmit(): 't' logarithmically.
            ep.rxmt_cnt += 1
            if ep.rxmt_cnt == ep.rxmt_thr:
                c.history += "T" if is_o else "t"
                ep.rxmt_thr *= 10

        # UpdateStateMachine(); pure ACK/data in ESTABLISHED changes nothing.
        st = ep.state
        if flags & 7 or st == INACTIVE:
            if st == INACTIVE:
                r = self._update_inactive(c, ep, peer, base_seq, length, is_o, flags, t)
            elif st in (SYN_SENT, SYN_ACK_SENT):
                r = self._update_syn_sent(c, ep, flags)
            elif st in (ESTABLISHED, PARTIAL):
                r = self._update_established(c, ep, peer, flags)
            elif st == CLOSED:
                r = self._update_closed(c, ep, flags, t)
            else:
                r = 0  # UpdateResetState(): weirds only
        else:
            r = 0

        # peer->AckReceived(rel_ack): the simplified content-gap check.
        if flags & ACK and rel_ack > 0:
            a = rel_ack
            if peer.fin_cnt and a >= peer.fin_rel:
                a = peer.fin_rel - 1
            if a > peer.data_next:
                if peer.state == ESTABLISHED and ep.state == ESTABLISHED and (peer.synced or a > 2):
                    peer.gap_cnt += 1
                    if peer.gap_cnt == peer.gap_thr:
                        c.history += "G" if peer.is_orig else "g"
                        peer.gap_thr *= 10
                peer.data_next = a

        # DataSent(): contiguous payload advances data_next.
        if length > 0 and not flags & RST and not seq_underflow:
            rds = rel_seq + 1 if flags & SYN else rel_seq
            if rds <= ep.data_next < rds + length:
                ep.data_next = rds + length

        if r & 1:
            self._connection_closed(c, ep, peer, bool(r & 2))

    @staticmethod
    def _check_history(c: _Conn, mask: int, code: str) -> bool:
        """Connection::CheckHistory(): True if already seen, else record it."""
        if not c.hist_seen & mask:
            c.hist_seen |= mask
            c.history += code
            return False
        return True

    @staticmethod
    def _update_last_seq(ep: _Endpoint, seq: int) -> None:
        if seq < ep.last_seq:
            ep.seq_wraps += 1
        ep.last_seq = seq

    @staticmethod
    def _set_state(c: _Conn, ep: _Endpoint, new: int) -> None:
        """TCP_Endpoint::SetState(): leaving the handshake arms tcp_inactivity_timeout."""
        if new != ep.state:
            peer = c.resp if ep is c.orig else c.orig  # no back pointer: no ref cycle
            if new not in _HANDSHAKE and ep.state in _HANDSHAKE and peer.state in _HANDSHAKE:
                c.inact = TCP_INACTIVITY_TIMEOUT
            ep.prev_state = ep.state
            ep.state = new

    # The Update*State() functions return do_close | gen_event << 1.

    def _update_inactive(
        self,
        c: _Conn,
        ep: _Endpoint,
        peer: _Endpoint,
        base_seq: int,
        length: int,
        is_orig: bool,
        flags: int,
        t: int,
    ) -> int:
        set_state = self._set_state
        r = 0
        if flags & SYN:
            if is_orig:
                # SYN-ACK from the originator: weird connection_originator_SYN_ack.
                set_state(c, ep, SYN_ACK_SENT if flags & ACK else SYN_SENT)
                c.attempt_at = t + TCP_ATTEMPT_DELAY
            else:
                if flags & ACK:
                    pass  # bad_SYN_ack check: a weird only
                elif peer.state == SYN_ACK_SENT and base_seq == ep.start_seq:
                    # SYN/SYN-ACK reversal (see IsReuse): flip and establish.
                    self._flip(c)
                    set_state(c, peer, ESTABLISHED)
                # else: simultaneous_open weird
                if peer.state == SYN_SENT:
                    set_state(c, peer, ESTABLISHED)
                set_state(c, ep, ESTABLISHED)

        if flags & FIN:
            set_state(c, ep, CLOSED)
            r = 3

        if flags & RST:
            set_state(c, ep, RESET)
            if is_orig:
                # Peer established: we saw a SYN-ACK but no SYN (reverse scan).
                is_reject = peer.state == ESTABLISHED
            else:
                is_reject = peer.state == SYN_SENT or peer.state == SYN_ACK_SENT
            r = 1 if is_reject else 3

        if ep.state == INACTIVE:  # no control flags changed the state
            if not is_orig and length == 0 and c.orig.state == SYN_SENT:
                pass  # ACK of a SYN before the SYN-ACK: not a partial connection
            elif flags & ACK and peer.state == ESTABLISHED:
                set_state(c, ep, ESTABLISHED)  # we just missed the SYN
            else:
                set_state(c, ep, PARTIAL)
        return r

    def _update_syn_sent(self, c: _Conn, ep: _Endpoint, flags: int) -> int:
        r = 0
        if flags & FIN:
            self._set_state(c, ep, CLOSED)
            r = 3
        if flags & RST:
            self._set_state(c, ep, RESET)
            c.is_active = False  # ConnectionReset()
            r |= 1
        return r

    def _update_established(self, c: _Conn, ep: _Endpoint, peer: _Endpoint, flags: int) -> int:
        set_state = self._set_state
        r = 0
        if flags & SYN and ep.state == PARTIAL and peer.state == INACTIVE and not flags & ACK:
            set_state(c, ep, SYN_SENT)  # SYN_after_partial
        if flags & FIN and not flags & RST:
            set_state(c, ep, CLOSED)
            if peer.state == RESET and peer.prev_state == CLOSED:
                # The peer sent FIN then RST: that was a normal close after all.
                set_state(c, peer, CLOSED)
            r = 3
        if flags & RST:
            set_state(c, ep, RESET)
            r |= 1
            if peer.state != RESET or peer.prev_state != ESTABLISHED:
                c.is_active = False  # ConnectionReset()
        return r

    def _update_closed(self, c: _Conn, ep: _Endpoint, flags: int, t: int) -> int:
        # After a FIN exchange from both sides a RST changes nothing.
        peer = c.resp if ep is c.orig else c.orig
        if flags & RST and peer.state != CLOSED:
            self._set_state(c, ep, RESET)
            if c.reset_at is None:
                c.reset_at = t + TCP_RESET_DELAY
            if not ep.did_close:
                return 1  # RST after FIN
        return 0

    def _connection_closed(self, c: _Conn, ep: _Endpoint, peer: _Endpoint, gen: bool) -> None:
        """TCPSessionAdapter::ConnectionClosed() (DataPending() taken as false)."""
        if ep.did_close:
            return
        ep.did_close = True
        if ep.state == RESET or peer.did_close or peer.state == INACTIVE:
            if (ep.prev_state != INACTIVE or peer.state != INACTIVE) and gen:
                c.is_active = False  # ConnectionFinished()
            # CancelTimers(), then ConnDeleteTimer at LastTime() + tcp_close_delay.
            c.attempt_at = c.chain1 = c.chain2 = c.reset_at = None
            c.delete_at = c.last_time + TCP_CLOSE_DELAY
        elif ep.prev_state != INACTIVE and c.chain2 is None:
            # ExpireTimer to look for the other side closing too.
            c.chain2 = c.last_time + TCP_SESSION_TIMER
        # else: PartialCloseTimer, only with a connection_partial_close handler.

    @staticmethod
    def _expiry(c: _Conn) -> float:
        """When Zeek's earliest pending timer removes this connection, state unchanged."""
        e = c.last_time + c.inact  # Connection::InactivityTimer: last + timeout <= t
        d = c.delete_at
        if d is not None and d < e:
            e = d
        if not c.is_active:
            return e  # Attempt/Expire/Reset timers return early
        o = c.orig
        r = c.resp
        a = c.attempt_at
        if a is not None and a < e and r.state == INACTIVE and o.state in (SYN_SENT, SYN_ACK_SENT):
            e = a
        a = c.reset_at
        if a is not None and a < e:
            e = a
        if c.chain1 is not None or c.chain2 is not None:
            # ExpireTimer: removes when LastTime() + linger < t and ...
            cond = False
            if o.did_close or r.did_close:
                cond = (
                    (o.did_close and r.did_close)
                    or o.state == RESET
                    or r.state == RESET
                    or o.state == INACTIVE
                    or r.state == INACTIVE
                )
            if not cond and o.state == INACTIVE and r.state == INACTIVE:
                cond = True
            if cond:
                floor = max(c.seen_ts, c.last_time + TCP_CONNECTION_LINGER)
                for anchor in (c.chain1, c.chain2):
                    if anchor is None:
                        continue
                    if anchor > floor:
                        g = anchor
                    else:
                        g = anchor + TCP_SESSION_TIMER * ((floor - anchor) // TCP_SESSION_TIMER + 1)
                    if g < e:
                        e = g
        return e

    @staticmethod
    def _control(c: _Conn, ep: _Endpoint, peer: _Endpoint, s: Segment, ts: int, flags: int) -> None:
        """Side facts from a SYN/FIN/RST packet: the same with or without the prefilter."""
        if ep.rst_ts is not None:
            # More RSTs are normal (each late segment gets one); a FIN or SYN-ACK is not.
            if not flags & RST:
                ep.after_rst += 1
        elif flags & RST:
            ep.rst_ts = ts
            ep.rst_flags = flags
            ep.rst_seq = s.seq
            ep.rst_ack = s.ack
            ep.rst_ttl = s.ttl
            ep.rst_ip_id = s.ip_id
            ep.rst_df = s.df
            ep.rst_answered = (peer.syn_n > 0 or peer.sa_n > 0) and ep.sa_n == 0
            ep.ev_rst = s
        else:
            if ep.ttls is None:
                ep.ttls = {s.ttl}
            else:
                ep.ttls.add(s.ttl)
        if flags & SYN:
            seq = s.seq
            if flags & ACK:
                if ep.sa_n == 0:
                    ep.sa_seq0 = seq
                    ep.sa_first = ts
                    ep.ev_synack = s
                elif seq != ep.sa_seq0:
                    if ep.sa_seqs is None:
                        ep.sa_seqs = {seq}
                    else:
                        ep.sa_seqs.add(seq)
                ep.sa_n += 1
                ep.sa_last = ts
            else:
                if ep.syn_n == 0:
                    ep.syn_seq0 = seq
                    ep.syn_first = ts
                    ep.ev_syn = s
                elif seq != ep.syn_seq0:
                    if ep.syn_seqs is None:
                        ep.syn_seqs = {seq}
                    else:
                        ep.syn_seqs.add(seq)
                ep.syn_n += 1
                ep.syn_last = ts
        if flags & FIN and ep.fin_ts is None:
            ep.fin_ts = ts
            ep.fin_seq0 = s.seq

    # -- ICMP -----------------------------------------------------------------

    def _unreachable(self, u: Unreachable, out: list[Connection]) -> None:
        ts = u.ts
        if ts > self._now:
            self._now = ts
        src = u.quoted_src
        dst = u.quoted_dst
        sp = u.quoted_sport
        dp = u.quoted_dport
        key = (src, sp, dst, dp) if (src, sp) < (dst, dp) else (dst, dp, src, sp)
        c = self._conns.get(key)
        if c is not None and ts >= c.expire_at:
            self._evict(c, out)
            c = None
        if (
            c is not None
            and c.orig.addr == src
            and c.orig.port == sp
            and c.resp.addr == dst
            and c.resp.port == dp
        ):
            # Only an error about the SYN ends an attempt; one quoting later data
            # (a route lost mid-connection) is not a failed connect.
            syn_seq = c.orig.syn_seq0
            if c.unreachable is None and (
                u.quoted_seq is None or syn_seq is None or u.quoted_seq == syn_seq
            ):
                c.unreachable = u
            return
        self.unmatched_unreachable.append(u)

    # -- eviction -------------------------------------------------------------

    def _evict(self, c: _Conn, out: list[Connection]) -> None:
        del self._conns[c.key]
        c.dead = True
        c.lane = False
        if c.fkeys is not None:
            fast = self._fast
            for k in c.fkeys:
                if fast.get(k, (None,))[0] is c:  # a newer connection may own it by now
                    del fast[k]
        out.append(self._finalize(c))

    def _expire(self, out: list[Connection]) -> None:
        """Chunk end: remove what is already expired at the latest timestamp seen."""
        heap = self._heap
        now = self._now
        pop = heapq.heappop
        while heap and heap[0][0] <= now:
            at, _, c = pop(heap)
            if c.dead:
                continue
            if c.expire_at <= now:
                self._evict(c, out)
            elif at == c.heap_at:
                # Its earliest entry is gone: keep one at its real expiry.
                c.heap_at = c.expire_at
                heapq.heappush(heap, (c.expire_at, next(self._tick), c))

    # -- output ---------------------------------------------------------------

    @staticmethod
    def _size(ep: _Endpoint, peer: _Endpoint) -> int:
        """TCP_Endpoint::Size(): payload bytes from sequence numbers."""
        if ep.prev_state == SYN_SENT and ep.state == RESET and peer.state == INACTIVE:
            ack = (ep.ack_wraps << 32) + ep.ack_seq
            if not (ack == ep.start_seq or ack == ep.start_seq + 1):  # ! NoDataAcked()
                return 0  # a half-open connection discovered and aborted
        last64 = (ep.seq_wraps << 32) + ep.last_seq
        ack64 = (ep.ack_wraps << 32) + ep.ack_seq
        size = (last64 if last64 > ack64 else ack64) - ep.start_seq
        if size != 0:
            size -= 1  # the SYN octet
        if ep.fin_cnt > 0 and size != 0:
            size -= 1  # the FIN octet
        return max(size, 0)

    @staticmethod
    def _side(ep: _Endpoint, as_orig: bool) -> Side:
        # The originator's facts come from its SYNs, the responder's from its SYN-ACKs.
        if as_orig:
            n, isn, extra = ep.syn_n, ep.syn_seq0, ep.syn_seqs
            first, last = ep.syn_first, ep.syn_last
        else:
            n, isn, extra = ep.sa_n, ep.sa_seq0, ep.sa_seqs
            first, last = ep.sa_first, ep.sa_last
        seq_bytes = 0
        ref = ep.fin_seq0
        if ref is None and ep.rst_ts is not None:
            ref = ep.rst_seq
        if isn is not None and ref is not None:
            d = (ref - isn - 1) & MASK32
            if d < 0x80000000:  # else the FIN/RST is before the ISN: nonsense
                seq_bytes = d
        return Side(
            isn=isn,
            syns=n,
            syn_seqs=(1 + len(extra) if extra else 1) if n else 0,
            first_syn_ts=first,
            last_syn_ts=last,
            fin_ts=ep.fin_ts,
            rst_ts=ep.rst_ts,
            rst_flags=ep.rst_flags,
            rst_seq=ep.rst_seq,
            rst_ack=ep.rst_ack,
            rst_ttl=ep.rst_ttl,
            rst_ip_id=ep.rst_ip_id,
            rst_df=ep.rst_df,
            rst_answered_syn=ep.rst_answered,
            ttls=ep.ttls if ep.ttls is not None else set(),
            pkts_after_rst=ep.after_rst,
            seq_bytes=seq_bytes,
            payload_seen=ep.payload,
        )

    def _finalize(self, c: _Conn) -> Connection:
        o = c.orig
        r = c.resp
        osize = self._size(o, r)
        rsize = self._size(r, o)
        duration = c.last_time - c.start
        history = c.history
        evidence: list[Evidence] = []
        for ev, note in (
            (o.ev_syn, "SYN"),
            (r.ev_synack, "SYN-ACK"),
            (o.ev_rst, "RST from originator"),
            (r.ev_rst, "RST from responder"),
        ):
            if ev is not None:
                evidence.append(Evidence(ev.ts, ev.iface, ev.raw, note))
        u = c.unreachable
        if u is not None:
            evidence.append(Evidence(u.ts, u.iface, u.raw, "ICMP unreachable"))
        evidence.sort(key=lambda e: e.ts)
        return Connection(
            ts=c.start,
            uid=_uid(c.first, c.start) if self.uids else "",
            orig_h=o.addr,
            orig_p=o.port,
            resp_h=r.addr,
            resp_p=r.port,
            duration=duration,
            # set_conn(): bytes are only logged when duration > 0.
            orig_bytes=osize if duration > 0 else 0,
            resp_bytes=rsize if duration > 0 else 0,
            conn_state=conn_state(o.state, r.state, osize, rsize, history),
            history=history,
            orig_pkts=o.pkts,
            orig_ip_bytes=o.ip_bytes,
            resp_pkts=r.pkts,
            resp_ip_bytes=r.ip_bytes,
            iface=c.iface,
            version=c.version,
            last_ts=c.last_time,
            orig=self._side(o, True),
            resp=self._side(r, False),
            unreachable=u,
            evidence=evidence,
        )
