"""Rules: connections -> findings.

Each finished Connection is classified once (`classify`) and folded into a
bounded aggregate per (kind, server, port) by the `Diagnoser`. Decisions that
need the whole capture (is this a scanner? does the port answer other clients?
does the server's own TTL differ from the RST's?) are taken in `findings()`.

The rules read only `Side` fields, which the tracker fills from control packets
(SYN, FIN, RST) and ICMP: findings are the same whether or not the BPF prefilter
kept data packets away from Python.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from rstrace.model import ACK, Connection, Evidence, Finding, Side, Unreachable

SCAN_MIN_PORTS = 15
"""Distinct failed ports from one source that make it a scanner (Zeek's scan.zeek default)."""
MAX_SCAN_SOURCES = 200_000
"""Distinct sources remembered for scan detection (memory bound under floods)."""
SPREAD_PORTS = 20
"""A kind over more than this many ports of one server is reported as one finding."""
TOP_FINDINGS = 20
MAX_CLIENTS = 1000
"""Distinct client addresses remembered per aggregate; a SYN flood has millions."""
MAX_EVIDENCE = 3
UNANSWERED_AFTER_US = 1_000_000
"""A lone SYN is unanswered only if the capture went on this long after it (first RTO)."""

# Provisional kinds, settled in findings() when the whole capture is known.
_RST_TO_SYN = "rst-to-syn"
_UNANSWERED = "unanswered"
_PROBE = "probe"  # SYN, SYN-ACK, client RST: a half-open (stealth) scan probe
_SCAN_EVIDENCE = (_RST_TO_SYN, _UNANSWERED, _PROBE, "unreachable")


@dataclass(slots=True)
class Verdict:
    """What one connection shows: a (provisional) kind, and facts for the summary."""

    kind: str
    server: str
    port: int
    client: str
    details: dict[str, object] = field(default_factory=dict)


def classify(conn: Connection, now_ts: int) -> Verdict | None:
    """One connection -> its failure, or None for a connection that did not fail."""
    o, r = conn.orig, conn.resp
    v = Verdict("", conn.resp_h, conn.resp_p, conn.orig_h)
    if conn.unreachable is not None and r.syns == 0 and r.rst_ts is None:
        u = conn.unreachable
        v.kind = "unreachable"
        v.details = {"icmp_from": u.src, "icmp_type": u.icmp_type, "icmp_code": u.icmp_code}
        return v
    if r.rst_answered_syn:
        v.kind = _RST_TO_SYN
        v.details = {"rst_ttl": r.rst_ttl, "rst_ip_id": r.rst_ip_id, "rst_df": r.rst_df}
        return v
    if o.syns and not r.syns and r.rst_ts is None and o.isn is not None:
        if o.syns >= 2 or now_ts - (o.last_syn_ts or conn.ts) >= UNANSWERED_AFTER_US:
            v.kind = _UNANSWERED
            v.details = {"syns": o.syns}
            return v
        return None
    injected = _injected_side(conn)
    if injected is not None:
        v.kind = "injected"
        v.details = injected
        return v
    # A re-sent SYN-ACK with one client SYN: the server did not get (or keep) the
    # client's ACK. With a re-sent client SYN it only answers that SYN (a SYN-ACK
    # was lost on the way), which is no failure of the server.
    if o.syns == 1 and r.syns > r.syn_seqs and o.fin_ts is None and o.rst_ts is None:
        # The server re-sent its SYN-ACK and the client never spoke again.
        v.kind = "half-open"
        v.details = {"synack_sent": r.syns}
        return v
    if (
        o.syns == 1
        and r.syns > r.syn_seqs
        and (o.fin_ts is not None or o.rst_ts is not None or o.seq_bytes)
    ):
        # The client went on as if connected while the server kept re-sending its
        # SYN-ACK: the server dropped the client's ACK (accept queue full).
        v.kind = "listen-overflow"
        v.details = {"synack_sent": r.syns}
        return v
    if (
        o.rst_ts is not None
        and r.syns
        and not o.seq_bytes
        and not r.seq_bytes
        and (r.rst_ts is None and r.fin_ts is None and o.fin_ts is None)
    ):
        v.kind = _PROBE
        return v
    for who, side, peer in (("responder", r, o), ("originator", o, r)):
        if side.rst_ts is None or (side is r and side.rst_answered_syn):
            continue  # (a responder's RST to the SYN is rst-to-syn, handled above)
        if r.rst_ts is not None and o.rst_ts is not None and side is o and r.rst_ts < o.rst_ts:
            continue  # the responder reset first; the originator only answered
        # The kernel answers a segment for a socket it does not have (or one it
        # already closed) with a bare RST whose seq is the segment's ack.
        no_ack = not (side.rst_flags & ACK)
        closed_before = side.fin_ts is not None and side.fin_ts <= side.rst_ts
        if no_ack and not closed_before:
            v.kind = "stale"
            v.details = {"reset_by": who, "handshake_seen": side.isn is not None}
        else:
            v.kind = "abort"
            v.details = {
                "reset_by": who,
                "after_close": closed_before,
                "bytes_by_resetter": side.seq_bytes,
                "bytes_by_peer": _peer_bytes(side, peer),
            }
        if o.syns == 0 and r.syns == 0 and _server_port(conn.orig_p, conn.resp_p):
            _swap_roles(v, conn)
        return v
    return None


EPHEMERAL_LOW = 32768
"""Linux's default ip_local_port_range starts here (Windows and BSDs at 49152)."""


def _server_port(orig_p: int, resp_p: int) -> bool:
    """With no handshake seen, does the originator's port look like the service?

    Without a SYN the tracker calls whoever sent first the originator, so a capture
    that starts mid-connection with the server's RST would name the client as the
    server. A port below the ephemeral range facing one inside it is the service.
    """
    return orig_p < EPHEMERAL_LOW <= resp_p


def _swap_roles(v: Verdict, conn: Connection) -> None:
    v.server, v.port, v.client = conn.orig_h, conn.orig_p, conn.resp_h
    flip = {"originator": "responder", "responder": "originator"}
    v.details["reset_by"] = flip[str(v.details["reset_by"])]


def control_span(conn: Connection) -> tuple[int, int]:
    """First and last SYN/FIN/RST/ICMP of a connection.

    Findings are timed by control packets only, so that they do not change when
    the prefilter keeps data packets (which may come before or after) away.
    """
    o, r = conn.orig, conn.resp
    times = [
        t
        for t in (o.first_syn_ts, o.last_syn_ts, r.first_syn_ts, r.last_syn_ts,
                  o.fin_ts, r.fin_ts, o.rst_ts, r.rst_ts)
        if t is not None
    ]  # fmt: skip
    if conn.unreachable is not None:
        times.append(conn.unreachable.ts)
    if not times:
        return conn.ts, conn.last_ts
    return min(times), max(times)


def _peer_bytes(resetter: Side, peer: Side) -> int:
    """Bytes the peer sent: its FIN/RST tells, or else the RST's ack acknowledged them."""
    if resetter.rst_flags & ACK and peer.isn is not None:
        acked = (resetter.rst_ack - peer.isn - 1) & 0xFFFFFFFF
        if acked < 1 << 31:  # a wrapped (negative) difference means no data
            return max(peer.seq_bytes, acked)
    return peer.seq_bytes


def _injected_side(conn: Connection) -> dict[str, object] | None:
    """A RST the named peer did not send: wrong TTL, or the peer kept talking after it."""
    for who, side in (("responder", conn.resp), ("originator", conn.orig)):
        if side.rst_ts is None or side.rst_answered_syn:
            continue
        ttl_unlike = bool(side.ttls) and side.rst_ttl not in side.ttls
        if ttl_unlike or side.pkts_after_rst:
            return {
                "claimed_sender": who,
                "rst_ttl": side.rst_ttl,
                "peer_ttls": ",".join(map(str, sorted(side.ttls))),
                "rst_ip_id": side.rst_ip_id,
                "rst_df": side.rst_df,
                "sender_kept_talking": side.pkts_after_rst > 0,
            }
    return None


class _Tally:
    """A Counter field of _Aggregate, held compactly until it is read: None while
    empty, (key, count) while it has one key (a scan makes one aggregate per port,
    each with one client, one second, one TTL). Reading it makes it a Counter (in
    place, so the reader may change it); writers that do not read go through
    tally_add(), which keeps the compact forms."""

    __slots__ = ("slot",)

    def __init__(self, slot: Any) -> None:
        self.slot = slot

    def __get__(self, obj: Any, typ: Any = None) -> Any:
        if obj is None:
            return self
        v = self.slot.__get__(obj)
        if v is None:
            v = Counter()
        elif type(v) is tuple:
            v = Counter({v[0]: v[1]})
        else:
            return v
        self.slot.__set__(obj, v)
        return v

    def __set__(self, obj: Any, value: Any) -> None:
        self.slot.__set__(obj, value)


class _Aggregate:
    __slots__ = (
        "_clients",
        "_details",
        "_ifaces",
        "_per_second",
        "_rst_ttls",
        "count",
        "evidence",
        "first_ts",
        "kind",
        "last_ts",
        "port",
        "server",
    )  # fmt: skip
    clients: Counter[str]
    ifaces: Counter[str]
    evidence: list[Evidence]
    details: Counter[str]
    """Counts of detail values ("reset_by=responder": 3), to summarize many connections."""
    per_second: Counter[int]
    rst_ttls: Counter[int]

    def __init__(
        self, kind: str, server: str, port: int, count: int = 0, first_ts: int = 0,
        last_ts: int = 0,
    ) -> None:  # fmt: skip
        self.kind, self.server, self.port = kind, server, port
        self.count, self.first_ts, self.last_ts = count, first_ts, last_ts
        self.evidence = []
        self._clients = self._ifaces = self._details = self._per_second = self._rst_ttls = None

    def __repr__(self) -> str:
        return (
            f"_Aggregate(kind={self.kind!r}, server={self.server!r}, port={self.port}, "
            f"count={self.count}, first_ts={self.first_ts}, last_ts={self.last_ts}, "
            f"clients={self.clients!r}, ifaces={self.ifaces!r}, evidence={self.evidence!r}, "
            f"details={self.details!r}, per_second={self.per_second!r}, "
            f"rst_ttls={self.rst_ttls!r})"
        )


for _name in ("clients", "ifaces", "details", "per_second", "rst_ttls"):
    setattr(_Aggregate, _name, _Tally(_Aggregate.__dict__["_" + _name]))
del _name
_SLOTS = {n: _Aggregate.__dict__["_" + n] for n in ("clients", "ifaces", "details",
                                                     "per_second", "rst_ttls")}  # fmt: skip


def tally_add(agg: _Aggregate, name: str, key: Any, n: int = 1, cap: int | None = None) -> None:
    """agg.<name>[key] += n, without reading the field (which would make a Counter of
    it); with a cap, a key not yet counted is admitted only while there is room."""
    slot = _SLOTS[name]
    v = slot.__get__(agg)
    if v is None:
        if cap is None or cap > 0:
            slot.__set__(agg, (key, n))
    elif type(v) is tuple:
        if v[0] == key:
            slot.__set__(agg, (v[0], v[1] + n))
        elif cap is None or cap > 1:
            slot.__set__(agg, Counter({v[0]: v[1], key: n}))
    elif cap is None or key in v or len(v) < cap:
        v[key] += n


class Diagnoser:
    """Folds classified connections into findings, in bounded memory."""

    def __init__(self) -> None:
        self._aggs: dict[tuple[str, str, int], _Aggregate] = {}
        # For whole-capture decisions:
        self._answered: dict[tuple[str, int], int] = defaultdict(int)  # SYN-ACKs per server port
        self._server_ttls: dict[str, Counter[int]] = defaultdict(Counter)  # server's SYN-ACK TTLs
        self._failed_ports: dict[str, set[tuple[str, int]]] = {}  # per source
        self.connections = 0
        self.failed = 0
        self._scanners: set[str] = set()
        self._resolved: dict[tuple[str, str, int], str] = {}

    def final_kind(self, v: Verdict) -> str:
        """The kind a connection's verdict ended up as, once settle() has run."""
        if v.client in self._scanners and v.kind in _SCAN_EVIDENCE:
            return "scan"
        return self._resolved.get((v.kind, v.server, v.port), v.kind)

    def add(self, conn: Connection, now_ts: int) -> Verdict | None:
        self.connections += 1
        if conn.resp.syns:
            self._answered[(conn.resp_h, conn.resp_p)] += 1
            self._server_ttls[conn.resp_h].update(conn.resp.ttls)
        v = classify(conn, now_ts)
        if v is None:
            return None
        if v.kind in _SCAN_EVIDENCE:
            self.note_failed_port(v.client, v.server, v.port)
        key = (v.kind, v.server, v.port)
        first, last = control_span(conn)
        agg = self._aggs.get(key)
        if agg is None:
            agg = self._aggs[key] = _Aggregate(v.kind, v.server, v.port, first_ts=first)
        agg.count += 1
        agg.first_ts = min(agg.first_ts, first)
        agg.last_ts = max(agg.last_ts, last)
        tally_add(agg, "clients", v.client, cap=MAX_CLIENTS)
        if conn.iface:
            tally_add(agg, "ifaces", conn.iface)
        tally_add(agg, "per_second", first // 1_000_000)
        for k, val in v.details.items():
            if v.kind == _RST_TO_SYN and k in ("rst_ttl", "rst_ip_id", "rst_df"):
                continue  # settled per aggregate (server TTL vs RST TTL)
            tally_add(agg, "details", f"{k}={val}")
        if v.kind == _RST_TO_SYN:
            tally_add(agg, "rst_ttls", conn.resp.rst_ttl)
        if not agg.evidence:  # the first connection's packets tell the story together
            agg.evidence = _pick_evidence(conn, v)[:MAX_EVIDENCE]
        self.failed += 1
        return v

    def add_unmatched_unreachable(self, u: Unreachable) -> None:
        """An ICMP unreachable for a SYN we never saw (the capture started late)."""
        key = ("unreachable", u.quoted_dst, u.quoted_dport)
        agg = self._aggs.get(key)
        if agg is None:
            agg = self._aggs[key] = _Aggregate(
                "unreachable", u.quoted_dst, u.quoted_dport, first_ts=u.ts
            )
        agg.count += 1
        agg.first_ts = min(agg.first_ts, u.ts)
        agg.last_ts = max(agg.last_ts, u.ts)
        agg.clients[u.quoted_src] += 1
        if u.iface:
            agg.ifaces[u.iface] += 1
        agg.per_second[u.ts // 1_000_000] += 1
        agg.details[f"icmp_from={u.src}"] += 1
        if len(agg.evidence) < MAX_EVIDENCE:
            agg.evidence.append(Evidence(u.ts, u.iface, u.raw, "ICMP unreachable"))
        self.note_failed_port(u.quoted_src, u.quoted_dst, u.quoted_dport)
        self.failed += 1

    def note_failed_port(self, client: str, server: str, port: int) -> None:
        """Remember a failed (server, port) of a client, for scan detection.

        Bounded: per client a few times the scan threshold, and at most
        MAX_SCAN_SOURCES clients (a flood of spoofed sources would otherwise
        hold one set per address; a scanner is one source and comes back often).
        """
        ports = self._failed_ports.get(client)
        if ports is None:
            if len(self._failed_ports) >= MAX_SCAN_SOURCES:
                return
            ports = self._failed_ports[client] = set()
        if len(ports) <= 4 * SCAN_MIN_PORTS:
            ports.add((server, port))

    # -- whole-capture decisions ------------------------------------------------

    def settle(self) -> list[_Aggregate]:
        """Resolve provisional kinds, pull out scanners, merge port spreads."""
        scanners = self._scanners = {
            src for src, ports in self._failed_ports.items() if _is_port_scan(ports)
        }
        half_open_ports = {(a.server, a.port) for a in self._aggs.values() if a.kind == "half-open"}
        settled: dict[tuple[str, str, int], _Aggregate] = {}
        scans: dict[str, _Aggregate] = {}
        for agg in self._aggs.values():
            kind = agg.kind
            if kind in _SCAN_EVIDENCE and scanners:
                agg = self._take_scanners(agg, scanners, scans)
                if agg is None:
                    continue
            if kind == _PROBE:
                continue  # probes matter only as scan evidence
            if kind == _UNANSWERED:
                answered = self._answered.get((agg.server, agg.port), 0)
                if (agg.server, agg.port) in half_open_ports:
                    kind = "half-open"
                elif answered:
                    kind = "listen-overflow"
                    agg.details[f"port_answered_others={answered}"] += 1
                else:
                    kind = "timeout"
            elif kind == _RST_TO_SYN:
                kind = self._refused_or_firewall(agg)
            self._resolved[(agg.kind, agg.server, agg.port)] = kind
            agg.kind = kind
            key = (kind, agg.server, agg.port)
            if key in settled:
                _merge(settled[key], agg)
            else:
                settled[key] = agg
        out = list(settled.values()) + list(scans.values())
        # Failed = what ended up in a finding: a probe of no scanner is not a failure.
        self.failed = sum(a.count for a in out)
        return _merge_spreads(out)

    def _take_scanners(
        self, agg: _Aggregate, scanners: set[str], scans: dict[str, _Aggregate]
    ) -> _Aggregate | None:
        """Move a scanner's connections from a per-port aggregate to its scan finding.

        Aggregates keep counts per client but times, interfaces and evidence only
        per port: those move along only when the scanner was the port's only
        client (the usual case); otherwise the scan finding gets the counts and the
        port's own finding keeps the rest.
        """
        mine = [c for c in agg.clients if c in scanners]
        pure = len(mine) == len(agg.clients)
        for src in mine:
            n = agg.clients.pop(src)
            scan = scans.get(src)
            if scan is None:
                scan = scans[src] = _Aggregate("scan", src, 0, first_ts=agg.first_ts)
            scan.count += n
            scan.clients[agg.server] += n  # for a scan, "clients" are the targets
            scan.details[f"target={agg.server}:{agg.port}"] += n
            if pure:
                scan.first_ts = min(scan.first_ts, agg.first_ts)
                scan.last_ts = max(scan.last_ts, agg.last_ts)
                scan.ifaces.update(agg.ifaces)
                scan.per_second.update(agg.per_second)
                if len(scan.evidence) < MAX_EVIDENCE:
                    scan.evidence.extend(agg.evidence[: MAX_EVIDENCE - len(scan.evidence)])
            agg.count -= n
        return agg if agg.count > 0 and agg.clients else None

    def _refused_or_firewall(self, agg: _Aggregate) -> str:
        server_ttls = self._server_ttls.get(agg.server)
        if server_ttls and agg.rst_ttls and not (set(agg.rst_ttls) & set(server_ttls)):
            # The RST left with a different TTL than the server's own SYN-ACKs:
            # something hops away answered for it.
            agg.details[f"server_ttl={server_ttls.most_common(1)[0][0]}"] += 1
            agg.details[f"rst_ttl={agg.rst_ttls.most_common(1)[0][0]}"] += 1
            return "firewall-reject"
        answered = self._answered.get((agg.server, agg.port), 0)
        if answered:
            agg.details[f"port_answered_others={answered}"] += 1
        return "refused"


def _is_port_scan(failed: set[tuple[str, int]]) -> bool:
    """Many failed ports on one server. Many servers on one port (a monitor with dead
    backends, an address sweep) is not a port scan: those stay per-port findings."""
    per_server: Counter[str] = Counter(server for server, _ in failed)
    return bool(per_server) and max(per_server.values()) >= SCAN_MIN_PORTS


def _merge(into: _Aggregate, other: _Aggregate) -> None:
    into.count += other.count
    into.first_ts = min(into.first_ts, other.first_ts)
    into.last_ts = max(into.last_ts, other.last_ts)
    into.clients.update(other.clients)
    into.ifaces.update(other.ifaces)
    into.details.update(other.details)
    into.per_second.update(other.per_second)
    into.rst_ttls.update(other.rst_ttls)
    if len(into.evidence) < MAX_EVIDENCE:
        into.evidence.extend(other.evidence[: MAX_EVIDENCE - len(into.evidence)])


@dataclass
class SpreadAggregate:
    agg: _Aggregate
    ports: list[int]


def _merge_spreads(aggs: list[_Aggregate]) -> list[SpreadAggregate]:
    by_server: dict[tuple[str, str], list[_Aggregate]] = defaultdict(list)
    out: list[SpreadAggregate] = []
    for a in aggs:
        if a.kind == "scan":
            out.append(SpreadAggregate(a, sorted({int(k.rsplit(":", 1)[1]) for k in a.details
                                                   if k.startswith("target=")})))  # fmt: skip
        else:
            by_server[(a.kind, a.server)].append(a)
    for group in by_server.values():
        if len(group) > SPREAD_PORTS:
            group.sort(key=lambda a: a.port)
            head = group[0]
            for other in group[1:]:
                _merge(head, other)
            out.append(SpreadAggregate(head, [a.port for a in group]))
        else:
            out.extend(SpreadAggregate(a, [a.port]) for a in group)
    return out


def _pick_evidence(conn: Connection, v: Verdict) -> list[Evidence]:
    """The packets that show this kind: e.g. the SYN and the RST that answered it."""
    who = v.details.get("reset_by") or v.details.get("claimed_sender")
    return pick_by_note(conn.evidence, evidence_notes(v.kind, who))


def pick_by_note(evidence: list[Evidence], wanted: tuple[str, ...]) -> list[Evidence]:
    """The evidence packets whose notes are wanted (an ICMP one for "ICMP"), else the first."""
    picked = [e for e in evidence if e.note in wanted or (e.note.startswith("ICMP")
              and "ICMP" in wanted)]  # fmt: skip
    return picked or evidence[:1]


def evidence_notes(kind: str, who: object) -> tuple[str, ...]:
    """Notes of the evidence packets that show a kind (who: the resetter, if any)."""
    return {
        _RST_TO_SYN: ("SYN", "RST from responder"),
        _UNANSWERED: ("SYN",),
        "unreachable": ("SYN", "ICMP"),
        "half-open": ("SYN", "SYN-ACK"),
        "listen-overflow": ("SYN", "SYN-ACK"),
        _PROBE: ("SYN", "SYN-ACK", "RST from originator"),
        # A genuine packet of the claimed sender beside the RST, to compare TTLs.
        "injected": ("SYN-ACK" if who == "responder" else "SYN", f"RST from {who}"),
    }.get(kind, (f"RST from {who}",))


def build_findings(
    spreads: list[SpreadAggregate], window_s: float
) -> tuple[list[Finding], dict[str, dict[int, int]]]:
    """Turn settled aggregates into ranked Findings, and the per-kind series."""
    from rstrace.explain import explain

    findings: list[Finding] = []
    series: dict[str, Counter[int]] = defaultdict(Counter)
    for sp in spreads:
        a = sp.agg
        series[a.kind].update(a.per_second)
        f = Finding(
            kind=a.kind,
            server=a.server if a.kind != "scan" else None,
            ports=sp.ports,
            count=a.count,
            rate=a.count / max(window_s, 1.0),
            first_ts=a.first_ts,
            last_ts=a.last_ts,
            clients=[c for c, _ in a.clients.most_common()] if a.kind != "scan" else [a.server],
            ifaces=[i for i, _ in a.ifaces.most_common()],
            summary="",
            next_steps=[],
            details=_details(a),
            evidence=a.evidence[:MAX_EVIDENCE],
        )
        if a.kind == "scan":
            f.details["targets"] = [c for c, _ in a.clients.most_common()]
        f.summary, f.next_steps = explain(f, window_s)
        findings.append(f)
    findings.sort(key=lambda f: (-f.rate, -f.count, f.kind, f.server or "", f.ports))
    return findings, {k: dict(sorted(v.items())) for k, v in series.items()}


def _details(a: _Aggregate) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, n in a.details.items():
        if "=" not in key or key.startswith("target="):
            continue
        name, value = key.split("=", 1)
        out.setdefault(name, {})[value] = n  # type: ignore[index]
    return out
