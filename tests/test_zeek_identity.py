"""`--format zeek-json` output, frozen: the connection log must not change when the
all-packets path is optimised.

Golden files `tests/data/expected/<capture>.zeek.json` hold the CLI's output for every
capture under tests/data/captures/ and tests/data/printer/, plus a synthetic capture
built here (many connections with data, retransmissions, gaps, zero windows, sequence
wraps, truncated snapshots, port reuse and odd closes: the packets a fast lane for
established data/ACK packets has to get exactly right). Regenerate only with
`pytest --update-goldens`, and review the diff.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from rstrace import lane, track
from rstrace.cli import main
from rstrace.sources import capfile
from rstrace.sources.capfile import CaptureReader
from rstrace.track import ConnectionTable

ROOT = Path(__file__).parent
EXPECTED = ROOT / "data" / "expected"
CAPTURES = sorted(
    p
    for d in (ROOT / "data" / "captures", ROOT / "data" / "printer")
    for p in d.iterdir()
    if p.suffix in (".pcap", ".pcapng", ".gz")
)


def _name(p: Path) -> str:
    return p.name.split(".", 1)[0]


def _zeek_json(path: Path | str, *extra: str) -> str:
    res = CliRunner().invoke(main, ["analyze", "--format", "zeek-json", *extra, str(path)])
    assert res.exit_code == 0, res.output
    return res.stdout


def _check(name: str, text: str, update: bool) -> None:
    golden = EXPECTED / f"{name}.zeek.json"
    if update:
        golden.write_text(text)
    assert golden.exists(), f"missing {golden}: run pytest --update-goldens and review the diff"
    assert text == golden.read_text(), f"{golden.name} differs from its golden file"


def test_capture_names_are_unique() -> None:
    assert len({_name(p) for p in CAPTURES}) == len(CAPTURES)


@pytest.mark.parametrize("path", CAPTURES, ids=_name)
def test_zeek_json_matches_golden(path: Path, update_goldens: bool) -> None:
    _check(_name(path), _zeek_json(path), update_goldens)


# -- a synthetic capture that stresses the per-packet state machine ---------------------

_SNAP = 54 + 20  # some packets are captured like `tcpdump -s 74`: headers only
_LIKELY = (80, 443, 22, 8080)
_OTHER = (5000, 7211, 9000, 33000)
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128


def _frame(v6: bool, src: bytes, dst: bytes, sp: int, dp: int, seq: int, ack: int, flags: int,
           win: int, plen: int, ttl: int) -> bytes:  # fmt: skip
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                      flags, win, 0, 0) + bytes(plen)  # fmt: skip
    if v6:
        ip = struct.pack("!IHBB", 6 << 28, len(tcp), 6, ttl) + src + dst
        etype = 0x86DD
    else:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, ttl, 6, 0, src, dst)
        etype = 0x0800
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01" + struct.pack("!H", etype) + ip + tcp


class _Gen:
    """One connection's packets, from a random walk over what TCP stacks (and worse) send."""

    def __init__(
        self,
        rnd: random.Random,
        t0: int,
        key: tuple[bool, bytes, bytes, int, int],
        anomaly: float = 1.0,
        steps: tuple[int, ...] = (0, 1, 3, 10, 40, 120),
    ):
        self.a = anomaly  # scales how often the odd cases come
        self.steps = steps
        self.r = rnd
        self.t = t0
        self.v6, self.ch, self.sh, self.cp, self.sp = key
        self.pkts: list[tuple[int, bytes, int]] = []  # (ts, frame, caplen)
        near_wrap = rnd.random() < 0.15
        self.seq = [
            (0xFFFFFFFF - rnd.randrange(20000)) if near_wrap else rnd.randrange(1 << 32),
            rnd.randrange(1 << 32),
        ]
        self.acked = [False, False]

    def tick(self) -> None:
        x = self.r.random()
        if x < 0.003 * self.a:
            self.t += self.r.choice((6, 61, 301, 400)) * 1_000_000  # timers fire
        elif x < 0.01 * self.a:
            self.t += self.r.randrange(1_000_000, 5_000_000)
        else:
            self.t += self.r.randrange(1, 3000)

    def send(self, d: int, flags: int, plen: int = 0, seq: int | None = None,
             ack: int | None = None, win: int | None = None) -> None:  # fmt: skip
        r = self.r
        self.tick()
        s = self.seq[d] if seq is None else seq
        a = self.seq[1 - d] if ack is None else ack
        if not flags & ACK and ack is None:
            a = 0 if r.random() < 0.7 else a
        w = (r.choice((0, 0, 1, 512)) if r.random() < 0.02 else 29200) if win is None else win
        src, dst, sp, dp = (self.ch, self.sh, self.cp, self.sp) if d == 0 else (
            self.sh, self.ch, self.sp, self.cp)  # fmt: skip
        frame = _frame(self.v6, src, dst, sp, dp, s, a, flags, w, plen, 64 if d == 0 else 63)
        cap = len(frame) if r.random() < 0.8 else min(len(frame), _SNAP + (20 if self.v6 else 0))
        self.pkts.append((self.t, frame, cap))

    def data(self, d: int) -> None:
        r = self.r
        n = r.choice((1, 100, 536, 1448, 1448, 1448))
        extra = r.choice((0, 0, 0, PSH, PSH, URG, ECE | CWR))
        x = r.random() / self.a
        if x < 0.06:  # retransmission of something already sent
            back = r.randrange(1, 3000)
            self.send(d, ACK | extra, n, seq=self.seq[d] - back)
        elif x < 0.1:  # out of order: a later segment first, the hole filled later
            self.send(d, ACK | extra, n, seq=self.seq[d] + n)
            self.send(d, ACK | extra, n)
            self.seq[d] += 2 * n
        elif x < 0.12:  # the peer acks data we never saw (capture loss: 'g')
            self.seq[d] += n
            self.send(1 - d, ACK)
        elif x < 0.13:  # keep-alive
            self.send(d, ACK, r.choice((0, 1)), seq=self.seq[d] - 1)
        elif x < 0.14:  # no ACK bit at all
            self.send(d, extra or PSH, n)
            self.seq[d] += n
        elif x < 0.15:  # ack field wildly off / zero
            self.send(d, ACK, n, ack=r.choice((0, r.randrange(1 << 32))))
            self.seq[d] += n
        else:
            self.send(d, ACK | extra, n)
            self.seq[d] += n

    def run(self) -> None:
        r = self.r
        x = r.random()
        established = True
        if x < 0.8:
            syns = 1 + (r.random() < 0.1)
            for _ in range(syns):
                self.send(0, SYN | (ECE | CWR if r.random() < 0.1 else 0))
            if r.random() < 0.05:  # SYN with a new ISN (reuse rules)
                self.seq[0] = r.randrange(1 << 32)
                self.send(0, SYN)
            y = r.random()
            if y < 0.08:
                self.send(1, RST | ACK, seq=0, ack=self.seq[0] + 1)
                return
            if y < 0.12:
                return  # no answer
            self.seq[0] += 1
            self.send(1, SYN | ACK)
            self.seq[1] += 1
            if r.random() < 0.05:
                return  # half-open
            self.send(0, ACK)
        elif x < 0.9:
            established = False  # joined mid-stream: partial
            self.send(r.randrange(2), ACK, r.choice((0, 1448)))
        else:
            established = False
            if r.random() < 0.5:
                self.send(1, SYN | ACK)  # SYN-ACK first (reversed or missed SYN)
                self.seq[1] += 1
            else:
                self.send(0, r.choice((ACK, PSH | ACK, 0)), 10)
            self.send(0, ACK)
        steps = r.choice(self.steps)
        for _ in range(steps):
            d = 0 if r.random() < 0.4 else 1
            if r.random() < 0.55:
                self.data(d)
            else:
                self.send(d, ACK)
            if r.random() < 0.01 * self.a:
                self.send(d, r.choice((SYN, SYN | ACK, FIN | RST, SYN | FIN, RST)))
        y = r.random()
        if y < 0.45:
            a = r.randrange(2)
            self.send(a, FIN | ACK)
            self.seq[a] += 1
            if r.random() < 0.3:
                self.data(1 - a)  # data after the peer's FIN
            self.send(1 - a, FIN | ACK)
            self.seq[1 - a] += 1
            self.send(a, ACK)
            if r.random() < 0.1:
                self.send(a, ACK)  # late ACK on a closed connection
                self.send(1 - a, RST)
        elif y < 0.6:
            a = r.randrange(2)
            self.send(a, RST | ACK)
            if r.random() < 0.3:
                self.data(1 - a)
                self.send(a, RST)
        elif y < 0.7:
            a = r.randrange(2)
            self.send(a, FIN | ACK)
            self.seq[a] += 1
            self.send(1 - a, ACK)  # half close, then silence
        elif y < 0.75 and established:
            self.send(0, FIN | RST | ACK)
        # else: just stops (idle)


def stress_capture(
    path: Path,
    seed: int = 7,
    conns: int = 400,
    anomaly: float = 1.0,
    steps: tuple[int, ...] = (0, 1, 3, 10, 40, 120),
    spacing: int = 400_000,
) -> None:
    """anomaly scales how often the odd packets come, steps are the data/ACK exchanges a
    connection may have, spacing bounds the gap between connection starts (µs)."""
    rnd = random.Random(seed)
    pkts: list[tuple[int, bytes, int]] = []
    t0 = 1_700_000_000_000_000
    keys: list[tuple[bool, bytes, bytes, int, int]] = []
    for i in range(conns):
        if keys and rnd.random() < 0.08:
            key = rnd.choice(keys)  # port reuse
        else:
            v6 = rnd.random() < 0.3
            if v6:
                ch = socket.inet_pton(socket.AF_INET6, f"2001:db8::{rnd.randrange(1, 20):x}")
                sh = socket.inet_pton(socket.AF_INET6, "2001:db8:5eb::20")
            else:
                ch = socket.inet_aton(f"192.0.2.{rnd.randrange(1, 20)}")
                sh = socket.inet_aton("198.51.100.20")
            sp = rnd.choice(_LIKELY + _OTHER)
            cp = rnd.choice((rnd.randrange(32768, 61000), rnd.choice(_LIKELY)))
            key = (v6, ch, sh, cp, sp)
            keys.append(key)
        g = _Gen(rnd, t0 + i * rnd.randrange(1000, spacing), key, anomaly, steps)
        g.run()
        pkts += g.pkts
    pkts.sort(key=lambda p: p[0])  # stable: each connection keeps its order
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for ts, frame, cap in pkts:
        out.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, cap, len(frame)))
        out.append(frame[:cap])
    path.write_bytes(b"".join(out))


@pytest.fixture(scope="module")
def stress_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stress") / "stress.pcap"
    stress_capture(path)
    return path


def test_stress_capture_matches_golden(stress_pcap: Path, update_goldens: bool) -> None:
    _check("synthetic-stress", _zeek_json(stress_pcap), update_goldens)


@pytest.mark.parametrize("batch", [1, 7, 300])
def test_stress_capture_chunking_keeps_the_connections(stress_pcap: Path, batch: int) -> None:
    """Another batch size may evict in another order, but never changes a connection."""
    base = sorted(_zeek_json(stress_pcap).splitlines())
    assert sorted(_zeek_json(stress_pcap, "--batch-size", str(batch)).splitlines()) == base


# -- the fast lane against the reference logic, field by field ---------------------------


def _connections(path: Path, *, lane: bool, batch: int = 4096) -> list[object]:
    """Every Connection (Zeek fields, Side facts, evidence) in the order they come out."""
    reader = CaptureReader([str(path)], mode="all", batch_size=batch)
    table = ConnectionTable()
    out: list[object] = []
    for b in reader.batches():
        # list(b) decodes every frame into a Segment: the plain per-packet logic.
        out += table.feed(b if lane else list(b))
    out += table.flush()
    return out


@pytest.mark.parametrize("batch", [4096, 5])
def test_fast_lane_changes_no_connection_field(stress_pcap: Path, batch: int) -> None:
    ref = _connections(stress_pcap, lane=False, batch=batch)
    assert _connections(stress_pcap, lane=True, batch=batch) == ref


@pytest.mark.parametrize("path", CAPTURES, ids=_name)
def test_fast_lane_changes_no_connection_field_on_captures(path: Path) -> None:
    assert _connections(path, lane=True) == _connections(path, lane=False)


@pytest.fixture(scope="module")
def long_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long connections that overlap in time, odd packets 20x rarer: long plain runs for
    lane.bulk(), broken now and then (retransmission, gap, zero window, timers...)."""
    path = tmp_path_factory.mktemp("long") / "long.pcap"
    stress_capture(path, seed=11, conns=150, anomaly=0.05, steps=(40, 300, 1200), spacing=3000)
    return path


def _count_bulk(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make every batch try lane.bulk(); the returned list collects the frames it did."""
    done: list[int] = []
    real = lane.bulk

    def counted(*args):  # type: ignore[no-untyped-def]
        got = real(*args)
        if got is not None:
            done.append(got[1])
        return got

    monkeypatch.setattr(lane, "bulk", counted)
    monkeypatch.setattr(track, "_BULK_BYTES", 1)
    return done


@pytest.mark.parametrize(
    ("which", "min_run", "batch"),
    [("stress", 2, 300), ("stress", 1, 7), ("stress", 8, 100),
     ("long", 24, 4096), ("long", 24, 300), ("long", 2, 1000), ("long", 1, 7)],
)  # fmt: skip
def test_bulk_lane_changes_no_connection_field(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    which: str,
    min_run: int,
    batch: int,
) -> None:
    """lane.bulk() against the plain per-packet logic, run on every batch, also where a
    connection has only a few frames in it (MIN_RUN lowered)."""
    path = request.getfixturevalue(f"{which}_pcap")
    ref = _connections(path, lane=False, batch=batch)
    monkeypatch.setattr(lane, "MIN_RUN", min_run)
    done = _count_bulk(monkeypatch)
    assert _connections(path, lane=True, batch=batch) == ref
    assert sum(done) > 200  # it did take part


def test_bulk_lane_leaves_colliding_keys_to_the_per_packet_path(
    stress_pcap: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a hash that puts every key in one group, bulk() must notice and do nothing."""
    import numpy as np

    ref = _connections(stress_pcap, lane=False)
    monkeypatch.setattr(lane, "MIN_RUN", 2)
    monkeypatch.setattr(lane, "_MIX", np.zeros(5, np.uint64))
    done = _count_bulk(monkeypatch)
    assert _connections(stress_pcap, lane=True) == ref
    assert done == []


def _fork_every_file(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Read every file in a child process that cuts data/ACK frames short in every batch
    (as on a big capture); the returned list collects the children's pids."""
    pids: list[int] = []
    real = capfile._Forked.__init__

    def init(self, *args):  # type: ignore[no-untyped-def]
        real(self, *args)
        pids.append(self.pid)

    monkeypatch.setattr(capfile._Forked, "__init__", init)
    monkeypatch.setattr(capfile, "_FORK_MIN_BYTES", 0)
    monkeypatch.setattr(capfile, "_COMPACT_BYTES", capfile._META.size)
    return pids


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("path", CAPTURES, ids=_name)
def test_forked_reader_keeps_the_output(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Goldens again, each file read by the child process (truncated captures included:
    its read error takes the reader's salvage path)."""
    pids = _fork_every_file(monkeypatch)
    text = _zeek_json(path)
    _check(_name(path), text, False)
    assert all(_gone(pid) for pid in pids)


@pytest.mark.parametrize("which", ["stress", "long"])
def test_forked_reader_changes_no_connection_field(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    path = request.getfixturevalue(f"{which}_pcap")
    ref = _connections(path, lane=False)
    direct = sum(len(b.pkts) for b in CaptureReader([str(path)], mode="all").batches())
    pids = _fork_every_file(monkeypatch)
    sent = sum(len(b.pkts) for b in CaptureReader([str(path)], mode="all").batches())
    assert sent < direct * 0.8  # the payload of data packets stayed in the child
    assert _connections(path, lane=True) == ref
    assert _connections(path, lane=False) == ref
    assert len(pids) == 3 and all(_gone(pid) for pid in pids)


def test_forked_reader_salvages_a_cut_file(
    stress_pcap: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file cut mid-packet: libpcap's error comes from the child, the reader salvages
    what is left, as it does reading itself."""
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(stress_pcap.read_bytes()[:-37])
    direct = _zeek_json(cut)
    pids = _fork_every_file(monkeypatch)
    assert _zeek_json(cut) == direct
    assert len(pids) == 1 and _gone(pids[0])


def test_forked_reader_ends_the_child_when_the_consumer_stops_early(
    stress_pcap: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = _fork_every_file(monkeypatch)
    it = CaptureReader([str(stress_pcap)], mode="all", batch_size=16).batches()
    next(it)
    assert len(pids) == 1 and not _gone(pids[0])
    it.close()  # what a consumer leaving the loop (break, exception) does
    assert _gone(pids[0])


def test_reader_thread_stops_when_the_consumer_stops_early(stress_pcap: Path) -> None:
    before = {t.ident for t in threading.enumerate()}
    reader = CaptureReader([str(stress_pcap)], mode="control", batch_size=16)  # threaded
    it = reader.batches()
    next(it)
    it.close()  # what a consumer leaving the loop (break, exception) does
    left = [t for t in threading.enumerate() if t.ident not in before]
    assert left == []


def test_fast_line_formatting_equals_json_dumps_of_the_fields() -> None:
    """zeek_line() spells the JSON out by hand for speed; it must equal json.dumps."""
    import json as _json

    from rstrace.render.zeek import conn_dict, zeek_line
    from rstrace.sources.decode import DecodeStats, decode_frame
    from rstrace.track import ConnectionTable
    from tests import pcapgen as g

    packets = g.refused_exchange(4, n=2) + g.refused_exchange(6, n=2, t0=1_700_000_001_000_000)
    lone_syn = g.ipv4_tcp("192.0.2.1", "192.0.2.2", 1, 2, 3, 0, 0x02)  # duration 0
    packets.append((1_700_000_002_000_000, lone_syn))
    table = ConnectionTable()
    conns = table.feed([decode_frame(101, p, t, None, DecodeStats()) for t, p in packets])
    conns += table.flush()
    assert any(c.duration == 0 for c in conns) and any(c.duration for c in conns)
    for c in conns:
        assert zeek_line(c) == _json.dumps(conn_dict(c), separators=(",", ":"))
        assert ("duration" in conn_dict(c)) == bool(c.duration)
