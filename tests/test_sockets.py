"""TCP sockets and listeners read through netlink sock_diag, on the real kernel.

Loopback tests run unprivileged in this process's namespace; the namespace tests
(`root`) start named processes in a fresh namespace from tests/netlab.py and read
sock_diag from a snippet run inside it (as rstrace does after netns.enter()).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rstrace.model import Listener
from rstrace.sources import sockets
from rstrace.sources.sockets import (
    list_listeners,
    listeners_for,
    parse_proc_net_tcp,
    tcp_sockets,
)

from . import netlab

DATA = Path(__file__).parent / "data" / "proc" / "net"


# ----------------------------------------------------------------- /proc/net/tcp fallback


def test_parse_recorded_proc_net_tcp() -> None:
    socks = parse_proc_net_tcp((DATA / "tcp").read_text(), 4)
    listen = [s for s in socks if s.state == "LISTEN"]
    assert [(s.src, s.sport, s.rqueue, s.wqueue, s.inode) for s in listen] == [
        ("127.0.0.1", 7211, 2, None, 80176)
    ]
    syn_sent = [s for s in socks if s.state == "SYN_SENT"]
    assert [(s.src, s.sport, s.dst, s.dport, s.inode) for s in syn_sent] == [
        ("127.0.0.1", 59744, "127.0.0.1", 7211, 79262)
    ]
    assert sum(s.state == "ESTABLISHED" for s in socks) == 4
    assert all(s.cookie is None for s in socks)


def test_parse_recorded_proc_net_tcp6() -> None:
    socks = parse_proc_net_tcp((DATA / "tcp6").read_text(), 6)
    listen = next(s for s in socks if s.state == "LISTEN")
    assert (listen.src, listen.sport, listen.rqueue, listen.inode) == ("::", 7212, 2, 80177)
    tuples = {(s.src, s.sport, s.dst, s.dport) for s in socks if s.inode}
    # An IPv4-mapped peer comes out as plain IPv4, like sock_diag's and packets' addresses.
    assert ("127.0.0.1", 32770, "127.0.0.1", 7212) in tuples
    assert ("::1", 56082, "::1", 7212) in tuples
    assert all(s.version == 6 for s in socks)


def test_fallback_parser_agrees_with_sock_diag() -> None:
    """The /proc/net/tcp reader and sock_diag see the same sockets of this process."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(4)
    cli = socket.create_connection(lsn.getsockname(), timeout=5)
    try:
        mine = {os.fstat(s.fileno()).st_ino for s in (lsn, cli)}

        def key(s: sockets.SockInfo) -> tuple:
            return (s.state, s.src, s.sport, s.dst, s.dport, s.inode, s.rqueue)

        diag = {key(s) for s in tcp_sockets() if s.inode in mine}
        proc = {key(s) for s in sockets._proc_net(sockets._ALL_STATES) if s.inode in mine}
        assert diag == proc and len(diag) == 2
        assert ("LISTEN", *lsn.getsockname(), "0.0.0.0", 0) == next(
            k[:5] for k in diag if k[0] == "LISTEN"
        )
    finally:
        cli.close()
        lsn.close()


# ----------------------------------------------------------------- sock_diag, this namespace


def test_own_listener_backlog_queue_cookie_and_owner() -> None:
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(3)
    clients = [socket.create_connection(lsn.getsockname(), timeout=5) for _ in range(2)]
    try:
        port = lsn.getsockname()[1]
        found = [x for x in list_listeners() if x.port == port]
        assert len(found) == 1
        lst = found[0]
        assert (lst.addr, lst.version, lst.backlog, lst.accept_queue) == ("127.0.0.1", 4, 3, 2)
        assert lst.inode == os.fstat(lsn.fileno()).st_ino
        assert lst.cookie and lst.cookie > 0
        assert os.getpid() in [p.pid for p in lst.processes]
        # The clients' sockets: the 4-tuple leads to this process too.
        est = [s for s in tcp_sockets(["ESTABLISHED"]) if s.dport == port]
        assert {s.sport for s in est} == {c.getsockname()[1] for c in clients}
    finally:
        for c in clients:
            c.close()
        lsn.close()


def test_ipv6_listener_and_state_filter() -> None:
    lsn = socket.socket(socket.AF_INET6)
    lsn.bind(("::1", 0))
    lsn.listen(5)
    try:
        port = lsn.getsockname()[1]
        (lst,) = [x for x in list_listeners(owners=False) if x.port == port]
        assert (lst.addr, lst.version, lst.backlog, lst.processes) == ("::1", 6, 5, [])
        assert all(s.state == "LISTEN" for s in tcp_sockets(["LISTEN"]))
        assert not [s for s in tcp_sockets(["ESTABLISHED"]) if s.sport == port]
    finally:
        lsn.close()


def test_unknown_state_is_an_error() -> None:
    with pytest.raises(ValueError, match="LISTENING"):
        tcp_sockets(["LISTENING"])


# ----------------------------------------------------------------- namespaces (root)

# A process that renames itself (comm, what tracepoints print) and holds its sockets.
_NAMED = r"""
import ctypes, json, os, socket, sys
args = json.loads(sys.argv[1])
ctypes.CDLL(None).prctl(15, args["name"].encode(), 0, 0, 0)  # PR_SET_NAME
keep = []
if args["role"] == "listen":
    s = socket.socket(); s.bind(("127.0.0.1", args["port"])); s.listen(args["backlog"])
    keep.append(s)
else:
    for _ in range(args["count"]):
        s = socket.socket(); s.setblocking(False); s.connect_ex(("127.0.0.1", args["port"]))
        keep.append(s)
print(json.dumps({"pid": os.getpid(), "ports": [s.getsockname()[1] for s in keep]}), flush=True)
sys.stdin.readline()
"""

# Read sock_diag inside the namespace (nsenter --net: same /proc, same pids).
_QUERY = r"""
import dataclasses, json, sys, time
from rstrace.sources.sockets import list_listeners, owners_by_inode, tcp_sockets
args = json.loads(sys.argv[1])
deadline = time.monotonic() + 10
while True:  # the handshakes finish asynchronously: wait (bounded) for the expected queue
    lst = [x for x in list_listeners() if x.port == args["port"]]
    if not args["queue"] or (lst and lst[0].accept_queue >= args["queue"]) \
            or time.monotonic() > deadline:
        break
    time.sleep(0.05)
syn = [s for s in tcp_sockets(["SYN_SENT"]) if s.dport == args["port"]]
owners = owners_by_inode(inodes={s.inode for s in syn})
print(json.dumps({
    "listeners": [dataclasses.asdict(x) for x in lst],
    "syn_sent": [dataclasses.asdict(s) for s in syn],
    "owners": {str(k): [dataclasses.asdict(p) for p in v] for k, v in owners.items()},
    "netns": __import__("os").stat("/proc/self/ns/net").st_ino,
}))
"""


def _start(lb: netlab.Lab, **args: object) -> dict:
    """Start a named process in the lab's namespace; its pid and local ports."""
    return json.loads(lb.spawn_python(lb.client, _NAMED, args).expect("{"))


@pytest.mark.root
def test_full_accept_queue_in_namespace() -> None:
    """backlog 1 never accepted, 4 connects: the queue holds backlog+1 = 2 (kernel 6.18:
    full is ack_backlog > max_ack_backlog), the other 2 clients wait in SYN_SENT
    (their SYNs are dropped: ListenOverflows). Owners are the named processes."""
    port, backlog, count = 7311, 1, 4
    with netlab.lab("single") as lb:
        srv = _start(lb, role="listen", name="rsts-lsn-q", port=port, backlog=backlog)
        cli = _start(lb, role="connect", name="rsts-cli-q", port=port, count=count)
        got = lb.python(lb.client, _QUERY, {"port": port, "queue": backlog + 1})
    (lst,) = got["listeners"]
    assert (lst["addr"], lst["backlog"], lst["accept_queue"]) == ("127.0.0.1", 1, 2)
    assert [(p["pid"], p["name"]) for p in lst["processes"]] == [(srv["pid"], "rsts-lsn-q")]
    assert lst["processes"][0]["netns"] == got["netns"] != os.stat("/proc/self/ns/net").st_ino
    assert len(got["syn_sent"]) == count - (backlog + 1)
    for s in got["syn_sent"]:
        assert s["sport"] in cli["ports"]
        assert [(p["pid"], p["name"]) for p in got["owners"][str(s["inode"])]] == [
            (cli["pid"], "rsts-cli-q")
        ]


@pytest.mark.root
def test_syn_sent_client_behind_nft_drop() -> None:
    """A client whose SYNs an nft rule drops stays in SYN_SENT: found with pid and 4-tuple."""
    port = 7312
    with netlab.lab("single") as lb:
        lb.nft(
            lb.client,
            f"table inet rsts {{\n chain in {{\n type filter hook input priority 0;\n"
            f" tcp dport {port} drop\n }}\n}}\n",
        )
        cli = _start(lb, role="connect", name="rsts-cli-drop", port=port, count=1)
        got = lb.python(lb.client, _QUERY, {"port": port, "queue": 0})
    assert got["listeners"] == []
    (s,) = got["syn_sent"]
    assert (s["src"], s["sport"], s["dst"], s["dport"]) == (
        "127.0.0.1",
        cli["ports"][0],
        "127.0.0.1",
        port,
    )
    assert s["cookie"] and s["inode"]
    (owner,) = got["owners"][str(s["inode"])]
    assert (owner["pid"], owner["name"], owner["uid"]) == (cli["pid"], "rsts-cli-drop", 0)
    assert owner["cmdline"][0] == sys.executable


def _v6_listener(v6only: bool) -> socket.socket:
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    s.bind(("::", 0))
    s.listen(2)
    return s


@pytest.mark.parametrize("v6only", [False, True])
def test_listeners_for_follows_the_kernel(v6only: bool) -> None:
    """A [::] listener takes IPv4 unless IPV6_V6ONLY: listeners_for() agrees with connect()."""
    lsn = _v6_listener(v6only)
    try:
        port = lsn.getsockname()[1]
        (lst,) = [x for x in list_listeners(owners=False) if x.port == port]
        assert (lst.addr, lst.v6only) == ("::", v6only)
        reached = listeners_for("127.0.0.1", port, [lst])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            accepted = True
        except ConnectionRefusedError:
            accepted = False
        assert accepted == (not v6only) == bool(reached)
        assert listeners_for("::1", port, [lst]) == [lst]
        assert listeners_for("::1", port + 1 if port < 65535 else 1, [lst]) == []
    finally:
        lsn.close()


def test_listeners_for_prefers_the_exact_address() -> None:
    def lst(addr: str, version: int, v6only: bool | None = None) -> Listener:
        return Listener(version, addr, 7211, 1, 0, None, 0, 1, [], v6only)

    exact, any4, any6 = lst("127.0.0.1", 4), lst("0.0.0.0", 4), lst("::", 6, False)
    other = lst("127.0.0.2", 4)
    assert listeners_for("127.0.0.1", 7211, [any6, other, any4, exact]) == [exact, any4, any6]
    assert listeners_for("127.0.0.3", 7211, [other]) == []


# ----------------------------------------------------------------- rstrace sockets


def _rstrace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rstrace", "sockets", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_port_shows_the_listener_and_its_queue() -> None:
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(7)
    cli = socket.create_connection(lsn.getsockname(), timeout=5)
    try:
        port = lsn.getsockname()[1]
        p = _rstrace("--port", str(port))
        assert p.returncode == 0, p.stderr
        line = next(ln for ln in p.stdout.splitlines() if ln.startswith(f"127.0.0.1:{port} "))
        assert line.split()[1] == "1/7"
        assert f"pid {os.getpid()}" in line
        doc = json.loads(_rstrace("--all", "--json", "--port", str(port)).stdout)
        assert doc["schema"] == "rstrace.sockets/1"
        client = next(s for s in doc["sockets"] if s["sport"] == cli.getsockname()[1])
        assert client["state"] == "ESTABLISHED" and client["dport"] == port
        assert [p["pid"] for p in client["processes"]] == [os.getpid()]
    finally:
        cli.close()
        lsn.close()


def test_cli_closed_port_names_who_should_listen() -> None:
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        units = Path(__file__).parent / "data" / "systemd"
        p = _rstrace("--port", str(port), "--unit-dir", str(units / "etc/systemd/system"))
    assert p.returncode == 1
    assert f"nothing listens on TCP port {port}" in p.stdout
    assert "no systemd unit declares this port" in p.stdout
    if any(x.port == 7211 for x in list_listeners(owners=False)):
        pytest.skip("something on this host listens on 7211")
    p = _rstrace(
        "--port",
        "7211",
        "--unit-dir",
        str(units / "etc/systemd/system"),
        "--unit-dir",
        str(units / "usr/lib/systemd/system"),
    )
    assert p.returncode == 1
    assert (
        "should listen (systemd): metrics-sink.socket: ListenStream=127.0.0.1:7211, "
        "starts metrics-collector.service" in p.stdout
    )
    assert "maybe (systemd): env-sink.service" in p.stdout


@pytest.mark.root
def test_cli_netns_shows_a_full_queue_and_its_owner() -> None:
    port = 7313
    with netlab.lab("single") as lb:
        srv = _start(lb, role="listen", name="rsts-lsn-cli", port=port, backlog=1)
        _start(lb, role="connect", name="rsts-cli-cli", port=port, count=3)
        lb.python(lb.client, _QUERY, {"port": port, "queue": 2})  # wait for the queue
        p = _rstrace("--netns", lb.client, "--port", str(port))
    assert p.returncode == 0, p.stderr
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith(f"127.0.0.1:{port} "))
    assert line.split()[1:3] == ["2/1", "FULL"]
    assert f"rsts-lsn-cli (pid {srv['pid']}, user root" in line


def test_cli_unknown_netns_is_one_line() -> None:
    p = _rstrace("--netns", "rsts-no-such-ns")
    assert p.returncode == 2
    assert p.stderr.startswith("rstrace: error: ") and p.stderr.count("\n") == 1


@pytest.mark.root
def test_cookie_is_the_one_tcp_receive_reset_carries() -> None:
    """sock_diag's cookie joins kernel events: the client socket's cookie read here is the
    sock_cookie of tcp:tcp_receive_reset when the server aborts the connection."""
    import struct
    import time

    from rstrace.sources.kernel import KernelTrace

    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(1)
    cli = socket.create_connection(lsn.getsockname(), timeout=5)
    conn, _ = lsn.accept()
    try:
        inode = os.fstat(cli.fileno()).st_ino
        (mine,) = [s for s in tcp_sockets(["ESTABLISHED"]) if s.inode == inode]
        with KernelTrace() as kt:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # SO_LINGER 0: the server sends a RST, the client receives it
            recv = []
            deadline = time.monotonic() + 5
            while not recv and time.monotonic() < deadline:
                recv = [
                    e
                    for e in kt.poll()
                    if e.event == "receive_reset" and e.sport == cli.getsockname()[1]
                ]
                time.sleep(0.05)
        assert recv, "no tcp:tcp_receive_reset for the client socket"
        assert recv[0].sock_cookie == mine.cookie
    finally:
        cli.close()
        lsn.close()


@pytest.mark.root
def test_unprivileged_user_sees_queues_but_not_roots_processes() -> None:
    """sock_diag needs no privilege; another user's /proc/PID/fd does: the listener is
    shown with its queue and no owner, plus a one-line note, never a traceback."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(6)
    try:
        port = lsn.getsockname()[1]
        p = subprocess.run(
            netlab.as_nobody([sys.executable, "-m", "rstrace", "sockets", "--json", "--port",
                              str(port)]),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        lsn.close()
    assert p.returncode == 0, p.stderr
    (lst,) = json.loads(p.stdout)["listeners"]
    assert (lst["port"], lst["backlog"], lst["accept_queue"], lst["processes"]) == (port, 6, 0, [])
    assert p.stderr == "rstrace: note: not root: processes of other users are not shown\n"


def test_without_sock_diag_the_proc_files_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel without inet_diag cannot be made here (it is built in): the dump is made to
    fail with the errno such a kernel returns, and the real /proc/net/tcp answers instead,
    with the queue but without backlog and cookie."""
    import errno

    def no_diag(*_args: object) -> list:
        raise OSError(errno.ENOENT, "No such file or directory")

    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(3)
    cli = socket.create_connection(lsn.getsockname(), timeout=5)
    try:
        monkeypatch.setattr(sockets, "dump", no_diag)
        (lst,) = [x for x in list_listeners() if x.port == lsn.getsockname()[1]]
        assert (lst.accept_queue, lst.backlog, lst.cookie) == (1, None, None)
        assert os.getpid() in [p.pid for p in lst.processes]
    finally:
        cli.close()
        lsn.close()
