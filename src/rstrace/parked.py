"""Parked rows of the vectorized findings path (fastpath.py).

A simple connection (one of fastpath's vectorized patterns) that has not expired
when a window ends waits here, its rows sorted by 4-tuple key, until new packets
on its 4-tuple arrive or a batch end expires it; then its rows are settled again
with the window's. Floods park hundreds of thousands of connections, so a window
must cost a lookup per new key, not a pass over (or a copy of) everything parked.
"""

from __future__ import annotations

import numpy as np

from rstrace.sources.columns import VROW, take

SYN, ACK = 0x02, 0x10
MAX_CHUNKS = 8  # chunks before the smaller half is merged (each window adds one)
RAW_STUB = 8  # bytes kept of a parked packet that can never be evidence (stub_resent)


class Chunk:
    """Parked rows of simple connections not yet expired, sorted by 4-tuple key (a
    key's rows in time order), with per row the expiry of its connection and the
    batch of its last packet. Rows that leave are only marked dead: the chunk is
    rebuilt once most are, so a window costs a lookup per new key, not a copy of
    everything parked."""

    __slots__ = ("bufs", "e", "key", "lb", "live", "nlive", "orids", "raw", "rows")

    def __init__(self, rows: np.ndarray, key: np.ndarray, e: np.ndarray, lb: np.ndarray) -> None:
        self.rows, self.key, self.e, self.lb = rows, key, e, lb
        self.live: np.ndarray | None = None  # None: all live
        self.nlive = len(key)
        rb = rows["rbuf"]
        inb = rb >= 0
        # Raw-byte buffers the rows point into (ids are small: a bincount finds them),
        # and how many of their bytes live rows use.
        self.bufs = set(np.flatnonzero(np.bincount(rb[inb])).tolist()) if inb.any() else set()
        self.raw = int(rows["rlen"][inb].sum())
        self.orids = set(rows["rid"][~inb].tolist())  # rows kept as objects

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows and keys at idx (live ones, whole connections) leave the chunk."""
        if self.live is None:
            self.live = np.ones(len(self.key), bool)
        self.live[idx] = False
        self.nlive -= len(idx)
        out = take(self.rows, idx)
        self.raw -= int(out["rlen"][out["rbuf"] >= 0].sum())
        return out, self.key[idx]

    def due(self, uk: np.ndarray, pb: np.ndarray, pn: np.ndarray) -> np.ndarray:
        """Sorted indices of the live rows to settle again: their 4-tuple key is among
        the new keys uk (sorted), or their connection expired at a batch end that was
        read (pb/pn: the reference's batches with records and its clock at their ends).
        """
        key = self.key
        lo = np.searchsorted(key, uk, "left")
        hi = np.searchsorted(key, uk, "right")
        m = hi > lo
        lo, ln = lo[m], (hi - lo)[m]
        idx = np.repeat(lo - np.r_[0, np.cumsum(ln)[:-1]], ln) + np.arange(int(ln.sum()))
        cand = np.flatnonzero(self.e <= (pn[-1] if len(pn) else -1))
        if self.live is not None and len(cand):
            cand = cand[self.live[cand]]
        if len(cand):
            # Gone at the first batch end after its last packet whose clock reached it.
            ip = np.maximum(np.searchsorted(pn, self.e[cand], "left"),
                            np.searchsorted(pb, self.lb[cand], "left"))  # fmt: skip
            idx = np.concatenate([idx, cand[ip < len(pn)]])
        idx = np.sort(idx)
        idx = idx[np.r_[True, idx[1:] != idx[:-1]]] if len(idx) else idx
        if self.live is not None and len(idx):
            idx = idx[self.live[idx]]
        return idx

    def live_parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.live is None:
            return self.rows, self.key, self.e, self.lb
        m = self.live
        return take(self.rows, m), self.key[m], self.e[m], self.lb[m]


def stub_resent(rows: np.ndarray, sid: np.ndarray, dirB: np.ndarray) -> None:
    """Shorten the raw bytes of re-sent SYNs and SYN-ACKs (in place) to their first
    RAW_STUB bytes. Evidence is a side's first SYN, first SYN-ACK and its RST
    (track.py _finalize; the simple patterns pick the same), so a SYN or SYN-ACK
    after one of its kind from the same side of the same connection never shows;
    the tracker reads only the IP length fields of the rest (_ip_len)."""
    f = rows["flags"] & 0x17
    t = np.where(rows["kind"] != 0, 0, np.where(f == SYN, 1, np.where(f == SYN | ACK, 2, 0)))
    m = np.flatnonzero(t > 0)
    if len(m) < 2:
        return
    ck = sid[m].astype(np.int64) * 8 + dirB[m].astype(np.int64) * 4 + t[m]
    _, first = np.unique(ck, return_index=True)
    resent = np.ones(len(m), bool)
    resent[first] = False
    i = m[resent]
    i = i[rows["rbuf"][i] >= 0]
    rows["rlen"][i] = np.minimum(rows["rlen"][i], RAW_STUB)


def merge_chunks(
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parked chunks as one, sorted by key. Keys are in one chunk each: a stable sort
    by key keeps each 4-tuple's rows in time order. Each chunk is scattered into
    place and let go (the rows are never held twice)."""
    key_a = np.concatenate([ch[1] for ch in chunks])
    o = np.argsort(key_a, kind="stable")
    dest = np.empty(len(o), np.int64)
    dest[o] = np.arange(len(o))
    del o
    out = [np.empty(len(key_a), ch.dtype) for ch in chunks[0]]
    chunks.reverse()
    at = 0
    while chunks:
        ch = chunks.pop()
        d = dest[at : at + len(ch[1])]
        out[0].view(VROW)[d] = ch[0].view(VROW)  # whole rows (columns.take)
        for i in range(1, 4):
            out[i][d] = ch[i]
        at += len(ch[1])
        del ch
    return out[0], out[1], out[2], out[3]
