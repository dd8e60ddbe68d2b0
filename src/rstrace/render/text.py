"""Readable text for people: one paragraph per finding, the evidence under it."""

from __future__ import annotations

import textwrap
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


WIDTH = 79


def _wrap(text: str, indent: int, first: str = "") -> list[str]:
    pad = " " * indent
    return textwrap.wrap(
        text, WIDTH, initial_indent=pad + first, subsequent_indent=pad + " " * len(first)
    ) or [pad + first]


def render_text(res: AnalysisResult, out: TextIO, top: int = TOP_FINDINGS) -> None:
    """Plain text, wrapped to 79 columns; bold headings only on a terminal (rich)."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(file=out, highlight=False)

    def emit(line: str, bold: bool = False) -> None:
        console.print(f"[bold]{escape(line)}[/]" if bold else escape(line), soft_wrap=True)

    r = res.read
    head = (
        f"{', '.join(r.files)}: {res.connections} TCP connection"
        f"{'' if res.connections == 1 else 's'}, {res.failed} failed, "
        f"{_stamp(r.first_ts)} to {_stamp(r.last_ts)} UTC ({res.window_s:.0f} s)"
        + (f", interfaces {', '.join(sorted(r.interfaces))}" if r.interfaces else "")
    )
    for line in _wrap(head, 0):
        emit(line)
    if not res.findings:
        emit("No failed connections or resets found.")
    for i, f in enumerate(res.findings[:top], 1):
        emit("")
        for n, line in enumerate(_finding_lines(i, f)):
            emit(line, bold=n == 0)
    more = len(res.findings) - top
    if more > 0:
        emit("")
        emit(f"{more} more findings (use --top or --json to see all).")


def _finding_lines(i: int, f: Finding) -> list[str]:
    title = "scanner " + f.clients[0] if f.kind == "scan" else where(f)
    conns = "1 connection" if f.count == 1 else f"{f.count} connections"
    lines = [f"{i}. {f.kind}  {title}  {f.rate:.2f}/s ({conns})"]
    lines += _wrap(f.summary, 3)
    if len(f.ports) > 1:
        ports = ", ".join(map(str, f.ports[:40])) + (" ..." if len(f.ports) > 40 else "")
        lines += _wrap(f"Ports: {ports}", 3)
    if f.evidence:
        lines.append("   Evidence (tcpdump -n -v):")
        for e in f.evidence:
            text = format_packet(e.ts, e.raw)
            if e.iface:
                text = f"{e.iface} {text}"
            lines += ["     " + part for part in text.splitlines()]
    if f.next_steps:
        lines.append("   Next:")
        for step in f.next_steps:
            lines += _wrap(step, 5, "- ")
    return lines


def render_connections(failed: list[tuple[Connection, str]], out: TextIO) -> None:
    """A table of failed connections with the rule's verdict, like a trimmed conn.log."""
    out.write(
        f"{'time':<15} {'client':<22} {'server':<22} {'kind':<15} {'state':<6} {'history':<10}\n"
    )
    for c, kind in sorted(failed, key=lambda cv: (cv[0].ts, cv[0].uid)):
        t = time.strftime("%H:%M:%S", time.gmtime(c.ts // 1_000_000)) + f".{c.ts % 1_000_000:06d}"
        out.write(
            f"{t:<15} {_ep(c.orig_h, c.orig_p):<22} {_ep(c.resp_h, c.resp_p):<22} "
            f"{kind:<15} {c.conn_state:<6} {c.history:<10}\n"
        )


def _ep(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
