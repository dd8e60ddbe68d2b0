"""Golden tests: rstrace.render.tcpdump against REAL tcpdump 4.99.3 output.

Every tests/data/printer/<name>.pcap has <name>.out beside it, written by the
real ``TZ=UTC tcpdump -n -v -r`` (regen.sh). No tcpdump runs here.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pcapy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rstrace.render.tcpdump import TcpdumpPrinter, format_packet

DATA = Path(__file__).parent / "data" / "printer"
PCAPS = sorted(DATA.glob("*.pcap"))

Packet = tuple[int, bytes, int]  # (ts_us, bytes from the IP header, wire length from it)


def _link_len(dlt: int, frame: bytes) -> int:
    """Bytes of link layer in front of the IP header for the link types used here."""
    if dlt == 1:  # Ethernet, plus 4 per 802.1Q / 802.1ad tag
        off = 14
        etype = struct.unpack("!H", frame[12:14])[0] if len(frame) >= 14 else 0
        while etype in (0x8100, 0x88A8) and len(frame) >= off + 4:
            etype = struct.unpack("!H", frame[off + 2 : off + 4])[0]
            off += 4
        return off
    return {113: 16, 101: 0, 12: 0, 0: 4, 108: 4}[dlt]


def read_ip_packets(path: Path) -> list[Packet]:
    reader = pcapy.open_offline(str(path))
    dlt = reader.datalink()
    out: list[Packet] = []
    while True:
        hdr, frame = reader.next()
        if hdr is None:
            break
        off = _link_len(dlt, frame)
        sec, usec = hdr.getts()
        out.append((sec * 1_000_000 + usec, frame[off:], hdr.getlen() - off))
    return out


def expected_lines(path: Path) -> list[str]:
    """One entry per packet: a packet's output may span several lines, the
    continuation ones starting with a space or a tab."""
    entries: list[str] = []
    for line in path.with_suffix(".out").read_text().splitlines():
        if entries and line[:1] in (" ", "\t", ""):
            entries[-1] += "\n" + line
        else:
            entries.append(line)
    return entries


def test_goldens_exist() -> None:
    assert len(PCAPS) >= 10
    for p in PCAPS:
        assert p.with_suffix(".out").exists(), p


@pytest.mark.parametrize("pcap", PCAPS, ids=[p.stem for p in PCAPS])
def test_capture_matches_tcpdump(pcap: Path) -> None:
    printer = TcpdumpPrinter()
    got = "".join(printer.format(ts, raw, wire) + "\n" for ts, raw, wire in read_ip_packets(pcap))
    assert got == pcap.with_suffix(".out").read_text()


ONE_PACKET = ["real_refused", "real_reject", "syn_linktype_raw"]


@pytest.mark.parametrize("name", ONE_PACKET)
def test_format_packet_alone(name: str) -> None:
    """format_packet() is a fresh printer: right for packets tcpdump prints without
    state (no ACK seen earlier on the connection), i.e. a one-packet capture."""
    pkts = read_ip_packets(DATA / f"{name}.pcap")
    exp = expected_lines(DATA / f"{name}.pcap")
    assert len(pkts) == len(exp)
    first = pkts[0]
    assert format_packet(first[0], first[1], first[2]) == exp[0]
    assert format_packet(first[0], first[1]) == exp[0]  # wire_len defaults to len(raw)
    # RST/ACK answering a bare SYN: a new entry, printed with absolute numbers.
    for (ts, raw, wire), line in zip(pkts, exp, strict=False):
        if "Flags [S]," in line or "Flags [R.]" in line or "ICMP" in line:
            assert format_packet(ts, raw, wire) == line


def test_relative_sequence_state() -> None:
    pkts = read_ip_packets(DATA / "syn_relative_seq.pcap")
    exp = expected_lines(DATA / "syn_relative_seq.pcap")
    printer = TcpdumpPrinter()
    assert [printer.format(*p) for p in pkts] == exp
    # Without the state the ACK after the SYN-ACK would print its absolute ack.
    assert "ack 5001" in format_packet(*pkts[2])
    assert "ack 1," in exp[2]


SEEDS = [raw for p in PCAPS for _, raw, _ in read_ip_packets(p)]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    idx=st.integers(min_value=0, max_value=len(SEEDS) - 1),
    cut=st.integers(min_value=0, max_value=200),
    flips=st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), max_size=6),
    wire_extra=st.integers(min_value=0, max_value=100),
    ts=st.integers(min_value=0, max_value=2**40),
)
def test_never_raises(
    idx: int, cut: int, flips: list[tuple[int, int]], wire_extra: int, ts: int
) -> None:
    raw = bytearray(SEEDS[idx])
    for pos, val in flips:
        if pos < len(raw):
            raw[pos] = val
    data = bytes(raw[:cut])
    out = format_packet(ts, data, len(data) + wire_extra)
    assert isinstance(out, str) and out
    TcpdumpPrinter().format(ts, data)
