"""The meanings in COUNTERS, checked against what this kernel really counts.

Each case runs in fresh network namespaces made by tests/netlab.py (so nothing else
moves their counters) and compares the counters the snippet read before and after it
acted, parsed by rstrace's own parser. Firewall rules and socket options are set
inside those namespaces only.
"""

from __future__ import annotations

import pytest

from rstrace.sources.counters import COUNTERS, deltas, parse_counters
from tests import netlab

# Prepended to every snippet: read this namespace's counters; print the deltas' inputs.
PRELUDE = """
import json, select, socket, struct, sys, time
def counters():
    return [open("/proc/net/" + f).read() for f in ("snmp", "netstat", "snmp6")]
def ext(txt):  # TcpExt's header and value lines (netstat's first two) as a dict
    lines = txt.splitlines()
    return dict(zip(lines[0].split()[1:], map(int, lines[1].split()[1:])))
def wait_moved(name, timeout=10.0):  # until TcpExt name moved (bounded)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ext(counters()[1])[name] == ext(BEFORE[1])[name]:
        time.sleep(0.05)
ARGS = json.loads(sys.argv[1])
BEFORE = counters()
"""
EPILOGUE = """
print(json.dumps({"before": BEFORE, "after": counters(), "result": RESULT}))
"""


def _run(lb: netlab.Lab, ns: str, body: str, args: object = None) -> tuple[dict, object]:
    out = lb.python(ns, PRELUDE + body + EPILOGUE, args, timeout=60)
    d = deltas(parse_counters(*out["before"]), parse_counters(*out["after"]))
    return d, out["result"]


def _ruleset(rule: str) -> str:
    return f"table inet t {{\n chain i {{\n type filter hook input priority 0;\n {rule}\n }}\n}}\n"


def _delta_of(d: dict, *keys: str) -> dict:
    return {k: d[k] for k in keys}


@pytest.mark.root
def test_ipv6_connects_count_in_the_one_tcp_group() -> None:
    """Refused connect()s to ::1 count in Tcp (snmp6 has no TCP group); only Ip6 moves."""
    body = """
fails = 0
for _ in range(3):
    c = socket.socket(socket.AF_INET6)
    try:
        c.connect(("::1", 7404))
    except ConnectionRefusedError:
        fails += 1
    c.close()
RESULT = fails
"""
    with netlab.lab("single", ipv6=True) as lb:
        d, res = _run(lb, lb.client, body)
    assert res == 3
    assert d["Tcp.ActiveOpens"] == d["Tcp.AttemptFails"] == d["Tcp.OutRsts"] == 3
    assert d["Ip6.InReceives"] == 6 and d["Ip.InReceives"] == 0  # 3 SYNs and 3 RSTs
    assert not [k for k in d if k.startswith("Tcp6")]


@pytest.mark.root
def test_curr_estab_counts_close_wait_on_this_kernel() -> None:
    """CurrEstab is a gauge of ESTABLISHED and, on this kernel, CLOSE-WAIT sockets."""
    body = """
def estab():
    lines = counters()[0].splitlines()
    tcp = [l.split()[1:] for l in lines if l.startswith("Tcp:")]
    return int(dict(zip(*tcp))["CurrEstab"])
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4)
c = socket.create_connection(ls.getsockname()); s, _ = ls.accept()
both = estab()
c.close()  # s: CLOSE-WAIT once the FIN is in; c: FIN-WAIT-2
deadline = time.monotonic() + 10
while time.monotonic() < deadline and s.recv(1) != b"":
    pass
RESULT = [both, estab()]
"""
    with netlab.lab("single") as lb:
        _, res = _run(lb, lb.client, body)
    assert res == [2, 1]
    assert "CLOSE-WAIT" in COUNTERS["Tcp.CurrEstab"].meaning


@pytest.mark.root
def test_abort_linger_zero_counts_abort_on_data_not_linger() -> None:
    """close() with SO_LINGER 0 counts TCPAbortOnData (tcp_disconnect from __tcp_close),
    not TCPAbortOnLinger; both ends leave ESTABLISHED for CLOSED: EstabResets 2."""
    body = """
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4)
c = socket.create_connection(ls.getsockname()); s, _ = ls.accept()
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
try:
    s.recv(10); RESULT = "no error"
except ConnectionResetError:
    RESULT = "ECONNRESET"
"""
    with netlab.lab("single") as lb:
        d, res = _run(lb, lb.client, body)
    assert res == "ECONNRESET"
    assert _delta_of(
        d,
        "TcpExt.TCPAbortOnData",
        "TcpExt.TCPAbortOnClose",
        "TcpExt.TCPAbortOnLinger",
        "Tcp.OutRsts",
        "Tcp.EstabResets",
        "Tcp.AttemptFails",
    ) == {
        "TcpExt.TCPAbortOnData": 1,
        "TcpExt.TCPAbortOnClose": 0,
        "TcpExt.TCPAbortOnLinger": 0,
        "Tcp.OutRsts": 1,
        "Tcp.EstabResets": 2,
        "Tcp.AttemptFails": 0,
    }


@pytest.mark.root
def test_close_with_unread_data_counts_abort_on_close() -> None:
    body = """
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(4)
c = socket.create_connection(ls.getsockname()); s, _ = ls.accept()
c.sendall(b"x" * 100)
select.select([s], [], [], 10)
s.close()  # 100 bytes never read
try:
    c.recv(10); RESULT = "no error"
except ConnectionResetError:
    RESULT = "ECONNRESET"
"""
    with netlab.lab("single") as lb:
        d, res = _run(lb, lb.client, body)
    assert res == "ECONNRESET"
    assert _delta_of(
        d, "TcpExt.TCPAbortOnClose", "TcpExt.TCPAbortOnData", "Tcp.OutRsts", "Tcp.EstabResets"
    ) == {
        "TcpExt.TCPAbortOnClose": 1,
        "TcpExt.TCPAbortOnData": 0,
        "Tcp.OutRsts": 1,
        "Tcp.EstabResets": 2,
    }


@pytest.mark.root
def test_timeout_counts_attempt_fails_and_abort_on_timeout() -> None:
    """SYNs dropped by a firewall: with TCP_SYNCNT 1 the connect() gives up after two
    RTO expiries (TCPTimeouts 2), one SYN retransmission, then tcp_write_err()."""
    body = """
c = socket.socket()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
try:
    c.connect((ARGS[0], 7400)); RESULT = "connected"
except TimeoutError:
    RESULT = "ETIMEDOUT"
"""
    with netlab.lab("direct") as lb:
        lb.nft(lb.server, _ruleset("tcp dport 7400 drop"))
        d, res = _run(lb, lb.client, body, [lb.server_ip])
    assert res == "ETIMEDOUT"
    assert _delta_of(
        d, "Tcp.ActiveOpens", "Tcp.AttemptFails", "TcpExt.TCPAbortOnTimeout", "Tcp.EstabResets"
    ) == {
        "Tcp.ActiveOpens": 1,
        "Tcp.AttemptFails": 1,
        "TcpExt.TCPAbortOnTimeout": 1,
        "Tcp.EstabResets": 0,
    }
    # Every RTO expiry but the last retransmits the SYN. How many there are is the
    # kernel's business (TCP_SYNCNT 1 gave 1 or 2 here: it is turned into a time budget).
    retrans = d["TcpExt.TCPSynRetrans"]
    assert retrans >= 1 and d["Tcp.RetransSegs"] == retrans
    assert d["TcpExt.TCPTimeouts"] == retrans + 1


REFUSE3 = """
fails = []
for _ in range(3):
    c = socket.socket()
    try:
        c.connect((ARGS[0], ARGS[1])); fails.append("connected")
    except OSError as e:
        fails.append(e.__class__.__name__)
    c.close()
RESULT = fails
"""


@pytest.mark.root
@pytest.mark.parametrize(
    "rule, client_counter",
    [("reject with tcp reset", "Tcp.AttemptFails"),
     ("reject with icmpx port-unreachable", "Icmp.InDestUnreachs")],
)  # fmt: skip
def test_firewall_answers_are_not_tcp_rsts_of_the_server(rule: str, client_counter: str) -> None:
    """A REJECT answers for the server's host, but not through TCP: the server's OutRsts
    stays still, its Icmp.OutDestUnreachs counts the ICMPs; the client counts 3 fails.

    On a veth the ICMP comes back while connect() still holds its socket lock, and
    tcp_v4_err() then only sets a soft error: the SYN is sent again 1 s later and the
    second ICMP ends the connect(). So 3 connect()s can take 6 ICMPs."""
    with netlab.lab("direct") as lb:
        lb.nft(lb.server, _ruleset(f"tcp dport 7401 {rule}"))
        srv_before = netlab.ns_run(lb.server, ["cat", "/proc/net/snmp"])
        d, res = _run(lb, lb.client, REFUSE3, [lb.server_ip, 7401])
        srv_after = netlab.ns_run(lb.server, ["cat", "/proc/net/snmp"])
    assert res == ["ConnectionRefusedError"] * 3
    assert d["Tcp.AttemptFails"] == 3
    srv = deltas(parse_counters(srv_before.stdout), parse_counters(srv_after.stdout))
    assert srv["Tcp.OutRsts"] == 0 and srv["Tcp.PassiveOpens"] == 0
    if "icmp" in rule:  # one ICMP per SYN sent, retransmissions included
        assert d[client_counter] == 3 + d["TcpExt.TCPSynRetrans"]
        assert srv["Icmp.OutDestUnreachs"] == d[client_counter]
    else:
        assert d["TcpExt.TCPSynRetrans"] == 0 and srv["Icmp.OutDestUnreachs"] == 0


@pytest.mark.root
def test_reset_half_open_connection_counts_attempt_fails_without_a_connect() -> None:
    """A SYN from a port with no socket (raw socket): the listener's SYN-ACK is answered
    by the kernel's RST, tcp_check_req() drops the request socket and counts both
    EmbryonicRsts and AttemptFails, though nobody here called connect()."""
    body = """
ls = socket.socket(); ls.bind(("127.0.0.1", 7402)); ls.listen(8)
def csum(b):
    if len(b) % 2: b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
lo = socket.inet_aton("127.0.0.1")
tcp = struct.pack("!HHIIBBHHH", 40999, 7402, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
tcp = tcp[:16] + struct.pack("!H", csum(lo + lo + struct.pack("!BBH", 0, 6, 20) + tcp)) + tcp[18:]
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
r.sendto(tcp, ("127.0.0.1", 0))
wait_moved("EmbryonicRsts")  # the kernel's SYN-ACK / RST exchange
RESULT = None
"""
    with netlab.lab("single") as lb:
        d, _ = _run(lb, lb.client, body)
    assert _delta_of(
        d,
        "Tcp.ActiveOpens",
        "Tcp.AttemptFails",
        "TcpExt.EmbryonicRsts",
        "Tcp.OutRsts",
        "Tcp.PassiveOpens",
    ) == {
        "Tcp.ActiveOpens": 0,
        "Tcp.AttemptFails": 1,
        "TcpExt.EmbryonicRsts": 1,
        "Tcp.OutRsts": 1,
        "Tcp.PassiveOpens": 0,
    }


@pytest.mark.root
def test_full_accept_queue_counts_listen_overflows() -> None:
    """A listener that never accepts: later handshakes find the accept queue full."""
    body = """
ls = socket.socket(); ls.bind(("127.0.0.1", 7403)); ls.listen(1)
cs = []
for _ in range(5):
    c = socket.socket(); c.setblocking(False)
    try:
        c.connect(("127.0.0.1", 7403))
    except BlockingIOError:
        pass
    cs.append(c)
wait_moved("ListenOverflows")
RESULT = None
"""
    with netlab.lab("single") as lb:
        d, _ = _run(lb, lb.client, body)
    assert d["TcpExt.ListenOverflows"] >= 1
    assert d["TcpExt.ListenDrops"] >= d["TcpExt.ListenOverflows"]
    assert d["Tcp.PassiveOpens"] <= 2  # backlog 1: the queue holds 2 (backlog + 1)


def test_every_case_above_uses_explained_counters() -> None:
    used = ("TcpExt.TCPAbortOnData", "TcpExt.TCPAbortOnClose", "TcpExt.TCPAbortOnTimeout",
            "TcpExt.EmbryonicRsts", "TcpExt.ListenOverflows", "Icmp.InDestUnreachs")  # fmt: skip
    assert [k for k in used if k not in COUNTERS] == []
    assert "SO_LINGER 0" in COUNTERS["TcpExt.TCPAbortOnData"].meaning
    assert "EmbryonicRsts" in COUNTERS["Tcp.AttemptFails"].meaning
