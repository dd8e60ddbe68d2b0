"""Live capture (`rstrace capture`, LiveCapture) against the real kernel, and its pieces.

The root tests run `rstrace capture` inside network namespaces of their own (tests/netlab.py):
the root namespace's `lo` carries other programs' resets on a shared machine, and a
namespace's `lo` carries only ours. The filters and the pcapng writer are checked on the
recorded captures in tests/data/captures and on built packets (tests/pcapgen.py) for the
shapes real traffic here cannot make (VLAN tags, IPv6 extension headers, SLL).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pcapy
import pytest

from rstrace.capture import flag_letters
from rstrace.model import ACK, RST, SYN, Segment
from rstrace.sources.blockreader import StreamReader
from rstrace.sources.bpf import rst_filter, rst_syn_filter
from rstrace.sources.decode import (
    DLT_RAW,
    ETH_IPV6,
    LINKTYPE_RAW,
    VLAN_TPIDS,
    DecodeStats,
    decode_frame,
    ip_offset,
)
from rstrace.sources.live import wire_length
from rstrace.sources.pcapng_writer import PcapngWriter
from tests import netlab
from tests import pcapgen as g

ROOT = Path(__file__).parent.parent
CAPS = ROOT / "tests" / "data" / "captures"
PORT = 7211  # the case study's port; nothing listens on it in our namespaces


def _frames(path: Path) -> tuple[list[int], list[tuple[int, int, bytes, int]]]:
    """(link type per interface, [(iface id, ts, frame, wire_len)]) of a capture file."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        reader = StreamReader(f)
        pkts = [(p.iface, p.ts, p.data, p.wire_len) for p in reader]
    return [i.linktype for i in reader.interfaces], pkts


# --------------------------------------------------------------------------- BPF filters


def _passes(linktype: int, text: str, frame: bytes) -> bool:
    dlt = DLT_RAW if linktype == LINKTYPE_RAW else linktype
    return pcapy.compile(dlt, 262144, text, 1, 0).filter(frame) != 0


def _plain_tcp(linktype: int, frame: bytes) -> bool:
    """IPv4 or IPv6 TCP with the TCP header where the filter looks (no VLAN, no ext headers)."""
    where = ip_offset(linktype, frame)
    if where is None or (linktype == 1 and int.from_bytes(frame[12:14], "big") in VLAN_TPIDS):
        return False
    off, etype = where
    return etype != ETH_IPV6 or frame[off + 6] == 6


@pytest.mark.parametrize("capfile", sorted(p.name for p in CAPS.glob("*.pcap*")))
def test_filters_keep_every_rst_and_syn_of_the_recorded_captures(capfile: str) -> None:
    links, pkts = _frames(CAPS / capfile)
    for iface, ts, frame, _wire in pkts:
        lt = links[iface]
        seg = decode_frame(lt, frame, ts, None, DecodeStats())
        if not isinstance(seg, Segment):
            continue
        rst, syn = bool(seg.flags & RST), bool(seg.flags & SYN)
        assert _passes(lt, rst_filter(lt), frame) == rst or not _plain_tcp(lt, frame)
        assert _passes(lt, rst_syn_filter(lt), frame) == (rst or syn) or not _plain_tcp(lt, frame)


@pytest.mark.parametrize("link", ["ether", "raw", "sll", "sll2"])
def test_filters_on_built_packets(link: str) -> None:
    lt = g.LINKTYPE[link]
    rst4 = g.ipv4_tcp("192.0.2.20", "192.0.2.10", 7211, 40000, 0, 1, RST | ACK)
    ack4 = g.ipv4_tcp("192.0.2.10", "192.0.2.20", 40000, 7211, 1, 1, ACK, payload=b"x")
    syn6 = g.ipv6_tcp("2001:db8::10", "2001:db8::20", 40000, 7211, 0, 0, SYN)
    synack6 = g.ipv6_tcp("2001:db8::20", "2001:db8::10", 7211, 40000, 0, 1, SYN | ACK)
    rst6 = g.ipv6_tcp("2001:db8::20", "2001:db8::10", 7211, 40000, 0, 1, RST | ACK)
    ack6 = g.ipv6_tcp("2001:db8::10", "2001:db8::20", 40000, 7211, 1, 1, ACK, payload=b"x")
    # TCP behind an extension header: the filter cannot see its flags and must pass it.
    ack6_ext = g.ipv6_tcp("2001:db8::10", "2001:db8::20", 40000, 7211, 1, 1, ACK,
                          ext=g.hop_by_hop(6), ext_nh=0)  # fmt: skip
    rst_only, handshake = rst_filter(lt), rst_syn_filter(lt)
    cases = [(rst4, True, True), (ack4, False, False), (syn6, False, True),
             (synack6, False, True), (rst6, True, True), (ack6, False, False),
             (ack6_ext, True, True)]  # fmt: skip
    for ip, want_rst, want_hs in cases:
        frame = g.wrap(link, ip)
        assert _passes(lt, rst_only, frame) is want_rst, (link, ip.hex())
        assert _passes(lt, handshake, frame) is want_hs, (link, ip.hex())
    if link == "ether":  # VLAN frames pass whole: `vlan` would shift every offset after it
        assert _passes(lt, rst_only, g.ethernet(ack4, vlans=(10,)))


# --------------------------------------------------------------------------- small pieces


def test_wire_length_comes_from_the_ip_header_when_the_snapshot_cut_the_frame() -> None:
    ip = g.ipv4_tcp("192.0.2.10", "192.0.2.20", 1, 2, 0, 0, ACK, payload=b"y" * 1000)
    frame = g.ethernet(ip)
    assert wire_length(1, frame) == len(frame)
    assert wire_length(1, frame[:96]) == len(frame)
    ip6 = g.ipv6_tcp("2001:db8::1", "2001:db8::2", 1, 2, 0, 0, ACK, payload=b"y" * 500)
    assert wire_length(276, g.sll2(ip6)[:80]) == 20 + len(ip6)
    assert wire_length(1, b"\x00" * 10) == 10  # no IP: the captured length


def test_flag_letters_follow_tcpdump() -> None:
    assert flag_letters(RST | ACK) == "R."
    assert flag_letters(SYN) == "S"
    assert flag_letters(SYN | ACK) == "S."
    assert flag_letters(0) == "none"


# --------------------------------------------------------------------------- pcapng writer


def test_pcapng_writer_round_trip_with_our_reader_and_tshark(tmp_path: Path) -> None:
    """Frames from two recorded captures (Ethernet and Linux cooked) written under two
    interface names come back byte for byte, named, from our reader and from tshark."""
    _, eth = _frames(CAPS / "refused-v4.pcap")
    _, sll = _frames(CAPS / "refused-any-sll.pcap")
    out = tmp_path / "w.pcapng"
    with open(out, "wb") as f:
        w = PcapngWriter(f)
        a = w.interface("lo", 1)
        b = w.interface("veth-c", 113)
        assert w.interface("lo", 1) == a != b
        for _i, ts, frame, wire in eth:
            w.packet(a, ts, frame, wire)
        for _i, ts, frame, wire in sll:
            w.packet(b, ts, frame, wire)
        w.statistics(a, eth[0][1], eth[-1][1], len(eth), 0)
    links, back = _frames(out)
    assert links == [1, 113]
    assert [(ts, fr, wl) for _i, ts, fr, wl in back] == [
        (ts, fr, wl) for _i, ts, fr, wl in eth + sll
    ]
    assert [i for i, *_ in back] == [0] * len(eth) + [1] * len(sll)
    if shutil.which("tshark"):
        names = subprocess.run(
            ["tshark", "-r", str(out), "-T", "fields", "-e", "frame.interface_name",
             "-e", "frame.time_epoch"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.split("\n")  # fmt: skip
        got = [ln.split("\t") for ln in names if ln]
        assert [n for n, _t in got] == ["lo"] * len(eth) + ["veth-c"] * len(sll)
        assert round(float(got[0][1]) * 1e6) == eth[0][1]


def test_pcapng_writer_truncated_tail_keeps_the_whole_blocks(tmp_path: Path) -> None:
    _, eth = _frames(CAPS / "refused-v4.pcap")
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    iface = w.interface("lo", 1)
    for _i, ts, frame, wire in eth:
        w.packet(iface, ts, frame, wire)
    data = buf.getvalue()
    (tmp_path / "cut.pcapng").write_bytes(data[:-10])  # a kill in the middle of a write
    with open(tmp_path / "cut.pcapng", "rb") as f:
        got = []
        try:
            for p in StreamReader(f):
                got.append(p.data)
        except Exception:
            pass
    assert got == [fr for _i, _ts, fr, _w in eth[:-1]]


# --------------------------------------------------------------------------- the real kernel


def _capture(lab: netlab.Lab, ns: str, *args: str, ready: str = "listening on") -> netlab.Proc:
    """Start `rstrace capture ARGS` in namespace ns and wait until it listens."""
    proc = lab.spawn(ns, [sys.executable, "-m", "rstrace", "capture", *args])
    deadline = time.monotonic() + 30
    while ready not in proc.stderr:
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"capture did not start: {proc.stderr}")
        time.sleep(0.05)
    return proc


_CONNECT = """
import json, socket, sys
out = []
for fam, addr, port in json.loads(sys.argv[1]):
    s = socket.socket(socket.AF_INET6 if fam == 6 else socket.AF_INET)
    s.settimeout(5)
    try:
        s.connect((addr, port))
        out.append("connected")
    except OSError as e:
        out.append(e.errno)
    s.close()
print(json.dumps({"results": out}))
"""


def _connect(lab: netlab.Lab, ns: str, *targets: tuple[int, str, int]) -> list:
    return lab.python(ns, _CONNECT, list(targets))["results"]


def _lines(proc: netlab.Proc, timeout: float = 20) -> list[str]:
    """All stdout lines until the process ends (it ends by -c, --duration or a signal)."""
    proc.popen.wait(timeout=timeout)
    proc._t_err.join(timeout=5)  # stderr is read by a thread: let it reach the end
    out = []
    while True:
        try:
            out.append(proc.readline(timeout=5))
        except EOFError:
            return out


def _stats(stderr: str) -> dict[str, tuple[int, int]]:
    got = {}
    for line in stderr.splitlines():
        name, sep, rest = line.partition(": ")
        words = rest.split()
        counted = words[1:3] in (["packet", "captured,"], ["packets", "captured,"])
        if sep and counted and words[4:] == ["dropped", "by", "kernel"]:
            got[name] = (int(words[0]), int(words[3]))
    return got


@pytest.mark.root
def test_refused_on_lo_v4_and_v6_lines_name_lo() -> None:
    with netlab.lab("single", ipv6=True) as lab:
        proc = _capture(lab, lab.client, "-c", "2")
        errs = _connect(lab, lab.client, (4, "127.0.0.1", PORT), (6, "::1", PORT))
        assert errs == [111, 111]  # ECONNREFUSED: the kernel answered with a RST
        lines = _lines(proc)
        assert proc.popen.returncode == 0, proc.stderr
        firsts = [ln for ln in lines if not ln.startswith(" ")]
        assert len(firsts) == 2, lines
        for ln in firsts:
            ts, iface = ln.split()[:2]
            assert iface == "lo" and ts.count(":") == 2, ln
        text = "\n".join(lines)
        assert f"127.0.0.1.{PORT} > 127.0.0.1." in text and f"::1.{PORT} > ::1." in text
        assert text.count("Flags [R.]") == 2 and "seq 0," in text
        assert _stats(proc.stderr)["lo"] == (2, 0)


@pytest.mark.root
def test_namespace_veth_handshake_sigterm_and_pcapng(tmp_path: Path) -> None:
    """Capture inside the client namespace sees the SYN and the RST on its veth, named; the
    pcapng it writes names the veth for tshark and gives rstrace analyze the same findings
    as tcpdump's recording of the same traffic."""
    ours, theirs = tmp_path / "rstrace.pcapng", tmp_path / "tcpdump.pcap"
    with netlab.lab("direct", ipv6=True) as lab:
        with netlab.tcpdump(lab.client, lab.client_if, theirs):
            proc = _capture(lab, lab.client, "--handshake", "-w", str(ours), "--print",
                            ready=f"listening on {lab.client_if}")  # fmt: skip
            errs = _connect(lab, lab.client, (4, lab.server_ip, PORT), (6, lab.server_ip6, PORT),
                            (4, lab.server_ip, PORT + 1))  # fmt: skip
            assert errs == [111, 111, 111]
            time.sleep(0.3)
            os.kill(proc.pid, signal.SIGTERM)
            lines = _lines(proc)
        assert proc.popen.returncode == 0, proc.stderr
        firsts = [ln for ln in lines if not ln.startswith(" ")]
        assert {ln.split()[1] for ln in firsts} == {lab.client_if}, lines
        text = "\n".join(lines)
        assert text.count("Flags [S]") == 3 and text.count("Flags [R.]") == 3, text
        assert f"{lab.server_ip}.{PORT} > {lab.client_ip}." in text
        assert f"{lab.server_ip6}.{PORT} > {lab.client_ip6}." in text
        stats = _stats(proc.stderr)
        assert stats[lab.client_if] == (6, 0) and stats["lo"] == (0, 0), proc.stderr
    names = subprocess.run(
        ["tshark", "-r", str(ours), "-T", "fields", "-e", "frame.interface_name",
         "-e", "tcp.flags.str"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    assert len(names) == 6 and {n.split("\t")[0] for n in names} == {lab.client_if}

    def findings(path: Path) -> list[tuple]:
        res = subprocess.run([sys.executable, "-m", "rstrace", "analyze", "--json", str(path)],
                             capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
        doc = json.loads(res.stdout)
        return sorted(
            (f["kind"], f["server"], tuple(f["ports"]), f["count"], tuple(f["interfaces"]))
            for f in doc["findings"]
        )

    mine = findings(ours)
    assert mine == [(*f[:4], f[4] or (lab.client_if,)) for f in findings(theirs)]
    assert {f[0] for f in mine} == {"refused"} and sum(f[3] for f in mine) == 3


@pytest.mark.root
def test_links_that_come_and_go_are_followed() -> None:
    """A veth created while capture runs is captured (netlink); deleting it drops its
    handle without an error and capture goes on; Ctrl-C prints the counters of both."""
    with netlab.lab("direct") as lab:
        proc = _capture(lab, lab.client, ready=f"listening on {lab.client_if}")
        lab.run(lab.client, "ip", "link", "add", "rsv-c", "type", "veth", "peer", "name",
                "rsv-s", "netns", lab.server)  # fmt: skip
        lab.run(lab.client, "ip", "addr", "add", "198.51.100.10/24", "dev", "rsv-c")
        lab.run(lab.server, "ip", "addr", "add", "198.51.100.20/24", "dev", "rsv-s")
        lab.run(lab.server, "ip", "link", "set", "rsv-s", "up")
        lab.run(lab.client, "ip", "link", "set", "rsv-c", "up")
        deadline = time.monotonic() + 10
        while "listening on rsv-c" not in proc.stderr:
            assert time.monotonic() < deadline, proc.stderr
            time.sleep(0.05)
        assert _connect(lab, lab.client, (4, "198.51.100.20", PORT)) == [111]
        first = proc.readline(timeout=10)
        assert first.split()[1] == "rsv-c", first
        proc.readline(timeout=5)  # the -v continuation line
        lab.run(lab.client, "ip", "link", "del", "rsv-c")
        deadline = time.monotonic() + 10
        while "stopped listening on rsv-c: " not in proc.stderr:
            assert time.monotonic() < deadline, proc.stderr
            time.sleep(0.05)
        assert _connect(lab, lab.client, (4, lab.server_ip, PORT)) == [111]
        second = proc.readline(timeout=10)
        assert second.split()[1] == lab.client_if, second
        os.kill(proc.pid, signal.SIGINT)
        _lines(proc)
        assert proc.popen.returncode == 0, proc.stderr
        stats = _stats(proc.stderr)
        assert stats.get("rsv-c") == (1, 0) and stats.get(lab.client_if) == (1, 0), proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.root
def test_duration_ends_with_zero_counts_and_unknown_interface_is_an_error() -> None:
    with netlab.lab("single") as lab:
        proc = _capture(lab, lab.client, "--duration", "0.5", "-i", "lo")
        assert _lines(proc) == []
        assert proc.popen.returncode == 0 and _stats(proc.stderr) == {"lo": (0, 0)}
        argv = [sys.executable, "-m", "rstrace", "capture", "-i", "nosuch0", "-c", "1"]
        bad = netlab.ns_run(lab.client, argv, check=False)
        assert bad.returncode == 2
        assert bad.stderr.strip() == "rstrace: error: no such interface: nosuch0"


@pytest.mark.root
def test_no_permission_is_one_line() -> None:
    """Without root or CAP_NET_RAW (setpriv to nobody, no capabilities) capture stops at once
    with one line that says what is missing."""
    res = subprocess.run(
        netlab.as_nobody([sys.executable, "-m", "rstrace", "capture", "-c", "1"]),
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs root or CAP_NET_RAW" in lines[0], res.stderr


@pytest.mark.root
def test_json_lines() -> None:
    with netlab.lab("single", ipv6=True) as lab:
        proc = _capture(lab, lab.client, "--json", "--handshake", "-c", "2")
        assert _connect(lab, lab.client, (6, "::1", PORT)) == [111]
        objs = [json.loads(ln) for ln in _lines(proc)]
    syn, rst = objs
    assert (syn["flags"], syn["dport"], syn["ack"]) == ("S", PORT, None)
    assert (rst["flags"], rst["sport"], rst["dport"]) == ("R.", PORT, syn["sport"])
    assert rst["ack"] == (syn["seq"] + 1) % 2**32 and rst["seq"] == 0
    assert {o["interface"] for o in objs} == {"lo"} and {o["ip_version"] for o in objs} == {6}
    assert rst["tcpdump"].split()[1] == "IP6" and abs(rst["ts"] - time.time()) < 600


_API = """
import json, socket, sys, time
from rstrace.sources.bpf import rst_filter
from rstrace.sources.decode import DecodeStats, decode_frame
from rstrace.sources.live import LiveCapture

with LiveCapture(bpf=rst_filter) as cap:
    names = cap.interfaces
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        pass
    got, deadline = [], time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        got = cap.poll(0.5)
    p = got[0]
    seg = decode_frame(p.linktype, p.data, p.ts, p.iface, DecodeStats())
    st = cap.stats()["lo"]
print(json.dumps({"names": names, "n": len(got), "iface": p.iface, "linktype": p.linktype,
                  "ts": p.ts, "len": len(p.data), "wire_len": p.wire_len, "now": time.time(),
                  "flags": seg.flags, "sport": seg.sport, "seg_iface": seg.iface,
                  "captured": st.captured, "dropped": st.dropped, "received": st.received}))
"""


@pytest.mark.root
def test_live_capture_api_as_diagnose_uses_it() -> None:
    """LiveCapture in-process (in a namespace of ours): poll() gives the RST with its
    interface, link type, time and lengths; decode_frame() turns it into a Segment."""
    with netlab.lab("direct") as lab:
        r = lab.python(lab.client, _API, PORT)
    assert r["names"] == sorted(["lo", lab.client_if])
    assert (r["n"], r["iface"], r["linktype"], r["seg_iface"]) == (1, "lo", 1, "lo")
    assert r["flags"] & RST and r["sport"] == PORT
    assert r["len"] == r["wire_len"] == 14 + 40  # Ethernet + IPv4 + TCP, no options
    assert 0 <= r["now"] * 1e6 - r["ts"] < 10e6
    # libpcap keeps one copy of a loopback packet; the kernel counted both directions.
    assert (r["captured"], r["dropped"]) == (1, 0) and r["received"] >= 1
