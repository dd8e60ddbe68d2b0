"""Counter samples and the rates between two of them (what `rstrace stats` shows).

A Sample is one reading of the counters (and the conntrack table) with its time;
compare() turns two samples into rows: value, delta, rate, meaning. Renderers in
render/stats.py print the rows; nothing here reads or prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rstrace.sources.counters import COUNTERS, CounterInfo, read_counters
from rstrace.sources.host import ConntrackState, read_conntrack


@dataclass(frozen=True)
class Sample:
    """One reading of a namespace's counters."""

    wall: float
    """Epoch seconds when read (for output)."""
    mono: float
    """time.monotonic() when read (for the interval: the wall clock may jump)."""
    counters: dict[str, int]
    conntrack: ConntrackState | None = None


@dataclass(frozen=True)
class Row:
    """One counter between two samples."""

    key: str
    value: int
    delta: int
    rate: float | None
    """delta per second; None for a gauge (CurrEstab), where a rate means nothing."""
    info: CounterInfo | None

    @property
    def group(self) -> str:
        return self.key.partition(".")[0]

    @property
    def name(self) -> str:
        return self.key.partition(".")[2]


def take_sample(proc_root: Path = Path("/proc")) -> Sample:
    """Read the counters and conntrack state of the caller's namespace now."""
    mono, wall = time.monotonic(), time.time()
    return Sample(wall, mono, read_counters(proc_root), read_conntrack(proc_root))


def compare(prev: Sample, cur: Sample, *, every: bool = False) -> list[Row]:
    """Rows for the failure-related counters (COUNTERS order), or every counter
    in the kernel's order with *every*. Counters this kernel lacks are left out."""
    seconds = max(cur.mono - prev.mono, 1e-9)
    keys = list(cur.counters) if every else [k for k in COUNTERS if k in cur.counters]
    rows: list[Row] = []
    for key in keys:
        value = cur.counters[key]
        delta = value - prev.counters.get(key, 0)  # absent before: a zero ICMP type counter
        info = COUNTERS.get(key)
        rate = None if info is not None and info.gauge else delta / seconds
        rows.append(Row(key, value, delta, rate, info))
    return rows


def conntrack_deltas(prev: Sample, cur: Sample) -> dict[str, int]:
    """Per-statistic change of /proc/net/stat/nf_conntrack between the samples."""
    if prev.conntrack is None or cur.conntrack is None:
        return {}
    before = prev.conntrack.stats
    return {k: v - before.get(k, v) for k, v in cur.conntrack.stats.items()}
