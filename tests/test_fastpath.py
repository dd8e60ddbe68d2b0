"""The vectorized findings path (fastpath.py) gives the reference pipeline's results.

The reference (RSTRACE_REFERENCE=1: reader -> ConnectionTable -> Diagnoser) is the
oracle: findings JSON, series and totals must be identical, on every capture under
tests/data and on seeded synthetic streams that stress the boundary between the
vectorized patterns and the replayed 4-tuples (port reuse, retransmits past the
5 s timers, windows and batches cutting a connection, IPv6, VLAN, ICMP).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import pytest

from rstrace import fastpath
from rstrace.analyze import _result, analyze_files
from rstrace.render.json import result_dict
from tests import pcapgen

ROOT = Path(__file__).parent
ALL_CAPTURES = sorted(
    p for p in (ROOT / "data").rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")
)
T0 = 1_700_000_000_000_000


def _reference(paths: list[str], monkeypatch: pytest.MonkeyPatch, bs: int = 4096) -> Any:
    monkeypatch.setenv("RSTRACE_REFERENCE", "1")
    out = result_dict(analyze_files(paths, batch_size=bs))
    monkeypatch.delenv("RSTRACE_REFERENCE")
    return out


def _fast(paths: list[str], bs: int = 4096, window: int = 262144, read: int | None = None) -> Any:
    res = fastpath.analyze_fast(paths, batch_size=bs, window_rows=window, read_batch=read)
    if res is None:
        return None
    return result_dict(_result(paths, *res))


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=lambda p: p.name)
def test_captures_identical(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rel = str(path.relative_to(ROOT.parent))
    ref = _reference([rel], monkeypatch)
    assert result_dict(analyze_files([rel])) == ref  # the default path
    fast = _fast([rel])
    if fast is None:
        # Only where the reference must run: our stream reader (gzip, several
        # interfaces) or Linux cooked captures (`-i any`: copies to drop).
        import pcapy

        cooked = path.suffix != ".gz" and pcapy.open_offline(str(path)).datalink() in (113, 276)
        assert path.suffix in (".gz", ".pcapng") or cooked
        return
    assert fast == ref
    assert _fast([rel], window=7, read=1) == ref


# -- synthetic streams -------------------------------------------------------------

PLACES = {
    "refused": (1, [7211, 7212]), "firewall": (2, [9000]), "timeout": (5, [9999]),
    "half-open": (2, [443]), "probe": (1, [22]), "clean": (2, [80]), "overflow": (3, [8080]),
    "abort": (3, [5432]), "injected": (4, [443]), "reuse": (3, [80]), "stale": (4, [6379]),
    "unreachable": (6, [7]),
}  # fmt: skip


def _icmp4(router: str, client: str, quoted: bytes) -> bytes:
    import socket

    body = bytes([3, 1, 0, 0, 0, 0, 0, 0]) + quoted[:28]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 60, 1, 0,
                      socket.inet_aton(router), socket.inet_aton(client))  # fmt: skip
    return hdr + body


def _conn(rng: random.Random, t: int, kind: str, sport: int) -> list[tuple[int, bytes]]:
    """One scenario's packets (ts, Ethernet frame)."""
    v6 = rng.random() < 0.15
    n = rng.randrange(1, 250)
    cli = f"2001:db8:1::{n:x}" if v6 else f"198.51.100.{n}"
    # Each kind has its own servers and ports, so that settle() sees every kind
    # (a client failing on many ports would be a scanner instead).
    host, ports = PLACES.get(kind, (rng.randrange(1, 7), [rng.randrange(1, 65536)]))
    srv = f"2001:db8::{host}" if v6 else f"192.0.2.{host}"
    port = rng.choice(ports)
    vl: tuple[int, ...] = (100,) if rng.random() < 0.05 else ()
    ext = (not vl) and v6 and rng.random() < 0.2
    ttl_c, ttl_s = 64, 64
    isn, risn = rng.randrange(1 << 32), rng.randrange(1 << 32)
    out: list[tuple[int, bytes]] = []

    def pkt(dt: float, fromc: bool, seq: int, ack: int, flags: int, ttl: int | None = None) -> None:
        s, d, sp, dp = (cli, srv, sport, port) if fromc else (srv, cli, port, sport)
        tl = ttl if ttl is not None else (ttl_c if fromc else ttl_s)
        seq &= 0xFFFFFFFF
        ack &= 0xFFFFFFFF
        if v6:
            ip = pcapgen.ipv6_tcp(s, d, sp, dp, seq, ack, flags, hlim=tl,
                                  ext=pcapgen.hop_by_hop() if ext else b"",
                                  ext_nh=0)  # fmt: skip
        else:
            ip = pcapgen.ipv4_tcp(s, d, sp, dp, seq, ack, flags, ttl=tl, ip_id=rng.randrange(65536))
        out.append((t + int(dt * 1e6) + rng.randrange(1000), pcapgen.ethernet(ip, vl)))

    rtt = rng.uniform(0.0001, 0.05)
    if kind in ("refused", "firewall"):
        for k in range(rng.choice([1, 1, 2])):
            pkt(k * 1.0, True, isn, 0, 0x02)
        pkt(rtt + (1.0 if len(out) > 1 else 0), False, 0, isn + 1, 0x14,
            ttl=ttl_s if kind == "refused" else 50)  # fmt: skip
    elif kind == "timeout":
        for k, dt in enumerate([0, 1, 3, 7, 15][: rng.randrange(1, 6)]):
            pkt(dt + k * 0.001, True, isn, 0, 0x02)
    elif kind == "half-open":
        pkt(0, True, isn, 0, 0x02)
        for dt in [0, 1, 3, 7, 15][: rng.randrange(1, 6)]:
            pkt(rtt + dt, False, risn, isn + 1, 0x12)
    elif kind == "probe":
        pkt(0, True, isn, 0, 0x02)
        pkt(rtt, False, risn, isn + 1, 0x12)
        pkt(2 * rtt, True, isn + 1 + rng.choice([0, 0, 0, 100]), 0, 0x04)
    elif kind in ("clean", "overflow", "abort", "injected", "reuse"):
        pkt(0, True, isn, 0, 0x02)
        pkt(rtt, False, risn, isn + 1, 0x12)
        if kind == "overflow":
            pkt(rtt + 1, False, risn, isn + 1, 0x12)
        nb = rng.randrange(0, 5000)
        if kind == "abort":
            pkt(2 * rtt + 2, False, risn + 1 + nb, isn + 1, 0x14)
        elif kind == "injected":
            pkt(2 * rtt + 1, False, risn + 1, isn + 1, 0x14, ttl=ttl_s - 7)
            pkt(2 * rtt + 1.5, False, risn + 1 + nb, isn + 1, 0x11)
        else:
            first_c = rng.random() < 0.5
            pkt(2 * rtt + 1, first_c, (isn if first_c else risn) + 1 + nb, 0, 0x11)
            pkt(3 * rtt + 1, not first_c, (risn if first_c else isn) + 1, 0, 0x11)
        if kind == "reuse":
            isn2 = (isn + 99991) & 0xFFFFFFFF
            pkt(rng.choice([1.5, 3, 8]), True, isn2, 0, 0x02)
            pkt(rng.choice([1.5, 3, 8]) + rtt, False, 0, isn2 + 1, 0x14)
    elif kind == "stale":
        pkt(0, False, risn, 0, 0x04)
    elif kind == "unreachable" and not v6 and not vl:
        syn = pcapgen.ipv4_tcp(cli, srv, sport, port, isn, 0, 0x02)
        out.append((t, pcapgen.ethernet(syn)))
        icmp = _icmp4("203.0.113.254", cli, syn)
        out.append((t + int(rtt * 1e6), pcapgen.ethernet(icmp)))
        if rng.random() < 0.3:  # an ICMP for a SYN the capture missed
            out.pop(0)
    elif kind == "odd":
        pkt(0, True, isn, 0, rng.choice([0x03, 0x06, 0x12, 0x11, 0x01, 0x42 | 0x80]))
        pkt(rtt, False, risn, isn + 1, rng.choice([0x12, 0x14, 0x04, 0x11]))
        pkt(2 * rtt, True, isn, 0, 0x02)
    elif kind == "scan":
        pass
    return out


KINDS = ["refused", "firewall", "timeout", "half-open", "probe", "clean", "overflow", "abort",
         "injected", "reuse", "stale", "unreachable", "odd"]  # fmt: skip


def synthetic(n: int, seed: int, span_s: float = 60.0) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    pkts: list[tuple[int, bytes]] = []
    for i in range(n):
        t = T0 + int(rng.uniform(0, span_s) * 1e6)
        kind = rng.choice(KINDS)
        sport = 20000 + rng.randrange(200) if rng.random() < 0.3 else 30000 + i
        pkts += _conn(rng, t, kind, sport)
    # A scanner: one source, many ports, refused.
    for k in range(25):
        t = T0 + int(5e6) + k * 20_000
        syn = pcapgen.ipv4_tcp("203.0.113.9", "192.0.2.1", 40000, 1000 + k, 7, 0, 0x02)
        rst = pcapgen.ipv4_tcp("192.0.2.1", "203.0.113.9", 1000 + k, 40000, 0, 8, 0x14)
        pkts += [(t, pcapgen.ethernet(syn)), (t + 50, pcapgen.ethernet(rst))]
    pkts.sort(key=lambda p: p[0])
    return pkts


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("fast") / "synthetic.pcap"
    path.write_bytes(pcapgen.pcap(synthetic(10_000, seed=7), linktype=1))
    return str(path)


@pytest.fixture(scope="module")
def small_stream(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("fast") / "small.pcap"
    path.write_bytes(pcapgen.pcap(synthetic(2_000, seed=11), linktype=1))
    return str(path)


@pytest.mark.parametrize(
    ("size", "bs", "window", "read"),
    [
        ("big", 4096, 262144, None),
        ("big", 4096, 1000, 4096),
        ("big", 3, 1000, 6),
        ("small", 4, 7, 4),  # windows of 7 rows: 10k connections would take minutes
        ("small", 4096, 7, 1),
    ],
)
def test_synthetic_identical(
    stream: str,
    small_stream: str,
    size: str,
    bs: int,
    window: int,
    read: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = stream if size == "big" else small_stream
    ref = _reference([path], monkeypatch, bs=bs)
    assert ref["totals"]["connections"] > (10_000 if size == "big" else 2_000)
    assert {f["kind"] for f in ref["findings"]} >= {
        "refused", "timeout", "half-open", "abort", "stale", "injected", "scan", "unreachable",
        "listen-overflow", "firewall-reject",
    }  # fmt: skip
    assert _fast([path], bs=bs, window=window, read=read) == ref
    if bs == 4096 and read is None:
        # The default path: a child process reads, small windows settle meanwhile.
        assert result_dict(analyze_files([path])) == ref


@pytest.mark.parametrize("flush", [1, 5, 97])
def test_sliced_final_flush(stream: str, flush: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parked connections flushed at the end in slices of first-packet order, each
    aggregated before the next: the emission order is kept across slices."""
    ref = _reference([stream], monkeypatch)
    monkeypatch.setattr(fastpath, "FLUSH_CONNS", flush)
    assert _fast([stream]) == ref
    assert _fast([stream], window=1000, read=4096) == ref


def test_flood_parks_and_rebuilds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of simple patterns (half-open, refused, timeouts) crowded in time, read
    in small windows: most connections wait parked across windows (half-open ones
    until the end), parked chunks are rebuilt as rows leave and merged as they pile up."""
    rng = random.Random(23)
    pk: list[tuple[int, bytes]] = []
    for i in range(3000):
        t = T0 + int(rng.uniform(0, 20) * 1e6)
        pk += _conn(rng, t, rng.choice(["half-open", "refused", "timeout"]), 10000 + i)
    pk.sort(key=lambda p: p[0])
    path = tmp_path / "flood.pcap"
    path.write_bytes(pcapgen.pcap(pk, linktype=1))
    ref = _reference([str(path)], monkeypatch, bs=64)  # (batch ends matter to the tracker)
    assert {f["kind"] for f in ref["findings"]} >= {"refused", "timeout", "half-open"}
    rebuilt: list[int] = []
    rebuild = fastpath.FastAnalysis._rebuild

    def spy(self: fastpath.FastAnalysis, chunks: list[Any]) -> Any:
        rebuilt.append(len(chunks))
        return rebuild(self, chunks)

    monkeypatch.setattr(fastpath.FastAnalysis, "_rebuild", spy)
    monkeypatch.setattr(fastpath, "MAX_CHUNKS", 4)
    assert _fast([str(path)], bs=64, window=300, read=64) == ref
    assert 1 in rebuilt and max(rebuilt) > 1  # rows left chunks; chunks were merged


@pytest.mark.parametrize("seed", range(6))
def test_small_streams_identical(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few connections crowded in time: ties, reuse and timers at batch ends."""
    path = tmp_path / "s.pcap"
    path.write_bytes(pcapgen.pcap(synthetic(60, seed=seed, span_s=8.0), linktype=1))
    for bs, window, read in [(4096, 262144, None), (2, 7, 2), (5, 11, 5)]:
        ref = _reference([str(path)], monkeypatch, bs=bs)
        assert _fast([str(path)], bs=bs, window=window, read=read) == ref, (bs, window)


def test_port_reuse_and_late_retransmits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same 4-tuple: SYNs 0/1/3/7/15 s (Zeek splits at 5 s), then reused."""
    syn = pcapgen.ipv4_tcp("198.51.100.1", "192.0.2.1", 5, 80, 1, 0, 2)
    pk = [(T0 + dt * 1_000_000, syn) for dt in (0, 1, 3, 7, 15)]
    pk.append((T0 + 16_000_000, pcapgen.ipv4_tcp("198.51.100.1", "192.0.2.1", 5, 80, 9, 0, 2)))
    pk.append((T0 + 16_000_100, pcapgen.ipv4_tcp("192.0.2.1", "198.51.100.1", 80, 5, 0, 10, 0x14)))
    path = tmp_path / "r.pcap"
    path.write_bytes(pcapgen.pcap([(t, pcapgen.ethernet(p)) for t, p in pk], linktype=1))
    for bs in (1, 2, 4096):
        ref = _reference([str(path)], monkeypatch, bs=bs)
        assert _fast([str(path)], bs=bs, window=1, read=bs) == ref


def test_unordered_capture_falls_back(tmp_path: Path) -> None:
    pk = [(T0 + 10, pcapgen.ipv4_tcp("198.51.100.1", "192.0.2.1", 5, 80, 1, 0, 2)),
          (T0, pcapgen.ipv4_tcp("198.51.100.2", "192.0.2.1", 5, 80, 1, 0, 2))]  # fmt: skip
    path = tmp_path / "u.pcap"
    path.write_bytes(pcapgen.pcap([(t, pcapgen.ethernet(p)) for t, p in pk], linktype=1))
    assert fastpath.analyze_fast([str(path)]) is None


def test_truncated_capture_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """libpcap fails on a record cut short: the reference salvages, with its warning."""
    data = pcapgen.pcap(synthetic(300, seed=3), linktype=1)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: len(data) - 30])
    ref = _reference([str(path)], monkeypatch)
    assert ref["warnings"]
    assert result_dict(analyze_files([str(path)])) == ref
    assert fastpath.analyze_fast([str(path)]) is None


def test_reader_child_is_reaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from rstrace.sources import prefetch

    pids: list[int] = []
    init = prefetch.Prefetch.__init__

    def spy(self: prefetch.Prefetch, *a: Any) -> None:
        init(self, *a)
        assert self.pid is not None
        pids.append(self.pid)

    monkeypatch.setattr(prefetch.Prefetch, "__init__", spy)
    path = tmp_path / "s.pcap"
    path.write_bytes(pcapgen.pcap(synthetic(50, seed=5), linktype=1))
    analyze_files([str(path)])
    assert len(pids) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)  # reaped: no zombie left behind
