"""`rstrace diagnose` on the real kernel: every kind, the process named, in our own namespaces.

Each test builds its namespaces (tests/netlab.py), starts `rstrace diagnose
--netns NS --json` as a separate process, waits until it says it is watching,
plays one failure with the scenario snippets of tests/scenarios.py (each
client/server sets its own comm and reports its pid), and checks the finding:
kind, port, and the process that suffers or answers, by name and pid.
Tracepoints are global: other tests may run at the same time, which is why
every assertion is about our own ports and pids.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import netlab, scenarios
from tests.livediag import Diagnose

pytestmark = pytest.mark.root


def _finding(res: dict, kind: str, port: int) -> dict:
    got = [f for f in res["findings"] if f["kind"] == kind and port in f["ports"]]
    kinds = [(f["kind"], f["server"], f["ports"][:3]) for f in res["findings"]]
    assert got, f"no {kind} finding on port {port}; findings: {kinds}; missing: {res['missing']}"
    return got[0]


def _client(f: dict) -> dict:
    assert f["client_processes"], f"no client process named: {f['headline']}"
    return f["client_processes"][0]


def _connect(lb: netlab.Lab, ns: str, host: str, port: int, comm: str, **kw: object) -> dict:
    args = {"host": host, "ports": [port], "attempts": 3, "comm": comm, "pause": 0.1, **kw}
    return lb.python(ns, scenarios.CLIENT_CONNECT, args, timeout=60)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_refused_on_loopback_names_the_client(host: str) -> None:
    with netlab.lab("single", ipv6=":" in host) as lb:
        d = Diagnose(lb.client)
        try:
            res = _connect(lb, lb.client, host, 7311, "rst-pusher", attempts=4)
            out = d.result()
        finally:
            d.kill()
    f = _finding(out, "refused", 7311)
    assert f["server"] == host and f["count"] == 4
    c = _client(f)
    assert (c["comm"], c["pid"], c["connections"]) == ("rst-pusher", res["pid"], 4)
    assert f["server_is_local"] and f["listener"] is None
    assert "nothing listens on 7311" in f["headline"]
    assert "`rst-pusher`" in f["headline"]
    assert out["counters"].get("Tcp.AttemptFails", 0) >= 4
    assert any("NO_SOCKET" in r for r in f["kernel_reset_reasons"]), f["kernel_reset_reasons"]
    assert out["interfaces"] == ["lo"]


def test_refused_across_namespaces_names_the_client_from_the_server_side() -> None:
    # Tracepoints are global: the client's connect() in its namespace is joined to
    # the server namespace's capture by the 4-tuple.
    with netlab.lab("direct") as lb:
        d = Diagnose(lb.server)
        try:
            res = _connect(lb, lb.client, lb.server_ip, 7312, "rst-remote")
            out = d.result()
        finally:
            d.kill()
    f = _finding(out, "refused", 7312)
    c = _client(f)
    assert (c["comm"], c["pid"]) == ("rst-remote", res["pid"])
    assert f["server_is_local"] and f["clients"] == [lb.client_ip]
    assert lb.server_if in f["interfaces"]


def test_listener_that_went_away_is_named() -> None:
    with netlab.lab("single") as lb:
        srv = lb.spawn_python(lb.client, scenarios.SERVER_SILENT,
                              {"host": "127.0.0.1", "port": 7313, "backlog": 4,
                               "comm": "rst-oldsrv"})  # fmt: skip
        srv.expect("READY")
        d = Diagnose(lb.client)
        try:
            time.sleep(1.5)  # one socket sample sees the listener
            srv.send("stop")
            srv.result()
            res = _connect(lb, lb.client, "127.0.0.1", 7313, "rst-pusher")
            out = d.result()
        finally:
            d.kill()
    f = _finding(out, "refused", 7313)
    assert f["listener"] is not None and not f["listener"]["listening_now"]
    assert f["listener"]["processes"][0]["comm"] == "rst-oldsrv"
    assert "listened there until" in f["headline"]
    assert _client(f)["pid"] == res["pid"]


def test_listen_overflow_names_the_listener_and_counts() -> None:
    port = 7314
    with netlab.lab("direct") as lb:
        lb.sysctl(lb.client, "net.ipv4.tcp_syn_retries", 1)
        srv = lb.spawn_python(lb.server, scenarios.SERVER_SILENT,
                              {"host": lb.server_ip, "port": port, "backlog": 1,
                               "comm": "rst-slowsrv"})  # fmt: skip
        srv.expect("READY")
        d = Diagnose(lb.server)
        try:
            # The first 2 handshakes fill the queue (backlog 1 holds 2); the rest overflow.
            clients = [lb.spawn_python(lb.client, scenarios.CLIENT_CONNECT,
                                       {"host": lb.server_ip, "ports": [port], "attempts": 1,
                                        "timeout": 6, "comm": "rst-waiter", "send": 10})
                       for _ in range(5)]  # fmt: skip
            for c in clients:
                c.result(timeout=20)
            out = d.result()
            srv.send("stop")
        finally:
            d.kill()
    f = _finding(out, "listen-overflow", port)
    assert f["listener"] is not None
    lst = f["listener"]
    assert lst["processes"][0]["comm"] == "rst-slowsrv"
    assert lst["processes"][0]["pid"] == srv.popen.pid
    assert lst["backlog"] == 1
    assert out["counters"].get("TcpExt.ListenOverflows", 0) > 0
    assert "rst-slowsrv" in f["headline"]


def test_firewall_drop_names_the_rule_and_the_client() -> None:
    port = 7315
    with netlab.lab("direct") as lb:
        lb.sysctl(lb.client, "net.ipv4.tcp_syn_retries", 1)
        lb.nft(
            lb.server,
            f"""table inet rstd {{
            chain input {{ type filter hook input priority 0; policy accept;
                tcp dport {port} counter drop
            }}
        }}""",
        )
        d = Diagnose(lb.server)
        try:
            res = _connect(lb, lb.client, lb.server_ip, port, "rst-dropped", attempts=1, timeout=10)
            out = d.result()
        finally:
            d.kill()
    assert res["results"][0]["result"] == "ETIMEDOUT"
    f = _finding(out, "timeout", port)
    assert any(f"tcp dport {port} counter drop" in r for r in f["firewall_rules"]), f
    assert "firewall drops" in f["headline"]
    assert (_client(f)["comm"], _client(f)["pid"]) == ("rst-dropped", res["pid"])


def test_firewall_reject_on_the_host_is_told_from_a_closed_port() -> None:
    # nft's `reject with tcp reset` sends its RST from netfilter, not from a TCP
    # socket: no tcp_send_reset event, and the rule's counter moves.
    port = 7316
    with netlab.lab("direct") as lb:
        lb.nft(
            lb.server,
            f"""table inet rstr {{
            chain input {{ type filter hook input priority 0; policy accept;
                tcp dport {port} counter reject with tcp reset
            }}
        }}""",
        )
        d = Diagnose(lb.server)
        try:
            res = _connect(lb, lb.client, lb.server_ip, port, "rst-rejected")
            out = d.result()
        finally:
            d.kill()
    f = _finding(out, "firewall-reject", port)
    assert any("reject with tcp reset" in r for r in f["firewall_rules"]), f
    assert not any(r.startswith("sent") for r in f["kernel_reset_reasons"]), f
    assert _client(f)["pid"] == res["pid"]


def test_abort_names_the_resetting_server_and_the_kernel_reason() -> None:
    port = 7317
    with netlab.lab("direct") as lb:
        srv = lb.spawn_python(lb.server, scenarios.SERVER_ABORT,
                              {"host": lb.server_ip, "port": port, "mode": "linger",
                               "n_in": 1000, "n_out": 2000, "n_read": 0,
                               "comm": "rst-aborter"})  # fmt: skip
        srv.expect("READY")
        d = Diagnose(lb.server)
        try:
            cli = lb.python(lb.client, scenarios.CLIENT_TALK,
                            {"host": lb.server_ip, "port": port, "n_in": 1000, "n_out": 2000,
                             "comm": "rst-talker"})  # fmt: skip
            srv.result()
            out = d.result()
        finally:
            d.kill()
    assert cli["final"] == "ECONNRESET"
    f = _finding(out, "abort", port)
    assert f["details"]["reset_by"] == {"responder": 1}
    assert (_client(f)["comm"], _client(f)["pid"]) == ("rst-talker", cli["pid"])
    # What this kernel says for SO_LINGER 0 (6.18: TCP_STATE, not TCP_ABORT_ON_LINGER).
    assert any(r.startswith("sent ") for r in f["kernel_reset_reasons"]), f
    assert f["listener"]["processes"][0]["comm"] == "rst-aborter"


def test_local_port_exhaustion_is_caught_before_any_packet() -> None:
    port = 7318
    with netlab.lab("single") as lb:
        lb.sysctl(lb.client, "net.ipv4.ip_local_port_range", "40000 40001")
        srv = lb.spawn_python(lb.client, scenarios.SERVER_SILENT,
                              {"host": "127.0.0.1", "port": port, "backlog": 16,
                               "comm": "rst-sink"})  # fmt: skip
        srv.expect("READY")
        d = Diagnose(lb.client)
        try:
            hog = lb.spawn_python(lb.client, _HOG, {"host": "127.0.0.1", "port": port,
                                                   "n": 5, "comm": "rst-hog"})  # fmt: skip
            got = json.loads(hog.expect("{", timeout=20))
            out = d.result()
            hog.send("go")
            srv.send("stop")
        finally:
            d.kill()
    assert "EADDRNOTAVAIL" in got["errors"], got
    f = _finding_any(out, "local")
    assert (_client(f)["comm"], _client(f)["pid"]) == ("rst-hog", got["pid"])
    assert "EADDRNOTAVAIL" in f["headline"]


# Opens n connections and keeps them, so a two-port local range runs out; stays alive
# until told (the kernel reads a failing syscall's namespace from the live process).
_HOG = (
    scenarios.PRELUDE
    + r"""
keep, errors = [], []
for _ in range(A["n"]):
    s = socket.socket()
    try:
        s.connect((A["host"], A["port"]))
        keep.append(s)
    except OSError as e:
        errors.append(ename(e))
print(json.dumps({"errors": errors, "connected": len(keep), "pid": os.getpid()}), flush=True)
wait_go()  # a process that runs out of ports lives on: stay until diagnose has looked
"""
)


def _finding_any(res: dict, kind: str) -> dict:
    got = [f for f in res["findings"] if f["kind"] == kind]
    assert got, f"no {kind} finding: {[f['kind'] for f in res['findings']]}; {res['missing']}"
    return got[0]


def test_without_root_it_says_what_it_could_not_see(tmp_path: Path) -> None:
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed to drop privileges"
    env = dict(os.environ, HOME=str(tmp_path))
    argv = netlab.as_nobody([sys.executable, "-m", "rstrace", "diagnose", "--json",
                             "--duration", "1"])  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env,
                         cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    missing = " ".join(out["missing"])
    assert "capturing packets needs root" in missing, missing
    assert "kernel events unavailable" in missing, missing
    assert "nft rule counters needs root" in missing, missing
    assert "Traceback" not in run.stderr
