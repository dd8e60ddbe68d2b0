"""Connections as Zeek's conn.log in JSON (one object per line, Zeek's field names)."""

from __future__ import annotations

import json

from rstrace.model import Connection


def conn_dict(c: Connection) -> dict[str, object]:
    """Zeek's conn.log fields, in Zeek's order (see Conn::Info in main.zeek)."""
    return {
        "ts": round(c.ts / 1e6, 6),
        "uid": c.uid,
        "id.orig_h": c.orig_h,
        "id.orig_p": c.orig_p,
        "id.resp_h": c.resp_h,
        "id.resp_p": c.resp_p,
        "proto": "tcp",
        "duration": round(c.duration / 1e6, 6),
        "orig_bytes": c.orig_bytes,
        "resp_bytes": c.resp_bytes,
        "conn_state": c.conn_state,
        "missed_bytes": 0,
        "history": c.history,
        "orig_pkts": c.orig_pkts,
        "orig_ip_bytes": c.orig_ip_bytes,
        "resp_pkts": c.resp_pkts,
        "resp_ip_bytes": c.resp_ip_bytes,
    }


def zeek_line(c: Connection) -> str:
    return json.dumps(conn_dict(c), separators=(",", ":"))
