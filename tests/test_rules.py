"""Rules on small synthetic exchanges that real traffic here cannot easily make.

Each case runs through both findings paths (the vectorized one and the reference),
which must agree, and asserts the kinds found (or that nothing was).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rstrace.analyze import analyze_files
from rstrace.render.json import result_dict
from tests import pcapgen as g

T0 = 1_700_000_000_000_000
C, S = "192.0.2.1", "192.0.2.2"


def _syn(t: int, sport: int, isn: int = 1000) -> tuple[int, bytes]:
    return t, g.ipv4_tcp(C, S, sport, 8080, isn, 0, 0x02)


def _synack(t: int, sport: int, isn: int = 1000, sisn: int = 9000) -> tuple[int, bytes]:
    return t, g.ipv4_tcp(S, C, 8080, sport, sisn, isn + 1, 0x12)


def _kinds(tmp_path: Path, pkts: list[tuple[int, bytes]], *, monkeypatch: pytest.MonkeyPatch,
           link: str = "ether") -> list[tuple[str, int]]:  # fmt: skip
    path = tmp_path / "x.pcap"
    path.write_bytes(g.pcap([(t, g.wrap(link, p)) for t, p in pkts], g.LINKTYPE[link]))
    out = []
    for ref in ("0", "1"):
        monkeypatch.setenv("RSTRACE_REFERENCE", ref)
        out.append(result_dict(analyze_files([str(path)])))
    assert out[0]["findings"] == out[1]["findings"]
    return [(f["kind"], f["count"]) for f in out[1]["findings"]]


def test_a_lost_syn_ack_is_not_an_overflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SYN, SYN-ACK lost, SYN again, SYN-ACK again, then a normal close."""
    pkts = []
    for i in range(4):
        t, sp = T0 + i * 5_000_000, 40000 + i
        pkts += [_syn(t, sp), _synack(t + 50, sp), _syn(t + 1_000_000, sp),
                 _synack(t + 1_000_050, sp),
                 (t + 1_200_000, g.ipv4_tcp(C, S, sp, 8080, 1101, 9001, 0x11)),
                 (t + 1_200_100, g.ipv4_tcp(S, C, 8080, sp, 9001, 1102, 0x11))]  # fmt: skip
    assert _kinds(tmp_path, pkts, monkeypatch=monkeypatch) == []


def test_syn_ack_resent_while_the_client_thinks_it_is_connected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One client SYN, the SYN-ACK re-sent 1 s later, the client closes: accept queue full."""
    pkts = []
    for i in range(3):
        t, sp = T0 + i * 10_000_000, 41000 + i
        pkts += [_syn(t, sp), _synack(t + 50, sp), _synack(t + 1_000_050, sp),
                 (t + 2_000_000, g.ipv4_tcp(C, S, sp, 8080, 1001, 9001, 0x11))]  # fmt: skip
    assert _kinds(tmp_path, pkts, monkeypatch=monkeypatch) == [("listen-overflow", 3)]


def test_client_reset_after_sending_data_is_an_abort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkts = []
    for i in range(3):
        t, sp = T0 + i * 1_000_000, 42000 + i
        pkts += [_syn(t, sp), _synack(t + 50, sp),
                 (t + 5000, g.ipv4_tcp(C, S, sp, 8080, 1101, 9001, 0x14))]  # fmt: skip
    assert _kinds(tmp_path, pkts, monkeypatch=monkeypatch) == [("abort", 3)]


@pytest.mark.parametrize("link", ["sll", "sll2"])
def test_copies_from_tcpdump_any_on_a_bridge_are_not_retransmissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str
) -> None:
    """Each packet seen on the veth and on the bridge: clean exchanges stay clean, and
    a SYN the capture ended on is not 're-sent' (which would make it a timeout)."""
    pkts = []
    for i in range(3):
        t, sp = T0 + i * 1_000_000, 43000 + i
        for pt, p in [_syn(t, sp), _synack(t + 50, sp),
                      (t + 900, g.ipv4_tcp(C, S, sp, 8080, 1001, 9001, 0x11)),
                      (t + 950, g.ipv4_tcp(S, C, 8080, sp, 9001, 1002, 0x11))]:  # fmt: skip
            pkts += [(pt, p), (pt + 3, p), (pt + 6, p)]
    last_syn = _syn(T0 + 3_000_000, 43999)
    pkts += [last_syn, (last_syn[0] + 4, last_syn[1])]
    assert _kinds(tmp_path, pkts, link=link, monkeypatch=monkeypatch) == []


def test_a_capture_starting_mid_connection_names_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's bare RST to the client's data is the first control packet seen."""
    pkts = []
    for i in range(3):
        t, sp = T0 + i * 1_000_000, 44000 + i
        pkts += [(t, g.ipv4_tcp(C, S, sp, 7000, 5000, 6000, 0x18, payload=b"x" * 10)),
                 (t + 80, g.ipv4_tcp(S, C, 7000, sp, 6000, 0, 0x04))]  # fmt: skip
    assert _kinds(tmp_path, pkts, monkeypatch=monkeypatch) == [("stale", 3)]
    doc = result_dict(analyze_files([str(tmp_path / "x.pcap")]))
    (f,) = doc["findings"]
    assert (f["server"], f["ports"], f["clients"]) == (S, [7000], [C])
    assert f["details"]["reset_by"] == {"responder": 3}


def _refused(t: int, client: str, server: str, sport: int, port: int) -> list[tuple[int, bytes]]:
    return [(t, g.ipv4_tcp(client, server, sport, port, 77, 0, 0x02)),
            (t + 40, g.ipv4_tcp(server, client, port, sport, 0, 78, 0x14))]  # fmt: skip


def test_many_servers_on_one_port_is_not_a_port_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A monitor with 16 dead backends on :8080 gets 16 refused findings, no scan."""
    pkts: list[tuple[int, bytes]] = []
    for i in range(16):
        pkts += _refused(T0 + i * 100_000, C, f"198.51.100.{i + 1}", 45000 + i, 8080)
    kinds = _kinds(tmp_path, pkts, monkeypatch=monkeypatch)
    assert kinds == [("refused", 1)] * 16


def test_a_scanner_takes_its_connections_and_leaves_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A legit client refused on :7211 while a scanner sweeps 20 ports including 7211."""
    scanner = "203.0.113.9"
    pkts = _refused(T0, C, S, 46000, 7211) + _refused(T0 + 10_000, C, S, 46001, 7211)
    for i, port in enumerate(range(7200, 7220)):
        pkts += _refused(T0 + 5_000_000 + i * 1000, scanner, S, 47000 + i, port)
    kinds = _kinds(tmp_path, pkts, monkeypatch=monkeypatch)
    assert sorted(kinds) == [("refused", 2), ("scan", 20)]
    doc = result_dict(analyze_files([str(tmp_path / "x.pcap")]))
    refused = next(f for f in doc["findings"] if f["kind"] == "refused")
    scan = next(f for f in doc["findings"] if f["kind"] == "scan")
    assert refused["clients"] == [C] and refused["ports"] == [7211]
    assert scan["clients"] == [scanner] and len(scan["ports"]) == 20
    # Evidence and times move with a port only when the scanner was its only client
    # (aggregates keep those per port, not per client): :7211 keeps its own.
    assert scan["evidence"] and all(scanner in e["tcpdump"] for e in scan["evidence"])
    assert all(C in e["tcpdump"] for e in refused["evidence"])
    assert sum(n for _, n in doc["series"]["scan"]) == 20 - 1
