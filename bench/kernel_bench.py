"""What the kernel source costs: syscall tracing on the host, and raw pages vs text pipe.

    sudo .venv/bin/python bench/kernel_bench.py [--rounds 7] [--connects 3000]

1. Host-wide cost of ``KernelTrace(syscalls=True)``: two workloads timed in rounds,
   modes interleaved (off / kernel events only / kernel events + syscalls):
   * ``connect``: N connect() calls to a closed loopback port (each refused);
   * ``getppid``: M getppid() calls from Python, a syscall none of our events trace:
     with any syscall tracepoint on, every task enters the kernel through the slow path;
   * ``dd``: ``dd bs=1 count=M``, 2M read()/write() calls from C (another process):
     the same slow path without Python's per-call overhead diluting it.
   CPU time (user+sys) of the loop, so other tasks' load on this shared machine
   moves it less than wall time; ratio to "off" per round; median, min, max.
2. Reader: the same events go to two instances at once, ours (binary
   ``trace_pipe_raw``, decoded to KernelEvents) and a text one (``trace_pipe``, lines
   split into fields with a regex); CPU time (user+sys, the kernel's printf
   included) per event of each.

Loopback only, bounded counts; instances are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import socket
import statistics
import subprocess
import time

from rstrace.sources import tracefs
from rstrace.sources.kernel import KernelTrace


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_loop(n: int, port: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        s = socket.socket()
        with contextlib.suppress(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
        s.close()
    return time.process_time() - t0


def getppid_loop(n: int) -> float:
    f = os.getppid
    t0 = time.process_time()
    for _ in range(n):
        f()
    return time.process_time() - t0


def dd_loop(n: int) -> float:
    """CPU time of dd copying n single bytes: 2n read()/write() syscalls from C."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={n}", "status=none"],
        check=True,
        timeout=120,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def syscall_cost(rounds: int, connects: int, calls: int) -> dict[str, dict[str, float]]:
    port = _closed_port()
    times: dict[str, dict[str, list[float]]] = {"connect": {}, "getppid": {}, "dd": {}}
    lost = 0
    for _ in range(rounds):
        for mode in ("off", "events", "syscalls"):
            kt = None if mode == "off" else KernelTrace(syscalls=mode == "syscalls")
            try:
                times["connect"].setdefault(mode, []).append(connect_loop(connects, port))
                if kt:
                    kt.poll()  # drain between workloads so nothing is lost
                times["getppid"].setdefault(mode, []).append(getppid_loop(calls))
                times["dd"].setdefault(mode, []).append(dd_loop(calls))
                if kt:
                    kt.poll()
                    lost += kt.lost()
            finally:
                if kt:
                    kt.close()
    out: dict[str, dict[str, float]] = {}
    for work, modes in times.items():
        for mode in ("events", "syscalls"):
            ratios = [m / o for m, o in zip(modes[mode], modes["off"], strict=True)]
            out[f"{work}/{mode}"] = {
                "median": statistics.median(ratios),
                "min": min(ratios),
                "max": max(ratios),
                "off_us_per_call": 1e6 * statistics.median(modes["off"]) / (
                    connects if work == "connect" else calls * (2 if work == "dd" else 1)),
            }  # fmt: skip
    out["lost"] = {"events": float(lost)}
    return out


_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+\S+\s+"
    r"(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s(?P<body>.*)$"
)
_KV = re.compile(r"(\w+)=(\S+)")


def _read_text(fd: int) -> int:
    """Read and split a text trace_pipe until empty; number of events parsed."""
    buf, n = b"", 0
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            m = _LINE.match(line.decode(errors="replace"))
            if m:
                dict(_KV.findall(m["body"]))
                n += 1
    return n


def reader_cost(connects: int, rounds: int) -> dict[str, float]:
    port = _closed_port()
    raw_cpu = text_cpu = 0.0
    raw_n = text_n = 0
    with KernelTrace() as kt:
        text = tracefs.Instance(kt.root, f"rstrace-text-{os.getpid()}")
        try:
            text.write("trace_clock", "mono")
            text.write("buffer_size_kb", "8192")
            for dirs in kt.plan.paths.values():
                for d in dirs:
                    if d in kt.plan.filters:
                        text.write(f"events/{d}/filter", kt.plan.filters[d])
                    text.write(f"events/{d}/enable", "1")
            fd = os.open(text.path / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
            try:
                kt.poll()
                _read_text(fd)
                for _ in range(rounds):
                    connect_loop(connects, port)
                    c0 = _cpu()
                    raw_n += len(kt.poll())
                    c1 = _cpu()
                    text_n += _read_text(fd)
                    c2 = _cpu()
                    raw_cpu += c1 - c0
                    text_cpu += c2 - c1
            finally:
                os.close(fd)
            lost_text = text.lost()
        finally:
            text.close()
        lost_raw = kt.lost()
    return {
        "raw_events": raw_n,
        "text_events": text_n,
        "raw_us_per_event": 1e6 * raw_cpu / max(raw_n, 1),
        "text_us_per_event": 1e6 * text_cpu / max(text_n, 1),
        "lost_raw": lost_raw,
        "lost_text": lost_text,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--connects", type=int, default=3000)
    ap.add_argument("--calls", type=int, default=300_000)
    args = ap.parse_args()
    res = syscall_cost(args.rounds, args.connects, args.calls)
    print(f"syscall tracing cost, {args.rounds} rounds (CPU-time ratio to tracing off):")
    for key, v in res.items():
        if key == "lost":
            print(f"  events lost: {int(v['events'])}")
            continue
        print(
            f"  {key:18s} median x{v['median']:.2f} (min {v['min']:.2f}, max {v['max']:.2f});"
            f" off: {v['off_us_per_call']:.2f} us/call"
        )
    rd = reader_cost(args.connects, 3)
    print(
        f"reader: raw pages {rd['raw_us_per_event']:.1f} us CPU/event ({rd['raw_events']} events,"
        f" lost {rd['lost_raw']}); text trace_pipe + regex {rd['text_us_per_event']:.1f} us/event"
        f" ({rd['text_events']} events, lost {rd['lost_text']})"
    )


if __name__ == "__main__":
    main()
