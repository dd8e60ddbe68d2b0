"""Build a capture dominated by control packets, for the findings-path benchmark (root).

    python3 bench/make_control_capture.py            # -> bench/out/control.pcap (~2.5 M packets)

What it holds (defaults): a spoofed SYN flood from 203.0.113.0/24 to an open port (the
server answers SYN-ACK, once re-sent: half-open), a refused storm (spoofed SYNs to a
closed port, answered RST), spoofed SYNs to a port behind a DROP rule (one retransmit:
timeouts), a SYN scan of all 65535 ports from 203.0.113.66 (RST from closed ports,
SYN-ACK + the scanner kernel's RST from open ones) and IPv6 refused connections.
More than a million distinct 4-tuples.

How: real traffic at that volume would take long on a 2-core machine, so the packets are
*synthesized from templates of real captured packets*. First a few real exchanges run
in two namespaces (rstb-<id>-cli / rstb-<id>-srv, bench/make_capture.py's Lab: veth,
documentation addresses only, nft DROP/reject rules and sysctls inside the server
namespace only): spoofed SYNs sent from a raw socket in the client namespace, the
server kernel's SYN-ACK / RST answers, a SYN-ACK answered by the scanner kernel's RST,
an IPv6 connect() refused; tcpdump records them. Then every packet of the big capture
is a copy of one of those frames with addresses, ports, sequence numbers, IP id and
time rewritten (checksums are left as recorded: neither rstrace nor tcpdump checks them).
Namespaces and processes (by pid) are cleaned up in a finally, also on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from make_capture import (  # noqa: E402
    CLIENT4,
    CLIENT6,
    SERVER4,
    SERVER6,
    Lab,
    _wait_line,
    log,
    run,
)

SCANNER = "203.0.113.66"
OPEN_PORT, CLOSED_PORT, DROP_PORT = 80, 7211, 9000  # 9000: make_capture's nft DROP rule
SCAN_OPEN = {22, 80, 443, 5432, 8080}

# Runs in the client namespace: spoofed SYNs through a raw socket, and an IPv6 connect().
SENDER = r"""
import socket, struct, sys, time
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
def syn(src, dst, sp, dp, seq):
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq, 0, 5 << 4, 2, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(s + d + struct.pack("!BBH", 0, 6, 20) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 4242, 0x4000, 64, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp
srv, srv6, scanner = sys.argv[1], sys.argv[2], sys.argv[3]
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i, (src, dport) in enumerate([("203.0.113.5", 80), ("203.0.113.6", 7211),
                                  ("203.0.113.7", 9000), (scanner, 80)]):
    raw.sendto(syn(src, srv, 40000 + i, dport, 1000 + i), (srv, 0))
    time.sleep(0.05)
s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s6.settimeout(2)
try:
    s6.connect((srv6, 7211))
except OSError:
    pass
time.sleep(1.6)  # the server re-sends its SYN-ACK after 1 s (tcp_synack_retries=1)
print("sent", flush=True)
"""

LISTENER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 80)); s.listen(4096); print("ready", flush=True)
time.sleep(30)
"""


def record_templates(tmp: str) -> dict[str, bytes]:
    """Real frames: the SYN, SYN-ACK, RST and the scanner kernel's RST, IPv6 SYN/RST."""
    lab = Lab()
    pcap = os.path.join(tmp, "templates.pcap")
    try:
        lab.setup()
        # Replies to the spoofed sources go back to the client side (and die there).
        run("ip", "route", "add", "203.0.113.0/24", "via", CLIENT4, ns=lab.srv)
        run("ip", "addr", "add", f"{SCANNER}/32", "dev", lab.veth_c, ns=lab.cli)
        log(f"namespaces {lab.cli} / {lab.srv}")
        lst = lab.spawn(lab.srv, sys.executable, "-c", LISTENER, SERVER4)
        _wait_line(lst, "stdout", "ready", 10)
        dump = lab.spawn(lab.cli, "tcpdump", "-n", "-U", "-i", lab.veth_c, "-w", pcap, "tcp",
                         stderr=subprocess.PIPE)  # fmt: skip
        _wait_line(dump, "stderr", "listening on", 10)
        snd = lab.spawn(lab.cli, sys.executable, "-c", SENDER, SERVER4, SERVER6, SCANNER)
        out, _ = snd.communicate(timeout=30)
        if "sent" not in out:
            raise RuntimeError("template sender failed")
        time.sleep(0.3)
        os.kill(dump.pid, signal.SIGINT)
        dump.wait(timeout=10)
    finally:
        lab.cleanup()
    frames = _read_pcap(pcap)
    t: dict[str, bytes] = {}
    for f in frames:
        et = struct.unpack_from("!H", f, 12)[0]
        if et == 0x0800:
            ihl = (f[14] & 15) * 4
            sp, dp = struct.unpack_from("!HH", f, 14 + ihl)
            flags = f[14 + ihl + 13]
            src = ".".join(map(str, f[26:30]))
            if flags == 0x02 and dp == OPEN_PORT and src != SCANNER:
                t.setdefault("syn4", f)
            elif flags == 0x12 and sp == OPEN_PORT:
                t.setdefault("synack4", f)
            elif flags & 0x04 and sp == CLOSED_PORT:
                t.setdefault("rst4", f)
            elif flags & 0x04 and src == SCANNER:
                t.setdefault("probe_rst4", f)
        elif et == 0x86DD and f[20] == 6:
            flags = f[54 + 13]
            if flags & 0x02 and not flags & 0x10:
                t.setdefault("syn6", f)
            elif flags & 0x04:
                t.setdefault("rst6", f)
    missing = {"syn4", "synack4", "rst4", "probe_rst4", "syn6", "rst6"} - set(t)
    if missing:
        raise RuntimeError(f"templates missing from the real capture: {sorted(missing)}")
    return t


def _read_pcap(path: str) -> list[bytes]:
    data = Path(path).read_bytes()
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4, "little-endian µs pcap expected"
    out, off = [], 24
    while off + 16 <= len(data):
        _, _, caplen, _ = struct.unpack_from("<IIII", data, off)
        out.append(data[off + 16 : off + 16 + caplen])
        off += 16 + caplen
    return out


class Builder:
    """Packets as columns per template; written sorted by time."""

    def __init__(self, templates: dict[str, bytes]) -> None:
        self.t = templates
        self.parts: dict[str, list[dict[str, np.ndarray]]] = {k: [] for k in templates}

    def add(self, name: str, **cols: np.ndarray) -> None:
        self.parts[name].append(cols)

    def write(self, path: str) -> int:
        names = [k for k in self.parts if self.parts[k]]
        cat = {k: {c: np.concatenate([p[c] for p in self.parts[k]]) for c in self.parts[k][0]}
               for k in names}  # fmt: skip
        ts = np.concatenate([cat[k]["ts"] for k in names])
        tid = np.concatenate([np.full(len(cat[k]["ts"]), i) for i, k in enumerate(names)])
        lens = np.array([len(self.t[k]) + 16 for k in names])
        order = np.argsort(ts, kind="stable")
        reclen = lens[tid[order]]
        offs = np.empty(len(order), np.int64)
        offs[0] = 24
        np.cumsum(reclen[:-1], out=offs[1:])
        offs[1:] += 24
        out = np.empty(24 + int(reclen.sum()), np.uint8)
        out[:24] = np.frombuffer(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1),
                                 np.uint8)  # fmt: skip
        pos_of = np.empty(len(order), np.int64)
        pos_of[order] = np.arange(len(order))
        start = 0
        for i, k in enumerate(names):
            c = cat[k]
            n = len(c["ts"])
            where = offs[pos_of[start : start + n]]
            start += n
            frames = self._frames(k, c)
            L = frames.shape[1]
            hdr = np.zeros((n, 4), "<u4")
            hdr[:, 0] = c["ts"] // 1_000_000
            hdr[:, 1] = c["ts"] % 1_000_000
            hdr[:, 2] = hdr[:, 3] = L
            rec = np.hstack([hdr.view(np.uint8).reshape(n, 16), frames])
            out[where[:, None] + np.arange(16 + L)] = rec
            del rec, frames
            assert i == names.index(k)
        out.tofile(path)
        return len(order)

    def _frames(self, name: str, c: dict[str, np.ndarray]) -> np.ndarray:
        tmpl = np.frombuffer(self.t[name], np.uint8)
        n = len(c["ts"])
        f = np.tile(tmpl, (n, 1))

        def put(off: int, width: int, v: np.ndarray) -> None:
            v = v.astype(np.uint64)
            for b in range(width):
                f[:, off + b] = (v >> np.uint64(8 * (width - 1 - b))) & np.uint64(0xFF)

        if name.endswith("4"):
            ihl = (tmpl[14] & 15) * 4
            tcp = 14 + ihl
            put(18, 2, c["ipid"])
            put(26, 4, c["src"])
            put(30, 4, c["dst"])
        else:
            tcp = 54
            put(22 + 8, 8, c["src_lo"]) if "src_lo" in c else None
            put(38 + 8, 8, c["dst_lo"]) if "dst_lo" in c else None
        put(tcp, 2, c["sport"])
        put(tcp + 2, 2, c["dport"])
        put(tcp + 4, 4, c["seq"])
        put(tcp + 8, 4, c["ack"])
        return f


def ip4(s: str) -> int:
    return int.from_bytes(bytes(map(int, s.split("."))), "big")


def synthesize(t: dict[str, bytes], out: str, scale: float, seed: int, span_s: float) -> dict:
    rng = np.random.default_rng(seed)
    t0 = 1_795_500_000_000_000
    span = int(span_s * 1e6)
    n_half, n_ref, n_to, n_v6 = (int(x * scale) for x in (380_000, 500_000, 200_000, 30_000))
    total = n_half + n_ref + n_to
    # Distinct spoofed (address, port) pairs from 203.0.113.1-254 (not the scanner's
    # address), ports 1024-65535.
    hosts = np.array([h for h in range(1, 255) if h != 66], np.uint64)
    pool = len(hosts) * 64512
    pick = np.unique(rng.integers(0, pool, int(total * 1.2)))
    pick = rng.permutation(pick)[:total]
    src_all = ip4("203.0.113.0") + hosts[pick // 64512]
    sport_all = 1024 + pick % 64512
    srv = np.uint64(ip4(SERVER4))
    b = Builder(t)
    rtt = lambda n: rng.integers(40, 400, n)  # noqa: E731 - µs on a veth

    def conn(sl: slice, port: int) -> tuple[np.ndarray, ...]:
        n = sl.stop - sl.start
        ts = t0 + np.sort(rng.integers(0, span, n))
        isn = rng.integers(0, 1 << 32, n, dtype=np.uint64)
        return n, ts, src_all[sl], sport_all[sl], np.full(n, port), isn

    def ids(n: int) -> np.ndarray:
        return rng.integers(0, 65536, n)

    # Half-open: SYN, SYN-ACK, and for half of them the SYN-ACK again after 1 s.
    n, ts, src, sp, dp, isn = conn(slice(0, n_half), OPEN_PORT)
    risn = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    b.add("syn4", ts=ts, src=src, dst=np.full(n, srv), sport=sp, dport=dp, seq=isn,
          ack=np.zeros(n), ipid=ids(n))  # fmt: skip
    ack = (isn + 1) & np.uint64(0xFFFFFFFF)
    for k, delay in enumerate((0, 1_000_000)):
        m = np.ones(n, bool) if k == 0 else rng.random(n) < 0.5
        b.add("synack4", ts=ts[m] + delay + rtt(int(m.sum())), src=np.full(int(m.sum()), srv),
              dst=src[m], sport=dp[m], dport=sp[m], seq=risn[m], ack=ack[m],
              ipid=np.zeros(int(m.sum())))  # fmt: skip
    # Refused storm: SYN, RST+ACK.
    n, ts, src, sp, dp, isn = conn(slice(n_half, n_half + n_ref), CLOSED_PORT)
    b.add("syn4", ts=ts, src=src, dst=np.full(n, srv), sport=sp, dport=dp, seq=isn,
          ack=np.zeros(n), ipid=ids(n))  # fmt: skip
    b.add("rst4", ts=ts + rtt(n), src=np.full(n, srv), dst=src, sport=dp, dport=sp,
          seq=np.zeros(n), ack=(isn + 1) & np.uint64(0xFFFFFFFF), ipid=np.zeros(n))  # fmt: skip
    # Dropped: the SYN and its retransmission 1 s later (same ISN).
    n, ts, src, sp, dp, isn = conn(slice(n_half + n_ref, total), DROP_PORT)
    for delay in (0, 1_000_000):
        b.add("syn4", ts=ts + delay, src=src, dst=np.full(n, srv), sport=sp, dport=dp, seq=isn,
              ack=np.zeros(n), ipid=ids(n))  # fmt: skip
    # A SYN scan of every port: closed ports RST, open ones SYN-ACK + the scanner's RST.
    ports = np.arange(1, 65536)
    n = len(ports)
    ts = t0 + np.sort(rng.integers(0, span, n))
    scan = np.full(n, ip4(SCANNER), np.uint64)
    sp = np.full(n, 61000)
    isn = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    ack = (isn + 1) & np.uint64(0xFFFFFFFF)
    b.add("syn4", ts=ts, src=scan, dst=np.full(n, srv), sport=sp, dport=ports, seq=isn,
          ack=np.zeros(n), ipid=ids(n))  # fmt: skip
    op = np.isin(ports, list(SCAN_OPEN))
    cl = ~op
    r1 = rtt(n)
    b.add("rst4", ts=ts[cl] + r1[cl], src=np.full(int(cl.sum()), srv), dst=scan[cl],
          sport=ports[cl], dport=sp[cl], seq=np.zeros(int(cl.sum())), ack=ack[cl],
          ipid=np.zeros(int(cl.sum())))  # fmt: skip
    k = int(op.sum())
    risn = rng.integers(0, 1 << 32, k, dtype=np.uint64)
    b.add("synack4", ts=ts[op] + r1[op], src=np.full(k, srv), dst=scan[op], sport=ports[op],
          dport=sp[op], seq=risn, ack=ack[op], ipid=np.zeros(k))  # fmt: skip
    b.add("probe_rst4", ts=ts[op] + 2 * r1[op], src=scan[op], dst=np.full(k, srv),
          sport=sp[op], dport=ports[op], seq=ack[op], ack=np.zeros(k),
          ipid=np.zeros(k))  # fmt: skip
    # IPv6 refused (the recorded client and server; distinct client ports).
    n = n_v6
    ts = t0 + np.sort(rng.integers(0, span, n))
    sp = 1024 + rng.permutation(64512)[:n]
    isn = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    b.add("syn6", ts=ts, sport=sp, dport=np.full(n, CLOSED_PORT), seq=isn, ack=np.zeros(n))
    b.add("rst6", ts=ts + rtt(n), sport=np.full(n, CLOSED_PORT), dport=sp, seq=np.zeros(n),
          ack=(isn + 1) & np.uint64(0xFFFFFFFF))  # fmt: skip
    packets = b.write(out)
    tuples = total + 65535 + n_v6
    return {"packets": packets, "tuples": tuples, "half_open": n_half, "refused": n_ref,
            "dropped": n_to, "scan_ports": 65535, "refused_v6": n_v6,
            "client6": CLIENT6, "server6": SERVER6}  # fmt: skip


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=str(BENCH / "out" / "control.pcap"))
    ap.add_argument("--scale", type=float, default=1.0, help="connection counts x this")
    ap.add_argument("--span", type=float, default=60.0, help="seconds of capture time")
    ap.add_argument("--seed", type=int, default=20261123)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("make_control_capture.py: needs root (namespaces, tcpdump)", file=sys.stderr)
        return 2
    if not 0.001 <= a.scale <= 4:
        print("make_control_capture.py: --scale must be within 0.001..4", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            templates = record_templates(tmp)
        log(f"templates recorded: {', '.join(f'{k} {len(v)} B' for k, v in templates.items())}")
        res = synthesize(templates, a.out, a.scale, a.seed, a.span)
    except KeyboardInterrupt as e:
        print(f"make_control_capture.py: interrupted ({e or 'Ctrl-C'}); cleaned up",
              file=sys.stderr)  # fmt: skip
        return 130
    res["build_s"] = round(time.monotonic() - t0, 1)
    Path(a.out).with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
