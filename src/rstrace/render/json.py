"""JSON output of `rstrace analyze --json` (schema documented in docs/json-schema.md)."""

from __future__ import annotations

import json
from typing import Any

from rstrace.analyze import AnalysisResult
from rstrace.model import Evidence, Finding

SCHEMA = "rstrace.analyze/1"


def _ts(us: int | None) -> float | None:
    return None if us is None else round(us / 1e6, 6)


def evidence_lines(evidence: list[Evidence]) -> list[dict[str, Any]]:
    from rstrace.render.tcpdump import format_packet

    return [
        {
            "ts": _ts(e.ts),
            "interface": e.iface,
            "note": e.note,
            "tcpdump": format_packet(e.ts, e.raw),
        }
        for e in evidence
    ]


def finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "kind": f.kind,
        "server": f.server,
        "ports": f.ports,
        "count": f.count,
        "rate": round(f.rate, 4),
        "first_seen": _ts(f.first_ts),
        "last_seen": _ts(f.last_ts),
        "clients": f.clients[:100],
        "clients_total": len(f.clients),
        "interfaces": f.ifaces,
        "summary": f.summary,
        "next_steps": f.next_steps,
        "details": f.details,
        "evidence": evidence_lines(f.evidence),
    }


def result_dict(res: AnalysisResult) -> dict[str, Any]:
    r = res.read
    st = r.stats
    return {
        "schema": SCHEMA,
        "files": r.files,
        "window": {"start": _ts(r.first_ts), "end": _ts(r.last_ts), "seconds": res.window_s},
        "totals": {
            "packets_decoded": st.packets,
            "tcp_segments": st.tcp,
            "icmp_unreachable": st.unreachable,
            "fragments_skipped": st.fragments_skipped,
            "truncated_packets": st.truncated,
            "connections": res.connections,
            "failed_connections": res.failed,
            "findings": len(res.findings),
            "prefiltered": r.prefiltered,
        },
        "interfaces": sorted(r.interfaces),
        "findings": [finding_dict(f) for f in res.findings],
        "series": {k: [[t, n] for t, n in v.items()] for k, v in sorted(res.series.items())},
        "warnings": res.warnings,
    }


def render_json(res: AnalysisResult) -> str:
    return json.dumps(result_dict(res), indent=2, sort_keys=False)
