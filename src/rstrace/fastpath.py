"""The findings path, vectorized: same findings as the reference pipeline, faster.

Design (why it gives identical results):
* Rows come from libpcap batches decoded with numpy (sources/columns.py);
  odd frames go through the reference decoder.
* Rows are grouped per 4-tuple in windows. A 4-tuple whose packets follow one
  of a few exact patterns (SYNs only; SYNs then a responder RST; SYN, SYN-ACKs;
  SYN, SYN-ACKs, originator RST; SYN, SYN-ACKs, FIN, FIN) is one Zeek
  connection whose Side facts, expiry and verdict follow from the pattern (each
  derived from track.py and checked by the equivalence tests). Every other
  4-tuple is replayed through the reference ConnectionTable + classify.
* Results of the reference depend on the order connections reach the Diagnoser
  (first connection's evidence, client order among equal counts), and that order
  is ConnectionTable's: evictions during a batch, then its heap pops at the
  batch end, then ICMP without a connection, then the final flush. Both halves
  compute (batch, phase, heap key, row) for each connection; the heap key of a
  simple pattern is simulated from its pushes and the batch-end clocks.
* A 4-tuple stays in the window (rows carried over; simple connections parked in
  parked.py) until its connection has expired at a batch end, so windows and batch
  sizes do not change results.
Anything outside these assumptions (captures not in time order, files libpcap
cannot read, read errors) returns None: the caller runs the reference pipeline.

Not vectorized (replayed through track.py per packet, or read by the reference):
4-tuples with ICMP unreachables, odd flag combinations (SYN+FIN, FIN without ACK,
data/ACK-only packets that pass the prefilter: VLAN, IPv6 extension headers),
retransmitted SYNs with a new ISN inside one connection, TTL changes within a
side, connections starting with a SYN-ACK or a bare RST, FIN+RST closes, more
than 16 packets in one connection; gzip / stdin / multi-interface pcapng
captures and truncated files (the reference pipeline runs whole).
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pcapy
from numpy.lib.stride_tricks import as_strided

from rstrace.diagnose import (
    _PROBE,
    _RST_TO_SYN,
    _SCAN_EVIDENCE,
    _UNANSWERED,
    MAX_CLIENTS,
    MAX_EVIDENCE,
    UNANSWERED_AFTER_US,
    Diagnoser,
    Verdict,
    _Aggregate,
    _pick_evidence,
    classify,
    control_span,
    evidence_notes,
    tally_add,
)
from rstrace.model import Connection, Evidence, Segment, Unreachable
from rstrace.parked import MAX_CHUNKS, Chunk, merge_chunks, stub_resent
from rstrace.sources.capfile import ReadSummary, _holds_no_packets
from rstrace.sources.columns import ROW, cat, decode_batch, take
from rstrace.sources.prefetch import FileEntry, Prefetch, PrefetchError, prepare
from rstrace.track import ConnectionTable

_TS, _RID, _IFACE, _RBUF, _ROFF, _RLEN = (
    ROW.names.index(n) for n in ("ts", "rid", "iface", "rbuf", "roff", "rlen")
)
SEC = 1_000_000
I64MAX = np.iinfo(np.int64).max
SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
MAX_SIMPLE_LEN = 16
SMALL = 48  # below this many values, Python loops beat numpy's per-call overhead
MAX_WINDOW_ROWS = 131072
FLUSH_CONNS = 32768  # parked connections flushed (and aggregated) at a time at the end
MAX_CUT_ROUNDS = 16  # connections found per 4-tuple and window; more: replayed whole
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)

# Simple patterns.
P_S0, P_REJ, P_HALF, P_PROBE, P_SF, P_RSTB = 1, 2, 3, 4, 5, 6
# Kinds whose details are several facts (built per connection, from P_RSTB).
_MULTI = ("injected", "stale", "abort")


class _Cols(dict):  # type: ignore[type-arg]
    """Contiguous copies of a structured array's fields, made on first use: ufuncs
    over a strided field view of 90-byte rows are several times slower."""

    def __init__(self, rows: np.ndarray) -> None:
        super().__init__()
        self.rows = rows

    def __missing__(self, name: str) -> np.ndarray:
        v = self[name] = np.ascontiguousarray(self.rows[name])
        return v


def _uniq(a: np.ndarray) -> np.ndarray:
    """Sorted unique values. Plain np.unique() imports numpy.ma (~28 ms, a tenth of
    the start-up budget) for a masked-array check; sorting does the same job."""
    a = np.sort(a, axis=None)
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if len(a) else a


class _Fallback(Exception):
    """The fast path cannot vouch for identical results: use the reference."""


class _Replay(ConnectionTable):
    """The reference table, noting for each connection when and how it left it."""

    def __init__(self) -> None:
        super().__init__()
        self.cur_rid = -1
        self.phase = 0
        self.at = 0
        self.meta: list[tuple[int, int, int]] = []  # (phase, key, creation rid)
        self.created: dict[int, int] = {}

    def _new_conn(self, key: Any, s: Segment) -> Any:
        c = super()._new_conn(key, s)
        self.created[id(c)] = self.cur_rid
        return c

    def _evict(self, c: Any, out: list[Connection]) -> None:
        super()._evict(c, out)
        key = self.cur_rid if self.phase == 0 else self.at
        self.meta.append((self.phase, key, self.created.pop(id(c))))

    def _expire(self, out: list[Connection]) -> None:
        import heapq

        heap = self._heap
        now = self._now
        self.phase = 1
        while heap and heap[0][0] <= now:
            at, _, c = heapq.heappop(heap)
            if c.dead:
                continue
            if c.expire_at <= now:
                self.at = int(at)
                self._evict(c, out)
            elif at == c.heap_at:
                c.heap_at = c.expire_at
                heapq.heappush(heap, (c.expire_at, next(self._tick), c))
        self.phase = 0


@dataclass
class _Emitted:
    """Connections leaving the tracker in one window, in columns."""

    order: list[np.ndarray] = field(default_factory=list)  # emission keys, 4 columns
    cols: list[dict[str, np.ndarray]] = field(default_factory=list)


def _tuple_key(rows: np.ndarray) -> np.ndarray:
    """A 64-bit key of a row's 4-tuple, the same in both directions (collisions are
    checked where the groups are used)."""
    ver = rows["ver"].astype(np.uint64) << np.uint64(16)
    ea = _hash_ep(rows["a_hi"], rows["a_lo"], rows["sport"].astype(np.uint64) | ver)
    eb = _hash_ep(rows["b_hi"], rows["b_lo"], rows["dport"].astype(np.uint64) | ver)
    return np.minimum(ea, eb) * _M2 + np.maximum(ea, eb)


def _hash_ep(hi: np.ndarray, lo: np.ndarray, pv: np.ndarray) -> np.ndarray:
    h = hi * _M1 ^ lo
    h = (h ^ (h >> np.uint64(31))) * _M2 ^ pv
    return (h ^ (h >> np.uint64(29))) * _M1


class FastAnalysis:
    def __init__(
        self, paths: list[str], batch_size: int, window_rows: int, read_batch: int | None
    ) -> None:
        self.paths = paths
        self.ref_bs = batch_size
        # libpcap batches are whole multiples of the reference's, so both see the
        # same batch ends (the tracker expires connections there).
        self.read_bs = batch_size * max(1, (read_batch or 65536) // batch_size)
        self.window_rows = window_rows
        self.summary = ReadSummary(files=list(paths), prefiltered=True)
        self.diag = Diagnoser()
        self.names: list[str | None] = [None]
        self.addr_ids: dict[tuple[int, int, int], int] = {}
        self.addr_strs: list[str] = []
        self.pass_b: list[int] = []  # reference batches that had records (a heap pass)
        self.pass_n: list[int] = []  # the tracker's clock at that pass
        self.clock = -(1 << 62)
        self.rid = 0
        self.bufs: dict[int, np.ndarray] = {}
        self.nbuf = 0
        self.objs: dict[int, Segment | Unreachable] = {}
        self.pending: list[np.ndarray] = []
        self.npending = 0
        self.carry = np.zeros(0, ROW)  # rows of replayed connections still open
        self.pchunks: list[Chunk] = []  # parked simple connections
        self.unmatched_done: set[int] = set()
        self._rowsets: list[np.ndarray] = []  # this window's rows, for evidence
        self._rowcols: dict[int, tuple[np.ndarray, ...]] = {}  # their columns
        self._hard: list[tuple[Connection, Verdict | None]] = []  # replayed, this window
        self._dlists: list[tuple[str, ...]] = []  # details of multi-fact verdicts
        self.simple_conns = 0
        """Connections settled by the vectorized patterns (the rest were replayed)."""
        self.replayed_conns = 0

    # -- reading ----------------------------------------------------------------

    def run(self, files: list[FileEntry], prefetch: Prefetch | None) -> None:
        gbatch = 0
        for entry in files:
            if prefetch is not None:
                batches = prefetch.file_batches()
            else:
                batches = _local_batches(entry, self.read_bs)
            gbatch = self._read_file(entry, gbatch, batches)
        self._window(final=True)

    def _read_file(
        self, item: FileEntry, gbatch: int, batches: Iterator[tuple[bytes, bytes]]
    ) -> int:
        lt = item.linktype
        iface = item.iface
        stats = self.summary.stats
        stats.linktypes.add(lt)
        if iface not in self.names:
            self.names.append(iface)
        iface_id = self.names.index(iface)
        done = 0
        while True:
            try:
                pkts, meta = next(batches, (b"", b""))
            except (PrefetchError, pcapy.PcapError):
                raise _Fallback from None  # truncated file: the reference salvages
            if not meta:
                if done == 0 and _holds_no_packets(item.path):
                    self.summary.empty_files.append(item.display)
                break
            self.nbuf += 1
            rows, objs = decode_batch(lt, pkts, meta, iface_id, iface, stats, self.nbuf)
            self.bufs[self.nbuf] = np.frombuffer(pkts, np.uint8)
            n = len(meta) // 16
            if len(rows):
                rows["batch"] = gbatch + (done + rows["batch"].astype(np.int64)) // self.ref_bs
                rows["rid"] = self.rid + np.arange(len(rows))
                for j, rec in objs.items():
                    self.objs[self.rid + j] = rec
                self.rid += len(rows)
                self._note(rows, iface)
                self.pending.append(rows)
                self.npending += len(rows)
            done += n
            if self.npending >= self._window_target():
                self._window(final=False)
        return gbatch + (done + self.ref_bs - 1) // self.ref_bs

    def _window_target(self) -> int:
        """Rows to gather before a window: small windows settle connections while the
        reader goes on; with much state carried (floods) larger windows cost less, as
        every window looks up the parked 4-tuples."""
        held = len(self.carry) + sum(ch.nlive for ch in self.pchunks)
        return max(self.window_rows, min(held, MAX_WINDOW_ROWS))

    def _note(self, rows: np.ndarray, iface: str | None) -> None:
        ts = rows["ts"]
        if np.any(ts[1:] < ts[:-1]) or ts[0] < self.clock:
            raise _Fallback  # not in time order: chunking would matter
        s = self.summary
        ctl = ts[(rows["kind"] == 1) | ((rows["flags"] & 7) != 0)]
        if len(ctl):
            if s.first_ts is None:
                s.first_ts = int(ctl[0])
            s.last_ts = int(ctl[-1])
        if iface:
            s.interfaces.add(iface)
        b = rows["batch"]
        ends = np.flatnonzero(np.diff(b)) if len(b) > 1 else np.zeros(0, np.int64)
        last = np.append(ends, len(b) - 1)
        self.pass_b.extend(b[last].tolist())
        self.pass_n.extend(ts[last].tolist())
        self.clock = int(ts[-1])

    # -- one window ---------------------------------------------------------------

    def _window(self, final: bool) -> None:
        new = cat(self.pending)
        self.pending = []
        self.npending = 0
        pb = np.array(self.pass_b, np.int64)
        pn = np.array(self.pass_n, np.int64)
        newkey = _tuple_key(new)
        # Parked connections (simple, not yet expired) come back when their 4-tuple
        # has new packets, when a batch end expired them, or at the end. Chunks are
        # sorted by key: a lookup per new key, no pass over every parked row.
        back_rows = [self.carry]
        back_keys = [_tuple_key(self.carry)]
        uk = _uniq(newkey)
        for ch in self.pchunks:
            idx = ch.due(uk, pb, pn)
            if len(idx):
                r_b, k_b = ch.take(idx)
                back_rows.append(r_b)
                back_keys.append(k_b)
        chunks = []
        for ch in self.pchunks:
            if ch.nlive == 0:
                continue
            if 2 * ch.nlive < len(ch.key):
                ch = self._rebuild([ch])
            chunks.append(ch)
        if len(chunks) > MAX_CHUNKS:
            # The smaller half merged (sizes stay roughly geometric: merges amortize).
            chunks.sort(key=lambda ch: -ch.nlive)
            keep_n = MAX_CHUNKS // 2
            chunks = [*chunks[:keep_n], self._rebuild(chunks[keep_n:])]
        self.pchunks = chunks
        parts = [cat([*back_rows, new]), np.concatenate([*back_keys, newkey])]
        del new, newkey, back_rows, back_keys
        em = _Emitted()
        carry_parts = self._settle(parts, final, pb, pn, em) if len(parts[1]) else []
        if final:
            em = self._flush_parked(em, pb, pn)
        self._aggregate(em)
        carry = cat(carry_parts)
        carry = take(carry, np.argsort(carry["rid"], kind="stable"))
        self._compact(carry)
        self.carry = carry
        # Parked rows point into batch buffers; once these are mostly bytes of rows
        # that left, the rows' bytes are copied out (the rebuild) and the buffers go.
        pbufs: set[int] = set()
        for ch in self.pchunks:
            pbufs |= ch.bufs
        if sum(self.bufs[b].nbytes for b in pbufs) > 2 * sum(ch.raw for ch in self.pchunks) + (
            1 << 20
        ):
            self.pchunks = [self._rebuild([ch]) for ch in self.pchunks]
        # Keep the buffers and objects that rows still point into (batch buffers go).
        used = set(_uniq(carry["rbuf"]).tolist())
        keep = set(carry["rid"][carry["rbuf"] < 0].tolist())
        for ch in self.pchunks:
            used |= ch.bufs
            keep |= ch.orids
        self.bufs = {b: v for b, v in self.bufs.items() if b in used}
        self.objs = {k: v for k, v in self.objs.items() if k in keep}

    def _rebuild(self, chunks: list[Chunk]) -> Chunk:
        """One chunk of the live rows of these, sorted by key; a single chunk's rows
        get fresh raw-byte storage (its old buffer is mostly bytes of rows that left)."""
        if len(chunks) == 1:
            rows, key, e, lb = chunks[0].live_parts()
            self._compact(rows)
            return Chunk(rows, key, e, lb)
        parts = [ch.live_parts() for ch in chunks]
        chunks.clear()
        return Chunk(*merge_chunks(parts))

    def _flush_parked(self, em: _Emitted, pb: np.ndarray, pn: np.ndarray) -> _Emitted:
        """Settle the parked connections nothing touched, at the end. They leave the
        tracker in the final flush, in order of their first packet: in slices of that
        order, each aggregated (with what this window emitted before it) before the
        next is settled, so that a flood's columns are never all held at once."""
        chunks = [ch.live_parts() for ch in self.pchunks if ch.nlive]
        self.pchunks = []
        if not chunks:
            return em
        # Every parked connection (chunk, first row, rows), by its first packet.
        g_ch, g_st, g_ln, g_first = [], [], [], []
        for i, (rows_c, key_c, *_) in enumerate(chunks):
            gs = np.flatnonzero(np.r_[True, key_c[1:] != key_c[:-1]])
            g_first.append(np.minimum.reduceat(rows_c["rid"], gs))
            g_ln.append(np.diff(np.r_[gs, len(key_c)]))
            g_st.append(gs)
            g_ch.append(np.full(len(gs), i))
        first = np.concatenate(g_first)
        o = np.argsort(first, kind="stable")
        first = first[o]
        gch, gst, gln = (np.concatenate(x)[o] for x in (g_ch, g_st, g_ln))
        del o, g_ch, g_st, g_ln, g_first
        for lo in range(0, len(first), FLUSH_CONNS):
            hi = lo + FLUSH_CONNS
            rows_l = []
            keys_l = []
            for i, (rows_c, key_c, *_) in enumerate(chunks):
                m = gch[lo:hi] == i
                if m.any():
                    st, ln = gst[lo:hi][m], gln[lo:hi][m]
                    idx = np.repeat(st - np.r_[0, np.cumsum(ln)[:-1]], ln) + np.arange(ln.sum())
                    rows_l.append(take(rows_c, idx))
                    keys_l.append(key_c[idx])
            self._settle([cat(rows_l), np.concatenate(keys_l)], True, pb, pn, em)
            del rows_l, keys_l
            if hi < len(first):
                em = self._aggregate(em, upto=(1 << 62, 3, int(first[hi])))
        return em

    def _settle(
        self,
        parts: list[np.ndarray],
        final: bool,
        pb: np.ndarray,
        pn: np.ndarray,
        em: _Emitted,
    ) -> list[np.ndarray]:
        """Group rows into connections: emit the finished ones into em, park the
        simple ones still open; returns the rows of replayed connections still open.
        parts: [rows, their 4-tuple keys], emptied here (the rows are held once)."""
        rows, key = parts
        parts.clear()
        # Group by 4-tuple (hash of both endpoints, order-free), rows in time order.
        order = np.argsort(key, kind="stable")
        r = take(rows, order)
        del rows
        c = _Cols(r)
        k = key[order]
        n = len(r)
        start = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        glen = np.diff(np.r_[start, n])
        gid = np.repeat(np.arange(len(start)), glen)
        pos = np.arange(n) - start[gid]
        f0 = start[gid]
        # Direction: from the group's first packet's sender (A) or not.
        fromA = (
            (c["a_hi"] == c["a_hi"][f0]) & (c["a_lo"] == c["a_lo"][f0])
            & (c["sport"] == c["sport"][f0])
        )  # fmt: skip
        toA = (
            (c["b_hi"] == c["a_hi"][f0]) & (c["b_lo"] == c["a_lo"][f0])
            & (c["dport"] == c["sport"][f0])
        )  # fmt: skip
        toB = (
            (c["b_hi"] == c["b_hi"][f0]) & (c["b_lo"] == c["b_lo"][f0])
            & (c["dport"] == c["dport"][f0])
        )  # fmt: skip
        same = (fromA & toB) | (toA & ~fromA)
        same &= (c["ver"] == c["ver"][f0]) & (c["iface"] == c["iface"][f0])
        if not same.all():
            # A hash collision (or an iface change): verify exactly before trusting groups.
            bad = _uniq(gid[~same])
            if len(bad) and not self._collision_free(r, gid, bad):
                raise _Fallback
        gstart = start
        ngrp = len(gstart)
        # Cut each 4-tuple into connections where the tracker would: the expiry of
        # a simple pattern, or a SYN that IsReuse() (after a FIN/RST, another ISN).
        # Cuts are exact after simple segments; from the first other segment on,
        # the 4-tuple's rows are replayed through the reference tracker.
        f = c["flags"] & 0x17
        ts = c["ts"]
        seq = c["seq"]
        term = (c["kind"] == 0) & ((f & (RST | FIN)) != 0)
        pure_syn = (c["kind"] == 0) & (f == SYN)
        cterm = np.cumsum(term) - term
        seg = np.zeros(n, bool)
        seg[gstart] = True
        unsettled = np.zeros(ngrp, bool)
        for it in range(MAX_CUT_ROUNDS + 1):
            start = np.flatnonzero(seg)
            glen = np.diff(np.r_[start, n])
            sid = np.repeat(np.arange(len(start)), glen)
            f0 = start[sid]
            dirB = ~(
                (c["a_hi"] == c["a_hi"][f0]) & (c["a_lo"] == c["a_lo"][f0])
                & (c["sport"] == c["sport"][f0])
            )  # fmt: skip
            simple, pat, E = self._patterns(c, sid, pos, start, glen, dirB)
            prevE = np.r_[I64MAX, E[:-1]]
            prevE[start] = I64MAX
            closed = (cterm - cterm[f0]) > 0
            cut = (pure_syn & (closed | (seq != seq[f0])) | (ts >= prevE)) & ~seg
            if not cut.any():
                break
            # Only the first cut of a segment is sure (later ones assumed its start).
            firstcut = np.minimum.reduceat(np.where(cut, np.arange(n), I64MAX), start)
            firstcut = firstcut[firstcut < I64MAX]
            if it == MAX_CUT_ROUNDS:
                unsettled[_uniq(gid[firstcut])] = True
                break
            seg[firstcut] = True
        sgid = gid[start]
        nseg = len(start)
        bad = ~simple | unsettled[sgid]
        first_bad = np.full(ngrp, I64MAX, np.int64)
        np.minimum.at(first_bad, sgid[bad], np.flatnonzero(bad))
        hard_seg = np.arange(nseg) >= first_bad[sgid]
        simple = ~hard_seg
        has_next = np.r_[sgid[1:] == sgid[:-1], False]
        nxt = np.where(has_next, start + glen, 0)
        nxt = np.minimum(nxt, n - 1)
        last_row = start + glen - 1
        El = E[last_row]
        last_b = c["batch"][last_row].astype(np.int64)
        # Is the connection gone at a batch end within what was read?
        ip = np.searchsorted(pn, El, "left")
        ip = np.maximum(ip, np.searchsorted(pb, last_b, "left"))
        expired = ip < len(pn)
        done_g = simple & (has_next | expired | final)
        if done_g.any():
            self._emit_simple(
                c, sid, start, glen, dirB, pat, E, done_g, expired, ip, pb, pn, em,
                has_next, nxt,
            )  # fmt: skip
        park = np.repeat(simple & ~done_g, glen)
        carry_parts = []
        if hard_seg.any():
            carry_parts.append(self._replay(take(r, np.repeat(hard_seg, glen)), final, pb, pn, em))
        if park.any():
            prow = take(r, park)
            stub_resent(prow, sid[park], dirB[park])
            # Raw bytes stay in the batch buffers until most of theirs are unused
            # (_window): in a flood most packets are parked, a copy would gain little.
            self.pchunks.append(
                Chunk(prow, k[park], np.repeat(El, glen)[park], np.repeat(last_b, glen)[park])
            )
        return carry_parts

    def _collision_free(self, r: np.ndarray, gid: np.ndarray, bad: np.ndarray) -> bool:
        for g in bad.tolist():
            sel = r[gid == g]
            eps = {
                frozenset({(int(x["a_hi"]), int(x["a_lo"]), int(x["sport"]), int(x["ver"])),
                           (int(x["b_hi"]), int(x["b_lo"]), int(x["dport"]), int(x["ver"]))})
                for x in sel
            }  # fmt: skip
            if len(eps) != 1 or len({int(x["iface"]) for x in sel}) != 1:
                return False
        return True

    def _compact(self, rows: np.ndarray) -> None:
        """Copy these rows' raw bytes into one new buffer (in place), so that batch
        buffers can go. In chunks of one length: index arrays stay small."""
        if not len(rows):
            return
        self.nbuf += 1
        nb = self.nbuf
        inbuf = rows["rbuf"] >= 0
        lens = np.where(inbuf, rows["rlen"], 0).astype(np.int64)
        out = np.empty(int(lens.sum()), np.uint8)
        newoff = np.zeros(len(rows), np.int64)
        np.cumsum(lens[:-1], out=newoff[1:])
        key = rows["rbuf"].astype(np.int64) * (1 << 32) + lens
        # Packets of one length as rows of overlapping (stride 1) views of the source
        # and the new buffer: one fancy copy, no index array per byte.
        for kv in _uniq(key[inbuf]).tolist():
            b, ln = divmod(kv, 1 << 32)
            if ln == 0:
                continue
            sel = np.flatnonzero(key == kv)
            src = self.bufs[b]
            src_w = as_strided(src, (len(src) - ln + 1, ln), (1, 1), writeable=False)
            out_w = as_strided(out, (len(out) - ln + 1, ln), (1, 1))
            for c in range(0, len(sel), 32768):
                part = sel[c : c + 32768]
                out_w[newoff[part]] = src_w[rows["roff"][part].astype(np.int64)]
        rows["roff"] = np.where(inbuf, newoff, 0)
        rows["rbuf"] = np.where(inbuf, nb, -1)
        self.bufs[nb] = out

    def _raw(self, row: Any) -> bytes:
        b = int(row["rbuf"])
        if b < 0:
            return self.objs[int(row["rid"])].raw
        o = int(row["roff"])
        return self.bufs[b][o : o + int(row["rlen"])].tobytes()

    # -- the simple patterns --------------------------------------------------------

    def _patterns(
        self,
        r: _Cols,
        gid: np.ndarray,
        pos: np.ndarray,
        start: np.ndarray,
        glen: np.ndarray,
        dirB: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per group: simple?, pattern; per row: Zeek's expiry after that packet."""
        c = r  # the window's columns (_Cols); r: its rows
        r = c.rows
        f = c["flags"] & 0x17
        ts = c["ts"]
        seg = c["kind"] == 0
        dirA = ~dirB
        c_syn = seg & dirA & (f == SYN)
        c_sa = seg & dirB & (f == SYN | ACK)
        is_rst = (f == RST) | (f == RST | ACK)
        c_rsta = seg & dirA & is_rst
        c_rstb = seg & dirB & is_rst
        c_fin = seg & (f == FIN | ACK)
        known = c_syn | c_sa | c_rsta | c_rstb | c_fin
        ng = len(start)
        cnt = lambda m: np.add.reduceat(m.astype(np.int64), start) if ng else m  # noqa: E731
        n_sa, n_rsta, n_rstb = cnt(c_sa), cnt(c_rsta), cnt(c_rstb)
        n_fina, n_finb = cnt(c_fin & dirA), cnt(c_fin & dirB)
        last = start + glen - 1
        ok = (cnt(~known) == 0) & c_syn[start] & (glen <= MAX_SIMPLE_LEN)
        # One ISN per side, one TTL per side among non-RST packets (ttls is a set).
        big = np.int64(1 << 40)
        same_val = ((c_syn, "seq"), (c_sa, "seq"), (dirA & ~is_rst, "ttl"), (dirB & ~is_rst, "ttl"))
        for m, col in same_val:
            v = r[col].astype(np.int64)
            hi = np.maximum.reduceat(np.where(m, v, -1), start)
            lo = np.minimum.reduceat(np.where(m, v, big), start)
            ok &= (hi == lo) | (hi == -1)
        pat = np.zeros(ng, np.int8)
        nofin = (n_fina == 0) & (n_finb == 0)
        # After a SYN-ACK, a re-sent client SYN means the SYN-ACK was lost, not queued:
        # the rules tell these apart (diagnose.classify), so only one-SYN groups are
        # simple here; the rest are replayed.
        one_syn = cnt(c_syn) == 1
        # The originator's RST with no data before it (seq = ISN + 1): a probe; with
        # data (an abort) the reference decides.
        isn_a = r["seq"][start].astype(np.int64)
        bare_rst = r["seq"][last].astype(np.int64) == ((isn_a + 1) & 0xFFFFFFFF)
        pat[ok & nofin & (n_sa == 0) & (n_rsta == 0) & (n_rstb == 0)] = P_S0
        pat[ok & nofin & (n_sa == 0) & (n_rsta == 0) & (n_rstb == 1) & c_rstb[last]] = P_REJ
        ok1 = ok & one_syn
        pat[ok1 & nofin & (n_sa > 0) & (n_rsta == 0) & (n_rstb == 0)] = P_HALF
        probe = ok1 & nofin & (n_sa > 0) & (n_rsta == 1) & (n_rstb == 0) & c_rsta[last]
        pat[probe & bare_rst] = P_PROBE
        two = np.maximum(last - 1, start)
        sf = ok1 & (n_sa > 0) & (n_rsta == 0) & (n_rstb == 0) & (n_fina == 1) & (n_finb == 1)
        sf &= c_fin[last] & c_fin[two] & (glen >= 4)
        pat[sf] = P_SF
        # SYN, SYN-ACKs, then the responder resets (after the handshake).
        pat[ok1 & nofin & (n_sa > 0) & (n_rsta == 0) & (n_rstb == 1) & c_rstb[last]] = P_RSTB
        # Expiry after each packet (track.py _expiry for these states).
        seen_sa = np.maximum.accumulate(np.where(c_sa, np.arange(len(r)), -1))
        sa_before = seen_sa >= start[gid]  # a SYN-ACK at or before this row
        t1 = ts[start][gid]
        E = np.where(sa_before, ts + 300 * SEC, t1 + 5 * SEC)
        E = np.where(c_rstb | c_rsta, ts + 5 * SEC, E)
        fin_n = np.cumsum(c_fin) - np.r_[0, np.cumsum(c_fin)][start][gid]
        E = np.where(c_fin & (fin_n == 2), ts + 5 * SEC, E)
        # One connection: each packet before the previous one's expiry.
        prevE = np.r_[I64MAX, E[:-1]]
        prevE[start] = I64MAX
        split = cnt(ts >= prevE) > 0
        simple = (pat > 0) & ~split
        return simple, np.where(simple, pat, 0), E

    def _emit_simple(
        self,
        r: _Cols,
        gid: np.ndarray,
        start: np.ndarray,
        glen: np.ndarray,
        dirB: np.ndarray,
        pat: np.ndarray,
        E: np.ndarray,
        done_g: np.ndarray,
        expired: np.ndarray,
        ip: np.ndarray,
        pb: np.ndarray,
        pn: np.ndarray,
        em: _Emitted,
        has_next: np.ndarray,
        nxt: np.ndarray,
    ) -> None:
        c = r  # the window's columns (_Cols); r: its rows
        r = c.rows
        g = np.flatnonzero(done_g)
        self.simple_conns += len(g)
        st = start[g]
        ln = glen[g]
        # Heap key: simulate pushes (expiry drops below the pending entry) and
        # batch-end re-pushes (a pass with entry <= clock < expiry).
        H = np.full(len(g), I64MAX, np.int64)
        maxlen = int(ln.max())
        for kpos in range(maxlen):
            act = ln > kpos
            i = st[act] + kpos
            h = H[act]
            if kpos:
                pe = E[i - 1]
                blo = c["batch"][i - 1].astype(np.int64)
                bhi = c["batch"][i].astype(np.int64) - 1
                h = np.where(_pass_between(pb, pn, blo, bhi, h, pe), pe, h)
            H[act] = np.minimum(h, E[i])
        li = st + ln - 1
        El = E[li]
        bl = c["batch"][li].astype(np.int64)
        H = np.where(_pass_between(pb, pn, bl, np.full(len(g), 1 << 62), H, El), El, H)
        exp = expired[g]
        ipg = np.minimum(ip[g], max(len(pb) - 1, 0))
        pass_b = pb[ipg] if len(pb) else np.zeros(len(g), np.int64)
        # Followed by another connection on the 4-tuple: gone when that one's first
        # packet arrives (phase 0, in the batch), unless a batch end expired it before.
        cut = has_next[g]
        cut_row = nxt[g]
        cut_b = c["batch"][cut_row].astype(np.int64)
        infeed = cut & ~(exp & (pass_b < cut_b))
        exp = exp & ~infeed
        ebatch = np.where(infeed, cut_b, np.where(exp, pass_b, 1 << 62))
        phase = np.where(infeed, 0, np.where(exp, 1, 3))
        ekey = np.where(infeed, c["rid"][cut_row], np.where(exp, H, c["rid"][st]))
        order = np.stack([ebatch, phase, ekey, c["rid"][st]])
        # The clock the Diagnoser is given: the batch end, or the capture's end.
        now_flush = self.summary.last_ts if self.summary.last_ts is not None else 0
        ipc = np.minimum(np.searchsorted(pb, cut_b, "left"), max(len(pb) - 1, 0))
        now = np.where(infeed, pn[ipc] if len(pn) else 0, np.where(exp, pn[ipg] if len(pn) else 0,
                                                                   now_flush))  # fmt: skip
        # Facts for the rules.
        f = c["flags"] & 0x17
        p = pat[g]
        n_syn = np.add.reduceat((~dirB & (f == SYN)).astype(np.int64), start)[g]
        is_sa = dirB & (f == SYN | ACK)
        n_sa = np.add.reduceat(is_sa.astype(np.int64), start)[g]
        t_first = c["ts"][st]
        t_last = c["ts"][li]
        last_syn = np.maximum.reduceat(np.where(~dirB & (f == SYN), c["ts"], 0), start)[g]
        kind = np.full(len(g), -1, np.int64)
        detail = np.full(len(g), -1, np.int64)  # syns / synack_sent value
        s0 = p == P_S0
        ans = s0 & ((n_syn >= 2) | (now - last_syn >= UNANSWERED_AFTER_US))
        kind[ans] = KIND_IDS[_UNANSWERED]
        detail[ans] = n_syn[ans]
        kind[p == P_REJ] = KIND_IDS[_RST_TO_SYN]
        ho = (p == P_HALF) & (n_sa > 1)
        kind[ho] = KIND_IDS["half-open"]
        lo = ((p == P_PROBE) | (p == P_SF)) & (n_sa > 1)
        kind[lo] = KIND_IDS["listen-overflow"]
        detail[ho | lo] = n_sa[ho | lo]
        # Probe: the originator's RST carries no data (seq_bytes 0 both sides).
        isn = c["seq"][st].astype(np.int64)
        rseq = c["seq"][li].astype(np.int64)
        d = (rseq - isn - 1) & 0xFFFFFFFF
        seqb = np.where(d < 0x80000000, d, 0)
        kind[(p == P_PROBE) & (n_sa == 1) & (seqb == 0)] = KIND_IDS[_PROBE]
        # Responder RST after its SYN-ACK: injected (TTL unlike its SYN-ACKs), else
        # half-open (SYN-ACK re-sent), else stale (no ACK bit) or abort.
        rb = p == P_RSTB
        rttl_l = c["ttl"][li].astype(np.int64)
        sa_ttl0 = np.maximum.reduceat(np.where(is_sa, c["ttl"].astype(np.int64), -1), start)[g]
        inj = rb & (rttl_l != sa_ttl0)
        ho2 = rb & ~inj & (n_sa > 1)
        kind[ho2] = KIND_IDS["half-open"]
        detail[ho2] = n_sa[ho2]
        rest = rb & ~inj & ~ho2
        stale = rest & ((c["flags"][li] & ACK) == 0)
        abort = rest & ~stale
        dlist = np.full(len(g), -1, np.int64)
        for name, m in (("injected", inj), ("stale", stale), ("abort", abort)):
            if name not in KIND_IDS:
                KIND_IDS[name] = len(KIND_NAMES)
                KIND_NAMES.append(name)
            kind[m] = KIND_IDS[name]
        multi = np.flatnonzero(inj | stale | abort)
        if len(multi):
            sa_first = np.minimum.reduceat(
                np.where(is_sa, np.arange(len(r)), I64MAX), start
            )[g]  # fmt: skip
            for i in multi.tolist():
                lr = int(li[i])
                if inj[i]:
                    df = bool(c["df"][lr])
                    det = ("claimed_sender=responder", f"rst_ttl={int(rttl_l[i])}",
                           f"peer_ttls={int(sa_ttl0[i])}", f"rst_ip_id={int(c['ipid'][lr])}",
                           f"rst_df={df}", "sender_kept_talking=False")  # fmt: skip
                elif stale[i]:
                    det = ("reset_by=responder", "handshake_seen=True")
                else:
                    risn = int(c["seq"][int(sa_first[i])])
                    d1 = (int(c["seq"][lr]) - risn - 1) & 0xFFFFFFFF
                    d2 = (int(c["ack"][lr]) - int(isn[i]) - 1) & 0xFFFFFFFF
                    det = ("reset_by=responder", "after_close=False",
                           f"bytes_by_resetter={d1 if d1 < 0x80000000 else 0}",
                           f"bytes_by_peer={d2 if d2 < 0x80000000 else 0}")  # fmt: skip
                dlist[i] = len(self._dlists)
                self._dlists.append(det)
        # The responder's address/port: the group's first packet's destination.
        srv = self._addr_ids(c["b_hi"][st], c["b_lo"][st], c["ver"][st])
        cli = self._addr_ids(c["a_hi"][st], c["a_lo"][st], c["ver"][st])
        # Responder TTL (all its non-RST packets share it) when it sent SYN-ACKs.
        sa_ttl = np.maximum.reduceat(np.where(is_sa, c["ttl"].astype(np.int64), -1), start)[g]
        rst_ttl = np.where(p == P_REJ, c["ttl"][li].astype(np.int64), -1)
        # Evidence rows: the first SYN (the first row), the first SYN-ACK, the RST.
        idx = np.arange(len(r))
        ev_sa = np.minimum.reduceat(np.where(is_sa, idx, I64MAX), start)[g]
        ev_sa = np.where(ev_sa == I64MAX, -1, ev_sa)
        ev_rst = np.where((p == P_REJ) | (p == P_PROBE) | (p == P_RSTB), li, -1)
        # Only failed connections can become evidence: keep just their evidence rows.
        need = kind >= 0
        pick = _uniq(np.concatenate([st[need], ev_sa[need & (ev_sa >= 0)],
                                         ev_rst[need & (ev_rst >= 0)]]))  # fmt: skip
        grow = np.where(need, np.searchsorted(pick, st), 0)
        ev_sa = np.where(need & (ev_sa >= 0), np.searchsorted(pick, ev_sa), -1)
        ev_rst = np.where(need & (ev_rst >= 0), np.searchsorted(pick, ev_rst), -1)
        em.order.append(order)
        em.cols.append(
            {
                "kind": kind, "srv": srv, "port": c["dport"][st].astype(np.int64), "cli": cli,
                "first": t_first, "last": t_last, "iface": c["iface"][st].astype(np.int64),
                "rsyn": n_sa > 0, "sttl": sa_ttl, "rttl": rst_ttl, "detail": detail,
                "hard": np.full(len(g), -1, np.int64), "grow": grow, "ev_sa": ev_sa,
                "ev_rst": ev_rst, "pat": p.astype(np.int64),
                "_rows": np.full(len(g), len(self._rowsets), np.int64), "dlist": dlist,
            }
        )  # fmt: skip
        self._rowsets.append(take(r, pick))

    def _addr_ids(self, hi: np.ndarray, lo: np.ndarray, ver: np.ndarray) -> np.ndarray:
        """Interned address ids (self.addr_strs) for address columns."""
        out = np.empty(len(lo), np.int64)
        v4 = ver == 4
        # IPv4 (most rows): unique over one uint64 column is fast.
        u, inv = np.unique(lo[v4], return_inverse=True)
        ids = np.array([self._intern_key((0, a, 4)) for a in u.tolist()], np.int64)
        out[v4] = ids[inv.reshape(-1)] if len(u) else 0
        if not v4.all():
            v6 = ~v4
            trip = np.stack([hi[v6], lo[v6]], axis=1)
            u6, inv6 = np.unique(trip, axis=0, return_inverse=True)
            ids6 = np.array([self._intern_key((h, lw, 6)) for h, lw in u6.tolist()], np.int64)
            out[v6] = ids6[inv6.reshape(-1)]
        return out

    def _intern_key(self, k: tuple[int, int, int]) -> int:
        a = self.addr_ids.get(k)
        if a is None:
            h, lw, v = k
            if v == 4:
                s = socket.inet_ntoa(lw.to_bytes(4, "big"))
            else:
                s = socket.inet_ntop(socket.AF_INET6, h.to_bytes(8, "big") + lw.to_bytes(8, "big"))
            a = self.addr_ids[k] = len(self.addr_strs)
            self.addr_strs.append(s)
        return a

    def _intern(self, s: str, version: int) -> int:
        from rstrace.sources.columns import _text_halves

        h, lw = _text_halves(version, s)
        k = (h, lw, version)
        a = self.addr_ids.get(k)
        if a is None:
            a = self.addr_ids[k] = len(self.addr_strs)
            self.addr_strs.append(s)
        return a

    def _simple_evidence(
        self, rs: int, syn: int, sa: int, rst: int, pat: int, kind: str
    ) -> list[Evidence]:
        """A simple connection's evidence (track.py's _finalize lists the first SYN,
        SYN-ACK and the RST), picked as the Diagnoser picks it for its kind."""
        cols = self._rowcols.get(rs)
        if cols is None:
            # Contiguous columns of the rowset, once: a field of a structured row costs
            # microseconds to read; a scan reads a few rows of a large rowset.
            r = self._rowsets[rs]
            cols = self._rowcols[rs] = tuple(
                np.ascontiguousarray(r[n]) for n in ("ts", "iface", "rbuf", "roff", "rlen", "rid")
            )
        ts, ifc, rbuf, roff, rlen, rid = cols
        picks = [(syn, "SYN")]
        if sa >= 0:
            picks.append((sa, "SYN-ACK"))
        if rst >= 0:
            who = "responder" if pat in (P_REJ, P_RSTB) else "originator"
            picks.append((rst, f"RST from {who}"))
        wanted = _NOTES.get(kind) or _notes(kind)
        out = []
        for i, note in picks:
            if note not in wanted:
                continue
            b = int(rbuf[i])
            if b < 0:
                raw = self.objs[int(rid[i])].raw
            else:
                o = int(roff[i])
                raw = self.bufs[b][o : o + int(rlen[i])].tobytes()
            out.append(Evidence(int(ts[i]), self.names[int(ifc[i])], raw, note))
        if not out:  # (none wanted: the first packet, as pick_by_note does)
            return self._simple_evidence(rs, syn, -1, -1, pat, _UNANSWERED)
        # In time order already: the SYN is the connection's first row, the RST its last.
        return out[:MAX_EVIDENCE]

    # -- the rest: the reference tracker ------------------------------------------------

    def _record(self, row: Any) -> Segment | Unreachable:
        rid = int(row["rid"])
        if int(row["rbuf"]) < 0:
            return self.objs[rid]
        v = int(row["ver"])
        if v == 4:
            src = socket.inet_ntoa(int(row["a_lo"]).to_bytes(4, "big"))
            dst = socket.inet_ntoa(int(row["b_lo"]).to_bytes(4, "big"))
        else:
            src = socket.inet_ntop(
                socket.AF_INET6,
                int(row["a_hi"]).to_bytes(8, "big") + int(row["a_lo"]).to_bytes(8, "big"),
            )
            dst = socket.inet_ntop(
                socket.AF_INET6,
                int(row["b_hi"]).to_bytes(8, "big") + int(row["b_lo"]).to_bytes(8, "big"),
            )
        return Segment(
            int(row["ts"]), self.names[int(row["iface"])], v, src, dst, int(row["sport"]),
            int(row["dport"]), int(row["flags"]), int(row["seq"]), int(row["ack"]),
            int(row["win"]), int(row["payload"]), int(row["ttl"]), int(row["ipid"]),
            bool(row["df"]), self._raw(row),
        )  # fmt: skip

    def _replay(
        self, h: np.ndarray, final: bool, pb: np.ndarray, pn: np.ndarray, em: _Emitted
    ) -> np.ndarray:
        h = take(h, np.argsort(h["rid"], kind="stable"))
        h = take(h, ~np.isin(h["rid"], np.fromiter(self.unmatched_done, np.int64)))
        table = _Replay()
        conns: list[Connection] = []
        order: list[tuple[int, int, int, int]] = []
        unm: list[tuple[int, Unreachable]] = []
        nows: list[int] = []
        batches = h["batch"].astype(np.int64)
        ip0 = int(np.searchsorted(pb, batches[0], "left")) if len(h) else len(pb)
        recs = [self._record(x) for x in h]
        i = 0
        for j in range(ip0, len(pb) + 1):
            b = int(pb[j]) if j < len(pb) else 1 << 62
            out: list[Connection] = []
            while i < len(h) and batches[i] <= b:
                rec = recs[i]
                table.cur_rid = int(h["rid"][i])
                if isinstance(rec, Segment):
                    table._segment(rec, out)
                else:
                    table._unreachable(rec, out)
                    if table.unmatched_unreachable:
                        unm.append((table.cur_rid, table.unmatched_unreachable.pop()))
                i += 1
            if j < len(pb):
                table._now = max(table._now, int(pn[j]))
                table._expire(out)
            conns.extend(out)
            now = int(pn[j]) if j < len(pb) else 0
            for _c in out:
                ph, key, crid = table.meta[len(order)]
                order.append((b, ph, key, crid))
                nows.append(now)
            for rid, u in unm:
                self.unmatched_done.add(rid)
                em.order.append(np.array([[b], [2], [rid], [rid]], np.int64))
                em.cols.append({"unmatched": np.array([0]), "_obj": u})  # type: ignore[dict-item]
            unm = []
            if j >= len(pb):
                break
        carry = np.zeros(0, ROW)
        live = list(table._conns.values())
        now_end = self.summary.last_ts if self.summary.last_ts is not None else 0
        if final:
            for c in live:
                crid = table.created[id(c)]
                conns.append(table._finalize(c))
                order.append((1 << 62, 3, crid, crid))
                nows.append(now_end)
        elif live:
            # Carry each live connection's rows (from its first) to the next window.
            firsts = {}
            for c in live:
                firsts[c.key] = table.created[id(c)]
            keys_of = {}
            for x, rec in zip(h["rid"].tolist(), recs, strict=True):
                if isinstance(rec, Segment):
                    ks = (rec.src, rec.sport, rec.dst, rec.dport)
                else:
                    ks = (rec.quoted_src, rec.quoted_sport, rec.quoted_dst, rec.quoted_dport)
                a, b2 = (ks[0], ks[1]), (ks[2], ks[3])
                keys_of[x] = (*a, *b2) if a < b2 else (*b2, *a)
            keep = [
                x in keys_of and keys_of[x] in firsts and x >= firsts[keys_of[x]]
                for x in h["rid"].tolist()
            ]
            carry = take(h, np.array(keep, bool))
        self.replayed_conns += len(conns)
        self._add_hard(conns, order, nows, em)
        return carry

    def _add_hard(
        self,
        conns: list[Connection],
        order: list[tuple[int, int, int, int]],
        nows: list[int],
        em: _Emitted,
    ) -> None:
        if not conns:
            return
        n = len(conns)
        cols: dict[str, Any] = {
            "kind": np.full(n, -1, np.int64), "srv": np.zeros(n, np.int64),
            "port": np.zeros(n, np.int64), "cli": np.zeros(n, np.int64),
            "first": np.zeros(n, np.int64), "last": np.zeros(n, np.int64),
            "iface": np.zeros(n, np.int64), "rsyn": np.zeros(n, bool),
            "sttl": np.full(n, -1, np.int64), "rttl": np.full(n, -1, np.int64),
            "detail": np.full(n, -1, np.int64), "hard": np.arange(n) + len(self._hard),
            "grow": np.zeros(n, np.int64), "ev_sa": np.zeros(n, np.int64),
            "ev_rst": np.zeros(n, np.int64), "pat": np.zeros(n, np.int64),
            "_rows": np.full(n, -1, np.int64), "dlist": np.full(n, -1, np.int64),
        }  # fmt: skip
        for i, (c, now) in enumerate(zip(conns, nows, strict=True)):
            v = classify(c, now)
            self._hard.append((c, v))
            cols["srv"][i] = self._intern(c.resp_h, c.version)
            cols["cli"][i] = self._intern(c.orig_h, c.version)
            cols["port"][i] = c.resp_p
            cols["rsyn"][i] = c.resp.syns > 0
            if c.iface not in self.names:
                self.names.append(c.iface)
            cols["iface"][i] = self.names.index(c.iface) if c.iface else 0
            if v is not None:
                if v.kind not in KIND_IDS:
                    KIND_IDS[v.kind] = len(KIND_NAMES)
                    KIND_NAMES.append(v.kind)
                cols["kind"][i] = KIND_IDS[v.kind]
                cols["srv"][i] = self._intern(v.server, c.version)
                cols["cli"][i] = self._intern(v.client, c.version)
                cols["port"][i] = v.port
                cols["first"][i], cols["last"][i] = control_span(c)
        em.order.append(np.array(order, np.int64).T.reshape(4, -1))
        em.cols.append(cols)

    # -- the Diagnoser, in bulk ----------------------------------------------------------

    def _aggregate(self, em: _Emitted, upto: tuple[int, int, int] | None = None) -> _Emitted:
        """Fold emitted connections into the Diagnoser in emission order; with upto,
        only those whose (batch, phase, key) is below it: the rest are returned."""
        if not em.order:
            if upto is None:
                self._hard_keep_clear()
            return _Emitted()
        diag = self.diag
        # Emission order across simple and replayed connections.
        parts = []
        for pi, o in enumerate(em.order):
            parts.append(np.vstack([o, np.full(o.shape[1], pi), np.arange(o.shape[1])]))
        allk = np.hstack(parts)
        del parts
        srt = np.lexsort(allk[3::-1])
        rest = _Emitted()
        if upto is not None:
            sk = allk[:3, srt]
            b, ph, key = upto
            below = (sk[0] < b) | ((sk[0] == b) & ((sk[1] < ph) | ((sk[1] == ph) & (sk[2] < key))))
            ndo = int(np.count_nonzero(below))  # a prefix: srt is in that order
            lpis = allk[4][srt[ndo:]]
            lidx = allk[5][srt[ndo:]]
            for pi in _uniq(lpis).tolist():
                sel = np.sort(lidx[lpis == pi])
                c = em.cols[pi]
                rest.order.append(em.order[pi][:, sel])
                if "unmatched" in c:
                    rest.cols.append(c)
                else:
                    rest.cols.append({k: np.asarray(v)[sel] for k, v in c.items()})
            srt = srt[:ndo]
        pis = allk[4][srt]
        idx = allk[5][srt]
        del allk
        # Split at ICMP-without-connection records (added one by one).
        unm = np.array(["unmatched" in c for c in em.cols], bool)
        cut = np.flatnonzero(unm[pis]).tolist() if unm.any() else []
        prev = 0
        for cpos in [*cut, len(pis)]:
            if cpos > prev:
                self._bulk(em, pis[prev:cpos], idx[prev:cpos])
            if cpos < len(pis):
                diag.add_unmatched_unreachable(em.cols[int(pis[cpos])]["_obj"])  # type: ignore[arg-type]
            prev = cpos + 1
        if upto is None:
            self._hard_keep_clear()
        return rest

    def _hard_keep_clear(self) -> None:
        self._rowcols = {}
        self._hard = []
        self._dlists = []
        self._rowsets = []

    def _bulk(self, em: _Emitted, pis: np.ndarray, idx: np.ndarray) -> None:
        diag = self.diag
        names = ("kind", "srv", "port", "cli", "first", "last", "iface", "rsyn",
                 "sttl", "rttl", "detail", "hard", "grow", "ev_sa", "ev_rst", "pat",
                 "_rows", "dlist")  # fmt: skip
        real = [c for c in em.cols if "kind" in c]
        lens = [len(c["kind"]) if "kind" in c else 0 for c in em.cols]
        offs = np.r_[0, np.cumsum(lens)]
        col: dict[str, np.ndarray] = {}
        for k in names:
            col[k] = np.concatenate([np.asarray(c[k]) for c in real])[offs[pis] + idx]
        n = len(pis)
        diag.connections += n
        S = self.addr_strs
        # SYN-ACKs per server port, and the server's TTLs (in first-seen order).
        rs = np.flatnonzero(col["rsyn"])
        if len(rs):
            sp = col["srv"][rs] * 65536 + col["port"][rs]
            u, cnts = np.unique(sp, return_counts=True)
            for v, c in zip(u.tolist(), cnts.tolist(), strict=True):
                diag._answered[(S[v >> 16], v & 0xFFFF)] += c
        simple_rs = rs[col["hard"][rs] < 0]
        hard_rs = rs[col["hard"][rs] >= 0]
        # Order matters (Counter insertion): build (position, server, ttl) in order.
        trip: list[tuple[int, int, int, int]] = []
        if len(simple_rs):
            arr = np.stack([simple_rs, col["srv"][simple_rs], col["sttl"][simple_rs]], 1)
            sv = arr[:, 1] * 256 + arr[:, 2]
            u, first, cnts = np.unique(sv, return_index=True, return_counts=True)
            trip.extend(zip(arr[first, 0].tolist(), (u >> 8).tolist(),
                            (u & 255).tolist(), cnts.tolist(), strict=True))  # fmt: skip
        for p in hard_rs.tolist():
            c, _ = self._hard[int(col["hard"][p])]
            for t in c.resp.ttls:
                trip.append((p, int(col["srv"][p]), t, 1))
        trip.sort(key=lambda x: x[0])
        for _p, s, t, c in trip:
            diag._server_ttls[S[s]][t] += c
        failed = np.flatnonzero(col["kind"] >= 0)
        if not len(failed):
            return
        kinds = col["kind"][failed]
        scan_ids = [KIND_IDS[k] for k in _SCAN_EVIDENCE if k in KIND_IDS]
        sc = failed[np.isin(kinds, scan_ids)]
        if len(sc):
            # Distinct (client, server, port), in that order: one sortable integer each
            # (np.unique(axis=0) on a 3-column array is ~10x slower).
            w = max(len(S), 1).bit_length()
            if 2 * w + 16 <= 63:
                t3 = (col["cli"][sc] << (w + 16)) | (col["srv"][sc] << 16) | col["port"][sc]
                for v in _uniq(t3).tolist():
                    diag.note_failed_port(S[v >> (w + 16)], S[(v >> 16) & ((1 << w) - 1)],
                                          v & 0xFFFF)  # fmt: skip
            else:
                t3 = np.stack([col["cli"][sc], col["srv"][sc], col["port"][sc]], 1)
                for cl, sv, pt in np.unique(t3, axis=0).tolist():
                    diag.note_failed_port(S[cl], S[sv], pt)
        akey = (kinds * (1 << 40)) + col["srv"][failed] * 65536 + col["port"][failed]
        u, first, inv = np.unique(akey, return_index=True, return_inverse=True)
        grp_order = np.argsort(first, kind="stable")
        by = np.argsort(inv, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(inv, minlength=len(u)))]
        # One-connection aggregates (a scan makes one per port): plain Python, no numpy.
        one = np.flatnonzero(np.diff(bounds) == 1)
        p1 = failed[by[bounds[one]]]
        one_l = {
            k: col[k][p1].tolist()
            for k in (
                "kind",
                "srv",
                "port",
                "cli",
                "first",
                "last",
                "iface",
                "detail",
                "rttl",
                "hard",
                "_rows",
                "grow",
                "ev_sa",
                "ev_rst",
                "pat",
                "dlist",
            )
        }
        slot = dict(zip(one.tolist(), range(len(one)), strict=True))
        detail_name = {_UNANSWERED: "syns", "half-open": "synack_sent",
                       "listen-overflow": "synack_sent"}  # fmt: skip
        aggs = diag._aggs
        for gi in grp_order.tolist():
            j = slot.get(gi)
            if j is not None and one_l["hard"][j] < 0:
                kname = KIND_NAMES[one_l["kind"][j]]
                server = S[one_l["srv"][j]]
                port = one_l["port"][j]
                first = one_l["first"][j]
                key = (kname, server, port)
                agg = aggs.get(key)
                if agg is None:
                    agg = aggs[key] = _new_aggregate(kname, server, port, first)
                agg.count += 1
                if first < agg.first_ts:
                    agg.first_ts = first
                if one_l["last"][j] > agg.last_ts:
                    agg.last_ts = one_l["last"][j]
                cl = S[one_l["cli"][j]]
                tally_add(agg, "clients", cl, cap=MAX_CLIENTS)
                if one_l["iface"][j]:
                    tally_add(agg, "ifaces", self.names[one_l["iface"][j]])
                tally_add(agg, "per_second", first // SEC)
                if kname == _RST_TO_SYN:
                    tally_add(agg, "rst_ttls", one_l["rttl"][j])
                elif kname in detail_name:
                    tally_add(agg, "details", f"{detail_name[kname]}={one_l['detail'][j]}")
                elif one_l["dlist"][j] >= 0:
                    for dk in self._dlists[one_l["dlist"][j]]:
                        tally_add(agg, "details", dk)
                if not agg.evidence:
                    agg.evidence = self._simple_evidence(
                        one_l["_rows"][j], one_l["grow"][j], one_l["ev_sa"][j],
                        one_l["ev_rst"][j], one_l["pat"][j], kname,
                    )  # fmt: skip
                continue
            sel = failed[by[bounds[gi] : bounds[gi + 1]]]
            kname = KIND_NAMES[int(col["kind"][sel[0]])]
            server = S[int(col["srv"][sel[0]])]
            port = int(col["port"][sel[0]])
            key = (kname, server, port)
            fs = col["first"][sel]
            agg = aggs.get(key)
            if agg is None:
                agg = aggs[key] = _new_aggregate(kname, server, port, int(fs[0]))
            agg.count += len(sel)
            agg.first_ts = min(agg.first_ts, int(fs.min()))
            agg.last_ts = max(agg.last_ts, int(col["last"][sel].max()))
            _count_in_order(agg.clients, col["cli"][sel], S, cap=MAX_CLIENTS)
            ifs = col["iface"][sel]
            ifs = ifs[ifs > 0]
            if len(ifs):
                _count_in_order(agg.ifaces, ifs, self.names, cap=None)  # type: ignore[arg-type]
            _count_in_order(agg.per_second, fs // SEC, None, cap=None)
            hard = col["hard"][sel]
            simple_sel = sel[hard < 0]
            if (hard >= 0).any() or kname in _MULTI:
                # Replayed connections: details in their own order, one by one.
                for p in sel.tolist():
                    hi = int(col["hard"][p])
                    if hi >= 0:
                        c, v = self._hard[hi]
                        assert v is not None
                        for k, val in v.details.items():
                            if v.kind == _RST_TO_SYN and k in ("rst_ttl", "rst_ip_id", "rst_df"):
                                continue
                            agg.details[f"{k}={val}"] += 1
                        if v.kind == _RST_TO_SYN:
                            agg.rst_ttls[c.resp.rst_ttl] += 1
                    else:
                        dl = int(col["dlist"][p])
                        if dl >= 0:
                            for dk in self._dlists[dl]:
                                agg.details[dk] += 1
                        else:
                            self._simple_details(agg, kname, col, np.array([p]))
            elif len(simple_sel):
                self._simple_details(agg, kname, col, simple_sel)
            if not agg.evidence:
                for p in sel.tolist():
                    hi = int(col["hard"][p])
                    if hi >= 0:
                        c, v = self._hard[hi]
                        assert v is not None
                        agg.evidence = _pick_evidence(c, v)[:MAX_EVIDENCE]
                    else:
                        agg.evidence = self._simple_evidence(
                            int(col["_rows"][p]), int(col["grow"][p]), int(col["ev_sa"][p]),
                            int(col["ev_rst"][p]), int(col["pat"][p]), kname,
                        )  # fmt: skip
                    if agg.evidence:
                        break
        diag.failed += len(failed)

    @staticmethod
    def _simple_details(agg: _Aggregate, kname: str, col: dict[str, np.ndarray],
                        sel: np.ndarray) -> None:  # fmt: skip
        if kname == _RST_TO_SYN:
            _count_in_order(agg.rst_ttls, col["rttl"][sel], None, cap=None)
            return
        name = {_UNANSWERED: "syns", "half-open": "synack_sent",
                "listen-overflow": "synack_sent"}.get(kname)  # fmt: skip
        if name is None:
            return
        vals = Counter[int]()
        _count_in_order(vals, col["detail"][sel], None, cap=None)
        for v, c in vals.items():
            agg.details[f"{name}={v}"] += c


_NOTES: dict[str, tuple[str, ...]] = {}


def _notes(kind: str) -> tuple[str, ...]:
    """Evidence notes wanted for a simple connection's kind (its resets are the
    responder's: diagnose.classify's reset_by / claimed_sender)."""
    n = _NOTES.get(kind)
    if n is None:
        who = "responder" if kind in ("stale", "abort", "injected") else None
        n = _NOTES[kind] = evidence_notes(kind, who)
    return n


def _new_aggregate(kind: str, server: str, port: int, first_ts: int) -> _Aggregate:
    return _Aggregate(kind, server, port, first_ts=first_ts)


def _count_in_order(counter: Any, ids: np.ndarray, strs: Any, cap: int | None) -> None:
    """Counter updates as one-by-one adds would make them (first-seen key order; with
    a cap, a key not yet counted is admitted only while there is room)."""
    if len(ids) <= SMALL:
        # A few values: one by one is cheaper than np.unique.
        for i in ids.tolist():
            key = strs[i] if strs is not None else i
            if cap is None or key in counter or len(counter) < cap:
                counter[key] += 1
        return
    u, first, cnts = np.unique(ids, return_index=True, return_counts=True)
    for j in np.argsort(first, kind="stable").tolist():
        key = strs[int(u[j])] if strs is not None else int(u[j])
        if cap is None or key in counter or len(counter) < cap:
            counter[key] += int(cnts[j])


KIND_NAMES: list[str] = [_RST_TO_SYN, _UNANSWERED, _PROBE, "half-open", "listen-overflow"]
KIND_IDS: dict[str, int] = {k: i for i, k in enumerate(KIND_NAMES)}


def _pass_between(
    pb: np.ndarray, pn: np.ndarray, blo: np.ndarray, bhi: np.ndarray, h: np.ndarray, e: np.ndarray
) -> np.ndarray:
    """Is there a batch-end pass in batches [blo, bhi] whose clock is in [h, e)?"""
    if not len(pb):
        return np.zeros(len(h), bool)
    i_lo = np.searchsorted(pb, blo, "left")
    i_hi = np.searchsorted(pb, bhi, "right") - 1
    j = np.maximum(i_lo, np.searchsorted(pn, h, "left"))
    ok = j <= i_hi
    jj = np.minimum(j, len(pn) - 1)
    return ok & (pn[jj] < e)


def _local_batches(entry: FileEntry, read_bs: int) -> Iterator[tuple[bytes, bytes]]:
    handle = pcapy.open_offline(entry.path)
    handle.setfilter(entry.filter)
    while True:
        pkts, meta = handle.next_batch(read_bs)
        if not meta:
            return
        yield pkts, meta


def analyze_fast(
    paths: list[str],
    batch_size: int = 4096,
    window_rows: int = 16384,
    read_batch: int | None = None,
    counts: dict[str, int] | None = None,
    prefetch: tuple[list[FileEntry], Prefetch] | None = None,
) -> tuple[Diagnoser, ReadSummary] | None:
    """Run the vectorized findings path; None when the reference must run instead.

    batch_size: the reference reader's batch (results depend on its batch ends);
    window_rows: rows held before 4-tuples are settled (memory bound);
    read_batch: packets per libpcap call (rounded to a multiple of batch_size);
    counts: filled with connections settled vectorized / replayed, and rows read;
    prefetch: files and the child reading them (prefetch.py), started by the caller
    before numpy was imported; without it the files are read here.
    """
    fa = FastAnalysis(paths, batch_size, window_rows, read_batch)
    try:
        if prefetch is not None:
            files, pre = prefetch
        else:
            maybe = prepare(paths)
            if maybe is None:
                return None
            files, pre = maybe, None
        fa.run(files, pre)
    except _Fallback:
        return None
    finally:
        if prefetch is not None:
            prefetch[1].close()
    if counts is not None:
        counts.update(simple=fa.simple_conns, replayed=fa.replayed_conns, rows=fa.rid)
    return fa.diag, fa.summary
