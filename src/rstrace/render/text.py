"""Readable text for people: one paragraph per finding, the evidence under it."""

from __future__ import annotations

import time
from typing import TextIO

from rstrace.analyze import AnalysisResult
from rstrace.diagnose import TOP_FINDINGS
from rstrace.explain import where
from rstrace.model import Connection, Finding
from rstrace.render.tcpdump import format_packet


def _stamp(us: int | None) -> str:
    if us is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(us // 1_000_000))


def render_text(res: AnalysisResult, out: TextIO, top: int = TOP_FINDINGS) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(file=out, highlight=False, soft_wrap=False)
    r = res.read
    files = ", ".join(r.files)
    console.print(
        f"[bold]{escape(files)}[/]: {res.connections} TCP connections, {res.failed} failed, "
        f"{_stamp(r.first_ts)} to {_stamp(r.last_ts)} UTC ({res.window_s:.0f} s)"
        + (f", interfaces {', '.join(sorted(r.interfaces))}" if r.interfaces else "")
    )
    if not res.findings:
        console.print("No failed connections or resets found.")
    for i, f in enumerate(res.findings[:top], 1):
        _finding(console, i, f)
    more = len(res.findings) - top
    if more > 0:
        console.print(f"\n{more} more findings (use --top or --json to see all).")


def _finding(console: object, i: int, f: Finding) -> None:
    from rich.markup import escape
    from rich.padding import Padding

    c = console  # rich Console
    title = "scanner " + f.clients[0] if f.kind == "scan" else where(f)
    c.print(  # type: ignore[attr-defined]
        f"\n[bold]{i}. {f.kind}[/]  {escape(title)}  "
        f"[bold]{f.rate:.2f}/s[/] ({f.count} connections)"
    )
    c.print(Padding(escape(f.summary), (0, 0, 0, 3)))  # type: ignore[attr-defined]
    if len(f.ports) > 1:
        ports = ", ".join(map(str, f.ports[:30])) + (" ..." if len(f.ports) > 30 else "")
        c.print(Padding(f"Ports: {ports}", (0, 0, 0, 3)))  # type: ignore[attr-defined]
    if f.evidence:
        c.print("   Evidence:")  # type: ignore[attr-defined]
        for e in f.evidence:
            line = format_packet(e.ts, e.raw)
            if e.iface:
                line = f"{e.iface} " + line
            for part in line.splitlines():
                c.print(f"     {escape(part)}", overflow="ignore", crop=False)  # type: ignore[attr-defined]
    if f.next_steps:
        c.print("   Next:")  # type: ignore[attr-defined]
        for s in f.next_steps:
            c.print(Padding(f"- {escape(s)}", (0, 0, 0, 5)))  # type: ignore[attr-defined]


def render_connections(conns: list[Connection], out: TextIO) -> None:
    """A table of failed connections, like a trimmed conn.log."""
    out.write(
        f"{'time':<15} {'client':<24} {'server':<24} {'state':<6} {'history':<12} "
        f"{'orig':>6} {'resp':>6}\n"
    )
    for c in sorted(conns, key=lambda c: (c.ts, c.uid)):
        t = time.strftime("%H:%M:%S", time.gmtime(c.ts // 1_000_000)) + f".{c.ts % 1_000_000:06d}"
        out.write(
            f"{t:<15} {_ep(c.orig_h, c.orig_p):<24} {_ep(c.resp_h, c.resp_p):<24} "
            f"{c.conn_state:<6} {c.history:<12} {c.orig_bytes:>6} {c.resp_bytes:>6}\n"
        )


def _ep(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
