"""Traffic roles for make_capture.py, each run inside its own namespace with `ip netns exec`.

    python3 traffic.py server              # in the server namespace
    python3 traffic.py client PLAN.json    # in the client namespace

The server listens on fixed ports (dual-stack, so IPv4 arrives as IPv4 on the wire).
The client runs the plan: bulk transfers that dominate the bytes, interleaved with short
request/response connections and failures of every kind, paced so that both finish
together when the growing capture file reaches its target size. Everything is bounded:
counts come from the plan and there is a hard deadline.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Ports on the server. Nothing listens on CLOSED_PORTS; the nft rules inside the server
# namespace drop DROP_PORT and reject REJECT_PORT with a tcp reset.
BULK_PORT = 5001
SHORT_PORT = 5002
LINGER_PORT = 5003
UNREAD_PORT = 5004
OVERFLOW_PORT = 5005
SCAN_OPEN_PORTS = (22, 80, 443)
DROP_PORT = 9000
REJECT_PORT = 9001
CLOSED_PORTS = range(7000, 7100)

CHUNK = 256 * 1024
SO_MAX_PACING_RATE = getattr(socket, "SO_MAX_PACING_RATE", 47)
BULK_PACING_BPS = 16_000_000
_LINGER0 = struct.pack("ii", 1, 0)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- server


def _listener(port: int, backlog: int = 512) -> socket.socket:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(backlog)
    return s


def _recv_exact(c: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = c.recv(n - len(buf))
        if not part:
            break
        buf += part
    return buf


def _serve_bulk(c: socket.socket) -> None:
    """8-byte request: how many bytes to send; send them, then close (FIN)."""
    head = _recv_exact(c, 8)
    if len(head) < 8:
        return
    (n,) = struct.unpack("!Q", head)
    # Paced so tcpdump on this 2-core box keeps up (no "dropped by kernel").
    c.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, BULK_PACING_BPS)
    block = b"\xa5" * CHUNK
    sent = 0
    while sent < n:
        k = min(CHUNK, n - sent)
        c.sendall(block[:k])
        sent += k


def _serve_short(c: socket.socket) -> None:
    """Small request (4-byte length of the wanted reply, then padding); reply; close."""
    head = _recv_exact(c, 4)
    if len(head) < 4:
        return
    (n,) = struct.unpack("!I", head)
    c.recv(4096)
    c.sendall(b"r" * min(n, 1 << 20))


def _serve_linger(c: socket.socket) -> None:
    """Read the request, then abort: SO_LINGER 0 makes close() send a RST."""
    c.recv(4096)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)


def _serve_unread(c: socket.socket) -> None:
    """Let the client's data arrive, never read it, close: the kernel answers with a RST."""
    time.sleep(0.05)


def _accept_loop(ls: socket.socket, handler: Callable[[socket.socket], None]) -> None:
    while True:
        try:
            c, _ = ls.accept()
        except OSError:
            return

        def run(c: socket.socket = c) -> None:
            try:
                c.settimeout(30)
                handler(c)
            except OSError:
                pass
            finally:
                c.close()

        threading.Thread(target=run, daemon=True).start()


def server() -> None:
    listeners = [
        (_listener(BULK_PORT), _serve_bulk),
        (_listener(SHORT_PORT), _serve_short),
        (_listener(LINGER_PORT), _serve_linger),
        (_listener(UNREAD_PORT), _serve_unread),
    ]
    listeners += [(_listener(p), _serve_short) for p in SCAN_OPEN_PORTS]
    # Never accepted, backlog 1: the accept queue overflows and later handshakes hang.
    overflow = _listener(OVERFLOW_PORT, backlog=1)
    for ls, h in listeners:
        threading.Thread(target=_accept_loop, args=(ls, h), daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    # Bounded: the orchestrator ends us by pid; this is the backstop.
    stop.wait(timeout=3600)
    overflow.close()


# --------------------------------------------------------------------------- client


@dataclass
class Plan:
    pcap: str
    target_bytes: int
    deadline_s: float
    server4: str
    server6: str
    clients4: list[str]
    clients6: list[str]
    scanner4: str
    scanner6: str
    seed: int
    v6_share: float
    bulk_v6_share: float
    short: int
    refused: int
    linger: int
    unread: int
    client_abort: int
    timeouts: int
    rejects: int
    scan_ports: int
    overflow: int
    bulk_workers: int
    bulk_min_mb: int
    bulk_max_mb: int


class Pacer:
    """Keeps the bulk and the churn in step: both track the capture's growth."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.t0 = time.monotonic()
        self.churn_total = 1
        self.churn_done = 0
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def size_frac(self) -> float:
        try:
            return os.path.getsize(self.plan.pcap) / self.plan.target_bytes
        except OSError:
            return 0.0

    def churn_frac(self) -> float:
        return self.churn_done / self.churn_total

    def expired(self) -> bool:
        return time.monotonic() - self.t0 > self.plan.deadline_s

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n


Dst = tuple[int, str, str]
"""(address family, server address, client source address)."""


def _addr(plan: Plan, rng: random.Random, v6: bool | None = None, scanner: bool = False) -> Dst:
    """The server, and a source address: one of many clients, or the scanner's own."""
    if v6 is None:
        v6 = rng.random() < plan.v6_share
    if v6:
        src = plan.scanner6 if scanner else rng.choice(plan.clients6)
        return socket.AF_INET6, plan.server6, src
    src = plan.scanner4 if scanner else rng.choice(plan.clients4)
    return socket.AF_INET, plan.server4, src


def _connect(dst: Dst, port: int, timeout: float = 10) -> socket.socket:
    fam, host, src = dst
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def bulk_worker(plan: Plan, pacer: Pacer, rng: random.Random) -> None:
    while not pacer.expired():
        frac = pacer.size_frac()
        if frac >= 0.985 and pacer.churn_frac() >= 1.0:
            return
        if frac >= 0.985 or frac > pacer.churn_frac() + 0.05:
            time.sleep(0.02)  # let the churn catch up
            continue
        n = rng.randint(plan.bulk_min_mb, plan.bulk_max_mb) << 20
        # Small transfers near the end and for small targets, so the size lands close.
        left = int((1.0 - frac) * plan.target_bytes / 1.1)
        cap = plan.target_bytes // (10 * plan.bulk_workers)
        n = max(256 << 10, min(n, left, cap))
        # IPv6 by bytes: the family whose share is behind gets the next transfer.
        with pacer.lock:
            v6_bytes = pacer.counts.get("bulk_v6_started_bytes", 0)
            all_bytes = pacer.counts.get("bulk_started_bytes", 0) + n
            v6 = v6_bytes + n / 2 < plan.bulk_v6_share * all_bytes
            pacer.counts["bulk_started_bytes"] = all_bytes
            if v6:
                pacer.counts["bulk_v6_started_bytes"] = v6_bytes + n
        dst = _addr(plan, rng, v6=v6)
        try:
            with _connect(dst, BULK_PORT) as s:
                s.sendall(struct.pack("!Q", n))
                got = 0
                while True:
                    part = s.recv(CHUNK)
                    if not part:
                        break
                    got += len(part)
            pacer.count("bulk_v6" if dst[0] == socket.AF_INET6 else "bulk_v4")
            pacer.count("bulk_bytes", got)
        except OSError as e:
            pacer.count(f"bulk_error_{e.__class__.__name__}")


def do_short(plan: Plan, pacer: Pacer, rng: random.Random) -> None:
    dst = _addr(plan, rng)
    want = rng.choice((200, 600, 1400, 3000, 12000))
    try:
        with _connect(dst, SHORT_PORT) as s:
            s.sendall(struct.pack("!I", want) + b"q" * rng.randint(40, 300))
            while s.recv(65536):
                pass
        pacer.count("short")
    except OSError:
        pacer.count("short_error")


def do_refused(plan: Plan, pacer: Pacer, rng: random.Random) -> None:
    dst = _addr(plan, rng, v6=rng.random() < 0.4)
    try:
        _connect(dst, rng.choice(CLOSED_PORTS)).close()
        pacer.count("refused_unexpected_ok")
    except ConnectionRefusedError:
        pacer.count("refused")
    except OSError:
        pacer.count("refused_error")


def do_reject(plan: Plan, pacer: Pacer, rng: random.Random) -> None:
    dst = _addr(plan, rng)
    try:
        _connect(dst, REJECT_PORT).close()
        pacer.count("reject_unexpected_ok")
    except ConnectionRefusedError:
        pacer.count("reject")
    except OSError:
        pacer.count("reject_error")


def _expect_reset(s: socket.socket) -> bool:
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except OSError:
        return False
    return False


def do_linger(plan: Plan, pacer: Pacer, rng: random.Random) -> None:
    dst = _addr(plan, rng)
    try:
        with _connect(dst, LINGER_PORT) as s:
            s.sendall(b"GET /abort\r\n")
            pacer.count("server_abort" if _expect_reset(s) else "server_abort_noreset")
    except OSError:
        pacer.count("server_abort_error")


def do_unread(plan: Plan, pacer: Pacer, rng: random.Random) -> None:
    dst = _addr(plan, rng)
    try:
        with _connect(dst, UNREAD_PORT) as s:
            s.sendall(b"x" * rng.randint(100, 3000))
            pacer.count("unread_close" if _expect_reset(s) else "unread_close_noreset")
    except OSError:
        pacer.count("unread_close_error")


def do_client_abort(plan: Plan, pacer: Pacer, rng: random.Random) -> None:
    """Ask for 2 MB, read a little, then close with SO_LINGER 0: the client sends the RST."""
    dst = _addr(plan, rng)
    try:
        s = _connect(dst, BULK_PORT)
        s.sendall(struct.pack("!Q", 2 << 20))
        _recv_exact(s, rng.randint(1000, 60000))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
        s.close()
        pacer.count("client_abort")
    except OSError:
        pacer.count("client_abort_error")


def nonblocking_connects(
    targets: list[tuple[int, str, str, int]], wait_s: float, hold_s: float = 0.0
) -> dict[str, int]:
    """Start every connect at once; collect outcomes for up to wait_s seconds.

    Connected sockets are held for hold_s (listen-overflow: the handshake looks done to
    the client while the server's accept queue is full), then closed.
    """
    sel = selectors.DefaultSelector()
    out: dict[str, int] = {}
    socks: list[socket.socket] = []
    for fam, host, src, port in targets:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setblocking(False)
        socks.append(s)
        s.bind((src, 0))
        rc = s.connect_ex((host, port))
        if rc in (0, errno.EINPROGRESS):
            sel.register(s, selectors.EVENT_WRITE)
        else:
            out[errno.errorcode.get(rc, str(rc))] = out.get(errno.errorcode.get(rc, str(rc)), 0) + 1
    end = time.monotonic() + wait_s
    connected: list[socket.socket] = []
    while sel.get_map() and time.monotonic() < end:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            sel.unregister(s)
            rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            name = "connected" if rc == 0 else errno.errorcode.get(rc, str(rc))
            out[name] = out.get(name, 0) + 1
            if rc == 0:
                connected.append(s)
    out["pending"] = len(sel.get_map())
    sel.close()
    if hold_s and connected:
        for s in connected:
            with contextlib.suppress(OSError):
                s.send(b"hello?")
        time.sleep(hold_s)
    for s in socks:
        s.close()
    return out


def do_timeouts(plan: Plan, pacer: Pacer, rng: random.Random, n: int) -> None:
    targets = [(*_addr(plan, rng), DROP_PORT) for _ in range(n)]
    # tcp_syn_retries=1 in the client namespace: SYN, one retry, ETIMEDOUT after ~3 s.
    for k, v in nonblocking_connects(targets, wait_s=6).items():
        pacer.count(f"timeout:{k}", v)


def do_overflow(plan: Plan, pacer: Pacer, rng: random.Random, n: int) -> None:
    targets = [(*_addr(plan, rng), OVERFLOW_PORT) for _ in range(n)]
    for k, v in nonblocking_connects(targets, wait_s=4, hold_s=1.5).items():
        pacer.count(f"overflow:{k}", v)


def do_scan(plan: Plan, pacer: Pacer, rng: random.Random, n: int, v6: bool) -> None:
    dst = _addr(plan, rng, v6=v6, scanner=True)
    ports = list(range(1, n + 1))
    rng.shuffle(ports)
    for i in range(0, len(ports), 128):
        targets = [(*dst, p) for p in ports[i : i + 128]]
        for k, v in nonblocking_connects(targets, wait_s=3).items():
            pacer.count(f"scan{6 if v6 else 4}:{k}", v)


def churn_worker(
    plan: Plan, pacer: Pacer, rng: random.Random, items: list[Callable[[], None]]
) -> None:
    for item in items:
        # Follow the capture's growth (never run ahead of the bulk by more than 2 %).
        while not pacer.expired() and pacer.churn_frac() > pacer.size_frac() + 0.02:
            time.sleep(0.01)
        if pacer.expired():
            return
        item()
        with pacer.lock:
            pacer.churn_done += 1


def client(plan_path: str) -> None:
    with open(plan_path) as f:
        plan = Plan(**json.load(f))
    rng = random.Random(plan.seed)
    pacer = Pacer(plan)

    def bind(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
        r = random.Random(rng.random())
        return lambda: fn(plan, pacer, r, *args)

    quick: list[Callable[[], None]] = []
    quick += [bind(do_short) for _ in range(plan.short)]
    quick += [bind(do_refused) for _ in range(plan.refused)]
    quick += [bind(do_reject) for _ in range(plan.rejects)]
    quick += [bind(do_linger) for _ in range(plan.linger)]
    quick += [bind(do_unread) for _ in range(plan.unread)]
    quick += [bind(do_client_abort) for _ in range(plan.client_abort)]
    rng.shuffle(quick)
    slow: list[Callable[[], None]] = []
    group = 50
    slow += [bind(do_timeouts, group) for _ in range(max(1, plan.timeouts // group))]
    slow += [bind(do_overflow, max(2, plan.overflow // 2)) for _ in range(2)]
    slow.insert(len(slow) // 2, bind(do_scan, plan.scan_ports, False))
    slow.append(bind(do_scan, max(16, plan.scan_ports // 4), True))
    pacer.churn_total = len(quick) + len(slow)

    threads = [
        threading.Thread(target=churn_worker, args=(plan, pacer, rng, quick)),
        threading.Thread(target=churn_worker, args=(plan, pacer, rng, slow)),
    ]
    threads += [
        threading.Thread(target=bulk_worker, args=(plan, pacer, random.Random(rng.random())))
        for _ in range(plan.bulk_workers)
    ]
    for t in threads:
        t.start()
    last = 0.0
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        if time.monotonic() - last > 10:
            last = time.monotonic()
            log(
                f"capture {pacer.size_frac() * 100:5.1f} %  churn {pacer.churn_frac() * 100:5.1f} %"
            )
    for t in threads:
        t.join()
    if pacer.expired():
        pacer.count("deadline_hit")
    print(json.dumps(pacer.counts, sort_keys=True), flush=True)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "server":
        server()
        return 0
    if len(argv) == 3 and argv[1] == "client":
        client(argv[2])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
