"""ConnectionTable against Zeek's TCP semantics.

Every expectation cites where it comes from in Zeek (files as listed in the
docstring of rstrace.track): TCPSessionAdapter.cc (TSA), TCP.cc, Conn.cc,
TCP_Endpoint.cc, scripts/base/protocols/conn/main.zeek (main.zeek), init-bare.zeek,
or a btest baseline.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from rstrace.model import ACK, FIN, PSH, RST, SYN, Connection, Segment, Unreachable
from rstrace.track import ConnectionTable

CLI = ("10.0.0.1", 40000)
SRV = ("10.0.0.2", 8081)  # not in likely_server_ports: no role flip
WEB = ("10.0.0.2", 80)  # a likely server port: WantConnection() flips on it
T0 = 1_700_000_000_000_000  # µs
SEC = 1_000_000


def seg(
    t: float,
    fr: tuple[str, int],
    to: tuple[str, int],
    flags: int,
    seq: int = 0,
    ack: int = 0,
    payload: int = 0,
    win: int = 1000,
    ttl: int = 64,
    checksum_ok: bool | None = None,
) -> Segment:
    """A Segment at T0 + t seconds with sensible defaults (IPv4, 40-byte headers)."""
    total = 40 + payload
    raw = bytes([0x45, 0, total >> 8, total & 0xFF]) + bytes(36)
    return Segment(
        ts=T0 + round(t * SEC),
        iface=None,
        version=4,
        src=fr[0],
        dst=to[0],
        sport=fr[1],
        dport=to[1],
        flags=flags,
        seq=seq,
        ack=ack,
        win=win,
        payload=payload,
        ttl=ttl,
        ip_id=7,
        df=True,
        raw=raw,
        checksum_ok=checksum_ok,
    )


def run(records: list[Segment | Unreachable], chunk: int = 0, **kw: bool) -> list[Connection]:
    table = ConnectionTable(**kw)
    if chunk:
        out: list[Connection] = []
        for i in range(0, len(records), chunk):
            out += table.feed(records[i : i + chunk])
    else:
        out = table.feed(records)
    out += table.flush()
    return sorted(out, key=lambda c: (c.ts, c.uid))


def one(records: list[Segment | Unreachable], **kw: bool) -> Connection:
    conns = run(records, **kw)
    assert len(conns) == 1, [(c.history, c.conn_state) for c in conns]
    return conns[0]


def summary(conns: list[Connection]) -> list[tuple[str, str]]:
    return [(c.history, c.conn_state) for c in conns]


def handshake(t: float = 0.0, peer: tuple[str, int] = SRV) -> list[Segment]:
    return [
        seg(t, CLI, peer, SYN, 100),
        seg(t + 0.01, peer, CLI, SYN | ACK, 500, 101),
        seg(t + 0.02, CLI, peer, ACK, 101, 501),
    ]


# --- Zeek's conn_state-RST-behavior btest --------------------------------------
# testing/btest/Baseline/scripts.base.protocols.conn.conn_state-RST-behavior/out:
#   R, OTH / SR, RSTOS0 / SaR, RSTOS0 / SaFR, OTH


def test_btest_single_rst() -> None:
    # single-rst.pcap: one RST; TSA UpdateInactiveState -> orig RESET, resp INACTIVE,
    # history does not match /^?S[^HAFGIQ]*R.*/ -> OTH.
    assert summary(run([seg(0, CLI, SRV, RST | ACK, 100, 7)])) == [("R", "OTH")]


def test_btest_syn_then_rst() -> None:
    # syn-then-rst.pcap: UpdateSYN_SentState RST -> RESET; main.zeek: RSTOS0.
    conns = run([seg(0, CLI, SRV, SYN, 100), seg(0.5, CLI, SRV, RST, 101)])
    assert summary(conns) == [("SR", "RSTOS0")]


def test_btest_syn_then_ack_then_rst() -> None:
    # syn-then-ack-then-rst.pcap: the responder's pure ACK before any SYN-ACK keeps it
    # INACTIVE (TSA UpdateInactiveState: "eccentric TCP's ... ack an initial SYN").
    conns = run(
        [
            seg(0, CLI, SRV, SYN, 100),
            seg(0.1, SRV, CLI, ACK, 7, 101),
            seg(0.5, CLI, SRV, RST, 101),
        ]
    )
    assert summary(conns) == [("SaR", "RSTOS0")]


def test_btest_syn_then_stuff_then_rst() -> None:
    # syn-then-stuff-then-rst.pcap: the F breaks the RSTOS0 pattern ([^HAFGIQ]*) -> OTH.
    conns = run(
        [
            seg(0, CLI, SRV, SYN, 100),
            seg(0.1, SRV, CLI, ACK, 7, 101),
            seg(0.2, CLI, SRV, FIN | ACK, 101, 7),
            seg(0.5, CLI, SRV, RST, 102),
        ]
    )
    assert summary(conns) == [("SaFR", "OTH")]


# --- each conn_state (main.zeek conn_state() and its documentation) ---------------


def test_s0_attempt() -> None:
    c = one([seg(0, CLI, SRV, SYN, 100)])
    assert (c.history, c.conn_state) == ("S", "S0")
    assert c.orig.isn == 100 and c.orig.syns == 1 and c.resp.isn is None


def test_s1_established_not_closed() -> None:
    c = one(handshake())
    # TSA UpdateInactiveState: the SYN-ACK establishes both endpoints.
    assert (c.history, c.conn_state) == ("ShA", "S1")


def test_sf_normal() -> None:
    segs = [
        *handshake(),
        seg(0.1, CLI, SRV, PSH | ACK, 101, 501, payload=10),
        seg(0.2, SRV, CLI, PSH | ACK, 501, 111, payload=20),
        seg(0.3, CLI, SRV, FIN | ACK, 111, 521),
        seg(0.4, SRV, CLI, FIN | ACK, 521, 112),
        seg(0.5, CLI, SRV, ACK, 112, 522),
    ]
    c = one(segs)
    assert (c.history, c.conn_state) == ("ShADdFf", "SF")
    # TCP_Endpoint::Size(): bytes from sequence numbers, SYN and FIN octets excluded.
    assert (c.orig_bytes, c.resp_bytes) == (10, 20)
    # main.zeek: duration excludes trailing packets once both sides closed (the last
    # ACK): TSA Process() only calls SetLastTime() while a side is still open.
    assert c.duration == round(0.4 * SEC) and c.last_ts == T0 + round(0.4 * SEC)
    # ConnSize counts every packet, IP total lengths.
    assert (c.orig_pkts, c.resp_pkts) == (5, 3)
    assert (c.orig_ip_bytes, c.resp_ip_bytes) == (5 * 40 + 10, 3 * 40 + 20)
    assert c.orig.seq_bytes == 10 and c.resp.seq_bytes == 20
    assert c.orig.fin_ts == T0 + round(0.3 * SEC)
    assert c.uid.startswith("C") and len(c.uid) > 10


def test_rej() -> None:
    c = one([seg(0, CLI, SRV, SYN, 100, ttl=63), seg(0.001, SRV, CLI, RST | ACK, 0, 101, ttl=61)])
    # TSA UpdateInactiveState: resp RST while orig SYN_SENT is a reject.
    assert (c.history, c.conn_state) == ("Sr", "REJ")
    assert c.resp.rst_answered_syn and not c.orig.rst_answered_syn
    assert c.resp.rst_ttl == 61 and c.orig.ttls == {63} and c.resp.ttls == set()
    assert [e.note for e in c.evidence] == ["SYN", "RST from responder"]


def test_rej_by_both_resets() -> None:
    # main.zeek: rs RESET, os RESET and no bytes either way -> REJ.
    c = one([seg(0, CLI, SRV, SYN, 100), seg(0.1, SRV, CLI, RST | ACK, 0, 101),
             seg(0.2, CLI, SRV, RST, 101)])  # fmt: skip
    assert c.conn_state == "REJ"


def test_s2_and_s3() -> None:
    s2 = one([*handshake(), seg(0.1, CLI, SRV, FIN | ACK, 101, 501)])
    assert (s2.history, s2.conn_state) == ("ShAF", "S2")
    s3 = one([*handshake(), seg(0.1, SRV, CLI, FIN | ACK, 501, 101)])
    assert (s3.history, s3.conn_state) == ("ShAf", "S3")


def test_rsto_and_rstr() -> None:
    rsto = one([*handshake(), seg(0.1, CLI, SRV, RST | ACK, 101, 501)])
    assert (rsto.history, rsto.conn_state) == ("ShAR", "RSTO")
    rstr = one([*handshake(), seg(0.1, SRV, CLI, RST | ACK, 501, 101)])
    assert (rstr.history, rstr.conn_state) == ("ShAr", "RSTR")
    # The reset came after a SYN-ACK: not a refused connection.
    assert not rstr.resp.rst_answered_syn


def test_rstrh_and_shr_after_flip() -> None:
    # A SYN-ACK from port 80 starts a flipped connection (TCP.cc WantConnection,
    # Conn.cc FlipRoles adds '^'); no SYN from the originator: o_inactive.
    rstrh = one([seg(0, WEB, CLI, SYN | ACK, 500, 101), seg(0.1, WEB, CLI, RST, 501)])
    assert (rstrh.history, rstrh.conn_state) == ("^hr", "RSTRH")
    assert (rstrh.orig_h, rstrh.orig_p) == CLI and (rstrh.resp_h, rstrh.resp_p) == WEB
    shr = one([seg(0, WEB, CLI, SYN | ACK, 500, 101), seg(0.1, WEB, CLI, FIN | ACK, 501, 101)])
    assert (shr.history, shr.conn_state) == ("^hf", "SHR")


def test_sh() -> None:
    c = one([seg(0, CLI, SRV, SYN, 100), seg(0.1, CLI, SRV, FIN, 101)])
    assert (c.history, c.conn_state) == ("SF", "SH")


def test_oth_midstream() -> None:
    c = one([seg(0, CLI, SRV, PSH | ACK, 1000, 2000, payload=100),
             seg(0.1, SRV, CLI, ACK, 2000, 1100)])  # fmt: skip
    # TSA UpdateInactiveState: no SYN -> PARTIAL both ways; main.zeek -> OTH.
    assert (c.history, c.conn_state) == ("Da", "OTH")


# --- history letters ---------------------------------------------------------


def test_retransmitted_syn_recorded_once() -> None:
    # TSA update_history: 'S' again only if rel_seq != hist_last_SYN; same ISN -> once.
    c = one([seg(0, CLI, SRV, SYN, 100), seg(1, CLI, SRV, SYN, 100), seg(3, CLI, SRV, SYN, 100)])
    assert (c.history, c.conn_state, c.orig_pkts) == ("S", "S0", 3)
    assert c.orig.syns == 3 and c.orig.syn_seqs == 1
    assert c.orig.first_syn_ts == T0 and c.orig.last_syn_ts == T0 + 3 * SEC


def test_syn_with_new_isn_starts_new_connection() -> None:
    # TSA IsReuse: a SYN whose seq differs from the originator's start seq is a reuse
    # (weird SYN_seq_jump) -> AnalyzePacket removes the old connection.
    conns = run([seg(0, CLI, SRV, SYN, 100), seg(1, CLI, SRV, SYN, 9999)])
    assert summary(conns) == [("S", "S0"), ("S", "S0")]
    assert [c.orig.isn for c in conns] == [100, 9999]


def test_attempt_timer_splits_retransmissions() -> None:
    # TSA AttemptTimer at SYN + tcp_attempt_delay (5 s, init-bare.zeek): a SYN
    # retransmitted at 7 s lands in a new connection.
    conns = run(
        [seg(0, CLI, SRV, SYN, 100), seg(3, CLI, SRV, SYN, 100), seg(7, CLI, SRV, SYN, 100)]
    )
    assert summary(conns) == [("S", "S0"), ("S", "S0")]
    assert [c.orig_pkts for c in conns] == [2, 1]


def test_syn_after_rej_is_new_connection() -> None:
    # TSA IsReuse: once a side did_close (the responder's RST), any SYN is a reuse.
    conns = run([seg(0, CLI, SRV, SYN, 100), seg(0.1, SRV, CLI, RST | ACK, 0, 101),
                 seg(0.5, CLI, SRV, SYN, 100), seg(0.6, SRV, CLI, RST | ACK, 0, 101)])  # fmt: skip
    assert summary(conns) == [("Sr", "REJ"), ("Sr", "REJ")]
    assert len({c.uid for c in conns}) == 2


def test_port_reuse_after_sf() -> None:
    first = [
        *handshake(),
        seg(0.1, CLI, SRV, FIN | ACK, 101, 501),
        seg(0.2, SRV, CLI, FIN | ACK, 501, 102),
        seg(0.3, CLI, SRV, ACK, 102, 502),
    ]
    second = [seg(1, CLI, SRV, SYN, 7000), seg(1.1, SRV, CLI, SYN | ACK, 800, 7001)]
    conns = run(first + second)
    assert summary(conns) == [("ShAFf", "SF"), ("Sh", "S1")]


def test_syn_synack_reversal_flips() -> None:
    # SYN-ACK from a non-server port first: its sender is the originator ('H'); the
    # SYN that follows with seq == ack-1 is not a reuse (TSA IsReuse) and
    # UpdateInactiveState flips the roles: '^' after the 's'.
    c = one([seg(0, SRV, CLI, SYN | ACK, 500, 101), seg(0.001, CLI, SRV, SYN, 100)])
    assert (c.history, c.conn_state) == ("Hs^", "S1")
    assert (c.orig_h, c.orig_p) == CLI
    assert c.orig.isn == 100 and c.resp.isn == 500


def test_synack_first_flip_then_syn() -> None:
    # WantConnection flips on port 80; the SYN later is no reuse (seq == ack - 1).
    c = one([seg(0, WEB, CLI, SYN | ACK, 500, 101), seg(0.01, CLI, WEB, SYN, 100),
             seg(0.02, CLI, WEB, ACK, 101, 501)])  # fmt: skip
    assert c.history == "^hSA"
    # orig went INACTIVE -> SYN_SENT (stays there on the ACK), resp ESTABLISHED: OTH.
    assert c.conn_state == "OTH"


def test_rst_with_new_seq_recorded_again() -> None:
    # TSA update_history: 'R' again when its relative seq differs.
    c = one([*handshake(), seg(0.1, SRV, CLI, RST, 501), seg(0.2, SRV, CLI, RST, 501),
             seg(0.3, SRV, CLI, RST, 601)])  # fmt: skip
    assert c.history == "ShArr"
    # Repeated RSTs are normal (each late segment gets one): not "kept talking".
    assert c.resp.pkts_after_rst == 0 and c.resp.rst_seq == 501


def test_logarithmic_letters() -> None:
    # Conn.cc ScaledHistoryEntry: a letter at the 1st, 10th, 100th... event.
    data = [seg(0.1, CLI, SRV, PSH | ACK, 101, 501, payload=10)]
    rexmit = [seg(0.2 + i / 1000, CLI, SRV, PSH | ACK, 101, 501, payload=10) for i in range(10)]
    zero = [seg(0.5 + i / 1000, SRV, CLI, ACK, 501, 111, win=0) for i in range(100)]
    c = one([*handshake(), *data, *rexmit, *zero])
    assert c.history == "ShADTTaWWW".replace("WWW", "www")
    bad = [seg(i / 10, CLI, SRV, ACK, 100, checksum_ok=False) for i in range(10)]
    c = one(bad, verify_checksums=True)
    # TCP.cc ValidateChecksum: 'C' and the packet is dropped (not counted, no state).
    assert (c.history, c.conn_state, c.orig_pkts) == ("CC", "OTH", 0)
    # Bad SYNs: IPBasedAnalyzer runs IsReuse() before the checksum check, and the
    # start seq was never set from a dropped packet, so each SYN is a reuse.
    bad = [seg(i / 10, CLI, SRV, SYN, 100, checksum_ok=False) for i in range(3)]
    assert summary(run(bad, verify_checksums=True)) == [("C", "OTH")] * 3


def test_checksums_ignored_by_default() -> None:
    # Like `zeek -C`: checksum_ok is not looked at.
    c = one([seg(0, CLI, SRV, SYN, 100, checksum_ok=False)])
    assert (c.history, c.orig_pkts) == ("S", 1)


def test_multi_flag_letters() -> None:
    # TSA update_history: FIN+RST -> 'I', SYN+FIN -> 'Q', once per direction.
    c = one([*handshake(), seg(0.1, CLI, SRV, FIN | RST | ACK, 101, 501)])
    assert c.history == "ShAI"
    c = one([*handshake(), seg(0.1, CLI, SRV, SYN | FIN | ACK, 100, 501),
             seg(0.2, CLI, SRV, SYN | RST | ACK, 100, 501)])  # fmt: skip
    assert (c.history, c.conn_state) == ("ShAQ", "RSTO")
    # A bare SYN+FIN closes the originator (UpdateSYN_SentState), so the next SYN
    # is a reuse (IsReuse: IsClosed()).
    conns = run([seg(0, CLI, SRV, SYN | FIN, 100), seg(0.1, CLI, SRV, SYN | FIN, 100)])
    assert summary(conns) == [("Q", "SH"), ("Q", "SH")]


# --- timeouts and eviction ----------------------------------------------------------


def test_inactivity_expiry_starts_new_connection() -> None:
    # tcp_inactivity_timeout (5 min, init-bare.zeek), armed when the handshake ends
    # (TCP_Endpoint::SetState); Conn.cc InactivityTimer removes at last + timeout.
    idle = handshake()
    just_before = seg(0.02 + 300 - 1e-6, CLI, SRV, ACK, 101, 501)
    at_timeout = seg(0.02 + 300 - 1e-6 + 300, CLI, SRV, PSH | ACK, 101, 501, payload=5)
    conns = run([*idle, just_before, at_timeout])
    assert summary(conns) == [("ShA", "S1"), ("D", "OTH")]
    assert conns[1].ts == at_timeout.ts


def test_close_delay_and_reset_delay() -> None:
    # ConnDeleteTimer at LastTime() + tcp_close_delay (5 s) after a complete close.
    sf = [
        *handshake(),
        seg(0.1, CLI, SRV, FIN | ACK, 101, 501),
        seg(0.2, SRV, CLI, FIN | ACK, 501, 102),
    ]
    table = ConnectionTable()
    assert table.feed(sf) == []
    other = seg(5.19, ("10.9.9.9", 1), ("10.9.9.8", 2), SYN, 1)
    assert table.feed([other]) == []
    later = seg(5.2, ("10.9.9.9", 1), ("10.9.9.8", 2), SYN, 1)
    done = table.feed([later])
    assert summary(done) == [("ShAFf", "SF")] and len(table) == 1
    # FIN then RST from one side: UpdateClosedState arms ResetTimer (tcp_reset_delay).
    fr = [*handshake(), seg(0.1, CLI, SRV, FIN | ACK, 101, 501), seg(0.2, CLI, SRV, RST, 102)]
    table = ConnectionTable()
    table.feed(fr)
    assert table.feed([seg(5.1, ("10.9.9.9", 1), ("10.9.9.8", 2), SYN, 1)]) == []
    assert summary(table.feed([seg(5.2, ("10.9.9.9", 1), ("10.9.9.8", 2), SYN, 1)])) == [
        ("ShAFR", "RSTO")
    ]


def test_memory_stays_bounded() -> None:
    table = ConnectionTable()
    done = 0
    for i in range(20000):
        cli = (f"10.1.{i >> 8 & 255}.{i & 255}", 1000 + i % 50000)
        done += len(table.feed([seg(i / 100, cli, SRV, SYN, i)]))
    # 100 SYNs a second, each removed 5 s later by the AttemptTimer.
    assert len(table) <= 5 * 100 + 1
    assert len(table._heap) <= 2 * (5 * 100 + 1)
    assert done + len(table.flush()) == 20000


# --- ICMP ------------------------------------------------------------------------


def unreach(t: float, qsrc: tuple[str, int], qdst: tuple[str, int], seq: int = 100) -> Unreachable:
    return Unreachable(
        ts=T0 + round(t * SEC), iface=None, version=4, src="192.0.2.1", dst=qsrc[0],
        icmp_type=3, icmp_code=13, ttl=250, quoted_src=qsrc[0], quoted_dst=qdst[0],
        quoted_sport=qsrc[1], quoted_dport=qdst[1], quoted_seq=seq, raw=b"\x45" + bytes(55),
    )  # fmt: skip


def test_unreachable_quoting_later_data_is_not_the_attempts_failure() -> None:
    c = one([*handshake(), unreach(0.5, CLI, SRV, seq=5000)])
    assert c.unreachable is None


def test_unreachable_attached_or_kept_apart() -> None:
    table = ConnectionTable()
    u1 = unreach(0.1, CLI, SRV)
    u2 = unreach(0.2, CLI, SRV)
    stray = unreach(0.3, ("10.5.5.5", 1234), SRV)
    reverse = unreach(0.4, SRV, CLI)
    table.feed([seg(0, CLI, SRV, SYN, 100), u1, u2, stray, reverse])
    (c,) = table.flush()
    assert c.unreachable is u1 and c.conn_state == "S0"
    assert [e.note for e in c.evidence] == ["SYN", "ICMP unreachable"]
    assert table.unmatched_unreachable == [stray, reverse]
    # After the attempt timer (5 s) the connection is gone: unmatched.
    table = ConnectionTable()
    late = unreach(5.0, CLI, SRV)
    out = table.feed([seg(0, CLI, SRV, SYN, 100), late])
    assert len(out) == 1 and out[0].unreachable is None
    assert table.unmatched_unreachable == [late]


# --- chunking and prefilter properties -----------------------------------------------


def mixed_stream(n: int, seed: int = 1) -> list[Segment]:
    """Many overlapping connections of every kind, time ordered."""
    rng = random.Random(seed)
    segs: list[Segment] = []
    for i in range(n):
        cli = (f"10.0.{i >> 8 & 255}.{i & 255}", 30000 + rng.randrange(100))
        srv = rng.choice([SRV, WEB, ("10.0.9.9", 443), ("10.0.9.8", 5000)])
        t = rng.uniform(0, 60)
        isn, risn = rng.randrange(1 << 32), rng.randrange(1 << 32)
        kind = rng.randrange(8)
        s: list[Segment] = [seg(t, cli, srv, SYN, isn, ttl=60)]
        if kind == 0:  # refused, maybe retried
            s.append(seg(t + 0.001, srv, cli, RST | ACK, 0, isn + 1, ttl=50))
            if rng.random() < 0.5:
                s.append(seg(t + 1, cli, srv, SYN, isn, ttl=60))
        elif kind == 1:  # no answer, retransmitted
            s += [seg(t + 1, cli, srv, SYN, isn), seg(t + 3, cli, srv, SYN, isn)]
        else:
            s.append(seg(t + 0.01, srv, cli, SYN | ACK, risn, isn + 1, ttl=50))
            s.append(seg(t + 0.02, cli, srv, ACK, isn + 1, risn + 1))
            sent = rcvd = 0
            tt = t + 0.03
            for _ in range(rng.randrange(5)):
                n1 = rng.randrange(1, 1400)
                s.append(seg(tt, cli, srv, PSH | ACK, isn + 1 + sent, risn + 1 + rcvd, n1))
                sent += n1
                n2 = rng.randrange(0, 3000)
                s.append(seg(tt + 0.005, srv, cli, ACK if not n2 else PSH | ACK,
                             risn + 1 + rcvd, isn + 1 + sent, n2))  # fmt: skip
                rcvd += n2
                tt += 0.01
            if kind == 2:  # server aborts
                s.append(seg(tt, srv, cli, RST | ACK, risn + 1 + rcvd, isn + 1 + sent, ttl=50))
            elif kind == 3:  # client aborts; its stack answers a late packet
                s.append(seg(tt, cli, srv, RST | ACK, isn + 1 + sent, risn + 1 + rcvd))
                s.append(seg(tt + 0.01, cli, srv, RST, isn + 1 + sent))
            elif kind in (4, 5):  # normal close
                s.append(seg(tt, cli, srv, FIN | ACK, isn + 1 + sent, risn + 1 + rcvd))
                s.append(seg(tt + 0.01, srv, cli, FIN | ACK, risn + 1 + rcvd, isn + 2 + sent))
                s.append(seg(tt + 0.02, cli, srv, ACK, isn + 2 + sent, risn + 2 + rcvd))
            elif kind == 6:  # half close then idle
                s.append(seg(tt, srv, cli, FIN | ACK, risn + 1 + rcvd, isn + 1 + sent))
            # kind 7: left open
        segs += s
    segs.sort(key=lambda x: x.ts)
    return segs


def as_set(conns: list[Connection]) -> list[Connection]:
    return sorted(conns, key=lambda c: (c.ts, c.uid))


def test_chunking_does_not_change_output() -> None:
    stream = mixed_stream(400)
    whole = run(stream)
    assert len({c.conn_state for c in whole}) >= 5
    for chunk in (1, 7, 4096):
        assert run(stream, chunk=chunk) == whole


def test_prefilter_keeps_connections_and_sides() -> None:
    stream = mixed_stream(400, seed=2)
    control = [s for s in stream if s.flags & (SYN | FIN | RST)]
    full = run(stream)
    pre = run(control, chunk=64)
    key = [(c.ts, c.orig_h, c.orig_p, c.resp_h, c.resp_p) for c in full]
    assert key == [(c.ts, c.orig_h, c.orig_p, c.resp_h, c.resp_p) for c in pre]
    for a, b in zip(full, pre, strict=True):
        # payload_seen counts what reached the tracker, by definition not invariant.
        sa = [dataclasses.replace(x, payload_seen=0) for x in (a.orig, a.resp)]
        sb = [dataclasses.replace(x, payload_seen=0) for x in (b.orig, b.resp)]
        assert sa == sb, (a.history, b.history)
        assert a.evidence == b.evidence and a.uid == b.uid


def test_throughput_smoke() -> None:
    # Not a benchmark (see the report); just guard against something quadratic.
    stream = mixed_stream(2000, seed=3)
    table = ConnectionTable()
    for i in range(0, len(stream), 4096):
        table.feed(stream[i : i + 4096])
    table.flush()


# --- robustness ----------------------------------------------------------------------

_hosts = st.sampled_from([CLI, SRV, WEB, ("10.0.0.1", 80), ("::1", 443)])


@st.composite
def streams(draw: st.DrawFn) -> list[Segment | Unreachable]:
    n = draw(st.integers(0, 40))
    t = 0.0
    out: list[Segment | Unreachable] = []
    for _ in range(n):
        t += draw(st.sampled_from([0.0, 0.001, 1.0, 4.0, 6.0, 301.0]))
        a, b = draw(_hosts), draw(_hosts)
        if draw(st.integers(0, 9)) == 0:
            out.append(unreach(t, a, b))
            continue
        out.append(
            seg(
                t, a, b,
                draw(st.integers(0, 255)),
                draw(st.sampled_from([0, 1, 100, 101, 2**31, 2**32 - 1, 5000])),
                draw(st.sampled_from([0, 1, 101, 501, 2**32 - 1])),
                draw(st.sampled_from([0, 0, 10, 1460])),
                win=draw(st.sampled_from([0, 1000])),
                checksum_ok=draw(st.sampled_from([None, True, False])),
            )
        )  # fmt: skip
    return out


@settings(derandomize=True, max_examples=300, deadline=None)
@given(streams(), st.booleans(), st.sampled_from([1, 3, 1000]))
def test_random_streams_never_raise(
    records: list[Segment | Unreachable], verify: bool, chunk: int
) -> None:
    whole = run(records, verify_checksums=verify)
    assert run(records, chunk=chunk, verify_checksums=verify) == whole
    for c in whole:
        assert c.duration >= 0 and c.orig_bytes >= 0 and c.resp_bytes >= 0
        assert len(c.evidence) <= 5
