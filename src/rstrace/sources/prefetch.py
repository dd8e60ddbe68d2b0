"""libpcap reading in a forked child, for the vectorized findings path.

Why: pcapy's next_batch holds the GIL, so no thread can overlap it; but the
parent has ~0.1 s of its own work before it needs packets (importing numpy,
setting up). A child process started first reads the files with the same BPF
filter and streams the batches through a pipe, so that reading and the
parent's start-up and decoding run on two cores at once.

No numpy here: this module is imported before numpy, so that the import
overlaps the child's reading.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pcapy

from rstrace.sources.bpf import control_filter
from rstrace.sources.capfile import CaptureReader, _pcapng_interfaces
from rstrace.sources.decode import DLT_LINUX_SLL, DLT_LINUX_SLL2

_HDR = struct.Struct("=qq")
_EOF = -1
_ERR = -2
F_SETPIPE_SZ = 1031  # linux/fcntl.h


class PrefetchError(Exception):
    """libpcap failed in the child (e.g. a truncated file): the reference salvages."""


@dataclass
class FileEntry:
    path: str
    display: str
    linktype: int
    iface: str | None
    filter: str


def prepare(paths: list[str]) -> list[FileEntry] | None:
    """The files in reading order if libpcap can read them all (pcap, or pcapng with
    one interface; not gzip, not stdin) and the filter compiles; else None.
    Raises CaptureError as the reference reader would for a file it cannot open."""
    if "-" in paths:
        return None  # stdin cannot be read twice
    reader = CaptureReader(paths)
    opened = [reader._open(p) for p in paths]
    if any(o.stream is not None for o in opened):
        for o in opened:
            if o.stream is not None:
                o.stream.close()
        return None  # gzip: the stream reader's business
    opened.sort(key=lambda o: o.first_ts)
    out = []
    for item in opened:
        iface = None
        if item.kind == "pcapng":
            idbs = _pcapng_interfaces(item.path)
            if len(idbs) != 1:
                return None
            iface = idbs[0].name
        try:
            handle = pcapy.open_offline(item.path)
        except pcapy.PcapError:
            return None  # the reference reports it, in its order
        lt = handle.datalink()
        reader._check_linktype(lt, item.display)
        if lt in (DLT_LINUX_SLL, DLT_LINUX_SLL2):
            return None  # `-i any`: copies of a packet to drop (capfile.Copies)
        filt = control_filter(lt)
        try:
            handle.setfilter(filt)
        except pcapy.PcapError:
            return None
        out.append(FileEntry(item.path, item.display, lt, iface, filt))
    return out


class Prefetch:
    """A child process reading the files; batches come out per file, in order."""

    def __init__(self, files: list[FileEntry], read_bs: int) -> None:
        r, w = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
        pid = os.fork()
        if pid == 0:  # the child: read, write, exit without running the parent's cleanup
            code = 1
            try:
                os.close(r)
                _child(files, read_bs, w)
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        self.pid: int | None = pid
        self.stream = os.fdopen(r, "rb")

    def file_batches(self) -> Iterator[tuple[bytes, bytes]]:
        """(packet bytes, meta) of the next file until its end."""
        while True:
            a, b = _HDR.unpack(self._read(_HDR.size))
            if a == _EOF:
                return
            if a == _ERR:
                raise PrefetchError(self._read(b).decode(errors="replace"))
            yield self._read(a), self._read(b)

    def _read(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise PrefetchError("reader process ended early")
        return data

    def close(self) -> None:
        self.stream.close()
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # done already, or no longer needed
            os.waitpid(self.pid, 0)
            self.pid = None


def _child(files: list[FileEntry], read_bs: int, fd: int) -> None:
    out = os.fdopen(fd, "wb", buffering=1 << 20)
    for f in files:
        handle = pcapy.open_offline(f.path)
        handle.setfilter(f.filter)
        while True:
            try:
                pkts, meta = handle.next_batch(read_bs)
            except pcapy.PcapError as e:
                msg = str(e).encode()
                out.write(_HDR.pack(_ERR, len(msg)) + msg)
                out.flush()
                return
            if not meta:
                out.write(_HDR.pack(_EOF, 0))
                break
            out.write(_HDR.pack(len(pkts), len(meta)))
            out.write(pkts)
            out.write(meta)
            out.flush()  # the parent decodes this batch while we read the next
    out.flush()
