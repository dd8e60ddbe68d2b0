"""The tracker's fast lane, vectorized per libpcap batch (numpy).

ConnectionTable._feed_frames() runs a per-packet fast lane for data/ACK packets of
connections whose both endpoints are ESTABLISHED. On a bulk transfer most of a batch
is such packets of a few connections. bulk() takes, per connection with many frames
in the batch, the longest run of its frames (in batch order) that the per-packet lane
would take one after the other, and does their bookkeeping at once: counters,
highest seq/ack (with their 32-bit wraps), the contiguous-data mark, last time and
the first D/A/d/a letters. It only takes a run whose every packet is "plain": in
sequence (seq is the sender's last_seq), acks that never go back, no gap, no
timer passed. The run stops at the first frame that is not; that frame and every
later frame of the connection go through the per-packet path, in batch order, after
bulk() returns. Connections touch each other nowhere in that logic (only
_now, a maximum, and ICMP errors: bulk() stops at the first frame it cannot read as
plain IPv4/IPv6 TCP), so the result is the per-packet one, exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rstrace.sources.columns import META
from rstrace.sources.decode import FastLayout

if TYPE_CHECKING:
    from rstrace.track import _Conn, _Endpoint

MIN_RUN = 24
"""Fewer frames of one connection in a batch: the per-packet lane costs less."""

MASK = 0xFFFFFFFF
_ACK = 0x10
_DATA_PKT = 0x10  # track.HIST_DATA_PKT / HIST_ACK_PKT (responder's: << 16)
_ACK_PKT = 0x20
# Odd multipliers for a 64-bit hash of the 40-byte key rows (checked exactly after).
_MIX = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
     0xFF51AFD7ED558CCD],
    np.uint64,
)  # fmt: skip


_NONE = np.zeros(0, np.int64)


def _after(first: int, x: np.ndarray) -> np.ndarray:
    """first, then x without its last item: each item's predecessor."""
    out = np.empty_like(x)
    out[0] = first
    out[1:] = x[:-1]
    return out


def _excl_cumsum(x: np.ndarray) -> np.ndarray:
    c = np.cumsum(x)
    return c - x


def bulk(
    pkts: bytes,
    meta: bytes,
    layout: FastLayout,
    fast: dict[bytes, tuple[_Conn, _Endpoint, _Endpoint]],
) -> tuple[bytes, int, int] | None:
    """Do the lane's work for the plain runs of the batch's busy connections.

    Returns (meta of the frames left for the per-packet path, frames done here, their
    latest timestamp), or None when nothing was done here (the meta stays as it is).
    """
    m = np.frombuffer(meta, META)
    n = len(m)
    i = layout.ip_off - layout.etype_off  # the IP header in the rows below
    width = i + 56  # through the TCP window of IPv6 without extension headers
    if n < MIN_RUN or len(pkts) < width:
        return None
    off = m["off"].astype(np.int64) + layout.etype_off
    cap = m["caplen"]
    good = (cap >= layout.min_v4) & (off + width <= len(pkts))
    # Each frame's headers from the ethertype on as one row: a fixed-size copy per
    # frame (a strided view of the buffer, one item per byte offset).
    items = np.ndarray((len(pkts) - width + 1,), f"V{width}", pkts, 0, (1,))
    hdr = items[np.where(good, off, 0)].view(np.uint8).reshape(n, width)
    b0 = hdr[:, i]
    total = (hdr[:, i + 2].astype(np.int64) << 8) | hdr[:, i + 3]
    et = (hdr[:, 0].astype(np.int64) << 8) | hdr[:, 1]
    # The same checks as the per-packet header unpack in ConnectionTable._feed_frames.
    v4 = (
        good
        & (et == 0x0800)
        & (b0 == 0x45)
        & ((hdr[:, i + 6] & 0x1F) == 0)
        & (hdr[:, i + 7] == 0)
        & (hdr[:, i + 9] == 6)
        & (total != 0)
    )
    v6 = good & (cap >= layout.min_v6) & (et == 0x86DD) & ((b0 >> 4) == 6) & (hdr[:, i + 6] == 6)
    plain = v4 | v6
    # Stop at the first frame the header unpack cannot read (ICMP errors among them):
    # its record may touch any connection.
    k = n if plain.all() else int(np.argmin(plain))
    if k < MIN_RUN:
        return None
    hdr = hdr[:k]
    v4 = v4[:k]
    tcp = np.where(v4[:, None], hdr[:, i + 20 : i + 36], hdr[:, i + 40 : i + 56])
    sa = np.ascontiguousarray(tcp[:, 4:12]).view(">u4").astype(np.int64)
    seq = sa[:, 0]
    ack = sa[:, 1]
    flags = tcp[:, 13]
    win = (tcp[:, 14].astype(np.int64) << 8) | tcp[:, 15]
    hl = (tcp[:, 12] >> 4).astype(np.int64) * 4
    plen = (hdr[:, i + 4].astype(np.int64) << 8) | hdr[:, i + 5]
    iplen = np.where(v4, total[:k], plen + 40)
    length = np.maximum(np.where(v4, total[:k] - 20, plen) - hl, 0)
    ts = m["sec"][:k].astype(np.int64) * 1_000_000 + m["usec"][:k]
    # Direction keys: the raw addresses+ports (v4: 12 bytes, v6: 36), zero-padded to
    # 40 bytes with the version last, hashed to group the frames.
    keys = np.zeros((k, 40), np.uint8)
    keys[:, :36] = hdr[:, i + 8 : i + 44]
    keys[v4, :12] = hdr[v4, i + 12 : i + 24]
    keys[v4, 12:36] = 0
    keys[:, 36] = np.where(v4, 4, 6)
    words = keys.view(np.uint64)
    h = (words * _MIX).sum(axis=1, dtype=np.uint64)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    new = np.empty(k, bool)
    new[0] = True
    np.not_equal(hs[1:], hs[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = k
    big_s = np.flatnonzero(ends - starts >= MIN_RUN)
    if not len(big_s):
        return None
    by_hash = dict(zip(hs[starts].tolist(), zip(starts.tolist(), ends.tolist(), strict=True),
                       strict=True))  # fmt: skip

    def group(kb: bytes) -> np.ndarray | None:
        """The frames (ascending) whose key is kb (maybe none); None when another key
        has the same hash (then the frames cannot be told apart here)."""
        row = np.zeros(40, np.uint8)
        row[: len(kb)] = np.frombuffer(kb, np.uint8)
        row[36] = 4 if len(kb) == 12 else 6
        w = row.view(np.uint64)
        se = by_hash.get(int((w * _MIX).sum(dtype=np.uint64)))
        if se is None:
            return _NONE
        g = order[se[0] : se[1]]
        # The hash only groups: check the keys themselves.
        return g if (words[g] == w).all() else None

    done = np.zeros(n, bool)
    ndone = 0
    last_ts = -1
    seen: set[int] = set()
    for j in big_s.tolist():
        row = keys[order[starts[j]]]
        kb = row[:12].tobytes() if row[36] == 4 else row[:36].tobytes()
        ent = fast.get(kb)
        if ent is None:
            continue
        c, ep, peer = ent
        if not c.lane or id(c) in seen or ep.fin_cnt or peer.fin_cnt:
            continue
        seen.add(id(c))
        if len(kb) == 12:
            rkey = kb[4:8] + kb[0:4] + kb[10:12] + kb[8:10]
        else:
            rkey = kb[16:32] + kb[0:16] + kb[34:36] + kb[32:34]
        mine = group(kb)
        theirs = group(rkey)
        if mine is None or theirs is None:
            continue
        stop = k
        if len(theirs):
            rent = fast.get(rkey)
            if rent is None or rent[0] is not c or rent[1] is not peer:
                # The reverse direction takes the full path first: stop before it.
                stop = int(theirs[0])
                theirs = _NONE
        if not len(theirs):
            idx = mine[mine < stop]
            frm = np.zeros(len(idx), bool)
        else:
            idx = np.concatenate([mine, theirs])
            frm = np.zeros(len(idx), bool)
            frm[len(mine) :] = True
            o = np.argsort(idx, kind="stable")
            idx = idx[o]
            frm = frm[o]  # True: sent by peer
        run = _plain_run(c, ep, peer, idx, frm, ts, flags, win, seq, ack, length)
        if run == 0:
            continue
        idx = idx[:run]
        frm = frm[:run]
        _apply(c, ep, peer, frm, ts[idx], flags[idx], ack[idx], length[idx], iplen[idx])
        done[idx] = True
        ndone += run
        tmax = int(ts[idx].max())
        if tmax > last_ts:
            last_ts = tmax
    if not ndone:
        return None
    rest = np.frombuffer(meta, np.uint8).reshape(n, META.itemsize)[~done]
    return rest.tobytes(), ndone, last_ts


def _plain_run(
    c: _Conn,
    ep: _Endpoint,
    peer: _Endpoint,
    idx: np.ndarray,
    frm: np.ndarray,
    ts_all: np.ndarray,
    flags_all: np.ndarray,
    win_all: np.ndarray,
    seq_all: np.ndarray,
    ack_all: np.ndarray,
    len_all: np.ndarray,
) -> int:
    """How many of the connection's frames idx (in order; frm: sent by peer) the
    per-packet lane would take in a row, each plain."""
    fl = flags_all[idx]
    ok = ((fl & 7) == 0) & (win_all[idx] != 0)
    ts = ts_all[idx]
    # The lane's `ts < c.expire_at`: expire_at is last_time + inact (_lane_open) and
    # follows last_time, the latest timestamp so far.
    last = np.maximum.accumulate(_after(c.last_time, ts))
    ok &= (ts < c.expire_at) & (ts < last + c.inact)
    sq = seq_all[idx]
    ak = ack_all[idx]
    ln = len_all[idx]
    cum = {}
    for side, sender in ((False, ep), (True, peer)):
        md = frm == side
        lens = np.where(md, ln, 0)
        before = _excl_cumsum(lens)  # this side's payload bytes before each frame
        cum[side] = before
        run_last = sender.last_seq + before  # unwrapped
        ok &= ~md | (sq == (run_last & MASK))
        # DataSent(): the payload must start exactly at data_next.
        wraps = sender.seq_wraps + (run_last >> 32)
        rel = np.where(wraps == 0, (sq - sender.start_seq) & MASK,
                       (wraps << 32) + sq - sender.start_seq)  # fmt: skip
        under = (wraps == 0) & (rel >= 0x80000000)
        data = md & (ln > 0)
        ok &= ~data | (~under & (rel == sender.data_next + before))
    for side, acked in ((False, peer), (True, ep)):
        am = np.flatnonzero((frm == side) & ((fl & _ACK) != 0))
        if not len(am):
            continue
        a = ak[am]
        prev_a = _after(acked.ack_seq, a)
        da = (a - prev_a) & MASK
        da = np.where(da >= 0x80000000, da - 0x100000000, da)
        good = (da >= 0) & ~((a == 0) & (da > 0))
        pw = acked.ack_wraps + ((acked.ack_seq + np.cumsum(da)) >> 32)
        rel = np.where(pw == 0, (a - acked.start_seq) & MASK, (pw << 32) + a - acked.start_seq)
        good &= ~((pw == 0) & (rel >= 0x80000000))
        # AckReceived(): acking past the contiguous data seen is a gap ('g').
        dn = acked.data_next + cum[not side][am]
        good &= (rel <= 0) | (rel <= dn)
        ok[am] &= good
    return len(idx) if ok.all() else int(np.argmin(ok))


def _apply(
    c: _Conn,
    ep: _Endpoint,
    peer: _Endpoint,
    frm: np.ndarray,
    ts: np.ndarray,
    fl: np.ndarray,
    ak: np.ndarray,
    ln: np.ndarray,
    iplen: np.ndarray,
) -> None:
    """The lane's updates for a plain run (as _plain_run checked it)."""
    hist = c.hist_seen
    if hist & 0x300030 != 0x300030:
        is_ack = (fl & _ACK) != 0
        found = []
        for side, sender in ((False, ep), (True, peer)):
            md = frm == side
            shift = 0 if sender.is_orig else 16
            for mask, sel, letter in (
                (_DATA_PKT, md & (ln > 0), "D"),
                (_ACK_PKT, md & (ln == 0) & is_ack, "A"),
            ):
                bit = mask << shift
                if not hist & bit:
                    where = np.flatnonzero(sel)
                    if len(where):
                        found.append((int(where[0]), bit, letter if shift == 0 else letter.lower()))
        for _, bit, letter in sorted(found):
            c.hist_seen |= bit
            c.history += letter
    tmax = int(ts.max())
    if tmax > c.last_time:
        c.last_time = tmax
        c.expire_at = tmax + c.inact
    for side, sender, acked in ((False, ep, peer), (True, peer, ep)):
        md = frm == side
        cnt = int(np.count_nonzero(md))
        if not cnt:
            continue
        sent = int(ln[md].sum())
        last = sender.last_seq + sent
        sender.last_seq = last & MASK
        sender.seq_wraps += last >> 32
        sender.data_next += sent
        sender.pkts += cnt
        sender.ip_bytes += int(iplen[md].sum())
        sender.payload += sent
        am = np.flatnonzero(md & ((fl & _ACK) != 0))
        if len(am):
            a = ak[am]
            da = (a - _after(acked.ack_seq, a)) & MASK  # all < 2**31: checked
            acked.ack_wraps += (acked.ack_seq + int(da.sum())) >> 32
            last_ack = int(a[-1])
            acked.ack_seq = last_ack
            sender.ack_ok = last_ack
