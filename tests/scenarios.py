"""Real TCP failure scenarios, played on the real kernel and recorded with tcpdump.

Each public function ``scenario(path)`` builds its own namespaces (see
:mod:`netlab`), plays one failure (or a clean control), records it into *path*
and returns the ground truth the scenario knows, as one manifest entry
(see ``tests/data/captures/manifest.json`` and :data:`SCENARIOS`).

Ground-truth keys used in entries (all optional except the first four):
``kind``, ``server``, ``port``, ``client``, ``attempts`` (failing connection
attempts), ``family``, ``iface``, ``iface_linktype``, ``format``,
``snaplen``, ``reset_by`` (``"server"``/``"client"``/``"router"``/
``"injector"``), ``bytes_to_server`` / ``bytes_to_client`` (payload sent
before the reset), ``ttl`` maps, ``netstat_before`` / ``netstat_after``
(TcpExt counters read inside the namespace), ``client_errors`` (errno names
the client application saw) and ``packets`` (as counted by our own reader).
Needs root.  Every run takes a few seconds at most.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

try:
    from . import netlab  # type: ignore[no-redef]
except ImportError:  # imported as a top-level module (tests/ on sys.path)
    import netlab  # type: ignore[no-redef]

Pkt = netlab.Pkt

# --------------------------------------------------------------------------- snippets

#: Shared helpers for all snippets run with ``python3 -c`` inside a namespace.
PRELUDE = r"""
import errno, fcntl, json, os, select, socket, struct, sys, time
A = json.loads(sys.argv[1])
SIOCINQ, SIOCOUTQ = 0x541B, 0x5411
import ctypes  # a name that ps and the kernel's events show (PR_SET_NAME)
COMM = A.get("comm", "rsts-snippet") if isinstance(A, dict) else "rsts-snippet"
ctypes.CDLL(None).prctl(15, COMM.encode()[:15], 0, 0, 0)

def out(**kw):
    kw.setdefault("pid", os.getpid())
    print(json.dumps(kw), flush=True)

def fam(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def ename(e):
    # socket.timeout is TimeoutError since 3.10: a kernel ETIMEDOUT has errno 110,
    # Python's own settimeout() expiry has errno None.
    n = getattr(e, "errno", None)
    if n:
        return errno.errorcode.get(n, str(n))
    return "timeout" if isinstance(e, socket.timeout) else type(e).__name__

def ioq(s, req):
    return struct.unpack("i", fcntl.ioctl(s.fileno(), req, b"\0" * 4))[0]

def wait_until(pred, limit=5.0):
    end = time.monotonic() + limit
    while not pred():
        if time.monotonic() > end:
            raise SystemExit("wait_until timed out")
        time.sleep(0.005)

def recv_exact(s, n, limit=5.0):
    s.settimeout(limit)
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return len(buf)

def final_recv(s, limit=3.0):
    s.settimeout(limit)
    try:
        d = s.recv(65536)
        return "eof" if not d else "data"
    except OSError as e:
        return ename(e)

def listener(host, port, backlog=16):
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(backlog)
    return s

def wait_go(limit=15.0):
    r, _, _ = select.select([sys.stdin], [], [], limit)
    return sys.stdin.readline().strip() if r else ""
"""

#: Client: ``A = {host, ports, attempts, timeout, send, pause}``; one line of JSON.
CLIENT_CONNECT = (
    PRELUDE
    + r"""
results = []
for port in A["ports"]:
    for _ in range(A.get("attempts", 1)):
        s = socket.socket(fam(A["host"]), socket.SOCK_STREAM)
        s.settimeout(A.get("timeout", 3.0))
        t0 = time.monotonic()
        r = {"port": port}
        try:
            s.connect((A["host"], port))
            r["result"] = "ok"
            r["sport"] = s.getsockname()[1]
            n = A.get("send", 0)
            if n:
                s.sendall(b"q" * n)
                s.shutdown(socket.SHUT_WR)
                got = 0
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += len(d)
                r["sent"], r["received"] = n, got
        except OSError as e:
            r["result"] = ename(e)
            try:
                r["sport"] = s.getsockname()[1]
            except OSError:
                pass
        r["seconds"] = round(time.monotonic() - t0, 3)
        s.close()
        results.append(r)
        time.sleep(A.get("pause", 0.05))
out(results=results)
"""
)

#: Echo server: accept ``A.n`` connections one by one, read to EOF, echo, close.
SERVER_ECHO = (
    PRELUDE
    + r"""
ls = listener(A["host"], A["port"])
print("READY", flush=True)
ls.settimeout(A.get("limit", 10.0))
done = []
for _ in range(A["n"]):
    try:
        c, peer = ls.accept()
    except OSError as e:
        done.append(ename(e))
        break
    c.settimeout(5)
    data = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        data += d
    if data:
        c.sendall(data)
    c.close()
    done.append(len(data))
out(served=done)
"""
)

#: Server that aborts: ``A.mode`` = "linger" (SO_LINGER {1,0} then close) or
#: "unread" (close() with ``A.n_in - A.n_read`` bytes left unread) or "stale"
#: (like linger but waits for "go" on stdin first).
SERVER_ABORT = (
    PRELUDE
    + r"""
ls = listener(A["host"], A["port"])
print("READY", flush=True)
ls.settimeout(10)
c, peer = ls.accept()
if A["mode"] == "unread":
    wait_until(lambda: ioq(c, SIOCINQ) >= A["n_in"])
    got = recv_exact(c, A["n_read"])
    left = ioq(c, SIOCINQ)
    c.close()
    out(peer=list(peer[:2]), read=got, unread=left, sent=0)
else:
    got = recv_exact(c, A["n_in"])
    c.sendall(b"r" * A["n_out"])
    wait_until(lambda: ioq(c, SIOCOUTQ) == 0)   # all our bytes were ACKed
    if A["mode"] == "stale":
        print("IDLE", flush=True)
        wait_go()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    out(peer=list(peer[:2]), read=got, sent=A["n_out"], unread=0)
"""
)

#: Client of SERVER_ABORT: connect, send ``n_in``, read ``n_out``, then wait for
#: what happens (``mode`` "stale": say IDLE, wait for "go", send ``late`` bytes).
CLIENT_TALK = (
    PRELUDE
    + r"""
s = socket.socket(fam(A["host"]), socket.SOCK_STREAM)
s.settimeout(5)
s.connect((A["host"], A["port"]))
sport = s.getsockname()[1]
s.sendall(b"q" * A["n_in"])
got = recv_exact(s, A["n_out"]) if A["n_out"] else 0
late_err = None
if A.get("mode") == "stale":
    print("IDLE", flush=True)
    wait_go()
    try:
        s.sendall(b"L" * A["late"])
    except OSError as e:
        late_err = ename(e)
end = final_recv(s)
out(sport=sport, sent=A["n_in"], received=got, final=end, late_error=late_err)
"""
)

#: Listener that never accepts (``A.backlog``); ends on "stop" or after 20 s.
SERVER_SILENT = (
    PRELUDE
    + r"""
ls = listener(A["host"], A["port"], A["backlog"])
print("READY", flush=True)
wait_go(20)
out(closed=True)
"""
)

#: Streaming server for the injection scenario: ``burst`` chunks of ``chunk``
#: bytes, then "PAUSE", wait for "go", then tries to send ``after`` more chunks.
SERVER_STREAM = (
    PRELUDE
    + r"""
ls = listener(A["host"], A["port"])
print("READY", flush=True)
ls.settimeout(10)
c, peer = ls.accept()
for _ in range(A["burst"]):
    c.sendall(b"d" * A["chunk"])
    time.sleep(0.02)
wait_until(lambda: ioq(c, SIOCOUTQ) == 0)
print("PAUSE", flush=True)
wait_go()
errs, sent = [], A["burst"] * A["chunk"]
for _ in range(A["after"]):
    try:
        c.sendall(b"e" * A["chunk"])
        sent += A["chunk"]
    except OSError as e:
        errs.append(ename(e))
    time.sleep(0.2)
out(peer=list(peer[:2]), sent=sent, errors=errs)
"""
)

#: Client for the injection scenario: read everything, say "GOT n" after the
#: burst, keep reading until error/EOF or ``limit`` seconds.
CLIENT_SINK = (
    PRELUDE
    + r"""
s = socket.socket(fam(A["host"]), socket.SOCK_STREAM)
s.settimeout(5)
s.connect((A["host"], A["port"]))
sport = s.getsockname()[1]
print("SPORT %d" % sport, flush=True)
got = recv_exact(s, A["expect"])
print("GOT %d" % got, flush=True)
end, t0 = "limit", time.monotonic()
s.settimeout(0.2)
while time.monotonic() - t0 < A["limit"]:
    try:
        d = s.recv(65536)
    except socket.timeout:
        continue
    except OSError as e:
        end = ename(e)
        break
    if not d:
        end = "eof"
        break
    got += len(d)
out(sport=sport, received=got, final=end)
"""
)

#: IPv4+TCP header crafting for raw sockets (appended to injector snippets).
RAW_TCP = r"""
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF

def ip_tcp(src, dst, sport, dport, seq, ack, flags, ttl, ipid, win=0):
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, win, 0, 0)
    c = csum(s + d + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, ipid, 0, ttl, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + tcp

def raw_send(pkt, dst):
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    r.sendto(pkt, (dst, 0))
    r.close()
"""

#: Injector (runs on the router): sniff ``iface`` with AF_PACKET, follow the
#: server->client stream; on "go" forge RST(+ACK) "from the server" with
#: seq = client's rcv_nxt + ``offset``, TTL ``ttl``.
INJECTOR = (
    PRELUDE
    + RAW_TCP
    + r"""
sn = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sn.bind((A["iface"], 0))
sn.setblocking(False)
print("READY", flush=True)
state = {}

def drain():
    while True:
        try:
            f = sn.recv(65536)
        except BlockingIOError:
            return
        if f[12:14] != b"\x08\x00" or f[23] != 6:
            continue
        ip = f[14:]
        ihl = (ip[0] & 15) * 4
        tot = struct.unpack("!H", ip[2:4])[0]
        src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
        sp, dp, seq, ack, off, fl = struct.unpack("!HHIIBB", ip[ihl:ihl + 14])
        if src == A["server"] and sp == A["port"] and dst == A["client"]:
            plen = tot - ihl - (off >> 4) * 4 + (1 if fl & 3 else 0)
            state.update(cport=dp, nxt=(seq + plen) & 0xFFFFFFFF, ack=ack, ttl=ip[8])

r, _, _ = select.select([sys.stdin], [], [], 15)
while True:
    drain()
    r, _, _ = select.select([sys.stdin, sn], [], [], 15)
    if sys.stdin in r:
        sys.stdin.readline()
        break
drain()
seq = (state["nxt"] + A["offset"]) & 0xFFFFFFFF
pkt = ip_tcp(A["server"], A["client"], A["port"], state["cport"], seq, state["ack"],
             0x14, A["ttl"], A["ipid"])
raw_send(pkt, A["client"])
out(seq=seq, rcv_nxt=state["nxt"], ack=state["ack"], cport=state["cport"],
    server_ttl_seen=state["ttl"], ttl=A["ttl"])
"""
)

#: Spoofed SYNs from ``A.sources`` to ``A.server:A.port`` (raw socket).
SPOOF_SYNS = (
    PRELUDE
    + RAW_TCP
    + r"""
for i, src in enumerate(A["sources"]):
    pkt = ip_tcp(src, A["server"], 40000 + i, A["port"], 1000000 * (i + 1), 0, 0x02,
                 64, 0x4000 + i, 64240)
    raw_send(pkt, A["server"])
    time.sleep(0.005)
out(sent=len(A["sources"]))
"""
)

#: Listen-overflow client: ``filled`` blocking connects, then ``extra``
#: non-blocking ones; after ``hold`` s report SO_ERROR of each, then close all.
CLIENT_FLOOD = (
    PRELUDE
    + r"""
socks, res = [], []
for i in range(A["filled"] + A["extra"]):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if i < A["filled"]:
        s.settimeout(3)
        s.connect((A["host"], A["port"]))
        res.append("ok")
    else:
        s.setblocking(False)
        try:
            s.connect((A["host"], A["port"]))
        except BlockingIOError:
            pass
        res.append(None)
    socks.append(s)
    time.sleep(0.01)
time.sleep(A["hold"])
for i, s in enumerate(socks):
    if res[i] is None:
        e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if e:
            res[i] = errno.errorcode.get(e, str(e))
        else:
            try:
                s.getpeername()
                res[i] = "ok"
            except OSError:
                res[i] = "pending"
for s in socks:
    s.close()
out(results=res)
"""
)

# --------------------------------------------------------------------------- helpers

CLIENT_TTL = 64  # Linux default net.ipv4.ip_default_ttl, kept in every namespace


def _tcp(pkts: list[Pkt]) -> list[Pkt]:
    return [p for p in pkts if p.proto == "tcp"]


def _count(pkts: list[Pkt]) -> dict[str, int]:
    """How many SYN, SYN-ACK, RST and FIN segments a capture holds."""
    c: Counter[str] = Counter()
    for p in _tcp(pkts):
        if p.flags == "S":
            c["syn"] += 1
        elif p.flags == "S.":
            c["synack"] += 1
        if p.rst:
            c["rst"] += 1
        if "F" in p.flags:
            c["fin"] += 1
    for p in pkts:
        if p.proto in ("icmp", "icmp6"):
            c[p.proto] += 1
    return dict(sorted(c.items()))


def _entry(cap: netlab.Capture, **truth: object) -> dict:
    """Build a manifest entry from the capture and the scenario's own truth."""
    links, pkts = netlab.read_packets(cap.path)
    entry = dict(truth)
    entry.setdefault("iface", cap.iface)
    entry.setdefault("iface_linktype", netlab.LINKTYPE_NAMES.get(links[0], str(links[0])))
    entry.setdefault("format", "pcap")
    entry["file"] = cap.path.name
    entry["packets"] = len(pkts)
    entry["tcp_counts"] = _count(pkts)
    if cap.dropped:
        entry["dropped_by_kernel"] = cap.dropped
    return entry


def _errors(results: list[dict]) -> list[str]:
    return [r["result"] for r in results]


def _refused(path: Path, *, host: str, port: int, attempts: int, ipv6: bool,
             topology: str, iface: str | None = None, linktype: str | None = None,
             nano: bool = False, snaplen: int | None = None) -> dict:  # fmt: skip
    with netlab.lab(topology, ipv6=ipv6) as lb:
        if topology == "single":
            client_ip = host
        else:
            client_ip = lb.client_ip6 if ":" in host else lb.client_ip
            host = lb.server_ip6 if ":" in host else lb.server_ip
        ifc = iface or ("lo" if topology == "single" else lb.client_if)
        bpf = "not dst host ff02::16" if ipv6 and topology != "single" else None  # no MLD
        with netlab.tcpdump(lb.client, ifc, path, linktype=linktype, nano=nano,
                            snaplen=snaplen, bpf=bpf) as cap:  # fmt: skip
            res = lb.python(lb.client, CLIENT_CONNECT,
                            {"host": host, "ports": [port], "attempts": attempts})  # fmt: skip
    errs = _errors(res["results"])
    assert errs == ["ECONNREFUSED"] * attempts, errs
    _, pkts = netlab.read_packets(path)
    rsts = [p for p in _tcp(pkts) if p.rst and p.sport == port]
    assert len(rsts) == attempts, len(rsts)
    return _entry(
        cap, kind="refused", family="ipv6" if ":" in host else "ipv4", server=host,
        port=port, client=client_ip, attempts=attempts, reset_by="server",
        client_ports=[r["sport"] for r in res["results"]], client_errors=errs,
        ttl={"server_rst": sorted({p.ttl for p in rsts})},
        snaplen=snaplen or 262144,
        format="pcap-nano" if nano else "pcap",
    )  # fmt: skip


# --------------------------------------------------------------------------- scenarios


def refused_v4(path: Path) -> dict:
    """6 connects to 127.0.0.1:7211 with no listener: 6 SYNs, 6 RST+ACK, ECONNREFUSED.

    Proves the basic "connection refused" signature on loopback (inside a fresh
    namespace's ``lo``, so no other loopback traffic is mixed in).
    """
    e = _refused(path, host="127.0.0.1", port=7211, attempts=6, ipv6=False, topology="single")
    e["note"] = "6x SYN to 127.0.0.1:7211 each answered by RST+ACK (seq 0, ack ISN+1) on lo."
    return e


def refused_v6(path: Path) -> dict:
    """Same as :func:`refused_v4` on ``[::1]:7211`` (IPv6 RST+ACK, hop limit 64)."""
    e = _refused(path, host="::1", port=7211, attempts=6, ipv6=True, topology="single")
    e["note"] = "6x SYN to [::1]:7211 each answered by RST+ACK on lo."
    return e


def refused_netns(path: Path) -> dict:
    """Client namespace -> server namespace over a veth, nothing listening on 7212.

    The RST+ACK comes from the server kernel (TTL 64, no router in between).
    """
    e = _refused(path, host="192.0.2.20", port=7212, attempts=4, ipv6=False, topology="direct")
    e["note"] = ("4x SYN 192.0.2.10 -> 192.0.2.20:7212 over veth, each answered by RST+ACK "
                 "TTL 64; ARP at the start.")  # fmt: skip
    return e


def refused_any_sll(path: Path) -> dict:
    """Refused across veth, recorded with ``tcpdump -i any`` (Linux cooked v1, SLL)."""
    # tcpdump 4.99 with libpcap 1.10 writes SLL2 for -i any unless told otherwise.
    e = _refused(path, host="192.0.2.20", port=7212, attempts=3, ipv6=False,
                 topology="direct", iface="any", linktype="LINUX_SLL")  # fmt: skip
    e["note"] = "3x refused to 192.0.2.20:7212, link type LINUX_SLL (-i any) in the client ns."
    return e


def refused_any_sll2(path: Path) -> dict:
    """Refused across veth, recorded with ``tcpdump -i any -y LINUX_SLL2`` (cooked v2)."""
    e = _refused(path, host="192.0.2.20", port=7212, attempts=3, ipv6=False,
                 topology="direct", iface="any", linktype="LINUX_SLL2")  # fmt: skip
    e["note"] = (
        "3x refused to 192.0.2.20:7212, link type LINUX_SLL2; ifindex 2 = veth-c "
        "in the client ns (tcpdump -r maps it to whatever ifindex 2 is on the "
        "reading host: 'interface names might be incorrect')."
    )
    e["sll2_ifindex"] = {"2": "veth-c"}
    return e


def refused_nano(path: Path) -> dict:
    """Refused across veth, pcap with nanosecond timestamps (magic a1b23c4d)."""
    e = _refused(path, host="192.0.2.20", port=7212, attempts=3, ipv6=False,
                 topology="direct", nano=True)  # fmt: skip
    e["note"] = "3x refused to 192.0.2.20:7212, nanosecond-resolution pcap."
    return e


def refused_v6_netns(path: Path) -> dict:
    """Refused over IPv6 between namespaces (2001:db8:1::10 -> 2001:db8:1::20:7212).

    Also holds neighbour solicitation/advertisement, recorded with ``-s 128``.
    """
    e = _refused(path, host="2001:db8:1::20", port=7212, attempts=3, ipv6=True,
                 topology="direct", snaplen=128)  # fmt: skip
    e["note"] = "3x refused over IPv6 across veth with ND; snaplen 128."
    return e


def refused_v4_gz(path: Path) -> dict:
    """:func:`refused_v4` gzip-compressed (``.pcap.gz``)."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "refused.pcap"
        e = refused_v4(plain)
        with gzip.open(path, "wb", compresslevel=9) as gz:
            gz.write(plain.read_bytes())
    e["file"], e["format"] = path.name, "pcap.gz"
    e["note"] = "gzip of a refused-v4 recording: 6x SYN -> RST+ACK on 127.0.0.1:7211."
    return e


def two_iface_pcapng(path: Path) -> dict:
    """``dumpcap -i lo -i veth-c`` in one namespace: a pcapng with two IDBs (names).

    Refusals happen on both interfaces (127.0.0.1:7211 on lo, 192.0.2.20:7212
    over the veth).  Both interfaces are Ethernet-type (Linux lo is EN10MB), so
    libpcap can read it too.
    """
    with netlab.lab("direct") as lb, netlab.dumpcap(lb.client, ["lo", lb.client_if], path) as cap:
        r1 = lb.python(lb.client, CLIENT_CONNECT,
                       {"host": "127.0.0.1", "ports": [7211], "attempts": 2})  # fmt: skip
        r2 = lb.python(lb.client, CLIENT_CONNECT,
                       {"host": lb.server_ip, "ports": [7212], "attempts": 2})  # fmt: skip
    errs = _errors(r1["results"]) + _errors(r2["results"])
    assert errs == ["ECONNREFUSED"] * 4, errs
    idbs = netlab.pcapng_interfaces(path)
    assert [i.get("name") for i in idbs] == ["lo", "veth-c"], idbs
    e = _entry(cap, kind="refused", family="ipv4", server=lb.server_ip, port=7212,
               client=lb.client_ip, attempts=4, reset_by="server", format="pcapng",
               iface="lo,veth-c", client_errors=errs,
               interfaces=[{"name": i.get("name"),
                            "linktype": netlab.LINKTYPE_NAMES.get(i["linktype"])}
                           for i in idbs],
               refusals=[{"iface": "lo", "server": "127.0.0.1", "port": 7211, "attempts": 2},
                         {"iface": "veth-c", "server": lb.server_ip, "port": 7212,
                          "attempts": 2}])  # fmt: skip
    e["note"] = ("pcapng from dumpcap with 2 IDBs (lo, veth-c, both EN10MB): 2 refusals on "
                 "127.0.0.1:7211 (lo) + 2 on 192.0.2.20:7212 (veth-c).")  # fmt: skip
    return e


def _abort(path: Path, mode: str, port: int, n_in: int, n_out: int, n_read: int = 0) -> dict:
    with netlab.lab("direct") as lb:
        srv = lb.spawn_python(lb.server, SERVER_ABORT, {"host": lb.server_ip, "port": port,
                              "mode": mode, "n_in": n_in, "n_out": n_out,
                              "n_read": n_read})  # fmt: skip
        srv.expect("READY")
        with netlab.tcpdump(lb.client, lb.client_if, path) as cap:
            cli = lb.python(lb.client, CLIENT_TALK, {"host": lb.server_ip, "port": port,
                            "n_in": n_in, "n_out": n_out})  # fmt: skip
            res = srv.result()
    assert cli["final"] == "ECONNRESET", cli
    _, pkts = netlab.read_packets(path)
    rsts = [p for p in _tcp(pkts) if p.rst]
    assert len(rsts) == 1 and rsts[0].src == lb.server_ip, rsts
    return _entry(
        cap, kind="abort", family="ipv4", server=lb.server_ip, port=port, client=lb.client_ip,
        client_port=cli["sport"], attempts=0, reset_by="server", abort_mode=mode,
        bytes_to_server=n_in, bytes_to_client=n_out, server_read=res["read"],
        server_unread=res["unread"], client_errors=[cli["final"]],
        rst_flags=rsts[0].flags, rst_seq=rsts[0].seq, ttl={"server_rst": rsts[0].ttl},
    )  # fmt: skip


def abort_linger(path: Path) -> dict:
    """Established connection, 1000 B up / 2000 B down, then the server closes with
    SO_LINGER {1,0}: one RST+ACK from the server at its snd_nxt, no FIN.

    The client, blocked in recv(), gets ECONNRESET.
    """
    e = _abort(path, "linger", 7213, n_in=1000, n_out=2000)
    e["note"] = ("handshake, 1000 B client->server, 2000 B server->client, all ACKed, then one "
                 "R. from the server (SO_LINGER 0 close), no FIN anywhere.")  # fmt: skip
    return e


def abort_unread(path: Path) -> dict:
    """Client sends 3000 B; the server reads 1000 and close()s with 2000 B unread:
    the kernel sends RST+ACK instead of FIN (RFC 2525 "data loss" reset).
    """
    e = _abort(path, "unread", 7223, n_in=3000, n_out=0, n_read=1000)
    e["note"] = ("3000 B client->server (ACKed), server read 1000 and closed: one R. from "
                 "the server, no FIN; client recv() -> ECONNRESET.")  # fmt: skip
    return e


def firewall_drop(path: Path) -> dict:
    """nft drops SYNs to 192.0.2.20:7214 in the server namespace: connect() times out.

    With net.ipv4.tcp_syn_retries=1 in the client namespace the kernel gives up
    (ETIMEDOUT) after ~3 s.  Surprise: the 6.x kernel sent 3 SYNs (t=0, 1 s, 2 s),
    not 2: the first retransmissions use linear 1 s timeouts
    (net.ipv4.tcp_syn_linear_timeouts); ``syns_sent`` records what was seen.
    """
    port = 7214
    with netlab.lab("direct") as lb:
        lb.sysctl(lb.client, "net.ipv4.tcp_syn_retries", 1)
        lb.nft(
            lb.server,
            f"""table inet rsts {{
            chain input {{ type filter hook input priority 0; policy accept;
                tcp dport {port} tcp flags & (syn | ack) == syn drop
            }}
        }}""",
        )
        with netlab.tcpdump(lb.client, lb.client_if, path) as cap:
            res = lb.python(lb.client, CLIENT_CONNECT, {"host": lb.server_ip, "ports": [port],
                            "attempts": 1, "timeout": 10})  # fmt: skip
    errs = _errors(res["results"])
    assert errs == ["ETIMEDOUT"], errs
    _, pkts = netlab.read_packets(path)
    syns = [p for p in _tcp(pkts) if p.flags == "S"]
    e = _entry(cap, kind="timeout", family="ipv4", server=lb.server_ip, port=port,
               client=lb.client_ip, attempts=1, syn_retries=1, syns_sent=len(syns), reset_by=None,
               client_errors=errs, connect_seconds=res["results"][0]["seconds"],
               firewall="nft drop (server input)")  # fmt: skip
    e["note"] = (
        "1 connect to 192.0.2.20:7214: SYN at t=0, 1 s, 2 s (3 SYNs although "
        "tcp_syn_retries=1: linear SYN timeouts), never answered; ETIMEDOUT ~3 s."
    )
    return e


def _reject_reset(path: Path, where: str) -> dict:
    blocked, open_port = 7215, 7216
    with netlab.lab("routed") as lb:
        assert lb.router is not None
        if where == "router":
            lb.run(lb.router, "iptables", "-A", "FORWARD", "-p", "tcp", "--dport", str(blocked),
                   "-j", "REJECT", "--reject-with", "tcp-reset")  # fmt: skip
        else:
            lb.nft(
                lb.server,
                f"""table inet rsts {{
                chain input {{ type filter hook input priority 0; policy accept;
                    tcp dport {blocked} reject with tcp reset
                }}
            }}""",
            )
        servers = [lb.spawn_python(lb.server, SERVER_ECHO, {"host": lb.server_ip, "port": p,
                                   "n": 1, "limit": 8}) for p in (open_port, blocked)]  # fmt: skip
        for s in servers:
            s.expect("READY")
        with netlab.tcpdump(lb.client, lb.client_if, path) as cap:
            ok = lb.python(lb.client, CLIENT_CONNECT, {"host": lb.server_ip,
                           "ports": [open_port], "send": 300})  # fmt: skip
            bad = lb.python(lb.client, CLIENT_CONNECT, {"host": lb.server_ip,
                            "ports": [blocked], "attempts": 3})  # fmt: skip
    assert _errors(ok["results"]) == ["ok"], ok
    errs = _errors(bad["results"])
    assert errs == ["ECONNREFUSED"] * 3, errs
    _, pkts = netlab.read_packets(path)
    synack = {p.ttl for p in _tcp(pkts) if p.flags == "S." and p.sport == open_port}
    rst = {p.ttl for p in _tcp(pkts) if p.rst and p.sport == blocked}
    return _entry(
        cap, kind="firewall-reset", family="ipv4", server=lb.server_ip, port=blocked,
        client=lb.client_ip, attempts=3, reset_by=where, open_port=open_port,
        client_errors=errs, hops=1,
        firewall=("iptables FORWARD REJECT --reject-with tcp-reset (router)" if where == "router"
                  else "nft input reject with tcp reset (server)"),
        ttl={"server_synack": sorted(synack), "rst": sorted(rst)},
    )  # fmt: skip


def firewall_reject_router(path: Path) -> dict:
    """A router between client and server REJECTs port 7215 with tcp-reset.

    The server really listens on 7215 and 7216; 7216 works.  At the client the
    server's SYN-ACK has TTL 63 (64 minus the router hop) while the router's
    forged RST has TTL 64: the RST did not come from the server.
    """
    e = _reject_reset(path, "router")
    e["note"] = ("OK conn to :7216 (SYN-ACK TTL 63, 300 B echo, FIN close), then 3x SYN to "
                 ":7215 answered by R. with TTL 64 made by the router, although the server "
                 "listens there.")  # fmt: skip
    return e


def firewall_reject_host(path: Path) -> dict:
    """The server host itself rejects 7215 with ``reject with tcp reset`` (nft input).

    At the client the RST has the same TTL as the server's SYN-ACK (63): a
    host firewall reset looks exactly like a closed port, except that the
    application does listen (the ground truth here).
    """
    e = _reject_reset(path, "server")
    e["note"] = (
        "OK conn to :7216 (SYN-ACK TTL 63), then 3x SYN to :7215 answered by R. "
        "TTL 63 from the server host's firewall; same TTL as the real server."
    )
    return e


def stale(path: Path) -> dict:
    """An idle connection the server forgot silently; the client's next data gets RST.

    The server aborts (SO_LINGER 0) while an nft rule in the server namespace
    drops its outgoing RST/FIN, so the client is never told.  The rule is
    removed, the client sends 100 B, and the server kernel (no socket) answers
    with a bare RST (no ACK flag, seq = the client's ACK number).
    """
    port = 7217
    with netlab.lab("direct") as lb:
        srv = lb.spawn_python(lb.server, SERVER_ABORT, {"host": lb.server_ip, "port": port,
                              "mode": "stale", "n_in": 200, "n_out": 400})  # fmt: skip
        srv.expect("READY")
        with netlab.tcpdump(lb.client, lb.client_if, path) as cap:
            cli = lb.spawn_python(lb.client, CLIENT_TALK, {"host": lb.server_ip, "port": port,
                                  "n_in": 200, "n_out": 400, "mode": "stale",
                                  "late": 100})  # fmt: skip
            srv.expect("IDLE")
            cli.expect("IDLE")
            lb.nft(
                lb.server,
                f"""table inet rsts_stale {{
                chain output {{ type filter hook output priority 0; policy accept;
                    tcp sport {port} tcp flags & (fin | rst) != 0 drop
                }}
            }}""",
            )
            srv.send("go")
            srv_res = srv.result()
            time.sleep(0.5)  # the connection is now stale on the client side
            lb.run(lb.server, "nft", "delete", "table", "inet", "rsts_stale")
            cli.send("go")
            res = cli.result()
    assert res["final"] == "ECONNRESET", res
    _, pkts = netlab.read_packets(path)
    rsts = [p for p in _tcp(pkts) if p.rst]
    assert len(rsts) == 1 and rsts[0].flags == "R", rsts
    return _entry(
        cap, kind="stale", family="ipv4", server=lb.server_ip, port=port, client=lb.client_ip,
        client_port=res["sport"], attempts=0, reset_by="server",
        bytes_to_server=200, bytes_to_client=400, late_bytes=100, idle_seconds=0.5,
        server_read=srv_res["read"], client_errors=[res["final"]], rst_flags=rsts[0].flags,
        rst_seq=rsts[0].seq, ttl={"server_rst": rsts[0].ttl},
        note=("200 B up / 400 B down, idle 0.5 s (server socket silently aborted), client "
              "sends 100 B -> bare R (no ACK flag, seq = client's ack) from the server "
              "kernel."),
    )  # fmt: skip


def scan(path: Path) -> dict:
    """One source connect()s to 30 ports 7300-7329 of the server; 7305 and 7320 are open.

    28 refused (RST+ACK), 2 full handshakes closed at once with FIN.
    """
    ports = list(range(7300, 7330))
    opened = [7305, 7320]
    with netlab.lab("direct") as lb:
        for p in opened:
            lb.spawn_python(lb.server, SERVER_ECHO,
                            {"host": lb.server_ip, "port": p, "n": 1}).expect("READY")  # fmt: skip
        with netlab.tcpdump(lb.client, lb.client_if, path) as cap:
            res = lb.python(lb.client, CLIENT_CONNECT, {"host": lb.server_ip, "ports": ports,
                            "attempts": 1, "timeout": 2, "pause": 0.005})  # fmt: skip
    got = {r["port"]: r["result"] for r in res["results"]}
    assert sorted(p for p, r in got.items() if r == "ok") == opened, got
    closed = [p for p in ports if p not in opened]
    assert all(got[p] == "ECONNREFUSED" for p in closed), got
    e = _entry(cap, kind="scan", family="ipv4", server=lb.server_ip, port=None,
               ports=[ports[0], ports[-1]], open_ports=opened, client=lb.client_ip,
               attempts=len(closed), reset_by="server")  # fmt: skip
    e["note"] = ("connect scan 7300-7329 from one source port range: 28 RST+ACK, 2 full "
                 "handshakes (7305, 7320) closed with FIN.")  # fmt: skip
    return e


def _injected(path: Path, offset: int) -> dict:
    port, chunk, burst = 7218, 500, 6
    with netlab.lab("routed") as lb:
        assert lb.router is not None
        srv = lb.spawn_python(lb.server, SERVER_STREAM, {"host": lb.server_ip, "port": port,
                              "chunk": chunk, "burst": burst, "after": 3})  # fmt: skip
        srv.expect("READY")
        inj = lb.spawn_python(lb.router, INJECTOR, {"iface": lb.router_client_if,
                              "server": lb.server_ip, "client": lb.client_ip, "port": port,
                              "offset": offset, "ttl": 50, "ipid": 0x1234})  # fmt: skip
        inj.expect("READY")
        with netlab.tcpdump(lb.client, lb.client_if, path) as cap:
            cli = lb.spawn_python(lb.client, CLIENT_SINK, {"host": lb.server_ip, "port": port,
                                  "expect": chunk * burst, "limit": 2.0})  # fmt: skip
            srv.expect("PAUSE")
            cli.expect("GOT")
            time.sleep(0.1)
            inj.send("go")
            forged = inj.result()
            time.sleep(0.2)
            srv.send("go")
            srv_res = srv.result()
            cli_res = cli.result()
    _, pkts = netlab.read_packets(path)
    rsts = [p for p in _tcp(pkts) if p.rst]
    server_ttl = sorted({p.ttl for p in _tcp(pkts) if p.src == lb.server_ip and not p.rst})
    return _entry(
        cap, kind="injected", family="ipv4", server=lb.server_ip, port=port,
        client=lb.client_ip, client_port=cli_res["sport"], attempts=0, reset_by="injector",
        injected_from="router", bytes_to_client=chunk * burst, bytes_to_server=0,
        injected_seq=forged["seq"], client_rcv_nxt=forged["rcv_nxt"], seq_offset=offset,
        ttl={"injected_rst": forged["ttl"], "server": server_ttl,
             "client_rst": sorted({p.ttl for p in rsts if p.src == lb.client_ip})},
        injected_ipid=0x1234, client_errors=[cli_res["final"]],
        server_errors=srv_res["errors"], client_received=cli_res["received"],
        rsts=[{"src": p.src, "flags": p.flags, "seq": p.seq, "ttl": p.ttl} for p in rsts],
    )  # fmt: skip


def injected(path: Path) -> dict:
    """An on-path box (the router) forges RST+ACK "from the server" with TTL 50 and the
    exact seq the client expects (rcv_nxt).  The client accepts it (ECONNRESET);
    the real server keeps sending (TTL 63 at the client), and the client kernel
    answers that data with bare RSTs.
    """
    e = _injected(path, 0)
    e["note"] = ("3000 B server->client (TTL 63), then a forged R. from 198.51.100.20 with "
                 "TTL 50 / IP ID 0x1234 / no DF and exact seq (client ECONNRESET); the real "
                 "server sends 500 B more (TTL 63), the client kernel answers with a bare R "
                 "and the server's next send fails (ECONNRESET, then EPIPE).")  # fmt: skip
    return e


def injected_challenge(path: Path) -> dict:
    """Like :func:`injected`, but the forged RST's seq is in-window and not exact
    (rcv_nxt + 1000): the client sends a challenge ACK (RFC 5961) and the
    connection survives; data keeps flowing.
    """
    e = _injected(path, 1000)
    e["kind"] = "injected-ignored"
    e["note"] = (
        "forged R. (TTL 50) with seq rcv_nxt+1000 -> the client answers with a "
        "challenge ACK (ack = rcv_nxt) and keeps the connection; 1500 B more "
        "follow, then a normal FIN close."
    )
    return e


def listen_overflow(path: Path) -> dict:
    """A listener with backlog 1 that never accepts; 2 clients fill its accept queue,
    18 more connect: their SYNs are dropped (accept queue full), retransmitted
    (tcp_syn_retries=1 in the client ns; 3 SYNs each with linear timeouts) and
    time out (ETIMEDOUT).  Each dropped SYN counts once in ListenOverflows and
    ListenDrops.  (The ACK-time overflow, with SYN-ACK retransmissions, does not
    happen here: on a veth the handshake completes inside connect(), so every
    SYN that gets an answer also completes before the next SYN.)

    The kernel's ListenOverflows/ListenDrops counters in the server namespace
    are recorded before and after.
    """
    port, filled, extra = 7224, 2, 18
    with netlab.lab("direct") as lb:
        lb.sysctl(lb.client, "net.ipv4.tcp_syn_retries", 1)
        srv = lb.spawn_python(lb.server, SERVER_SILENT,
                              {"host": lb.server_ip, "port": port, "backlog": 1})  # fmt: skip
        srv.expect("READY")
        before = lb.netstat(lb.server)
        with netlab.tcpdump(lb.client, lb.client_if, path) as cap:
            res = lb.python(lb.client, CLIENT_FLOOD, {"host": lb.server_ip, "port": port,
                            "filled": filled, "extra": extra, "hold": 3.5})  # fmt: skip
        after = lb.netstat(lb.server)
    keys = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPReqQFullDoCookies",
            "SyncookiesSent", "TCPTimeouts")  # fmt: skip
    results = Counter(res["results"])
    e = _entry(cap, kind="listen-overflow", family="ipv4", server=lb.server_ip, port=port,
               client=lb.client_ip, attempts=extra, backlog=1, reset_by=None,
               client_results=dict(results),
               netstat_before={k: before.get(k, 0) for k in keys},
               netstat_after={k: after.get(k, 0) for k in keys},
               netstat_delta={k: after.get(k, 0) - before.get(k, 0) for k in keys})  # fmt: skip
    e["note"] = (
        "2 handshakes complete (accept queue of a backlog-1 listener holds 2, "
        "never accepted), then 18 connects whose SYNs (each sent 3x, 1 s apart) "
        "are dropped (accept queue full): ListenOverflows/ListenDrops +54."
    )
    return e


def half_open(path: Path) -> dict:
    """SYN flood: 20 spoofed SYNs from 203.0.113.10-29 to a backlog-4 listener with
    tcp_syncookies=0.  backlog+1 = 5 get SYN-ACKs (retransmitted after 1 s and
    3 s, never answered: they are routed into the client namespace and dropped
    there), 15 are dropped; a real client's SYNs are then dropped too and its
    connect times out (ListenDrops = TCPReqQFullDrop = 15 + 3).
    """
    port, backlog = 7219, 4
    sources = [f"203.0.113.{10 + i}" for i in range(20)]
    with netlab.lab("direct") as lb:
        lb.sysctl(lb.server, "net.ipv4.tcp_syncookies", 0)
        lb.sysctl(lb.server, "net.ipv4.tcp_synack_retries", 2)
        lb.run(lb.server, "ip", "route", "add", "203.0.113.0/24", "via", lb.client_ip)
        srv = lb.spawn_python(lb.server, SERVER_SILENT,
                              {"host": lb.server_ip, "port": port, "backlog": backlog})  # fmt: skip
        srv.expect("READY")
        before = lb.netstat(lb.server)
        with netlab.tcpdump(lb.server, lb.server_if, path) as cap:
            lb.python(lb.client, SPOOF_SYNS, {"server": lb.server_ip, "port": port,
                      "sources": sources})  # fmt: skip
            time.sleep(0.2)
            res = lb.python(lb.client, CLIENT_CONNECT, {"host": lb.server_ip, "ports": [port],
                            "timeout": 2.5})  # fmt: skip
            time.sleep(0.6)
        after = lb.netstat(lb.server)
    keys = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPReqQFullDoCookies",
            "SyncookiesSent")  # fmt: skip
    _, pkts = netlab.read_packets(path)
    answered = sorted({p.dst for p in _tcp(pkts) if p.flags == "S." and p.sport == port})
    e = _entry(cap, kind="half-open", family="ipv4", server=lb.server_ip, port=port,
               client=lb.client_ip, spoofed_sources=[sources[0], sources[-1]],
               spoofed_syns=len(sources), backlog=backlog, syncookies=0, synack_retries=2,
               synack_to=answered, attempts=1, reset_by=None,
               client_errors=_errors(res["results"]),
               netstat_before={k: before.get(k, 0) for k in keys},
               netstat_after={k: after.get(k, 0) for k in keys},
               netstat_delta={k: after.get(k, 0) - before.get(k, 0) for k in keys})  # fmt: skip
    e["note"] = (
        "recorded on the server's veth: 20 spoofed SYNs from 203.0.113.10-29, "
        "SYN-ACKs (+ retransmissions at 1 s and 3 s, same seq) to the first 5 "
        "only, then the real client's 3 SYNs unanswered (queue full) -> timeout."
    )
    return e


def _unreachable(path: Path, v6: bool) -> dict:
    port = 7220
    with netlab.lab("direct", ipv6=v6) as lb:
        rule = (
            "meta nfproto ipv6 tcp dport 7220 reject with icmpv6 type admin-prohibited"
            if v6
            else "meta nfproto ipv4 tcp dport 7220 reject with icmp type port-unreachable"
        )
        lb.nft(lb.server, f"""table inet rsts {{
            chain input {{ type filter hook input priority 0; policy accept;
                {rule}
            }}
        }}""")  # fmt: skip
        host = lb.server_ip6 if v6 else lb.server_ip
        bpf = "not dst host ff02::16" if v6 else None  # no MLD reports
        with netlab.tcpdump(lb.client, lb.client_if, path, bpf=bpf) as cap:
            res = lb.python(lb.client, CLIENT_CONNECT, {"host": host, "ports": [port],
                            "attempts": 3, "timeout": 5})  # fmt: skip
    errs = _errors(res["results"])
    _, pkts = netlab.read_packets(path)
    icmp = [(p.icmp_type, p.icmp_code) for p in pkts
            if p.proto in ("icmp", "icmp6") and p.icmp_type in (1, 3)]  # fmt: skip
    syns = [p for p in _tcp(pkts) if p.flags == "S"]
    assert len(icmp) == len(syns) >= 3, (icmp, syns)
    assert all(err in ("ECONNREFUSED", "EACCES", "EHOSTUNREACH") for err in errs), errs
    return _entry(
        cap, kind="unreachable", family="ipv6" if v6 else "ipv4", server=host, port=port,
        client=lb.client_ip6 if v6 else lb.client_ip, attempts=3, reset_by=None,
        icmp={"type": icmp[0][0], "code": icmp[0][1],
              "name": "admin-prohibited" if v6 else "port-unreachable", "from": host},
        client_errors=errs, firewall="nft input reject (server)", syns_sent=len(syns),
    )  # fmt: skip


def unreachable_v4(path: Path) -> dict:
    """The server host rejects 7220 with ICMP port-unreachable: connect() fails at once
    (ECONNREFUSED, like a RST, but the capture shows ICMP type 3 code 3)."""
    e = _unreachable(path, False)
    e["note"] = "3x SYN to 192.0.2.20:7220, each answered by ICMP port unreachable (3/3)."
    return e


def unreachable_v6(path: Path) -> dict:
    """The server host rejects 7220 with ICMPv6 administratively prohibited (1/1).

    connect() fails with EACCES.  The number of SYNs is timing-dependent (3 to 6):
    when the reply is processed inside the connect() syscall (the socket is
    owned by the user), the kernel only records a soft error and retransmits.
    """
    e = _unreachable(path, True)
    e["note"] = (
        f"3 connects to [2001:db8:1::20]:7220, {e['syns_sent']} SYNs, each answered "
        "by ICMPv6 admin prohibited (1/1); ND at the start.  Later connects "
        "retransmit their SYN once after 1 s: an ICMPv6 error handled while "
        "connect() still holds the socket lock is only a soft error."
    )
    return e


def unreachable_noroute(path: Path) -> dict:
    """The router has an ``unreachable`` route for 203.0.113.0/24: it answers SYNs to
    203.0.113.99 with ICMP host unreachable (3/1) from 192.0.2.1."""
    port = 7221
    with netlab.lab("routed") as lb:
        assert lb.router is not None
        lb.run(lb.router, "ip", "route", "add", "unreachable", "203.0.113.0/24")
        with netlab.tcpdump(lb.client, lb.client_if, path) as cap:
            res = lb.python(lb.client, CLIENT_CONNECT, {"host": "203.0.113.99", "ports": [port],
                            "attempts": 2, "timeout": 5})  # fmt: skip
    errs = _errors(res["results"])
    _, pkts = netlab.read_packets(path)
    icmp = [p for p in pkts if p.proto == "icmp" and p.icmp_type == 3]
    assert len(icmp) == 2, icmp
    e = _entry(cap, kind="unreachable", family="ipv4", server="203.0.113.99", port=port,
               client=lb.client_ip, attempts=2, reset_by=None, client_errors=errs,
               icmp={"type": 3, "code": icmp[0].icmp_code, "name": "host-unreachable",
                     "from": icmp[0].src, "ttl": icmp[0].ttl})  # fmt: skip
    e["note"] = ("2x SYN to 203.0.113.99:7221 answered by ICMP host unreachable from the "
                 "router 192.0.2.1 (no route there).")  # fmt: skip
    return e


def handshake_ok(path: Path) -> dict:
    """Negative control: 3 connections to 192.0.2.20:7222, 500 B each way, FIN close.

    Nothing fails: an analyzer must report no finding here.
    """
    port = 7222
    with netlab.lab("direct") as lb:
        srv = lb.spawn_python(lb.server, SERVER_ECHO, {"host": lb.server_ip, "port": port,
                              "n": 3})  # fmt: skip
        srv.expect("READY")
        with netlab.tcpdump(lb.client, lb.client_if, path) as cap:
            res = lb.python(lb.client, CLIENT_CONNECT, {"host": lb.server_ip, "ports": [port],
                            "attempts": 3, "send": 500})  # fmt: skip
            srv.result()
    assert _errors(res["results"]) == ["ok"] * 3, res
    _, pkts = netlab.read_packets(path)
    assert not any(p.rst for p in _tcp(pkts))
    e = _entry(cap, kind="clean", family="ipv4", server=lb.server_ip, port=port,
               client=lb.client_ip, attempts=0, connections=3, reset_by=None,
               bytes_to_server=500, bytes_to_client=500)  # fmt: skip
    e["note"] = "3 clean connections: handshake, 500 B echo, FIN/ACK both ways; no RST."
    return e


#: Capture name -> scenario function (writes ``<name>.pcap[...]`` and returns truth).
SCENARIOS: dict[str, Callable[[Path], dict]] = {
    "refused-v4": refused_v4,
    "refused-v6": refused_v6,
    "refused-netns": refused_netns,
    "refused-v6-netns": refused_v6_netns,
    "abort-linger": abort_linger,
    "abort-unread": abort_unread,
    "firewall-drop": firewall_drop,
    "firewall-reject-router": firewall_reject_router,
    "firewall-reject-host": firewall_reject_host,
    "stale": stale,
    "scan": scan,
    "injected": injected,
    "injected-challenge": injected_challenge,
    "listen-overflow": listen_overflow,
    "half-open": half_open,
    "unreachable-v4": unreachable_v4,
    "unreachable-v6": unreachable_v6,
    "unreachable-noroute": unreachable_noroute,
    "handshake-ok": handshake_ok,
    "refused-any-sll": refused_any_sll,
    "refused-any-sll2": refused_any_sll2,
    "refused-nano": refused_nano,
    "refused-v4-gz": refused_v4_gz,
    "two-iface-pcapng": two_iface_pcapng,
}

#: File suffix per capture name (default ``.pcap``).
SUFFIX = {"refused-v4-gz": ".pcap.gz", "two-iface-pcapng": ".pcapng"}


def filename(name: str) -> str:
    """The committed file name of capture *name*."""
    return name + SUFFIX.get(name, ".pcap")


def run(name: str, out_dir: Path) -> dict:
    """Run scenario *name*, writing its capture into *out_dir*; return its entry."""
    path = Path(out_dir) / filename(name)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        entry = SCENARIOS[name](tmp)
        shutil.move(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    entry["file"] = path.name
    return entry
