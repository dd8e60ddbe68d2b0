"""Live capture on every interface at once: one libpcap handle per interface.

libpcap's `any` device loses the interface (Linux cooked v1 frames carry none, and
the pcapy-ng wheel's libpcap 1.9.1 has no SLL2), so each interface gets its own
handle, loopback included, each with a BPF filter compiled for its own link type.
The handles are non-blocking and polled together with the netlink socket that
reports links coming up, going down and going away, so a veth created while we
run is captured too, and one deleted is dropped without an error.

pcapy-ng has no pcap_set_immediate_mode(): libpcap 1.9.1 uses TPACKET_V3, whose
ring blocks reach us when full or when the block timeout retires them, so a
short timeout (_BLOCK_TIMEOUT_MS) bounds the delay. An idle handle costs nothing:
the kernel only wakes poll() when a block holding packets is retired.

The handles and the netlink socket live in the network namespace of the thread
that opens them (enter another one with pyroute2's netns.setns first).
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pcapy

from rstrace.sources.decode import ETH_IPV4, ETH_IPV6, LINK_NAMES, ip_offset

BUFFER_SIZE = 16 << 20
"""libpcap ring per handle. On TPACKET_V3 libpcap 1.9.1 cuts it into 256 KB blocks
whatever the snaplen, and retires a block every _BLOCK_TIMEOUT_MS even when nearly empty:
the default 2 MB (8 blocks) overflows after 80 ms without a read at any packet rate;
16 MB (64 blocks) gives 0.64 s."""
_BLOCK_TIMEOUT_MS = 10
"""libpcap read timeout = TPACKET_V3 block retire timeout: the longest a packet waits."""
_BATCH = 1024
"""Packets per next_batch() call."""
_MAX_BATCHES = 16
"""Batches read from one handle per poll(), so a busy interface cannot starve the others."""

# pcap_activate() results (pcap/pcap.h); pcapy-ng returns the code, not the message.
_PCAP_ERRORS = {
    -1: "generic libpcap error",
    -4: "interface does not support this capture mode",
    -5: "no such interface",
    -7: "interface does not support capturing",
    -8: "permission denied",
    -9: "interface is not up",
    -11: "cannot set timestamp precision",
}
_PCAP_ERROR_PERM_DENIED = -8
_META = struct.Struct("=IIII")  # next_batch: sec, usec, offset, caplen per frame
_U16 = struct.Struct("!H")

_IFF_UP = 0x1
_RTMGRP_LINK = 0x1
_RTM_NEWLINK, _RTM_DELLINK = 16, 17

PERMISSION_MESSAGE = (
    "capturing packets needs root or CAP_NET_RAW (libpcap: permission denied); "
    "counters and offline analysis (rstrace analyze) still work"
)


class LiveCaptureError(Exception):
    """Live capture cannot run at all (not one interface can be captured)."""


class CapturePermissionError(LiveCaptureError):
    """Opening a capture handle was refused: not root and no CAP_NET_RAW."""


class LivePacket(NamedTuple):
    """One captured frame and where it was seen."""

    iface: str
    linktype: int
    """libpcap DLT_* of the handle (decode_frame() takes it)."""
    ts: int
    """Capture time, microseconds since the epoch."""
    data: bytes
    """The frame as captured, link-layer header included."""
    wire_len: int
    """The frame's length on the wire (>= len(data))."""


@dataclass(slots=True)
class IfaceStats:
    """libpcap's counters for one interface (summed over every handle it had)."""

    received: int = 0
    """Packets the kernel handed to the capture socket (ps_recv; loopback counts both
    directions there while libpcap keeps one copy, so this can exceed captured)."""
    dropped: int = 0
    """Dropped by the kernel: the capture buffer was full (ps_drop). On loopback both
    copies of a packet count, as in received. (A kernel-side `inbound` filter would
    keep the outgoing copy out of the ring, but libpcap 1.9.1 also runs a new filter
    in userland over the ring's first block, where `inbound` cannot be evaluated, so
    the first packets would be lost.)"""
    if_dropped: int = 0
    """Dropped by the interface or its driver (ps_ifdrop)."""
    captured: int = 0
    """Packets this capture delivered through poll()."""

    def add(self, other: IfaceStats) -> None:
        self.received += other.received
        self.dropped += other.dropped
        self.if_dropped += other.if_dropped
        self.captured += other.captured


@dataclass(slots=True)
class _Handle:
    pcap: Any
    name: str
    index: int
    linktype: int
    fd: int
    captured: int = 0

    def stats(self) -> IfaceStats:
        try:
            recv, drop, ifdrop = self.pcap.stats()
        except (pcapy.PcapError, ValueError):  # ValueError: closed
            recv = drop = ifdrop = 0
        return IfaceStats(recv, drop, ifdrop, self.captured)


class _LinkMonitor:
    """The RTNLGRP_LINK netlink group, read without blocking.

    A raw netlink socket parsed by pyroute2's rtnetlink marshal: pyroute2's IPRoute
    reads ahead into its own queue, so poll() on its descriptor can say "nothing"
    while link events wait in that queue.
    """

    def __init__(self) -> None:
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl

        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE
        )
        self.sock.bind((0, _RTMGRP_LINK))
        self._marshal = MarshalRtnl()

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[tuple[bool, int, str, bool]] | None:
        """(exists, ifindex, name, IFF_* flags) per link event; None when events were lost."""
        out = []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # the socket overflowed: resync from a dump
                    return None
                raise
            for msg in self._marshal.parse(data):
                event = msg.get("header", {}).get("type")
                if event not in (_RTM_NEWLINK, _RTM_DELLINK):
                    continue
                name = msg.get_attr("IFLA_IFNAME")
                if name:
                    out.append((event == _RTM_NEWLINK, msg["index"], name, msg["flags"]))

    def close(self) -> None:
        self.sock.close()


def current_links() -> list[tuple[int, str, int]]:
    """(ifindex, name, IFF_* flags) of every link in this thread's network namespace."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        links = ipr.get_links()
    return [(ln["index"], ln.get_attr("IFLA_IFNAME"), ln["flags"]) for ln in links]


def wire_length(linktype: int, frame: bytes) -> int:
    """Frame length on the wire: next_batch() gives only the captured length, and
    the IP header's own length says more when the snapshot cut the packet."""
    where = ip_offset(linktype, frame)
    if where is None:
        return len(frame)
    off, etype = where
    if etype == ETH_IPV4 and len(frame) >= off + 4:
        return max(len(frame), off + _U16.unpack_from(frame, off + 2)[0])
    if etype == ETH_IPV6 and len(frame) >= off + 6:
        return max(len(frame), off + 40 + _U16.unpack_from(frame, off + 4)[0])
    return len(frame)


class LiveCapture:
    """Capture on every interface (or the named ones), following links as they come and go.

    `bpf(linktype)` gives the filter text for a handle of that link type ("" for
    none). An interface that cannot be opened or filtered is skipped with a warning
    (in `warnings`); being refused for lack of privilege raises
    CapturePermissionError. Use as a context manager, then call poll() in a loop.
    `buffer_size` is each handle's kernel ring in bytes (default BUFFER_SIZE; None:
    libpcap's 2 MB), what absorbs a burst while Python is busy.
    """

    def __init__(
        self,
        interfaces: Sequence[str] | None = None,
        *,
        bpf: Callable[[int], str],
        snaplen: int = 262144,
        buffer_size: int | None = BUFFER_SIZE,
    ) -> None:
        self._wanted = None if interfaces is None else set(interfaces)
        self._bpf = bpf
        self._snaplen = snaplen
        self._buffer_size = buffer_size
        self._handles: dict[int, _Handle] = {}  # by ifindex
        self._by_fd: dict[int, _Handle] = {}
        self._closed_stats: dict[str, IfaceStats] = {}
        self._linktypes: dict[str, int] = {}
        self._poller = select.poll()
        self._links: _LinkMonitor | None = None
        self._notices: list[str] = []
        self._down: set[str] = set()
        """Wanted links that exist but are down, as of the last dump."""
        self._names: set[str] = set()
        """Every link name of the last dump."""
        self.missing: list[str] = []
        """Named interfaces that did not exist when the capture opened."""
        self.warnings: list[str] = []
        """Every warning so far (interfaces that could not be captured), oldest first."""

    # -- life cycle ----------------------------------------------------------------

    def __enter__(self) -> LiveCapture:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Subscribe to link events, then open a handle on every wanted link that is up."""
        # Subscribe before the dump, so no link that appears in between is missed.
        self._links = _LinkMonitor()
        self._poller.register(self._links.fileno(), select.POLLIN)
        try:
            self._sync([])
        except BaseException:
            self.close()
            raise
        if self._wanted is not None:
            for name in sorted(self._down):
                self._notices.append(f"{name} is down: captured when it comes up")
            self.missing = sorted(self._wanted - self._names)
            for name in self.missing:
                self._warn(f"{name}: no such interface (captured if it appears)")

    def close(self) -> None:
        """Close every handle (keeping its final counters for stats()) and the netlink socket."""
        for h in list(self._handles.values()):
            self._close(h, None, None)
        if self._links is not None:
            self._links.close()
            self._links = None

    # -- reading ---------------------------------------------------------------------

    @property
    def interfaces(self) -> list[str]:
        """Names of the interfaces captured now."""
        return sorted(h.name for h in self._handles.values())

    def linktype(self, name: str) -> int | None:
        """The libpcap DLT_* of the interface's (last) handle; None if never captured."""
        return self._linktypes.get(name)

    def poll(self, timeout: float) -> list[LivePacket]:
        """Wait up to `timeout` seconds for packets; return those ready, in time order.

        Link events seen meanwhile open and close handles (see take_notices()).
        """
        out: list[LivePacket] = []
        links_fd = self._links.fileno() if self._links else -1
        for fd, ev in self._poller.poll(max(timeout, 0.0) * 1000):
            if fd == links_fd:
                self._on_link_events(out)
                continue
            h = self._by_fd.get(fd)
            if h is None:
                continue
            got = self._read(h, out)
            if got == 0 and ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                self._failed(h, out, "the capture socket reported an error")
        if len({p.iface for p in out}) > 1:
            out.sort(key=lambda p: p.ts)
        return out

    def drain(self) -> list[LivePacket]:
        """What is still in the kernel's ring blocks: wait for them to retire, read all."""
        time.sleep(2 * _BLOCK_TIMEOUT_MS / 1000)
        out: list[LivePacket] = []
        for h in list(self._handles.values()):
            self._read(h, out)
        out.sort(key=lambda p: p.ts)
        return out

    def stats(self) -> dict[str, IfaceStats]:
        """libpcap's counters per interface name, for every interface captured so far."""
        out: dict[str, IfaceStats] = {}
        for name, st in self._closed_stats.items():
            out[name] = IfaceStats()
            out[name].add(st)
        for h in self._handles.values():
            out.setdefault(h.name, IfaceStats()).add(h.stats())
        return out

    def take_notices(self) -> list[str]:
        """Interfaces opened and closed, and warnings, since the last call (for stderr)."""
        notes, self._notices = self._notices, []
        return notes

    # -- internals --------------------------------------------------------------------

    def _wants(self, name: str) -> bool:
        return self._wanted is None or name in self._wanted

    def _sync(self, out: list[LivePacket]) -> None:
        """Bring the handles in line with a fresh dump of the links."""
        links = current_links()
        present = {idx for idx, _name, _up in links}
        for idx in list(self._handles):
            if idx not in present:
                self._close(self._handles[idx], out, "removed")
        self._names = {name for _idx, name, _up in links}
        self._down = {n for _i, n, fl in links if not fl & _IFF_UP and self._wants(n)}
        for idx, name, flags in links:
            self._link_changed(True, idx, name, flags, out)

    def _on_link_events(self, out: list[LivePacket]) -> None:
        assert self._links is not None
        events = self._links.read()
        if events is None:
            self._sync(out)
            return
        for exists, idx, name, flags in events:
            self._link_changed(exists, idx, name, flags, out)

    def _link_changed(self, exists: bool, idx: int, name: str, flags: int,
                      out: list[LivePacket]) -> None:  # fmt: skip
        up = bool(flags & _IFF_UP)
        h = self._handles.get(idx)
        if h is not None:
            if not exists:
                self._close(h, out, "removed")
            elif not up:
                self._close(h, out, "went down")
            elif h.name != name:
                self._close(h, out, f"renamed to {name}")
                h = None
        if h is None and exists and up and self._wants(name):
            self._open(idx, name)

    def _open(self, idx: int, name: str) -> None:
        p = pcapy.create(name)
        p.set_snaplen(self._snaplen)
        p.set_timeout(_BLOCK_TIMEOUT_MS)
        if self._buffer_size:
            p.set_buffer_size(self._buffer_size)
        rc = p.activate()
        if rc < 0:
            p.close()
            if rc == _PCAP_ERROR_PERM_DENIED:
                raise CapturePermissionError(PERMISSION_MESSAGE)
            why = _PCAP_ERRORS.get(rc, f"libpcap error {rc}")
            self._warn(f"{name}: cannot capture: {why}")
            return
        linktype = p.datalink()
        text = self._bpf(linktype)
        if text:
            try:
                p.setfilter(text)
            except pcapy.PcapError as e:
                p.close()
                lt = LINK_NAMES.get(linktype, str(linktype))
                self._warn(f"{name}: not captured: the filter does not apply to link type {lt} "
                           f"({e})")  # fmt: skip
                return
        p.setnonblock(1)
        fd = p.getfd()
        h = _Handle(p, name, idx, linktype, fd)
        self._handles[idx] = h
        self._by_fd[fd] = h
        self._linktypes[name] = linktype
        self._poller.register(fd, select.POLLIN)
        lt = LINK_NAMES.get(linktype, f"DLT {linktype}")
        self._notices.append(f"listening on {name}, link-type {lt}")

    def _failed(self, h: _Handle, out: list[LivePacket] | None, why: str) -> None:
        """A handle's socket failed: the link went down or away. Read the link events
        first, so the notice says which; close the handle if they did not."""
        if self._handles.get(h.index) is not h:
            return  # being closed: its drain hit the error
        if self._links is not None:
            self._on_link_events(out if out is not None else [])
        if self._handles.get(h.index) is h:
            self._close(h, None, why)

    def _close(self, h: _Handle, out: list[LivePacket] | None, why: str | None) -> None:
        if self._handles.get(h.index) is not h:
            return  # closed already (a link event and a socket error for the same change)
        # Forget it first: a read error while draining must not come back here.
        del self._handles[h.index]
        del self._by_fd[h.fd]
        self._poller.unregister(h.fd)
        if out is not None:
            self._read(h, out)  # what the ring still holds
        self._closed_stats.setdefault(h.name, IfaceStats()).add(h.stats())
        h.pcap.close()
        if why:
            self._notices.append(f"stopped listening on {h.name}: {why}")

    def _read(self, h: _Handle, out: list[LivePacket]) -> int:
        got = 0
        name, linktype = h.name, h.linktype
        for _ in range(_MAX_BATCHES):
            try:
                pkts, meta = h.pcap.next_batch(_BATCH)
            except pcapy.PcapError as e:
                self._failed(h, None, f"capture ended: {e}")
                break
            if not meta:
                break
            for sec, usec, off, caplen in _META.iter_unpack(meta):
                frame = pkts[off : off + caplen]
                out.append(LivePacket(name, linktype, sec * 1_000_000 + usec, frame,
                                      wire_length(linktype, frame)))  # fmt: skip
            n = len(meta) // _META.size
            got += n
            h.captured += n
            if n < _BATCH:
                break
        return got

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        self._notices.append(f"warning: {text}")
