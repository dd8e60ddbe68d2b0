"""Output of `rstrace diagnose`: the analyze layout plus who, who answered and why."""

from __future__ import annotations

import json
from typing import Any, TextIO

from rstrace.attribute import Attribution, ClientProcess
from rstrace.diagnose import TOP_FINDINGS
from rstrace.explain import hhmmss
from rstrace.investigate import Investigation
from rstrace.model import Finding
from rstrace.render.json import _ts, finding_dict
from rstrace.render.text import _finding_lines, _stamp, _wrap

SCHEMA = "rstrace.diagnose/1"


def render_diagnosis_text(inv: Investigation, out: TextIO, top: int = TOP_FINDINGS) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(file=out, highlight=False)

    def emit(line: str, bold: bool = False) -> None:
        console.print(f"[bold]{escape(line)}[/]" if bold else escape(line), soft_wrap=True)

    where = f"namespace {inv.netns}" if inv.netns else "this host"
    ifaces = f" on {', '.join(inv.interfaces)}" if inv.interfaces else ""
    head = (
        f"{where}{ifaces}: watched {inv.window_s:.0f} s from {_stamp(inv.start_ts)} UTC, "
        f"{inv.connections} TCP connection{'' if inv.connections == 1 else 's'}, "
        f"{inv.failed} failed"
    )
    for line in _wrap(head, 0):
        emit(line)
    for m in inv.missing:
        for line in _wrap(m, 0, "could not see: "):
            emit(line)
    if inv.dropped:
        share = inv.dropped / max(inv.packets, inv.dropped, 1)
        fails = inv.counters.get("Tcp.AttemptFails")
        emit(
            f"warning: the kernel dropped {inv.dropped} packets ({share:.0%}) before we read "
            "them: counts below are lower bounds"
            + (f"; Tcp.AttemptFails rose by {fails}" if fails else "")
        )
    if inv.kernel_lost:
        emit(f"warning: {inv.kernel_lost} kernel events were lost (trace buffer overrun)")
    if not inv.findings:
        emit("No failed connections or resets seen.")
        if inv.counters:
            emit("Counters that moved: " + _counters(inv.counters))
    for i, (f, a) in enumerate(zip(inv.findings[:top], inv.attributions, strict=False), 1):
        emit("")
        for n, line in enumerate(finding_lines(i, f, a)):
            emit(line, bold=n == 0)
    more = len(inv.findings) - top
    if more > 0:
        emit("")
        emit(f"{more} more findings (use --json to see all).")


def finding_lines(i: int, f: Finding, a: Attribution) -> list[str]:
    base = _finding_lines(i, f)
    host: list[str] = _wrap(a.headline, 3)
    for c in a.clients[:3]:
        host += _wrap(_client_line(c), 3, "Client: ")
    if len(a.clients) > 3:
        host += _wrap(f"and {len(a.clients) - 3} more processes", 3, "Client: ")
    server = _server_line(f, a)
    if server:
        host += _wrap(server, 3, "Server: ")
    if a.kernel_reasons:
        host += _wrap(_counts(a.kernel_reasons), 3, "Kernel resets: ")
    if a.drop_reasons:
        host += _wrap(_counts(a.drop_reasons) + " (host-wide)", 3, "Kernel drops: ")
    if a.counters:
        host += _wrap(_counters(a.counters), 3, "Counters: ")
    for r in a.firewall_rules[:3]:
        host += _wrap(r, 3, "Firewall: ")
    for n in a.notes:
        host += _wrap(n, 3, "Note: ")
    # Title first, then what the host adds, then the packet-level paragraph and evidence.
    return base[:1] + host + base[1:]


def _client_line(c: ClientProcess) -> str:
    bits = [f"{c.comm} pid {c.pid}", f"{c.count} connection{'' if c.count == 1 else 's'}"]
    p = c.process
    if p is not None:
        if getattr(p, "unit", None):
            bits.append(f"unit {p.unit}")
        if getattr(p, "container", None):
            bits.append(f"container {p.container}")
        cmd = getattr(p, "cmdline", None)
        if cmd:
            bits.append("cmdline " + (" ".join(cmd) if isinstance(cmd, list) else str(cmd))[:120])
    else:
        bits.append("exited")
    return ", ".join(bits)


def _server_line(f: Finding, a: Attribution) -> str:
    if not f.server or f.kind in ("scan", "local"):
        return ""
    if not a.server_local:
        return f"{f.server} is not an address of this host (or namespace)"
    port = f.ports[0]
    if a.listener is None:
        text = f"nothing listens on port {port}"
    elif a.listener_gone:
        text = (
            f"nothing listens on port {port} now; {_owner(a)} listened until "
            f"{hhmmss(a.listener.last_ts)}"
        )
    else:
        lst = a.listener.listener
        text = (
            f"{_owner(a)} listens on port {port}, accept queue {lst.accept_queue} of backlog "
            f"{lst.backlog}"
        )
    if a.service:
        text += f"; well-known port of {a.service}"
    if a.expected:
        text += f"; declared by {', '.join(a.expected[:3])}"
    return text


def _owner(a: Attribution) -> str:
    seen = a.listener
    if seen is None or not seen.owners:
        return "a process we could not see"
    p = seen.owners[0]
    unit = f", unit {p.unit}" if getattr(p, "unit", None) else ""
    return f"{p.name} (pid {p.pid}{unit})"


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in d.items())


def _counters(d: dict[str, int]) -> str:
    return ", ".join(f"{k} +{n}" for k, n in sorted(d.items()))


# -- JSON ---------------------------------------------------------------------------


def _process_dict(p: Any) -> dict[str, Any] | None:
    if p is None:
        return None
    cmd = getattr(p, "cmdline", None)
    return {
        "pid": p.pid,
        "comm": p.name,
        "cmdline": cmd if isinstance(cmd, list) or cmd is None else str(cmd),
        "unit": getattr(p, "unit", None),
        "container": getattr(p, "container", None),
    }


def attribution_dict(a: Attribution) -> dict[str, Any]:
    lst = a.listener
    return {
        "headline": a.headline,
        "client_processes": [
            {
                "pid": c.pid,
                "comm": c.comm,
                "connections": c.count,
                "process": _process_dict(c.process),
            }
            for c in a.clients
        ],
        "server_is_local": a.server_local,
        "listener": None
        if lst is None
        else {
            "address": lst.listener.addr,
            "port": lst.listener.port,
            "accept_queue": lst.listener.accept_queue,
            "backlog": lst.listener.backlog,
            "listening_now": not a.listener_gone,
            "last_seen": _ts(lst.last_ts),
            "processes": [_process_dict(p) for p in lst.owners],
        },
        "expected_listeners": a.expected,
        "service": a.service,
        "kernel_reset_reasons": a.kernel_reasons,
        "kernel_drop_reasons": a.drop_reasons,
        "counters": a.counters,
        "firewall_rules": a.firewall_rules,
        "notes": a.notes,
    }


def diagnosis_dict(inv: Investigation) -> dict[str, Any]:
    findings = []
    for f, a in zip(inv.findings, inv.attributions, strict=True):
        d = finding_dict(f)
        d.update(attribution_dict(a))
        findings.append(d)
    return {
        "schema": SCHEMA,
        "netns": inv.netns,
        "interfaces": inv.interfaces,
        "window": {"start": _ts(inv.start_ts), "end": _ts(inv.end_ts), "seconds": inv.window_s},
        "totals": {
            "packets": inv.packets,
            "packets_dropped": inv.dropped,
            "kernel_events": inv.kernel_events,
            "kernel_events_lost": inv.kernel_lost,
            "connections": inv.connections,
            "failed_connections": inv.failed,
            "findings": len(inv.findings),
        },
        "counters": inv.counters,
        "findings": findings,
        "series": {k: [[t, n] for t, n in v.items()] for k, v in sorted(inv.series.items())},
        "missing": inv.missing,
        "warnings": inv.warnings,
    }


def render_diagnosis_json(inv: Investigation) -> str:
    return json.dumps(diagnosis_dict(inv), indent=2)
