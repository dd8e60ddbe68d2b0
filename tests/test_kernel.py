"""The kernel source (tracefs): format parsing on fixtures, and real events as root.

tracefs is global: every namespace's and every other test's events reach our
instance, so each test picks its own events by its own ports, addresses, pids or
socket pointers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rstrace.model import KernelEvent
from rstrace.sources import tracefs
from rstrace.sources.kernel import Assembler, Decoder, KernelTrace, plan
from tests import netlab

DATA = Path(__file__).parent / "data" / "tracefs"


def _reader(root: Path) -> Callable[[str, str], str | None]:
    def read(system: str, name: str) -> str | None:
        path = root / system / name / "format"
        return path.read_text() if path.exists() else None

    return read


# --------------------------------------------------------------------------- fixtures


def test_format_parsing_fields_and_symbol_tables() -> None:
    fmt = tracefs.parse_format((DATA / "6.18/skb/kfree_skb/format").read_text(), "skb")
    assert (fmt.name, fmt.id) == ("kfree_skb", 2310)
    assert fmt.fields["reason"] == tracefs.Field("reason", "enum skb_drop_reason", 36, 4, False)
    assert fmt.fields["skbaddr"].type == "void *"
    reasons = fmt.values("reason")
    assert reasons["TCP_LISTEN_OVERFLOW"] == 40 and reasons["NETFILTER_DROP"] == 12
    assert reasons["NO_SOCKET"] == 3

    st = tracefs.parse_format((DATA / "6.18/sock/inet_sock_set_state/format").read_text())
    assert st.fields["saddr_v6"] == tracefs.Field("saddr_v6", "__u8[16]", 40, 16, False)
    assert st.symbols["newstate"][2] == "TCP_SYN_SENT"
    assert st.symbols["protocol"][6] == "IPPROTO_TCP"

    rst = tracefs.parse_format((DATA / "6.18/tcp/tcp_send_reset/format").read_text())
    assert rst.values("reason", {"NO_SOCKET", "TCP_STATE"}) == {"NO_SOCKET": 1, "TCP_STATE": 14}
    # This kernel leaves the state table's keys as C names: we take them from set_state.
    assert "TCP_ESTABLISHED" in rst.unresolved["state"]


def test_plan_on_this_kernels_formats_enables_all_and_builds_filters() -> None:
    p = plan(_reader(DATA / "6.18"), syscalls=True)
    assert set(p.formats) == {"set_state", "send_reset", "receive_reset", "kfree_skb",
                              "enter_connect", "connect", "socket", "accept"}  # fmt: skip
    assert p.paths["accept"] == ["syscalls/sys_exit_accept", "syscalls/sys_exit_accept4"]
    assert p.filters["sock/inet_sock_set_state"] == (
        "protocol == 6 && (oldstate == 2 || newstate == 2 || newstate == 10 || "
        "(oldstate == 1 && newstate == 7))"
    )
    drop = p.filters["skb/kfree_skb"]
    assert "reason == 40" in drop and "reason == 12" in drop
    assert "reason == 3 " not in drop  # NO_SOCKET: send_reset says it, with addresses
    assert "reason == 2 " not in drop  # NOT_SPECIFIED: noise
    assert "ret == -111" not in p.filters["syscalls/sys_exit_connect"]  # ECONNREFUSED: packets
    assert "ret == -99" in p.filters["syscalls/sys_exit_connect"]  # EADDRNOTAVAIL
    assert "ret == -115" not in p.filters["syscalls/sys_exit_connect"]  # EINPROGRESS
    assert "ret == -24" in p.filters["syscalls/sys_exit_accept4"]  # EMFILE
    assert [m for m in p.missing if not m.startswith("connect(): destination")] == []
    assert plan(_reader(DATA / "6.18"), syscalls=False).missing == []


def test_plan_on_an_older_kernel_says_what_is_missing() -> None:
    p = plan(_reader(DATA / "5.10"), syscalls=False)
    lines = "\n".join(p.missing)
    assert "tcp:tcp_send_reset: no field reason (kernel < 6.10)" in lines
    assert "skb:kfree_skb: no field reason" in lines and "not classified" in lines
    assert "tcp:tcp_receive_reset: not in this kernel" in lines
    assert "kfree_skb" not in p.formats and "send_reset" in p.formats
    assert all("\n" not in m for m in p.missing)


def test_old_send_reset_layout_decodes() -> None:
    p = plan(_reader(DATA / "5.10"), syscalls=False)
    fmt = p.formats["send_reset"]
    rec = bytearray(74)
    struct.pack_into("<HBBi", rec, 0, fmt.id, 0x10, 0, 77)
    struct.pack_into("<QQiHHH", rec, 8, 1, 0xFFFF8881, 1, 8080, 40000, 2)
    rec[34:38], rec[38:42] = bytes([192, 0, 2, 20]), bytes([192, 0, 2, 10])
    dec = Decoder(p.formats, p.state_names)
    raw = dec.decode(5, 0, bytes(rec))
    assert raw is not None
    ev = dec.event(raw, 5, 77, "x")
    assert ev is not None
    assert (ev.saddr, ev.sport, ev.daddr, ev.dport) == ("192.0.2.20", 8080, "192.0.2.10", 40000)
    assert (ev.state, ev.reason, ev.context) == ("ESTABLISHED", None, "softirq")


def test_recorded_raw_page_decodes_to_the_refused_connects() -> None:
    """Pages recorded by tests/record_tracefs.py: two refused connects (v4, v6)."""
    root = DATA / "6.18"
    meta = json.loads((root / "pages/refused.json").read_text())
    p = plan(_reader(root), syscalls=True)
    dec = Decoder(p.formats, p.state_names)
    layout = tracefs.parse_header_page((root / "header_page").read_text())
    raws = []
    for page in sorted((root / "pages").glob("refused-cpu*.raw")):
        cpu = int(page.name.split("-")[1][3:])
        for ts, rec in tracefs.iter_page(page.read_bytes(), layout):
            raw = dec.decode(ts, cpu, rec)
            if raw is not None:
                raws.append(raw)
    raws.sort(key=lambda r: r.ts_ns)
    events = Assembler(dec, 0, lambda tid: (tid, meta["comm"])).feed(raws)
    mine = [e for e in events if e.pid == meta["pid"]]
    for conn in meta["connects"]:
        fam = 6 if ":" in conn["daddr"] else 4
        ofam = [e for e in mine if e.family == fam]
        kinds = [(e.event, e.oldstate, e.newstate) for e in ofam]
        assert kinds[:2] == [("set_state", "CLOSE", "SYN_SENT"), ("send_reset", None, None)]
        syn = ofam[0]
        assert (syn.daddr, syn.dport, syn.sport, syn.context) == (
            conn["daddr"], conn["dport"], 0, "process")  # fmt: skip
        rst = ofam[1]
        assert (rst.reason, rst.saddr, rst.sport, rst.dport) == (
            "NO_SOCKET", conn["daddr"], conn["dport"], conn["sport"])  # fmt: skip
        closed = [e for e in ofam if e.newstate == "CLOSE"]
        assert closed[0].skaddr == syn.skaddr and closed[0].sport == conn["sport"]
        failed = [e for e in ofam if e.event == "connect"]
        assert [(e.errno, e.daddr, e.dport) for e in failed] == [
            ("ECONNREFUSED", conn["daddr"], conn["dport"])
        ]
    assert [e.reason for e in mine if e.event == "kfree_skb"] == ["NO_SOCKET", "NO_SOCKET"]


def test_iter_page_skips_discarded_events_and_applies_time_extends() -> None:
    payload = struct.pack("<HBBi", 7, 0, 0, 1) + b"\0" * 8  # 16 bytes: type_len 4
    body = b""
    body += struct.pack("<I", 4 | (5 << 5)) + payload  # event, delta 5
    body += struct.pack("<II", 29 | (3 << 5), 12) + b"\0" * 8  # discarded: padding, len
    body += struct.pack("<II", 30 | (1 << 5), 2)  # time extend: (2 << 27) + 1
    body += struct.pack("<II", 0 | (2 << 5), 4 + 16) + payload  # long form, delta 2
    page = struct.pack("<Qq", 1000, len(body)) + body + b"\0" * 64
    got = list(tracefs.iter_page(page))
    assert [ts for ts, _ in got] == [1005, 1005 + 3 + (2 << 27) + 1 + 2]
    assert all(rec == payload for _, rec in got)


def test_stats_parse() -> None:
    text = "entries: 3\noverrun: 7\ncommit overrun: 0\nbytes: 10\n"
    text += "oldest event ts:  1.5\nnow ts:  2.0\ndropped events: 2\nread events: 9\n"
    st = tracefs.parse_stats(text)
    assert (st["overrun"], st["dropped events"], st["read events"]) == (7, 2, 9)


# --------------------------------------------------------------------------- real kernel


def _free_port(host: str = "127.0.0.1") -> int:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _collect(kt: KernelTrace, until: Callable[[list[KernelEvent]], bool], timeout=5.0):
    """Poll until *until(events)* holds (bounded); the events seen."""
    events: list[KernelEvent] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += kt.poll()
        if until(events):
            break
        time.sleep(0.05)
    return events


_REFUSED_CLIENT = r"""
import ctypes, json, os, socket, sys
ctypes.CDLL(None).prctl(15, b"rst-refused-cl", 0, 0, 0)  # PR_SET_NAME
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
try:
    s.connect((host, port))
except ConnectionRefusedError:
    print(json.dumps({"pid": os.getpid()}))
"""


def _has(**want: object) -> Callable[[list[KernelEvent]], bool]:
    """A _collect() condition: some event has all these field values."""
    return lambda evs: any(all(getattr(e, k) == v for k, v in want.items()) for e in evs)


@pytest.mark.root
@pytest.mark.parametrize(
    ("host", "addr", "family"),
    [("127.0.0.1", "127.0.0.1", 4), ("::1", "::1", 6), ("::ffff:127.0.0.1", "127.0.0.1", 4)],
)
def test_refused_connect_names_the_process_and_the_reset(host: str, addr: str, family: int) -> None:
    """A short-lived client: by the time we poll it is gone, and its name is still known.

    An IPv6 socket connecting to an IPv4-mapped address sends IPv4: reported as IPv4,
    so its events join the RST (sent by the IPv4 stack) and the packets by 4-tuple."""
    port = _free_port(addr)
    with KernelTrace() as kt:
        assert kt.instance.path.is_dir()
        out = subprocess.run([sys.executable, "-c", _REFUSED_CLIENT, host, str(port)],
                             capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
        pid = json.loads(out.stdout)["pid"]

        def done(evs: list[KernelEvent]) -> bool:
            return any(e.event == "send_reset" and e.sport == port for e in evs)

        events = [e for e in _collect(kt, done) if port in (e.sport, e.dport)]
    syn = [e for e in events if (e.oldstate, e.newstate) == ("CLOSE", "SYN_SENT")]
    assert len(syn) == 1
    assert (syn[0].pid, syn[0].tid, syn[0].comm, syn[0].context) == (
        pid, pid, "rst-refused-cl", "process")  # fmt: skip
    assert (syn[0].daddr, syn[0].dport, syn[0].family) == (addr, port, family)
    rst = [e for e in events if e.event == "send_reset"]
    assert len(rst) == 1
    assert (rst[0].reason, rst[0].state, rst[0].saddr, rst[0].sport, rst[0].family) == (
        "NO_SOCKET", None, addr, port, family)  # fmt: skip
    client_port = rst[0].dport
    closed = [e for e in events if e.newstate == "CLOSE" and e.skaddr == syn[0].skaddr]
    assert closed and closed[0].sport == client_port  # the pointer joins SYN_SENT to the tuple
    assert (closed[0].saddr, closed[0].family) == (addr, family)
    recv = [e for e in events if e.event == "receive_reset"]
    assert recv and recv[0].sport == client_port and recv[0].sock_cookie
    assert abs(rst[0].ts - time.time() * 1e6) < 10e6  # epoch microseconds, not uptime


def _established(host: str = "127.0.0.1"):
    srv = socket.socket()
    srv.bind((host, 0))
    srv.listen(1)
    cli = socket.create_connection(srv.getsockname(), timeout=5)
    conn, _ = srv.accept()
    srv.close()
    return cli, conn


@pytest.mark.root
def test_abort_so_linger_zero_and_close_with_unread_data() -> None:
    with KernelTrace() as kt:
        cli, conn = _established()
        linger_port = cli.getsockname()[1]
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        cli.close()
        conn.close()
        cli2, conn2 = _established()
        unread_port = cli2.getsockname()[1]
        conn2.sendall(b"x" * 10)
        time.sleep(0.05)
        cli2.close()  # 10 bytes never read: RFC 2525 says reset
        conn2.close()

        def done(evs: list[KernelEvent]) -> bool:
            ports = {e.sport for e in evs if e.event == "send_reset"}
            return {linger_port, unread_port} <= ports

        events = _collect(kt, done)
    linger = [e for e in events if e.event == "send_reset" and e.sport == linger_port]
    unread = [e for e in events if e.event == "send_reset" and e.sport == unread_port]
    # What 6.18 really says: SO_LINGER 0 gives TCP_STATE, not TCP_ABORT_ON_LINGER (that
    # one is for linger2 < 0 in FIN_WAIT2); tcp_close() has already set the state to
    # CLOSE when the RST is sent, so `state` says CLOSE in both cases.
    assert [(e.reason, e.state) for e in linger] == [("TCP_STATE", "CLOSE")]
    assert [(e.reason, e.state) for e in unread] == [("TCP_ABORT_ON_CLOSE", "CLOSE")]
    got = [e for e in events if e.event == "receive_reset" and e.dport == linger_port]
    assert len(got) == 1
    # The kernel filter keeps ESTABLISHED->CLOSE (the peer's reset) but not the
    # FIN_WAIT/CLOSE_WAIT transitions of an orderly close.
    ours = {linger_port, unread_port}
    states = {(e.oldstate, e.newstate) for e in events if {e.sport, e.dport} & ours}
    assert ("ESTABLISHED", "CLOSE") in states
    assert not {s for s in states if "FIN_WAIT1" in s or "CLOSE_WAIT" in s}


_OVERFLOW_SERVER = r"""
import socket, sys
s = socket.socket(); s.bind(("192.0.2.20", int(sys.argv[1]))); s.listen(1)
print("ready", flush=True); sys.stdin.readline()
"""
# Phase 1 fills one of the accept queue's two places; phase 2 makes two handshakes
# whose final ACKs a client-side rule drops (so both wait as request sockets); phase 3
# sends data, whose ACKs complete them: the second finds the queue full.
_OVERFLOW_CLIENT = r"""
import json, socket, sys, time
port = int(sys.argv[1])
first = socket.create_connection(("192.0.2.20", port), timeout=5)
print("p1", flush=True); sys.stdin.readline()
socks = []
for i in range(2):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("192.0.2.20", port))
    except BlockingIOError: pass
    socks.append(c)
time.sleep(0.3)
print("p2", flush=True); sys.stdin.readline()
for c in socks:
    c.send(b"x")
time.sleep(0.5)
print(json.dumps({"n": len(socks)}))
"""


@pytest.mark.root
def test_listen_overflow_in_a_namespace() -> None:
    """A real overflow: on a fast veth the handshake ends inside connect(), and a SYN that
    finds the queue full is only counted (no kfree_skb); the drop with a reason is the
    final ACK of a handshake that finds it full."""
    port = 8111
    hold_acks = f"""table inet rsts {{
  chain output {{ type filter hook output priority 0;
    tcp dport {port} tcp flags & (syn | ack) == ack drop; }}
}}"""
    with netlab.lab("direct") as lb, KernelTrace() as kt:
        lb.sysctl(lb.server, "net.ipv4.tcp_syncookies", 0)
        srv = lb.spawn_python(lb.server, _OVERFLOW_SERVER, port)
        srv.expect("ready")
        # The listener's CLOSE->LISTEN ran in the server's context: its socket pointer
        # is what kfree_skb reports as rx_sk for the drops.
        listen = _collect(kt, _has(newstate="LISTEN", sport=port, pid=srv.pid))
        lsk = next(e.skaddr for e in listen if e.newstate == "LISTEN" and e.pid == srv.pid)
        server_ns = os.stat(f"/run/netns/{lb.server}").st_ino
        before = lb.netstat(lb.server)["ListenOverflows"]
        cli = lb.spawn_python(lb.client, _OVERFLOW_CLIENT, port)
        cli.expect("p1")
        lb.nft(lb.client, hold_acks)
        cli.send()
        cli.expect("p2")
        lb.run(lb.client, "nft", "delete", "table", "inet", "rsts")
        cli.send()
        cli.result()
        after = lb.netstat(lb.server)["ListenOverflows"]
        events = _collect(kt, _has(event="kfree_skb", skaddr=lsk))
        srv.send()
    assert after > before
    drops = [e for e in events if e.event == "kfree_skb" and e.skaddr == lsk]
    assert drops and {e.reason for e in drops} == {"TCP_LISTEN_OVERFLOW"}
    assert {e.family for e in drops} == {4}
    # The server was still running when its LISTEN event was read: its namespace is known.
    assert [e.netns for e in listen if e.pid == srv.pid and e.newstate == "LISTEN"] == [server_ns]


_NFT_CLIENT = r"""
import ctypes, json, os, socket, sys
ctypes.CDLL(None).prctl(15, b"rst-nft-client", 0, 0, 0)
c = socket.socket(); c.settimeout(1.2)
try: c.connect(("192.0.2.20", int(sys.argv[1]))); r = "connected"
except OSError as e: r = type(e).__name__
print(json.dumps({"pid": os.getpid(), "r": r}))
"""


@pytest.mark.root
def test_netfilter_drop_in_a_namespace() -> None:
    port = 8112
    ruleset = f"""table inet rsts {{
  chain input {{ type filter hook input priority 0; tcp dport {port} counter drop; }}
}}"""
    with netlab.lab("direct") as lb, KernelTrace() as kt:
        lb.nft(lb.server, ruleset)
        out = lb.python(lb.client, _NFT_CLIENT, port)
        events = _collect(kt, _has(event="kfree_skb", reason="NETFILTER_DROP"))
        counter = lb.run(lb.server, "nft", "list", "chain", "inet", "rsts", "input")
    assert out["r"] == "TimeoutError"
    assert "packets 0 " not in counter
    drops = [e for e in events if e.event == "kfree_skb" and e.reason == "NETFILTER_DROP"]
    assert drops
    syn = [e for e in events if e.newstate == "SYN_SENT" and e.dport == port]
    assert [(e.pid, e.comm) for e in syn] == [(out["pid"], "rst-nft-client")]


_NOPORTS_CLIENT = r"""
import ctypes, json, os, socket, sys
ctypes.CDLL(None).prctl(15, b"rst-noports", 0, 0, 0)
port = int(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", port)); srv.listen(16)
held, errs = [], []
for i in range(4):
    c = socket.socket()
    try: c.connect(("127.0.0.1", port)); held.append(c)
    except OSError as e: errs.append(e.errno)
print(json.dumps({"pid": os.getpid(), "held": len(held), "errs": errs}))
"""


@pytest.mark.root
def test_local_port_exhaustion_gives_a_connect_error_with_pid_and_destination() -> None:
    port = 8113
    with netlab.lab("single") as lb, KernelTrace(syscalls=True) as kt:
        lb.sysctl(lb.client, "net.ipv4.ip_local_port_range", "40000 40001")
        out = lb.python(lb.client, _NOPORTS_CLIENT, port)
        events = _collect(kt, _has(event="connect", pid=out["pid"]))
    assert out["held"] == 2 and out["errs"] == [99, 99]  # EADDRNOTAVAIL, from the kernel
    failed = [e for e in events if e.event == "connect" and e.pid == out["pid"]]
    assert [(e.errno, e.comm, e.daddr, e.dport) for e in failed] == [
        ("EADDRNOTAVAIL", "rst-noports", "127.0.0.1", port)
    ] * 2
    assert all(e.fd is not None and e.fd > 2 for e in failed)


@pytest.mark.root
def test_lost_counts_what_a_too_small_buffer_could_not_keep() -> None:
    port = _free_port()
    with KernelTrace(buffer_kb=8) as kt:
        assert kt.lost() == 0
        for _ in range(1000):  # ~5 events each; nobody reads meanwhile
            with socket.socket() as s, contextlib.suppress(ConnectionRefusedError):
                s.connect(("127.0.0.1", port))
        lost = kt.lost()
        got = [e for e in kt.poll() if port in (e.sport, e.dport)]
    assert lost > 0 and len(got) < 5000


@pytest.mark.root
def test_syscalls_off_means_no_syscall_events() -> None:
    with KernelTrace() as kt:
        assert not any(k in kt.plan.formats for k in ("connect", "socket", "accept"))
        enabled = kt.instance.read("events/syscalls/sys_exit_connect/enable").strip()
    assert enabled == "0"


@pytest.mark.root
def test_instance_removed_on_exit_and_stale_ones_cleaned_after_sigkill() -> None:
    with KernelTrace() as kt:
        path = kt.instance.path
        assert path.name == f"rstrace-{os.getpid()}" and path.is_dir()
    assert not path.exists()

    code = (
        "import sys, time\n"
        "from rstrace.sources.kernel import KernelTrace\n"
        "kt = KernelTrace()\n"
        "print(kt.instance.path, flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        held = Path(proc.stdout.readline().strip())
        assert held.is_dir()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert held.is_dir()  # SIGKILL leaves it behind...
    with KernelTrace() as kt:
        assert f"removed stale tracefs instances of dead runs: {held.name}" in kt.notes
    assert not held.exists()  # ...and the next run removes it


@pytest.mark.root
def test_sigterm_removes_the_instance() -> None:
    code = (
        "import time\n"
        "from rstrace.sources.kernel import KernelTrace\n"
        "kt = KernelTrace()\n"
        "print(kt.instance.path, flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    held = Path(proc.stdout.readline().strip())
    assert held.is_dir()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM
    assert not held.exists()


@pytest.mark.root
def test_unprivileged_gets_one_line_kernel_unavailable() -> None:
    """Degraded mode, for real: the same call from a process that dropped root."""
    code = (
        "from rstrace.sources.kernel import KernelTrace, KernelUnavailable\n"
        "try:\n"
        "    KernelTrace()\n"
        "except KernelUnavailable as exc:\n"
        "    print('unavailable:', exc)\n"
    )
    out = subprocess.run(
        netlab.as_nobody([sys.executable, "-c", code]),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("unavailable: kernel events unavailable: ")
    assert "Permission denied" in lines[0] or "needs root" in lines[0]


@pytest.mark.root
def test_an_event_the_kernel_refuses_is_reported_and_the_rest_still_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel really rejects this filter (EINVAL); only the filter text is forced."""
    from rstrace.sources import kernel

    real = kernel._filter

    def bad_kfree_filter(kind, fmt, missing):  # type: ignore[no-untyped-def]
        return "no_such_field == 1" if kind == "kfree_skb" else real(kind, fmt, missing)

    monkeypatch.setattr(kernel, "_filter", bad_kfree_filter)
    port = _free_port()
    with KernelTrace() as kt:
        assert "skb:kfree_skb: cannot enable (Invalid argument)" in kt.missing
        assert "kfree_skb" not in kt.plan.formats
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
        events = _collect(kt, _has(event="send_reset", sport=port))
    assert any(e.event == "send_reset" and e.sport == port for e in events)


_NOROUTE_CLIENT = r"""
import ctypes, json, os, socket
ctypes.CDLL(None).prctl(15, b"rst-noroute", 0, 0, 0)
c = socket.socket()
try: c.connect(("198.51.100.7", 9)); r = 0
except OSError as e: r = e.errno
print(json.dumps({"pid": os.getpid(), "errno": r}))
"""


@pytest.mark.root
def test_connect_without_a_route_is_seen_with_destination_unknown() -> None:
    """A namespace with only lo: connect() fails in routing, before any socket state."""
    with netlab.lab("single") as lb, KernelTrace(syscalls=True) as kt:
        out = lb.python(lb.client, _NOROUTE_CLIENT)
        events = _collect(kt, _has(event="connect", pid=out["pid"]))
    assert out["errno"] == 101  # ENETUNREACH, from the kernel
    failed = [e for e in events if e.event == "connect" and e.pid == out["pid"]]
    assert [(e.errno, e.comm, e.daddr, e.dport, e.context) for e in failed] == [
        ("ENETUNREACH", "rst-noroute", None, None, "process")
    ]
    assert not [e for e in events if e.event == "set_state" and e.pid == out["pid"]]


_NOFILE_CLIENT = r"""
import ctypes, json, os, resource, socket
ctypes.CDLL(None).prctl(15, b"rst-nofiles", 0, 0, 0)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4)
cli = socket.create_connection(srv.getsockname())
held, errs = [], []
resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
while True:
    try: held.append(socket.socket())
    except OSError as e: errs.append(("socket", e.errno)); break
try: srv.accept()
except OSError as e: errs.append(("accept", e.errno))
print(json.dumps({"pid": os.getpid(), "errs": errs}))
"""


@pytest.mark.root
def test_socket_and_accept_out_of_file_descriptors() -> None:
    with KernelTrace(syscalls=True) as kt:
        proc = subprocess.run(
            [sys.executable, "-c", _NOFILE_CLIENT],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        out = json.loads(proc.stdout)
        events = _collect(kt, _has(event="accept", pid=out["pid"]))
    assert out["errs"] == [["socket", 24], ["accept", 24]]  # EMFILE twice, from the kernel
    mine = [
        (e.event, e.errno, e.comm)
        for e in events
        if e.pid == out["pid"] and e.event in ("socket", "accept")
    ]
    assert mine == [("socket", "EMFILE", "rst-nofiles"), ("accept", "EMFILE", "rst-nofiles")]
