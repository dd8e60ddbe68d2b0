"""`rstrace capture`: live RSTs (and, on request, SYNs and SYN-ACKs) on every interface.

LiveCapture -> decode_frame() -> a tcpdump `-n -v` line with the interface name,
a JSON line, and/or a pcapng file with one named interface block per interface.
Ends on -c/--duration, Ctrl-C or SIGTERM, and reports libpcap's counters per
interface on stderr as tcpdump does.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from rstrace.model import ACK, RST, SYN, Segment
from rstrace.render.tcpdump import TcpdumpPrinter
from rstrace.sources.bpf import rst_filter, rst_syn_filter
from rstrace.sources.decode import DecodeStats, decode_frame
from rstrace.sources.live import IfaceStats, LiveCapture, LiveCaptureError, LivePacket
from rstrace.sources.pcapng_writer import PcapngWriter

_POLL_S = 0.1
"""How long one poll() waits: the delay before a signal or --duration is noticed."""
_FLAG_CHARS = "FSRP.UEW"  # tcpdump's letters for TCP flag bits 0..7 (ACK is ".")


@dataclass
class CaptureOptions:
    interfaces: list[str] | None = None
    """Only these interfaces (None: all, and those that appear)."""
    handshake: bool = False
    """Also SYNs and SYN-ACKs."""
    count: int | None = None
    duration: float | None = None
    write: BinaryIO | None = None
    """pcapng output."""
    lines: bool = True
    """Print a tcpdump line per packet."""
    as_json: bool = False
    """JSON lines instead of tcpdump lines."""


@dataclass
class CaptureResult:
    stats: dict[str, IfaceStats]
    kept: dict[str, int] = field(default_factory=dict)
    """Packets printed/written per interface."""
    warnings: list[str] = field(default_factory=list)
    signal: str | None = None
    """The signal that ended the capture, if one did."""


def wanted(seg: Segment, handshake: bool) -> bool:
    """A RST, or with --handshake a SYN or SYN-ACK (the BPF filter also passes what it
    cannot classify: IPv6 behind extension headers, VLAN frames; decided here)."""
    return bool(seg.flags & RST or (handshake and seg.flags & SYN))


def flag_letters(flags: int) -> str:
    return "".join(ch for bit, ch in enumerate(_FLAG_CHARS) if flags & (1 << bit)) or "none"


def text_line(printer: TcpdumpPrinter, pkt: LivePacket, seg: Segment) -> str:
    """tcpdump's `-n -v` text with the interface after the timestamp (tcpdump 4.99 `-i any`)."""
    ip_len = pkt.wire_len - (len(pkt.data) - len(seg.raw))
    line = printer.format(pkt.ts, seg.raw, ip_len)
    ts, _, rest = line.partition(" ")
    return f"{ts} {pkt.iface:<5} {rest}"


def json_line(printer: TcpdumpPrinter, pkt: LivePacket, seg: Segment) -> str:
    ip_len = pkt.wire_len - (len(pkt.data) - len(seg.raw))
    return json.dumps({
        "ts": round(pkt.ts / 1e6, 6),
        "interface": pkt.iface,
        "ip_version": seg.version,
        "src": seg.src,
        "sport": seg.sport,
        "dst": seg.dst,
        "dport": seg.dport,
        "flags": flag_letters(seg.flags),
        "seq": seg.seq,
        "ack": seg.ack if seg.flags & ACK else None,
        "win": seg.win,
        "ttl": seg.ttl,
        "tcpdump": printer.format(pkt.ts, seg.raw, ip_len),
    })  # fmt: skip


@contextmanager
def _stop_on_signals(state: dict[str, str | None]) -> Iterator[None]:
    """SIGINT and SIGTERM set a flag the loop checks (no exception in the middle of a
    write, so the pcapng file and the counters stay whole)."""

    def handler(signum: int, _frame: object) -> None:
        state["signal"] = signal.Signals(signum).name

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_capture(opts: CaptureOptions, out: TextIO, err: TextIO) -> CaptureResult:
    """Capture until -c, --duration, SIGINT or SIGTERM; print and write as asked."""
    bpf = rst_syn_filter if opts.handshake else rst_filter
    printer = TcpdumpPrinter()
    stats = DecodeStats()
    writer = PcapngWriter(opts.write) if opts.write is not None else None
    kept: dict[str, int] = {}
    total = 0
    state: dict[str, str | None] = {"signal": None}
    start_us = int(time.time() * 1e6)
    deadline = None if opts.duration is None else time.monotonic() + opts.duration

    def note(cap: LiveCapture) -> None:
        for text in cap.take_notices():
            err.write(f"rstrace: {text}\n")
        err.flush()

    def handle(batch: list[LivePacket]) -> bool:
        """Print/write a batch; True once -c is reached."""
        nonlocal total
        for pkt in batch:
            rec = decode_frame(pkt.linktype, pkt.data, pkt.ts, pkt.iface, stats)
            if not isinstance(rec, Segment) or not wanted(rec, opts.handshake):
                continue
            if writer is not None:
                writer.packet(writer.interface(pkt.iface, pkt.linktype), pkt.ts, pkt.data,
                              pkt.wire_len)  # fmt: skip
            if opts.as_json:
                out.write(json_line(printer, pkt, rec) + "\n")
            elif opts.lines:
                out.write(text_line(printer, pkt, rec) + "\n")
            kept[pkt.iface] = kept.get(pkt.iface, 0) + 1
            total += 1
            if opts.count is not None and total >= opts.count:
                return True
        return False

    with _stop_on_signals(state), LiveCapture(opts.interfaces, bpf=bpf) as cap:
        if opts.interfaces and len(cap.missing) == len(set(opts.interfaces)):
            raise LiveCaptureError(f"no such interface: {', '.join(cap.missing)}")
        note(cap)
        done = opts.count is not None and opts.count <= 0
        while not done and state["signal"] is None:
            wait = _POLL_S
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            batch = cap.poll(wait)
            if writer is not None:
                # Interfaces get their block when opened, as dumpcap lists them.
                for name in cap.interfaces:
                    writer.interface(name, cap.linktype(name))
            note(cap)
            done = handle(batch)
            out.flush()
            if writer is not None:
                writer.flush()
        if not done:
            handle(cap.drain())
        final = cap.stats()
        if writer is not None:
            end_us = int(time.time() * 1e6)
            for name, st in final.items():
                lt = cap.linktype(name)
                if lt is not None:
                    writer.statistics(writer.interface(name, lt), start_us, end_us,
                                      st.received, st.dropped)  # fmt: skip
            writer.flush()
        out.flush()
        return CaptureResult(final, kept, list(cap.warnings), state["signal"])
