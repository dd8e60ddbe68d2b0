"""Output of `rstrace stats`: text for people, JSON (schema rstrace.stats/1) for scripts.

Pure functions of two samples and the host settings; docs/json-schema.md documents
the JSON.
"""

from __future__ import annotations

import json
import textwrap
import time
from typing import Any

from rstrace.sources.host import CONNTRACK_TROUBLE, ConntrackState
from rstrace.stats import Row, Sample, compare, conntrack_deltas

SCHEMA = "rstrace.stats/1"


def _stamp(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall))


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1f}"


def notes(
    rows: list[Row], sysctls: dict[str, str], cur: Sample, ct_delta: dict[str, int]
) -> list[str]:
    """One-line hints for what moved in this interval (printed after the table)."""
    moved = {r.key: r for r in rows if r.delta > 0}
    out: list[str] = []
    if "Tcp.AttemptFails" in moved:
        r = moved["Tcp.AttemptFails"]
        out.append(
            f"{r.delta} connect()s from this host failed ({_rate(r.rate)}/s): "
            "`rstrace diagnose` names the process and the port"
        )
    if "TcpExt.ListenOverflows" in moved:
        somax = sysctls.get("net.core.somaxconn", "?")
        out.append(
            "a listener's accept queue overflowed: it does not accept() fast enough "
            f"(its backlog is min(listen() backlog, somaxconn={somax}))"
        )
    if "TcpExt.TCPReqQFullDrop" in moved:
        out.append(
            "SYNs dropped on a full SYN queue with SYN cookies off "
            f"(tcp_syncookies={sysctls.get('net.ipv4.tcp_syncookies', '?')})"
        )
    ct = cur.conntrack
    if ct is not None and ct.max and ct.fill >= 0.9:
        out.append(
            f"conntrack table {'full' if ct.full else 'nearly full'} ({ct.count} of {ct.max}): "
            "new connections are dropped before TCP sees them (they time out)"
        )
    lost = {k: v for k, v in ct_delta.items() if k in ("drop", "early_drop", "insert_failed") and v}
    if lost:
        what = ", ".join(f"{k} +{v}" for k, v in lost.items())
        out.append(f"conntrack dropped connections in this interval: {what}")
    return out


def _conntrack_line(ct: ConntrackState | None, missing: str | None, delta: dict[str, int]) -> str:
    if ct is None:
        return f"conntrack  {missing or 'not available'}"
    pct = 100.0 * ct.fill
    line = f"conntrack  {ct.count} of {ct.max} entries ({pct:.1f}%)"
    if ct.stats:
        shown = [k for k in CONNTRACK_TROUBLE if k in ct.stats]
        line += "; " + ", ".join(f"{k} {ct.stats[k]} (+{delta.get(k, 0)})" for k in shown)
    return line


def render_stats_text(
    prev: Sample,
    cur: Sample,
    *,
    sysctls: dict[str, str],
    netns: str | None = None,
    every: bool = False,
    changed: bool = False,
    kernel: bool = False,
    footer: bool = True,
    conntrack_missing: str | None = None,
    columns: int = 120,
) -> str:
    """The counters between two samples as a table grouped by Group, meanings beside
    (wrapped to *columns*)."""
    rows = compare(prev, cur, every=every)
    shown = [r for r in rows if r.delta or not changed]
    seconds = cur.mono - prev.mono
    where = f"namespace {netns}" if netns else "this host's namespace"
    out = [f"rstrace stats: {seconds:.2f} s to {_stamp(cur.wall)}, {where}"]
    width = max([len(r.name) for r in shown] + [20]) + 2
    out.append(f"  {'counter':<{width}}{'value':>12}{'delta':>10}{'/s':>10}  meaning")
    group = None
    for r in shown:
        if r.group != group:
            group = r.group
            out.append(group)
        head = f"  {r.name:<{width}}{r.value:>12}{r.delta:>10}{_rate(r.rate):>10}  "
        text = r.info.meaning if r.info else ""
        if kernel and r.info:
            text += f" [kernel: {r.info.kernel}]"
        lines = textwrap.wrap(text, max(columns - len(head), 30)) or [""]
        out.append((head + lines[0]).rstrip())
        out += [" " * len(head) + ln for ln in lines[1:]]
    if changed and not shown:
        out.append("  (no counter moved)")
    if footer:
        ct_delta = conntrack_deltas(prev, cur)
        out.append(
            "sysctl     "
            + "  ".join(f"{k.rsplit('.', 1)[1]}={v.replace(' ', '-')}" for k, v in sysctls.items())
        )
        out.append(_conntrack_line(cur.conntrack, conntrack_missing, ct_delta))
        out += [f"! {n}" for n in notes(rows, sysctls, cur, ct_delta)]
    return "\n".join(out) + "\n"


def stats_dict(
    prev: Sample,
    cur: Sample,
    *,
    sysctls: dict[str, str],
    netns: str | None = None,
    every: bool = False,
    conntrack_missing: str | None = None,
) -> dict[str, Any]:
    """The rstrace.stats/1 object for one interval."""
    rows = compare(prev, cur, every=every)
    counters: dict[str, Any] = {}
    for r in rows:
        entry: dict[str, Any] = {
            "value": r.value,
            "delta": r.delta,
            "rate": None if r.rate is None else round(r.rate, 4),
        }
        if r.info:
            entry.update(meaning=r.info.meaning, kernel=r.info.kernel, gauge=r.info.gauge)
        counters[r.key] = entry
    ct = cur.conntrack
    ct_delta = conntrack_deltas(prev, cur)
    return {
        "schema": SCHEMA,
        "start": round(prev.wall, 6),
        "end": round(cur.wall, 6),
        "seconds": round(cur.mono - prev.mono, 6),
        "netns": netns,
        "counters": counters,
        "sysctls": sysctls,
        "conntrack": None
        if ct is None
        else {
            "count": ct.count,
            "max": ct.max,
            "full": ct.full,
            "stats": ct.stats,
            "deltas": ct_delta,
        },
        "conntrack_missing": conntrack_missing if ct is None else None,
        "notes": notes(rows, sysctls, cur, ct_delta),
    }


def render_stats_json(prev: Sample, cur: Sample, **kw: Any) -> str:
    """One line of JSON (JSON Lines when several intervals are printed)."""
    return json.dumps(stats_dict(prev, cur, **kw), sort_keys=False)
