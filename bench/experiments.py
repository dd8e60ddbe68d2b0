"""Feasibility experiments behind the suggestions in bench/README.md (no rstrace changes).

  python3 bench/experiments.py [--capture bench/out/big.pcap]

overlap   does pcapy's next_batch release the GIL? A reader thread runs the libpcap
          loop while the main thread spins in Python; if the spin count barely drops
          and the wall time is ~max(read, spin), reading can overlap decoding.
fastpath  the cost of the Python loop over every TCP packet (zeek-json path) for:
          nothing, slicing whole frames (what the reader does now), slicing headers
          only, and a minimal per-connection aggregation (4-tuple bytes as the key,
          packets/bytes/last time counters): a sketch of a fast path for
          established-state packets.
"""

from __future__ import annotations

import argparse
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pcapy

from rstrace.sources.bpf import all_tcp_filter, control_filter

BENCH = Path(__file__).resolve().parent
_META = struct.Struct("=IIII")


def read_all(path: str, control: bool) -> int:
    h = pcapy.open_offline(path)
    lt = h.datalink()
    h.setfilter(control_filter(lt) if control else all_tcp_filter(lt))
    n = 0
    while True:
        _pkts, meta = h.next_batch(4096)
        if not meta:
            return n
        n += len(meta) // _META.size


def spin(seconds: float) -> int:
    x = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        x += 1
    return x


def overlap(path: str) -> None:
    t0 = time.perf_counter()
    read_all(path, control=True)
    read_s = time.perf_counter() - t0
    spin_s = max(0.3, read_s * 1.2)
    alone = spin(spin_s)
    th = threading.Thread(target=read_all, args=(path, True))
    t0 = time.perf_counter()
    th.start()
    together = spin(spin_s)
    th.join()
    both_s = time.perf_counter() - t0
    print(
        f"overlap: libpcap read {read_s:.3f} s alone; Python spin {spin_s:.3f} s: "
        f"{alone} iterations alone, {together} with the reader thread "
        f"({together / alone * 100:.0f} %); both together {both_s:.3f} s "
        f"(serial would be {read_s + spin_s:.3f} s)"
    )


def fastpath(path: str) -> None:
    for kind in ("none", "slice-frame", "slice-headers", "aggregate"):
        dt, n = min(_fastpath_once(path, kind) for _ in range(3))
        print(f"fastpath {kind:14s} {dt:.3f} s for {n} packets ({dt / n * 1e6:.2f} us/packet)")


def _fastpath_once(path: str, kind: str) -> tuple[float, int]:
    h = pcapy.open_offline(path)
    h.setfilter(all_tcp_filter(h.datalink()))
    conns: dict[bytes, list[int]] = {}
    n = 0
    t0 = time.perf_counter()
    while True:
        pk, meta = h.next_batch(4096)
        if not meta:
            break
        n += len(meta) // _META.size
        if kind == "slice-frame":
            for _s, _u, off, cap in _META.iter_unpack(meta):
                pk[off : off + cap]
        elif kind == "slice-headers":
            for _s, _u, off, _cap in _META.iter_unpack(meta):
                pk[off : off + 134]
        elif kind == "aggregate":
            for sec, _u, off, cap in _META.iter_unpack(meta):
                # IPv4 without options: addresses + ports; IPv6: TCP after the fixed header.
                v4 = pk[off + 12] == 0x08
                key = pk[off + 26 : off + 38] if v4 else pk[off + 22 : off + 58]
                c = conns.get(key)
                if c is None:
                    conns[key] = c = [0, 0, 0]
                c[0] += 1
                c[1] += cap
                c[2] = sec
    return time.perf_counter() - t0, n


def control_sketch(path: str) -> tuple[float, int]:
    """Lower bound for the findings path in Python: per control packet, key + flags +
    seq/ack with one unpack, OR the flags into a per-connection record."""
    seqack = struct.Struct("!IIxB")
    h = pcapy.open_offline(path)
    h.setfilter(control_filter(h.datalink()))
    conns: dict[bytes, list[int]] = {}
    n = 0
    t0 = time.perf_counter()
    while True:
        pk, meta = h.next_batch(4096)
        if not meta:
            break
        n += len(meta) // _META.size
        for sec, usec, off, _cap in _META.iter_unpack(meta):
            v4 = pk[off + 12] == 0x08
            key = pk[off + 26 : off + 38] if v4 else pk[off + 22 : off + 58]
            seq, ack, flags = seqack.unpack_from(pk, off + (38 if v4 else 58))
            c = conns.get(key)
            if c is None:
                conns[key] = c = [sec * 1_000_000 + usec, 0, seq, ack]
            c[1] |= flags
    return time.perf_counter() - t0, n


def _timed(fn: Callable[..., object], *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--capture", default=str(BENCH / "out" / "big.pcap"))
    a = ap.parse_args()
    with open(a.capture, "rb") as f:
        while f.read(8 << 20):
            pass
    overlap(a.capture)
    # Best of 3: the least disturbed run on a shared machine.
    read_s = min(_timed(read_all, a.capture, True) for _ in range(3))
    sketch_s, n = min(control_sketch(a.capture) for _ in range(3))
    print(
        f"control: libpcap alone {read_s:.3f} s; sketch {sketch_s:.3f} s for {n} control "
        f"packets: +{sketch_s - read_s:.3f} s = {(sketch_s - read_s) / n * 1e6:.2f} us/packet"
    )
    fastpath(a.capture)


if __name__ == "__main__":
    main()
