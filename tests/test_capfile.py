"""Reading captures: formats, link types, byte orders, gzip, stdin, truncation."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest

from rstrace.model import Segment, Unreachable
from rstrace.sources.blockreader import CaptureFormatError, StreamReader
from rstrace.sources.capfile import CaptureError, CaptureReader
from tests import pcapgen as g


def _read(paths: list[str], mode: str = "control", batch: int = 4096) -> tuple[list, CaptureReader]:
    r = CaptureReader(paths, mode=mode, batch_size=batch)
    recs = [rec for b in r.batches() for rec in b]
    return recs, r


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


@pytest.mark.parametrize("link", ["ether", "raw", "sll", "sll2", "null", "loop"])
@pytest.mark.parametrize("version", [4, 6])
def test_every_link_type_decodes_to_the_same_segments(
    tmp_path: Path, link: str, version: int
) -> None:
    pkts = g.refused_exchange(version)
    path = _write(tmp_path, f"{link}.pcap", g.pcap([(t, g.wrap(link, p)) for t, p in pkts],
                                                  g.LINKTYPE[link]))  # fmt: skip
    recs, _ = _read([path])
    assert [(r.sport, r.dport, r.flags, r.seq, r.ack) for r in recs] == [
        (41838, 7211, 0x02, 1000, 0), (7211, 41838, 0x14, 0, 1001),
        (41839, 7211, 0x02, 8919, 0), (7211, 41839, 0x14, 0, 8920),
        (41840, 7211, 0x02, 16838, 0), (7211, 41840, 0x14, 0, 16839),
    ]  # fmt: skip
    assert all(r.version == version for r in recs)
    assert recs[0].ts == 1_700_000_000_000_000


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_byte_orders_and_precisions(tmp_path: Path, nano: bool, big_endian: bool) -> None:
    pkts = [(1_700_000_000_123_456, g.ethernet(p)) for _, p in g.refused_exchange(4, n=1)]
    path = _write(tmp_path, "x.pcap", g.pcap(pkts, 1, nano=nano, big_endian=big_endian))
    recs, _ = _read([path])
    assert [r.ts for r in recs] == [1_700_000_000_123_456] * 2


def test_vlan_and_qinq(tmp_path: Path) -> None:
    ip = g.ipv4_tcp("192.0.2.1", "192.0.2.2", 1234, 80, 5, 0, 0x02)
    frames = [(1, g.ethernet(ip, vlans=(10,))), (2, g.ethernet(ip, vlans=(100, 10)))]
    recs, _ = _read([_write(tmp_path, "v.pcap", g.pcap(frames, 1))])
    assert [(r.src, r.dport) for r in recs] == [("192.0.2.1", 80)] * 2


def test_ipv6_extension_headers_reach_tcp_through_the_prefilter(tmp_path: Path) -> None:
    ip = g.ipv6_tcp("2001:db8::1", "2001:db8::2", 1234, 443, 5, 0, 0x02,
                    ext=g.hop_by_hop(6), ext_nh=0)  # fmt: skip
    recs, r = _read([_write(tmp_path, "e.pcap", g.pcap([(1, g.ethernet(ip))], 1))])
    assert r.summary.prefiltered
    assert len(recs) == 1 and recs[0].dport == 443 and recs[0].flags == 0x02


def test_prefilter_drops_data_but_keeps_control(tmp_path: Path) -> None:
    data = g.ipv4_tcp("192.0.2.1", "192.0.2.2", 1234, 80, 6, 1, 0x18, payload=b"x" * 100)
    syn = g.ipv4_tcp("192.0.2.1", "192.0.2.2", 1234, 80, 5, 0, 0x02)
    data6 = g.ipv6_tcp("2001:db8::1", "2001:db8::2", 1234, 80, 6, 1, 0x10)
    frames = [(1, g.ethernet(syn)), (2, g.ethernet(data)), (3, g.ethernet(data6))]
    path = _write(tmp_path, "d.pcap", g.pcap(frames, 1))
    control, _ = _read([path])
    everything, _ = _read([path], mode="all")
    assert [r.flags for r in control] == [0x02]
    assert [r.flags for r in everything] == [0x02, 0x18, 0x10]
    assert everything[1].payload == 100


def test_later_fragments_are_counted_not_decoded(tmp_path: Path) -> None:
    frag = g.ipv4_tcp("192.0.2.1", "192.0.2.2", 1, 2, 0, 0, 0x02, df=False, frag_offset=10)
    recs, r = _read([_write(tmp_path, "f.pcap", g.pcap([(1, g.ethernet(frag))], 1))])
    assert recs == [] and r.summary.stats.fragments_skipped == 1


def test_pcapng_two_interfaces_of_different_link_types_keep_names(tmp_path: Path) -> None:
    a = g.refused_exchange(4, n=1)
    b = g.refused_exchange(6, n=1, t0=1_700_000_001_000_000)
    pkts = [(0, t, g.ethernet(p)) for t, p in a] + [(1, t, g.sll(p)) for t, p in b]
    for big in (False, True):
        path = _write(tmp_path, f"two{big}.pcapng",
                      g.pcapng([(1, "eth0"), (113, "any")], pkts, big_endian=big))  # fmt: skip
        recs, r = _read([path])
        assert [(x.iface, x.version) for x in recs] == [("eth0", 4)] * 2 + [("any", 6)] * 2
        assert r.summary.interfaces == {"eth0", "any"}


def test_pcapng_one_interface_goes_through_libpcap_with_its_name(tmp_path: Path) -> None:
    pkts = [(0, t, g.ethernet(p)) for t, p in g.refused_exchange(4, n=2)]
    recs, _ = _read([_write(tmp_path, "one.pcapng", g.pcapng([(1, "lo")], pkts))])
    assert [x.iface for x in recs] == ["lo"] * 4


def test_pcapng_nanosecond_resolution(tmp_path: Path) -> None:
    pkts = [(0, 1_700_000_000_123_456, g.ethernet(g.refused_exchange(4, n=1)[0][1]))]
    data = g.pcapng([(1, "a"), (113, "b")], pkts, tsresol=9)
    recs, _ = _read([_write(tmp_path, "ns.pcapng", data)])
    assert recs[0].ts == 1_700_000_000_123_456


def test_gzip_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = g.pcap([(t, g.ethernet(p)) for t, p in g.refused_exchange(4)], 1)
    recs, _ = _read([_write(tmp_path, "c.pcap.gz", gzip.compress(raw))])
    assert len(recs) == 6

    class _Stdin:
        buffer = io.BytesIO(gzip.compress(raw))

    monkeypatch.setattr("sys.stdin", _Stdin)
    recs, _ = _read(["-"])
    assert len(recs) == 6


def test_files_are_read_in_time_order(tmp_path: Path) -> None:
    late = g.pcap(
        [(t, g.ethernet(p)) for t, p in g.refused_exchange(4, t0=2_000_000_000_000_000)], 1
    )
    early = g.pcap([(t, g.ethernet(p)) for t, p in g.refused_exchange(4)], 1)
    recs, _ = _read([_write(tmp_path, "b.pcap", late), _write(tmp_path, "a.pcap", early)])
    ts = [r.ts for r in recs]
    assert ts == sorted(ts)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (b"hello world, not a capture", "not a pcap"),
    ],
)
def test_not_a_capture_is_a_one_line_error(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(CaptureError, match=message):
        _read([_write(tmp_path, "bad", data)])


def test_missing_file() -> None:
    with pytest.raises(CaptureError, match="No such file"):
        _read(["/nonexistent/x.pcap"])


def _boundaries(data: bytes, first: int, header: int) -> list[int]:
    """Byte offsets where each classic pcap record starts."""
    import struct

    offs, off = [], first
    while off < len(data):
        offs.append(off)
        caplen = struct.unpack_from("<I", data, off + 8)[0]
        off += header + caplen
    return offs


@pytest.mark.parametrize("cut", ["boundary", "mid-header", "mid-data"])
def test_truncation_at_every_record_loses_nothing_readable(tmp_path: Path, cut: str) -> None:
    """Cut a capture longer than one batch at every record; all whole records are read."""
    pkts = g.refused_exchange(4, n=12)  # 24 records, batch of 5: several batches
    data = g.pcap([(t, g.ethernet(p)) for t, p in pkts], 1)
    starts = _boundaries(data, 24, 16)
    for i, start in enumerate(starts):
        end = {"boundary": start, "mid-header": start + 7, "mid-data": start + 16 + 20}[cut]
        path = _write(tmp_path, f"t{i}.pcap", data[:end])
        recs, r = _read([path], batch=5)
        assert len(recs) == i, (cut, i)
        if cut == "boundary":
            assert r.summary.warnings == []
        else:
            assert len(r.summary.warnings) == 1 and "stopped" in r.summary.warnings[0]


def test_pcapng_truncated_block_keeps_earlier_packets(tmp_path: Path) -> None:
    pkts = [(0, t, g.ethernet(p)) for t, p in g.refused_exchange(4, n=3)]
    data = g.pcapng([(1, "a"), (1, "b")], pkts)
    recs, r = _read([_write(tmp_path, "cut.pcapng", data[:-30])])
    assert len(recs) == 5
    assert "stopped at byte" in r.summary.warnings[0]


def test_stream_reader_rejects_garbage_magic() -> None:
    with pytest.raises(CaptureFormatError):
        list(StreamReader(io.BytesIO(b"\x00" * 64)))


def test_icmp_unreachable_quotes_the_syn(tmp_path: Path) -> None:
    import struct

    syn = g.ipv4_tcp("192.0.2.1", "198.51.100.2", 40000, 7211, 77, 0, 0x02)
    icmp = bytes([3, 3, 0, 0, 0, 0, 0, 0]) + syn[:28]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0,
                     bytes([198, 51, 100, 2]), bytes([192, 0, 2, 1])) + icmp  # fmt: skip
    recs, _ = _read(
        [_write(tmp_path, "u.pcap", g.pcap([(1, g.ethernet(syn)), (2, g.ethernet(ip))], 1))]
    )
    assert isinstance(recs[0], Segment) and isinstance(recs[1], Unreachable)
    u = recs[1]
    assert (u.quoted_src, u.quoted_dst, u.quoted_sport, u.quoted_dport, u.quoted_seq) == (
        "192.0.2.1", "198.51.100.2", 40000, 7211, 77)  # fmt: skip
    assert (u.icmp_type, u.icmp_code, u.src) == (3, 3, "198.51.100.2")


@pytest.mark.parametrize("tsresol", [6, 9, 0x80 | 20, 0x80 | 30, 0x80 | 10, 3])
def test_pcapng_timestamp_resolutions_power_of_10_and_2(tmp_path: Path, tsresol: int) -> None:
    """Two interfaces force our own reader; libpcap is the oracle for one interface."""
    import struct

    units = 2 ** (tsresol & 0x7F) if tsresol & 0x80 else 10**tsresol
    t_us = 1_700_000_000_123_456
    raw_ts = t_us * units // 1_000_000
    frame = g.ethernet(g.refused_exchange(4, n=1)[0][1])
    # IDBs with the resolution, then one EPB by hand with the raw stamp.
    data = g.pcapng([(1, "a"), (1, "b")], [], tsresol=tsresol)
    body = struct.pack("<IIIII", 1, raw_ts >> 32, raw_ts & 0xFFFFFFFF, len(frame), len(frame))
    body += frame + b"\0" * (-len(frame) % 4)
    data += struct.pack("<II", 6, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    recs, _ = _read([_write(tmp_path, "res.pcapng", data)])
    # Both conversions floor: at most one unit of the coarser scale apart.
    assert abs(recs[0].ts - t_us) <= max(1, 1_000_000 // units)
    assert recs[0].iface == "b"


def test_simple_packet_block_takes_the_previous_timestamp(tmp_path: Path) -> None:
    import struct

    pkts = [(0, t, g.ethernet(p)) for t, p in g.refused_exchange(4, n=1)]
    data = g.pcapng([(1, "a"), (1, "b")], pkts)
    frame = g.ethernet(g.ipv4_tcp("192.0.2.1", "192.0.2.2", 1, 2, 3, 0, 0x02))
    body = struct.pack("<I", len(frame)) + frame + b"\0" * (-len(frame) % 4)
    data += struct.pack("<II", 3, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    recs, r = _read([_write(tmp_path, "spb.pcapng", data)])
    assert [x.ts for x in recs] == [pkts[0][1], pkts[1][1], pkts[1][1]]
    assert r.summary.first_ts == pkts[0][1]


def test_pcap_link_type_with_fcs_bits_is_read_by_both_readers(tmp_path: Path) -> None:
    pkts = [(t, g.ethernet(p)) for t, p in g.refused_exchange(4, n=1)]
    data = g.pcap(pkts, 0x14000001)
    plain, _ = _read([_write(tmp_path, "fcs.pcap", data)])
    zipped, _ = _read([_write(tmp_path, "fcs.pcap.gz", gzip.compress(data))])
    assert len(plain) == len(zipped) == 2


def test_overlapping_files_are_merged_in_time_order(tmp_path: Path) -> None:
    """Two interfaces recorded at once into two files: one capture, one clock."""
    a = g.refused_exchange(4, n=20, t0=1_700_000_000_000_000)
    b = g.refused_exchange(6, n=20, t0=1_700_000_000_250_000)
    pa = _write(tmp_path, "lo.pcap", g.pcap([(t, g.ethernet(p)) for t, p in a], 1))
    pb = _write(tmp_path, "eth0.pcap.gz",
                gzip.compress(g.pcap([(t, g.ethernet(p)) for t, p in b], 1)))  # fmt: skip
    recs, _ = _read([pb, pa], batch=7)
    ts = [r.ts for r in recs]
    assert ts == sorted(ts) and len(recs) == 80


def test_named_pipe_is_streamed(tmp_path: Path) -> None:
    import os
    import threading

    data = g.pcap([(t, g.ethernet(p)) for t, p in g.refused_exchange(4)], 1)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    try:
        recs, _ = _read([str(fifo)])
    finally:
        writer.join(timeout=10)
    assert len(recs) == 6


def test_gzip_with_an_unsupported_link_type_is_an_error(tmp_path: Path) -> None:
    data = gzip.compress(g.pcap([(1, b"\0" * 40)], 147))
    with pytest.raises(CaptureError, match="unsupported link type 147"):
        _read([_write(tmp_path, "x.pcap.gz", data)])


@pytest.mark.parametrize("link", ["raw", "null", "loop"])
def test_own_reader_prefilter_per_link_type(tmp_path: Path, link: str) -> None:
    """gzip goes through our own reader; its prefilter must keep what libpcap's keeps."""
    data_pkt = g.ipv4_tcp("192.0.2.1", "192.0.2.2", 1, 2, 5, 1, 0x10, payload=b"x")
    frames = [(t, g.wrap(link, p)) for t, p in g.refused_exchange(4)]
    frames.append((9, g.wrap(link, data_pkt)))
    for big in (False, True):  # a big-endian writer: its file and its NULL headers
        if link == "null" and big:
            frames = [(t, g.null_loop(p[4:], big_endian=True)) for t, p in frames]
        raw = g.pcap(frames, g.LINKTYPE[link], big_endian=big)
        plain, _ = _read([_write(tmp_path, "p.pcap", raw)])
        zipped, r = _read([_write(tmp_path, "z.pcap.gz", gzip.compress(raw))])
        assert len(plain) == 6
        # NULL is not prefiltered by our reader (byte order unknown): the data packet too.
        assert len(zipped) == 6 + (link == "null")
        assert r.summary.prefiltered == (link != "null")


def test_fragmentation_needed_is_not_an_unreachable(tmp_path: Path) -> None:
    """ICMP 3/4 is path MTU discovery, not a refused or unreachable connection."""
    import struct

    data = g.ipv4_tcp("192.0.2.1", "198.51.100.2", 40000, 443, 77, 1, 0x18, payload=b"x" * 1400)
    icmp = bytes([3, 4, 0, 0, 0, 0, 5, 0xDC]) + data[:28]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0,
                     bytes([198, 51, 100, 1]), bytes([192, 0, 2, 1])) + icmp  # fmt: skip
    recs, r = _read([_write(tmp_path, "pmtu.pcap", g.pcap([(1, g.ethernet(ip))], 1))], mode="none")
    assert recs == [] and r.summary.stats.unreachable == 0


def test_copies_of_a_packet_on_several_interfaces_are_dropped(tmp_path: Path) -> None:
    """`tcpdump -i any` on a bridge: one SYN-ACK seen on veth and on the bridge."""
    syn = g.ipv4_tcp("192.0.2.1", "192.0.2.2", 40000, 80, 5, 0, 0x02)
    synack = g.ipv4_tcp("192.0.2.2", "192.0.2.1", 80, 40000, 9, 6, 0x12)
    again = g.ipv4_tcp("192.0.2.2", "192.0.2.1", 80, 40000, 9, 6, 0x12, ttl=63)  # routed copy
    later = synack  # a real retransmission, a second later
    frames = [(0, syn), (10, syn), (20, synack), (25, synack), (30, again),
              (1_000_020, later)]  # fmt: skip
    for link in ("sll", "sll2"):
        data = g.pcap([(1_700_000_000_000_000 + t, g.wrap(link, p)) for t, p in frames],
                      g.LINKTYPE[link])  # fmt: skip
        recs, r = _read([_write(tmp_path, f"{link}.pcap", data)], mode="none")
        assert [x.flags for x in recs] == [0x02, 0x12, 0x12]
        assert r.summary.stats.copies == 3
