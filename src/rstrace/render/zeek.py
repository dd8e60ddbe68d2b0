"""Connections as Zeek's conn.log in JSON (one object per line, Zeek's field names)."""

from __future__ import annotations

import json

from rstrace.model import Connection


def conn_dict(c: Connection) -> dict[str, object]:
    """Zeek's conn.log fields, in Zeek's order (see Conn::Info in main.zeek).

    Like Zeek's set_conn(), duration, orig_bytes and resp_bytes are left out when
    the duration is 0 (a lone SYN, a SYN answered in the same microsecond).
    """
    d: dict[str, object] = {
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
    if not c.duration:
        for k in ("duration", "orig_bytes", "resp_bytes"):
            del d[k]
    return d


# json.dumps(conn_dict(c), separators=(",", ":")) spelled out: the same bytes (floats
# by repr, ints by str, strings through json's own ASCII encoder) at a fraction of
# the cost, which counts at one line per connection.
_LINE = (
    '{"ts":%r,"uid":%s,"id.orig_h":%s,"id.orig_p":%d,"id.resp_h":%s,"id.resp_p":%d,'
    '"proto":"tcp","duration":%r,"orig_bytes":%d,"resp_bytes":%d,"conn_state":%s,'
    '"missed_bytes":0,"history":%s,"orig_pkts":%d,"orig_ip_bytes":%d,"resp_pkts":%d,'
    '"resp_ip_bytes":%d}'
)
_LINE_NO_DURATION = _LINE.replace('"duration":%r,"orig_bytes":%d,"resp_bytes":%d,', "")
_STR = json.encoder.encode_basestring_ascii  # what json.dumps uses (ensure_ascii)


def zeek_line(c: Connection) -> str:
    if not c.duration:
        return _LINE_NO_DURATION % (
            round(c.ts / 1e6, 6), _STR(c.uid), _STR(c.orig_h), c.orig_p, _STR(c.resp_h),
            c.resp_p, _STR(c.conn_state), _STR(c.history), c.orig_pkts, c.orig_ip_bytes,
            c.resp_pkts, c.resp_ip_bytes,
        )  # fmt: skip
    return _LINE % (
        round(c.ts / 1e6, 6),
        _STR(c.uid),
        _STR(c.orig_h),
        c.orig_p,
        _STR(c.resp_h),
        c.resp_p,
        round(c.duration / 1e6, 6),
        c.orig_bytes,
        c.resp_bytes,
        _STR(c.conn_state),
        _STR(c.history),
        c.orig_pkts,
        c.orig_ip_bytes,
        c.resp_pkts,
        c.resp_ip_bytes,
    )
