"""The offline pipeline: capture files -> records -> connections -> findings.

Only wiring: reading is in sources/, tracking in track.py, rules in diagnose.py.
Live capture feeds the same ConnectionTable and Diagnoser.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from rstrace.diagnose import Diagnoser, Verdict, build_findings
from rstrace.model import Connection, Finding
from rstrace.sources.capfile import CaptureError, CaptureReader, ReadSummary
from rstrace.track import ConnectionTable


@dataclass
class AnalysisResult:
    findings: list[Finding]
    series: dict[str, dict[int, int]]
    """Per kind: {epoch second: failed connections that started in it}."""
    read: ReadSummary
    connections: int
    failed: int
    window_s: float
    """Seconds from the first to the last packet read (at least 1)."""
    warnings: list[str] = field(default_factory=list)
    final_kind: Callable[[Verdict], str] = lambda v: v.kind
    """Maps a connection's verdict to the kind of the finding it ended up in."""


def analyze_files(
    paths: list[str],
    *,
    mode: str = "control",
    batch_size: int = 4096,
    verify_checksums: bool = False,
    on_connection: Callable[[Connection, Verdict | None], None] | None = None,
) -> AnalysisResult:
    """Read the files as one capture and diagnose it.

    mode: "control" (BPF prefilter: SYN/FIN/RST and ICMP only, the fast path),
    "all" (every TCP packet, for the connection log) or "none" (no prefilter).
    on_connection: called with every connection as it finishes, and its failure verdict
    (None for a connection that did not fail).
    mode "control" without on_connection takes the vectorized path (fastpath.py), which
    gives the same result; RSTRACE_REFERENCE=1 in the environment forces this one.
    """
    if (
        mode == "control"
        and on_connection is None
        and not verify_checksums
        and os.environ.get("RSTRACE_REFERENCE") != "1"
    ):
        # The vectorized path. A child process starts reading first, so that the
        # numpy import (only on this path) overlaps it. None from analyze_fast: it
        # cannot vouch for identical results on this input, so the reference runs.
        from rstrace.sources import prefetch

        files = prefetch.prepare(paths)
        if files is not None:
            # Small batches: the parent decodes and settles while the child reads on.
            pre = prefetch.Prefetch(files, batch_size * max(1, 4096 // batch_size))
            from rstrace.fastpath import analyze_fast

            fast = analyze_fast(paths, batch_size=batch_size, prefetch=(files, pre))
            if fast is not None:
                return _result(paths, *fast)
    reader = CaptureReader(paths, mode=mode, batch_size=batch_size,
                           verify_checksums=verify_checksums)  # fmt: skip
    table = ConnectionTable(verify_checksums=verify_checksums)
    diag = Diagnoser()
    now = 0

    def finish(conns: list[Connection]) -> None:
        for conn in conns:
            verdict = diag.add(conn, now)
            if on_connection is not None:
                on_connection(conn, verdict)

    # The tracker allocates many small long-lived objects; with the default GC
    # thresholds the collector rescans them constantly (a large share of the
    # time on control-packet-heavy streams when profiled).
    old_gc = gc.get_threshold()
    gc.set_threshold(200_000, 50, 100)
    try:
        for batch in reader.batches():
            if batch:
                now = max(now, batch[-1].ts)
            finish(table.feed(batch))
            for u in table.unmatched_unreachable:
                diag.add_unmatched_unreachable(u)
            table.unmatched_unreachable.clear()
    finally:
        gc.set_threshold(*old_gc)
    if reader.summary.last_ts is not None:
        now = reader.summary.last_ts
    if len(reader.summary.empty_files) < len(paths):
        finish(table.flush())
    return _result(paths, diag, reader.summary)


def _result(paths: list[str], diag: Diagnoser, summary: ReadSummary) -> AnalysisResult:
    if len(summary.empty_files) == len(paths):
        raise CaptureError(f"{', '.join(summary.empty_files)}: capture holds no packets")
    for name in summary.empty_files:
        summary.warnings.append(f"{name}: capture holds no packets")
    window_s = 1.0
    if summary.first_ts is not None and summary.last_ts is not None:
        window_s = max((summary.last_ts - summary.first_ts) / 1e6, 1.0)
    findings, series = build_findings(diag.settle(), window_s)
    return AnalysisResult(
        findings=findings,
        series=series,
        read=summary,
        connections=diag.connections,
        failed=diag.failed,
        window_s=window_s,
        warnings=list(summary.warnings),
        final_kind=diag.final_kind,
    )
