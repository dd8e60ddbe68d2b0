"""The command line as users and scripts see it: real processes, exit codes, stderr."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pcapgen as g

ROOT = Path(__file__).parent.parent
CAPS = ROOT / "tests" / "data" / "captures"


def rstrace(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "rstrace", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_case_study_in_one_command() -> None:
    """The case study's answer: 127.0.0.1:7211 refused, nothing listening."""
    p = rstrace("analyze", str(CAPS / "refused-v4.pcap"))
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert "1. refused  127.0.0.1:7211" in out
    assert "nothing\n   listens on port 7211" in out or "nothing listens on port 7211" in out
    assert "Flags [R.]" in out and p.stderr == b""


def test_json_schema_and_exit_code() -> None:
    p = rstrace("analyze", "--json", "--exit-code", str(CAPS / "refused-v6.pcap"))
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert doc["schema"] == "rstrace.analyze/1"
    (f,) = doc["findings"]
    assert (f["kind"], f["server"], f["ports"], f["count"]) == ("refused", "::1", [7211], 6)
    syn, rst = f["evidence"]
    assert syn["note"] == "SYN" and "::1.7211: Flags [S]" in syn["tcpdump"]
    assert rst["note"] == "RST from responder" and "::1.7211 > ::1." in rst["tcpdump"]
    assert "Flags [R.], cksum" in rst["tcpdump"] and rst["tcpdump"].startswith("16:")
    assert doc["totals"]["failed_connections"] == 6
    assert sum(n for _, n in doc["series"]["refused"]) == 6


def test_exit_code_zero_when_clean() -> None:
    p = rstrace("analyze", "--exit-code", str(CAPS / "handshake-ok.pcap"))
    assert p.returncode == 0
    assert b"No failed connections" in p.stdout


def test_zeek_json_is_one_conn_log_object_per_connection() -> None:
    p = rstrace("analyze", "--format", "zeek-json", str(CAPS / "handshake-ok.pcap"))
    assert p.returncode == 0
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(rows) == 3
    for r in rows:
        assert r["conn_state"] == "SF" and r["proto"] == "tcp"
        assert r["history"].startswith("ShAD") or r["history"].startswith("ShAd")
        assert (r["orig_bytes"], r["resp_bytes"]) == (500, 500)
        assert set(r) >= {"ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"}


def test_connections_table_names_the_kind() -> None:
    p = rstrace("analyze", "--connections", str(CAPS / "firewall-reject-router.pcap"))
    lines = p.stdout.decode().splitlines()
    assert lines[0].split() == ["time", "client", "server", "kind", "state", "history"]
    assert len(lines) == 4
    assert all("firewall-reject" in line and " REJ " in line for line in lines[1:])


def test_stdin_pipe() -> None:
    data = (CAPS / "refused-v4-gz.pcap.gz").read_bytes()
    p = rstrace("analyze", "--json", "-", stdin=data)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["findings"][0]["count"] == 6


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "No such file or directory"),
        (b"", "empty file"),
        (b"GET / HTTP/1.1\r\n", "not a pcap or pcapng capture"),
        (g.pcap([], 1), "capture holds no packets"),
        (g.pcap([(1, b"\0" * 40)], 147), "unsupported link type 147"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "input"
    if content is not None:
        path.write_bytes(content)
    p = rstrace("analyze", str(path))
    assert p.returncode == 2
    err = p.stderr.decode()
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_truncated_capture_gives_results_and_one_warning(tmp_path: Path) -> None:
    data = (CAPS / "refused-v4.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 30])
    p = rstrace("analyze", "--json", "--exit-code", str(cut))
    assert p.returncode == 1
    assert json.loads(p.stdout)["findings"][0]["kind"] == "refused"
    err = p.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("rstrace: warning:") and "stopped" in err


def test_help_has_examples() -> None:
    p = rstrace("analyze", "--help")
    assert p.returncode == 0 and b"examples:" in p.stdout and b"rstrace analyze -" in p.stdout


def test_top_limits_text_and_says_how_many_more(tmp_path: Path) -> None:
    """25 refused ports on 25 servers: 20 shown, '5 more'."""
    pkts = []
    for i in range(25):
        for t, p in g.refused_exchange(4, t0=1_700_000_000_000_000 + i * 10_000, n=1,
                                       port=1000 + i):  # fmt: skip
            pkts.append((t, p.replace(b"\x7f\x00\x00\x01", bytes([127, 0, 0, 2 + i]))))
    path = tmp_path / "many.pcap"
    path.write_bytes(g.pcap([(t, g.ethernet(p)) for t, p in pkts], 1))
    out = rstrace("analyze", str(path)).stdout.decode()
    shown = [line for line in out.splitlines() if re.match(r"\d+\. ", line)]
    assert [int(line.split(".")[0]) for line in shown] == list(range(1, 21))
    assert all(". refused  127.0.0." in line for line in shown)
    assert "5 more findings" in out


def test_a_kind_over_many_ports_of_one_server_is_one_finding(tmp_path: Path) -> None:
    """25 closed ports of one server, each client trying 5 (no scanner): one finding."""
    pkts = []
    for i in range(25):
        client = bytes([127, 0, 0, 10 + i // 5])
        for t, p in g.refused_exchange(4, t0=1_700_000_000_000_000 + i * 10_000, n=1,
                                       port=2000 + i):  # fmt: skip
            # Rewrite the client side of SYN (src) and RST (dst) only.
            p = p[:12] + client + p[16:] if p[33] & 0x02 else p[:16] + client + p[20:]
            pkts.append((t, p))
    path = tmp_path / "spread.pcap"
    path.write_bytes(g.pcap([(t, g.ethernet(p)) for t, p in pkts], 1))
    doc = json.loads(rstrace("analyze", "--json", str(path)).stdout)
    (f,) = doc["findings"]
    assert f["kind"] == "refused" and f["server"] == "127.0.0.1"
    assert f["ports"] == list(range(2000, 2025)) and f["count"] == 25
    assert len(f["clients"]) == 5


def test_health_check_probes_are_not_failures(tmp_path: Path) -> None:
    """SYN, SYN-ACK, client RST (a load balancer's check): no finding, no failure."""
    pkts = []
    for i in range(5):
        t = 1_700_000_000_000_000 + i * 1_000_000
        sport, isn, sisn = 50000 + i, 1000 + i, 9000 + i
        pkts += [
            (t, g.ipv4_tcp("192.0.2.1", "192.0.2.2", sport, 8080, isn, 0, 0x02)),
            (t + 50, g.ipv4_tcp("192.0.2.2", "192.0.2.1", 8080, sport, sisn, isn + 1, 0x12)),
            (t + 90, g.ipv4_tcp("192.0.2.1", "192.0.2.2", sport, 8080, isn + 1, 0, 0x04)),
        ]
    path = tmp_path / "hc.pcap"
    path.write_bytes(g.pcap([(t, g.ethernet(p)) for t, p in pkts], 1))
    p = rstrace("analyze", "--exit-code", str(path))
    assert p.returncode == 0
    text = p.stdout.decode().replace("\n", " ")
    assert "5 TCP connections, 0 failed" in text and "No failed connections" in text
    table = rstrace("analyze", "--connections", str(path)).stdout.decode().splitlines()
    assert len(table) == 1  # the header only
