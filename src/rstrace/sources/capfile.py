"""Read capture files (pcap, pcapng, gzip, stdin) into batches of records.

Two readers, one output:
  * libpcap through pcapy-ng for plain pcap files and single-interface pcapng:
    the BPF prefilter runs in C and `next_batch` crosses into Python once per
    batch, so data packets never reach Python on the findings path;
  * our own StreamReader (blockreader.py) for what libpcap cannot do: gzip,
    stdin, pcapng with several interfaces (names and per-interface link types),
    with the same BPF program applied per packet through pcapy's BPFProgram.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import heapq
import os
import queue
import signal
import stat
import struct
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pcapy

from rstrace.model import Segment, Unreachable
from rstrace.sources.blockreader import (
    PCAPNG_SHB,
    CaptureFormatError,
    Interface,
    StreamReader,
)
from rstrace.sources.bpf import all_tcp_filter, control_filter
from rstrace.sources.decode import (
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    DLT_NULL,
    DLT_RAW,
    LINK_NAMES,
    LINKTYPE_RAW,
    SUPPORTED_LINKTYPES,
    DecodeStats,
    FastLayout,
    FrameBatch,
    decode_frame,
    fast_layout,
    tcp_checksum_ok,
)

Record = Segment | Unreachable
GZIP_MAGIC = b"\x1f\x8b"
_META = struct.Struct("=IIII")
_F_SETPIPE_SZ = 1031  # linux/fcntl.h
_FORK_MIN_BYTES = 32 << 20
"""Mode "all" reads files at least this big in a child process (_Forked)."""
_COMPACT_BYTES = 512 * _META.size
"""The child cuts data/ACK frames short in batches of at least this many frames (meta
bytes); smaller ones are sent as they are (no numpy import for a small file)."""
_KEEP = 100
"""Bytes of a data/ACK frame the child sends from the IP header on: IPv6 + the longest
TCP header (IPv4 without options is shorter)."""


class CaptureError(Exception):
    """A capture that cannot be read at all: one line for the user, exit 2."""


@dataclass
class ReadSummary:
    """What reading saw, for the run summary and JSON totals."""

    files: list[str] = field(default_factory=list)
    stats: DecodeStats = field(default_factory=DecodeStats)
    warnings: list[str] = field(default_factory=list)
    first_ts: int | None = None
    last_ts: int | None = None
    interfaces: set[str] = field(default_factory=set)
    prefiltered: bool = False
    empty_files: list[str] = field(default_factory=list)
    """Files that hold no packet at all."""


@dataclass
class _Opened:
    path: str
    display: str
    stream: BinaryIO | None
    head: bytes
    kind: str  # "pcap", "pcapng", "gzip"
    first_ts: int


class CaptureReader:
    """Iterate batches of records from one or more capture files, in time order.

    mode "control": the BPF prefilter passes control packets only (findings path).
    mode "all": every TCP packet (connection log). mode "none": no prefilter at all.
    """

    def __init__(
        self,
        paths: list[str],
        mode: str = "control",
        batch_size: int = 4096,
        verify_checksums: bool = False,
    ) -> None:
        self.paths = paths
        self.mode = mode
        self.batch_size = batch_size
        self.verify_checksums = verify_checksums
        self.summary = ReadSummary(files=list(paths), prefiltered=mode != "none")

    def batches(self) -> Iterator[list[Record]]:
        opened = [self._open(p) for p in self.paths]
        opened.sort(key=lambda o: o.first_ts)
        if len(opened) == 1:
            yield from self._file_batches(opened[0])
            return
        # Several files are one capture: rotated files follow each other, files
        # recorded at once on different interfaces interleave. Merge by time so the
        # tracker's clock never runs backwards.
        merged = heapq.merge(*(self._file_records(o) for o in opened), key=_ts)
        batch: list[Record] = []
        for rec in merged:
            batch.append(rec)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _file_batches(self, item: _Opened) -> Iterator[list[Record]]:
        try:
            yield from self._read_one(item)
        finally:
            if item.stream is not None and item.stream is not sys.stdin.buffer:
                item.stream.close()

    def _file_records(self, item: _Opened) -> Iterator[Record]:
        for batch in self._file_batches(item):
            yield from batch

    # -- opening ---------------------------------------------------------------

    def _open(self, path: str) -> _Opened:
        display = "<stdin>" if path == "-" else path
        try:
            if path == "-":
                stream: BinaryIO = sys.stdin.buffer
            else:
                stream = open(path, "rb")  # noqa: SIM115 - closed after reading
        except OSError as e:
            raise CaptureError(f"{display}: {e.strerror or e}") from None
        head = stream.read(4)
        if head[:2] == GZIP_MAGIC:
            # Decompressed as a stream: nothing is unpacked to disk or memory first.
            inner = gzip.GzipFile(fileobj=_Prefixed(head, stream), mode="rb")
            try:
                ihead = inner.read(4)
            except (OSError, EOFError, zlib.error) as e:
                raise CaptureError(f"{display}: corrupt gzip data ({e})") from None
            return _Opened(path, display, inner, ihead, "gzip", _peek_ts(inner, ihead, path))
        if len(head) < 4:
            raise CaptureError(f"{display}: empty file, not a capture")
        le = int.from_bytes(head, "little")
        if le == PCAPNG_SHB:
            kind = "pcapng"
        elif le in (0xA1B2C3D4, 0xA1B23C4D) or int.from_bytes(head, "big") in (
            0xA1B2C3D4,
            0xA1B23C4D,
        ):
            kind = "pcap"
        else:
            raise CaptureError(f"{display}: not a pcap or pcapng capture")
        if path == "-" or not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            # A pipe (stdin, /dev/stdin, <(...)) can be read once only: stream it.
            return _Opened(path, display, stream, head, kind, 0)
        stream.close()
        return _Opened(path, display, None, b"", kind, _first_ts_of_file(path))

    # -- reading ---------------------------------------------------------------

    def _read_one(self, item: _Opened) -> Iterator[list[Record]]:
        if item.stream is None and item.kind == "pcap":
            yield from self._read_libpcap(item, None)
            return
        if item.stream is None and item.kind == "pcapng":
            idbs = _pcapng_interfaces(item.path)
            if len(idbs) == 1:
                yield from self._read_libpcap(item, idbs[0].name)
                return
            item.stream = open(item.path, "rb")  # noqa: SIM115 - closed by batches()
        assert item.stream is not None
        yield from self._read_stream(item)

    def _bpf(self, linktype: int) -> pcapy.BPFProgram | None:
        """The prefilter for our own reader (compiled without a file: pcap_open_dead)."""
        if self.mode == "none" or linktype == DLT_NULL:
            # NULL's family field is in the writer's byte order; a program compiled
            # without the file cannot know it (libpcap swaps it when it reads a file).
            return None
        text = control_filter(linktype) if self.mode == "control" else all_tcp_filter(linktype)
        try:
            # pcapng/pcap store LINKTYPE_RAW (101); libpcap compiles for DLT_RAW.
            return pcapy.compile(DLT_RAW if linktype == LINKTYPE_RAW else linktype,
                                 262144, text, 1, 0)  # fmt: skip
        except pcapy.PcapError:
            return None

    def _note(self, rec: Record | None, iface: str | None) -> Record | None:
        if rec is None:
            return None
        s = self.summary
        # The observed window spans control packets (SYN/FIN/RST) and ICMP only:
        # the prefilter hides data packets, and rates must not depend on it.
        if isinstance(rec, Unreachable) or rec.flags & 0x07:
            if s.first_ts is None or rec.ts < s.first_ts:
                s.first_ts = rec.ts
            if s.last_ts is None or rec.ts > s.last_ts:
                s.last_ts = rec.ts
        if iface:
            s.interfaces.add(iface)
        if self.verify_checksums and isinstance(rec, Segment):
            rec.checksum_ok = tcp_checksum_ok(rec.raw)
        return rec

    def _read_libpcap(self, item: _Opened, iface: str | None) -> Iterator[list[Record]]:
        try:
            handle = pcapy.open_offline(item.path)
        except pcapy.PcapError as e:
            raise CaptureError(f"{item.display}: {e}") from None
        linktype = handle.datalink()
        self._check_linktype(linktype, item.display)
        filt = self._filter_text(linktype)
        if filt:
            try:
                handle.setfilter(filt)
            except pcapy.PcapError:
                self.summary.prefiltered = False
                filt = None
        stats = self.summary.stats
        stats.linktypes.add(linktype)
        copies = Copies() if linktype in (DLT_LINUX_SLL, DLT_LINUX_SLL2) else None
        done = 0
        # A reader thread pays off only where the filter drops most packets: there
        # next_batch runs BPF with the GIL released. When every TCP packet passes,
        # its time goes into building the batch under the GIL, and a thread only
        # adds contention (bench/README.md, 2026-11-23 evening) and memory; a big
        # file is then read by a child process instead (_Forked).
        reader: _Prefetch | _Direct | _Forked
        layout = fast_layout(linktype)
        if self.mode == "control":
            reader = _Prefetch(handle, self.batch_size)
        elif (
            self.mode == "all"
            and layout is not None
            and copies is None
            and not self.verify_checksums
            and os.path.getsize(item.path) >= _FORK_MIN_BYTES
        ):
            reader = _Forked(item.path, filt, self.batch_size, layout)
        else:
            reader = _Direct(handle, self.batch_size)
        try:
            while True:
                got = reader.get()
                if isinstance(got, pcapy.PcapError):
                    # next_batch drops the whole batch when its last record is cut short:
                    # re-read from the last good batch packet by packet to lose nothing.
                    reader.close()
                    yield from self._salvage(item, iface, linktype, filt, done, str(got))
                    return
                pkts, meta = got
                if not meta:
                    if done == 0 and _holds_no_packets(item.path):
                        self.summary.empty_files.append(item.display)
                    return
                done += len(meta) // _META.size
                if self.verify_checksums or copies is not None:
                    out: list[Record] = []
                    for sec, usec, off, caplen in _META.iter_unpack(meta):
                        rec = decode_frame(
                            linktype, pkts[off : off + caplen], sec * 1_000_000 + usec, iface,
                            stats,
                        )  # fmt: skip
                        if rec is not None and not (copies and copies.seen(rec, stats)):
                            out.append(rec)  # type: ignore[arg-type]
                            self._note(rec, iface)
                    yield out
                else:
                    # Decoded on demand: the tracker's fast lane skips most of it.
                    yield FrameBatch(pkts, meta, linktype, iface, stats, self._note,
                                     self.summary.interfaces)  # fmt: skip
        finally:
            reader.close()

    def _salvage(
        self,
        item: _Opened,
        iface: str | None,
        linktype: int,
        filt: str | None,
        done: int,
        error: str,
    ) -> Iterator[list[Record]]:
        handle = pcapy.open_offline(item.path)
        if filt and self.summary.prefiltered:
            handle.setfilter(filt)
        if done:
            handle.next_batch(done)  # these were read whole before
        out: list[Record] = []
        stats = self.summary.stats
        while True:
            try:
                hdr, data = handle.next()
            except pcapy.PcapError as e:
                error = str(e)
                break
            if hdr is None:
                break
            sec, usec = hdr.getts()
            rec = self._note(
                decode_frame(linktype, data, sec * 1_000_000 + usec, iface, stats), iface
            )
            if rec is not None:
                out.append(rec)
            done += 1
        if out:
            yield out
        self.summary.warnings.append(
            f"{item.display}: reading stopped after {done} packets ({error}); "
            "results cover what was read"
        )

    def _filter_text(self, linktype: int) -> str | None:
        """The prefilter for libpcap's own handle (set with setfilter)."""
        if self.mode == "none":
            return None
        return control_filter(linktype) if self.mode == "control" else all_tcp_filter(linktype)

    def _check_linktype(self, linktype: int, display: str) -> None:
        if linktype not in SUPPORTED_LINKTYPES:
            raise CaptureError(
                f"{display}: unsupported link type {linktype} "
                f"(supported: {', '.join(sorted(set(LINK_NAMES.values())))})"
            )

    def _read_stream(self, item: _Opened) -> Iterator[list[Record]]:
        assert item.stream is not None
        reader = StreamReader(item.stream, item.head)
        stats = self.summary.stats
        programs: dict[int, pcapy.BPFProgram | None] = {}
        copies = Copies()  # several interfaces or `-i any`: the same packet more than once
        out: list[Record] = []
        seen = 0
        try:
            for pkt in reader:
                seen += 1
                itf: Interface = reader.interfaces[pkt.iface]
                lt = itf.linktype
                if lt not in programs:
                    if lt not in SUPPORTED_LINKTYPES:
                        self.summary.warnings.append(
                            f"{item.display}: interface {itf.name or pkt.iface} has unsupported "
                            f"link type {lt}; its packets are skipped"
                        )
                        programs[lt] = None
                    else:
                        programs[lt] = self._bpf(lt)
                        stats.linktypes.add(lt)
                        if programs[lt] is None and self.mode != "none":
                            self.summary.prefiltered = False
                if lt not in SUPPORTED_LINKTYPES:
                    continue
                prog = programs[lt]
                if prog is not None and not prog.filter(pkt.data):
                    continue
                rec = decode_frame(lt, pkt.data, pkt.ts, itf.name, stats)
                if rec is not None and copies.seen(rec, stats):
                    continue
                rec = self._note(rec, itf.name)
                if rec is not None:
                    out.append(rec)
                    if len(out) >= self.batch_size:
                        yield out
                        out = []
        except CaptureFormatError as e:
            if out:
                yield out
                out = []
            if seen == 0 and not reader.interfaces:
                raise CaptureError(f"{item.display}: {e}") from None
            self.summary.warnings.append(
                f"{item.display}: reading stopped at byte {e.offset} after {seen} packets "
                f"({e}); results cover what was read"
            )
        except (OSError, EOFError, zlib.error) as e:  # gzip: corrupt or cut-short data
            if out:
                yield out
                out = []
            self.summary.warnings.append(
                f"{item.display}: reading stopped after {seen} packets ({e}); "
                "results cover what was read"
            )
        if out:
            yield out
        if reader.interfaces and not any(
            i.linktype in SUPPORTED_LINKTYPES for i in reader.interfaces
        ):
            lts = ", ".join(sorted({str(i.linktype) for i in reader.interfaces}))
            raise CaptureError(f"{item.display}: unsupported link type {lts}")
        if seen == 0 and not self.summary.warnings:
            self.summary.empty_files.append(item.display)


class _Prefetch:
    """next_batch() in a background thread, a few batches ahead.

    pcapy releases the GIL while libpcap reads and filters, so with a selective
    filter reading the next batches overlaps the Python work on this one. The queue
    is bounded (memory stays a few batches); a read error is handed over in order,
    as the item it replaces, and ends the thread. close() stops it early (the
    consumer left): the thread finishes the read it is in, sees the stop flag and
    exits; nothing is left behind.
    """

    DEPTH = 3

    def __init__(self, handle: Any, batch_size: int) -> None:
        self._q: queue.Queue[tuple[bytes, bytes] | BaseException] = queue.Queue(self.DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(handle, batch_size), name="rstrace-read", daemon=True
        )
        self._thread.start()

    def _run(self, handle: Any, batch_size: int) -> None:
        q = self._q
        stop = self._stop
        while not stop.is_set():
            try:
                item: tuple[bytes, bytes] | BaseException = handle.next_batch(batch_size)
            except BaseException as e:
                item = e
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException) or not item[1]:
                return

    def get(self) -> tuple[bytes, bytes] | pcapy.PcapError:
        """The next (pkts, meta); a PcapError from next_batch is returned, others raised."""
        item = self._q.get()
        if isinstance(item, BaseException) and not isinstance(item, pcapy.PcapError):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:  # make room for a put() the thread may be blocked in
                self._q.get_nowait()
            except queue.Empty:
                self._thread.join(0.01)


class _Direct:
    """next_batch() in this thread, with _Prefetch's interface."""

    def __init__(self, handle: Any, batch_size: int) -> None:
        self._handle = handle
        self._batch_size = batch_size

    def get(self) -> tuple[bytes, bytes] | pcapy.PcapError:
        try:
            got: tuple[bytes, bytes] = self._handle.next_batch(self._batch_size)
        except pcapy.PcapError as e:
            return e
        return got

    def close(self) -> None:
        pass


class _Forked:
    """next_batch() in a forked child process, with _Prefetch's interface (mode "all").

    With every TCP packet passing the filter, next_batch builds the batch holding the
    GIL, so a thread cannot overlap it with the tracker (bench/README.md); a child
    process reads on the other core. It also sends less: a data/ACK frame (IPv4
    without options or IPv6 without extension headers, TCP, no SYN/FIN/RST) goes
    through the pipe cut after _KEEP bytes of IP and TCP headers. Nothing reads such
    a packet's payload: its size comes from the IP length fields, and evidence keeps
    only SYN, SYN-ACK and RST packets and ICMP errors, which stay whole, as does
    every other frame.
    """

    _HDR = struct.Struct("=qq")
    _ERR = -1

    def __init__(self, path: str, filt: str | None, batch_size: int, layout: FastLayout) -> None:
        r, w = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, _F_SETPIPE_SZ, 1 << 20)
        pid = os.fork()
        if pid == 0:  # the child: read, write, exit without the parent's cleanup
            try:
                os.close(r)
                self._child(path, filt, batch_size, layout, w)
            finally:
                os._exit(0)
        os.close(w)
        self.pid: int | None = pid
        self._stream = os.fdopen(r, "rb")

    @classmethod
    def _child(cls, path: str, filt: str | None, batch_size: int, layout: FastLayout,
               fd: int) -> None:  # fmt: skip
        out = os.fdopen(fd, "wb", buffering=1 << 20)
        try:
            handle = pcapy.open_offline(path)
            if filt:
                handle.setfilter(filt)
            while True:
                pkts, meta = handle.next_batch(batch_size)
                if len(meta) >= _COMPACT_BYTES:
                    pkts, meta = _compact(pkts, meta, layout)
                out.write(cls._HDR.pack(len(pkts), len(meta)))
                out.write(pkts)
                out.write(meta)
                out.flush()  # the parent works on this batch while we read the next
                if not meta:
                    return
        except pcapy.PcapError as e:
            msg = str(e).encode()
            out.write(cls._HDR.pack(cls._ERR, len(msg)) + msg)
            out.flush()

    def get(self) -> tuple[bytes, bytes] | pcapy.PcapError:
        a, b = self._HDR.unpack(self._read(self._HDR.size))
        if a == self._ERR:
            return pcapy.PcapError(self._read(b).decode(errors="replace"))
        return self._read(a), self._read(b)

    def _read(self, n: int) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise CaptureError("capture reader process ended early")
        return data

    def close(self) -> None:
        self._stream.close()
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # done already, or no longer needed
            os.waitpid(self.pid, 0)
            self.pid = None


def _compact(pkts: bytes, meta: bytes, layout: FastLayout) -> tuple[bytes, bytes]:
    """The batch with its data/ACK frames cut after _KEEP bytes of IP+TCP (see _Forked).

    Nearly every frame goes over as one fixed-size row (one numpy copy for the batch):
    a frame no longer than the row keeps its length (the rest of the row is unused),
    a data/ACK frame is cut to it. Only longer frames that must stay whole (SYN, FIN,
    RST, anything not plain TCP) and the last frames of the buffer go one by one.
    """
    import numpy as np

    from rstrace.sources.columns import META

    width = layout.ip_off + _KEEP
    if len(pkts) < width:
        return pkts, meta
    m = np.frombuffer(meta, META).copy()
    off = m["off"].astype(np.int64)
    cap = m["caplen"].astype(np.int64)
    buf = np.frombuffer(pkts, np.uint8)
    whole = cap > width
    long = np.flatnonzero(whole)
    if len(long):
        o = off[long] + layout.ip_off
        e = off[long] + layout.etype_off
        et = (buf[e].astype(np.int64) << 8) | buf[e + 1]
        b0 = buf[o]
        total = (buf[o + 2].astype(np.int64) << 8) | buf[o + 3]
        # As the tracker's header unpack reads them (IPv4 total length 0: _ip_len() then
        # counts the captured bytes, so such a frame stays whole).
        v4 = (et == 0x0800) & (b0 == 0x45) & ((buf[o + 6] & 0x1F) == 0) & (buf[o + 7] == 0)
        v4 &= (buf[o + 9] == 6) & (total != 0)
        v6 = (et == 0x86DD) & ((b0 >> 4) == 6) & (buf[o + 6] == 6)
        flags = buf[o + np.where(v4, 20, 40) + 13]
        whole[long[(v4 | v6) & ((flags & 7) == 0)]] = False
    rows = ~whole & (off + width <= len(pkts))
    ri = np.flatnonzero(rows)
    items = np.ndarray((len(pkts) - width + 1,), f"V{width}", pkts, 0, (1,))
    block = items[off[ri]].tobytes()
    new_off = np.empty_like(off)
    new_off[ri] = np.arange(len(ri), dtype=np.int64) * width
    cap[ri] = np.minimum(cap[ri], width)
    oi = np.flatnonzero(~rows)
    mv = memoryview(pkts)
    rest = [mv[a : a + c] for a, c in zip(off[oi].tolist(), cap[oi].tolist(), strict=True)]
    new_off[oi] = len(block) + np.cumsum(cap[oi]) - cap[oi]
    m["off"] = new_off
    m["caplen"] = cap
    return b"".join([block, *rest]), m.tobytes()


class Copies:
    """The same packet captured again within a few milliseconds: drop the copies.

    `tcpdump -i any` on a host with bridges (Docker, Kubernetes) records one packet
    on every port it crosses, and a pcapng of several interfaces does the same. The
    copies would look like retransmissions (a re-sent SYN-ACK reads as a full accept
    queue). A copy is byte-identical but for the TTL (and the IPv4 header checksum),
    microseconds apart; a real retransmission comes 200 ms or more later.
    """

    WINDOW_US = 5_000
    PRUNE_US = 100_000

    def __init__(self) -> None:
        self._last: dict[int, int] = {}
        self._prune_at = 0

    def seen(self, rec: Record, stats: DecodeStats) -> bool:
        raw = rec.raw
        # Leave out what forwarding changes: IPv4 TTL and checksum, IPv6 hop limit.
        v4 = raw[0] >> 4 == 4
        key = hash((raw[:8], raw[9:10], raw[12:]) if v4 else (raw[:7], raw[8:]))
        ts = rec.ts
        last = self._last.get(key)
        self._last[key] = ts
        if ts >= self._prune_at:
            horizon = ts - self.WINDOW_US
            self._last = {k: t for k, t in self._last.items() if t >= horizon}
            self._prune_at = ts + self.PRUNE_US
        if last is not None and 0 <= ts - last <= self.WINDOW_US:
            stats.copies += 1
            return True
        return False


def _ts(rec: Record) -> int:
    return rec.ts


def _holds_no_packets(path: str) -> bool:
    """True when a file libpcap opened has no packet at all (not just none past the filter)."""
    try:
        hdr, _ = pcapy.open_offline(path).next()
    except pcapy.PcapError:
        return False
    return hdr is None


class _Prefixed:
    """A read-only stream that first returns bytes already read (the sniffed magic)."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                out, self._head = self._head + self._stream.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            if len(out) < n:
                out += self._stream.read(n - len(out))
            return out
        return self._stream.read(n)

    def close(self) -> None:
        self._stream.close()


def _first_ts_of_file(path: str) -> int:
    with open(path, "rb") as f:
        return _peek_ts(f, b"", path, rewind=False)


def _peek_ts(stream: BinaryIO, head: bytes, path: str, rewind: bool = True) -> int:
    """First packet's timestamp, for ordering rotated files; 0 when unknown."""
    if not rewind:
        try:
            for pkt in StreamReader(stream, head):
                return pkt.ts
        except CaptureFormatError:
            return 0
        return 0
    # A gzip stream cannot be rewound cheaply: reopen it to peek.
    if path == "-":
        return 0
    try:
        with gzip.open(path, "rb") as g:
            for pkt in StreamReader(g):  # type: ignore[arg-type]
                return pkt.ts
    except (CaptureFormatError, OSError, EOFError, zlib.error):
        return 0
    return 0


def _pcapng_interfaces(path: str) -> list[Interface]:
    """The interfaces declared before the first packet (libpcap can read 1, not more)."""
    with open(path, "rb") as f:
        reader = StreamReader(f)
        try:
            for _ in reader:
                break
        except CaptureFormatError:
            pass
        return list(reader.interfaces)
