"""Counter parsers on /proc files recorded from this kernel (tests/data/proc/README.txt)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from rstrace.sources.counters import (
    COUNTERS,
    CounterParseError,
    deltas,
    parse_pairs,
    parse_snmp6,
    read_counters,
)

PROC = Path(__file__).parent / "data" / "proc"


def _names_in(text: str) -> int:
    """Counter names in a header/value file, counted without the parser."""
    heads = [ln for i, ln in enumerate(text.splitlines()) if i % 2 == 0]
    return sum(len(h.split()) - 1 for h in heads)


@pytest.mark.parametrize("snap", ["root", "netns-before", "netns-after"])
def test_every_counter_of_every_file_is_read(snap: str) -> None:
    net = PROC / snap / "net"
    c = read_counters(PROC / snap)
    snmp, netstat = (net / "snmp").read_text(), (net / "netstat").read_text()
    snmp6_lines = [ln for ln in (net / "snmp6").read_text().splitlines() if ln.strip()]
    assert len(c) == _names_in(snmp) + _names_in(netstat) + len(snmp6_lines)
    assert c["Tcp.RtoMax"] == 120000 and c["Tcp.MaxConn"] == -1  # signed values survive


def test_keys_are_group_dot_name() -> None:
    c = read_counters(PROC / "netns-after")
    for key in ("Tcp.AttemptFails", "TcpExt.ListenOverflows", "IpExt.InOctets",
                "Icmp6.OutDestUnreachs", "Ip6.InReceives", "Udp6.NoPorts",
                "UdpLite6.InDatagrams", "MPTcpExt.MPCapableSYNRX"):  # fmt: skip
        assert key in c, key
    # per-type ICMP counters exist only once such a message was seen (root saw some)
    root = read_counters(PROC / "root")
    assert root["Icmp6.InType1"] == 1 and root["IcmpMsg.InType3"] == 1
    assert "Icmp6.InType1" not in c
    assert not [k for k in c if k.startswith(("Tcp6", "Tcp6."))]  # no separate IPv6 TCP group


def test_table_names_real_counters_of_this_kernel() -> None:
    """A typo in COUNTERS would silently show nothing: every key must exist here."""
    c = read_counters(PROC / "root")
    assert [k for k in COUNTERS if k not in c] == []
    for key, info in COUNTERS.items():
        assert info.meaning and re.match(r"_*[a-z]\w*\(", info.kernel), key


def test_refused_connects_v4_and_v6_share_the_tcp_counters() -> None:
    """7 IPv4 + 5 IPv6 refused connect()s on loopback: Tcp counts all 12 together."""
    d = deltas(read_counters(PROC / "netns-before"), read_counters(PROC / "netns-after"))
    assert d["Tcp.ActiveOpens"] == 12
    assert d["Tcp.AttemptFails"] == 12
    assert d["Tcp.OutRsts"] == 12  # the same namespace answered its own SYNs
    assert d["Tcp.EstabResets"] == 0 and d["TcpExt.EmbryonicRsts"] == 0
    assert d["Ip6.InReceives"] > 0 and d["Icmp6.OutDestUnreachs"] == 0


def test_snmp6_missing_when_ipv6_is_off(tmp_path: Path) -> None:
    shutil.copytree(PROC / "netns-after", tmp_path / "p")
    (tmp_path / "p/net/snmp6").unlink()
    c = read_counters(tmp_path / "p")
    assert c["Tcp.AttemptFails"] == 12 and not [k for k in c if k.startswith("Ip6.")]


def test_no_proc(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is /proc mounted"):
        read_counters(tmp_path)


def test_length_mismatch_names_file_and_group() -> None:
    # one more name in Udp's header line than values in its value line
    text = (PROC / "root/net/snmp").read_text().replace("Udp: ", "Udp: Extra ", 1)
    with pytest.raises(CounterParseError, match=r"snmp: Udp has \d+ names but \d+ values"):
        parse_pairs(text, "snmp")


@pytest.mark.parametrize(
    "text, msg",
    [
        ("Tcp: A B\n", "odd number of lines"),
        ("Tcp: A B\nUdp: 1 2\n", "header 'Tcp' followed by 'Udp'"),
        ("Tcp: A B\nTcp: 1 x\n", "Tcp"),
    ],
)
def test_bad_pairs(text: str, msg: str) -> None:
    with pytest.raises(CounterParseError, match=msg):
        parse_pairs(text, "netstat")


@pytest.mark.parametrize("line", ["Ip6InReceives", "Ip6InReceives 1 2", "Bogus 3", "Ip6X y"])
def test_bad_snmp6(line: str) -> None:
    with pytest.raises(CounterParseError, match="snmp6"):
        parse_snmp6(line + "\n")


def test_per_type_icmp_counter_appearing_counts_from_zero() -> None:
    """IcmpMsg lines list only the types seen so far: a new one was 0 before."""
    before = parse_pairs("Tcp: AttemptFails\nTcp: 4\n")
    after = parse_pairs("Tcp: AttemptFails\nTcp: 5\nIcmpMsg: InType3\nIcmpMsg: 2\n")
    assert deltas(before, after) == {"Tcp.AttemptFails": 1, "IcmpMsg.InType3": 2}
