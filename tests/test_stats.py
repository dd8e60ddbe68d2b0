"""`rstrace stats`: golden output from recorded snapshots, and the real kernel end to end.

The end-to-end tests make refused connect()s on loopback inside a namespace made by
tests/netlab.py and read that namespace's counters through `--netns` (netns.enter,
pyroute2's setns). A second fresh namespace must not move: counters are per
namespace. The root namespace is shared with other test runs, so it is not asserted on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rstrace.render.stats import SCHEMA, render_stats_text, stats_dict
from rstrace.sources.counters import parse_pairs, read_counters
from rstrace.sources.host import read_conntrack, read_sysctls
from rstrace.stats import Sample, compare
from tests import netlab

ROOT = Path(__file__).parent.parent
PROC = ROOT / "tests" / "data" / "proc"
EXPECTED = ROOT / "tests" / "data" / "expected"
T0 = 1795000000.0  # fixed clock for the goldens


def _sample(snap: str, at: float) -> Sample:
    return Sample(T0 + at, 1000.0 + at, read_counters(PROC / snap), read_conntrack(PROC / snap))


def _golden(name: str, text: str, update: bool) -> None:
    golden = EXPECTED / name
    if update:
        golden.write_text(text)
    assert golden.exists(), f"missing {golden}: run pytest --update-goldens and review the diff"
    assert text == golden.read_text(), f"{name} differs from its golden file"


@pytest.mark.parametrize(
    "name, after, kw",
    [
        ("stats-refused.txt", "netns-after", {}),
        ("stats-refused-changed-kernel.txt", "netns-after", {"changed": True, "kernel": True}),
        ("stats-conntrack-full.txt", "conntrack-full", {"changed": True}),
    ],
)
def test_golden_text(name: str, after: str, kw: dict, update_goldens: bool) -> None:
    prev, cur = _sample("netns-before", 0), _sample(after, 2.0)
    text = render_stats_text(prev, cur, sysctls=read_sysctls(PROC / after), netns="lab", **kw)
    _golden(name, text, update_goldens)


def test_rates_from_recorded_snapshots() -> None:
    rows = {r.key: r for r in compare(_sample("netns-before", 0), _sample("netns-after", 4.0))}
    assert rows["Tcp.AttemptFails"].delta == 12 and rows["Tcp.AttemptFails"].rate == 3.0
    assert rows["Tcp.CurrEstab"].rate is None  # a gauge has no rate
    every = compare(_sample("netns-before", 0), _sample("netns-after", 4.0), every=True)
    assert len(every) == len(read_counters(PROC / "netns-after")) > len(rows)


def test_json_schema() -> None:
    prev, cur = _sample("netns-before", 0), _sample("conntrack-full", 2.0)
    doc = json.loads(json.dumps(stats_dict(prev, cur, sysctls=read_sysctls(PROC / "root"))))
    assert doc["schema"] == SCHEMA == "rstrace.stats/1"
    assert (doc["start"], doc["end"], doc["seconds"], doc["netns"]) == (T0, T0 + 2, 2.0, None)
    af = doc["counters"]["Tcp.AttemptFails"]
    assert (af["value"], af["delta"], af["rate"], af["gauge"]) == (12, 12, 6.0, False)
    assert af["kernel"].startswith("tcp_done()")
    assert doc["conntrack"]["full"] is True and doc["conntrack"]["stats"]["drop"] == 41
    assert doc["conntrack_missing"] is None
    assert any("conntrack table full" in n for n in doc["notes"])
    assert doc["sysctls"]["net.ipv4.ip_local_port_range"] == "32768 60999"


# -- the real kernel ---------------------------------------------------------------------

REFUSE = """
import json, socket, sys
n, port = json.loads(sys.argv[1])
fails = 0
for _ in range(n):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        fails += 1
    finally:
        s.close()
print(json.dumps({"refused": fails}))
"""

# Refuses connects until stdin closes (bounded: 600 tries, ~30 s).
REFUSE_LOOP = """
import socket, sys, threading, time
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
print("started", flush=True)
for _ in range(600):
    if done.is_set():
        break
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", 7211))
    except ConnectionRefusedError:
        pass
    s.close()
    time.sleep(0.05)
"""


def _rstrace(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rstrace", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _snmp_in(ns: str) -> dict[str, int]:
    return parse_pairs(netlab.ns_run(ns, ["cat", "/proc/net/snmp"]).stdout)


@pytest.mark.root
def test_stats_follows_refused_connects_in_its_namespace_only() -> None:
    with netlab.lab("direct") as lb:
        other_before = _snmp_in(lb.server)
        p = _rstrace("stats", "--netns", lb.client, "-i", "0.3", "-c", "0", "--json")
        try:
            assert p.stdout is not None
            first = json.loads(p.stdout.readline())  # sampling has started
            assert first["netns"] == lb.client
            assert lb.python(lb.client, REFUSE, [7, 7211])["refused"] == 7
            docs, fails = [], 0
            deadline = time.monotonic() + 30
            while fails < 7 and time.monotonic() < deadline:
                docs.append(json.loads(p.stdout.readline()))
                fails += docs[-1]["counters"]["Tcp.AttemptFails"]["delta"]
        finally:
            os.kill(p.pid, signal.SIGINT)
            _, err = p.communicate(timeout=20)
        assert p.returncode == 0, err  # Ctrl-C ends a follow run cleanly
        assert err == ""
        assert fails == 7
        assert sum(d["counters"]["Tcp.ActiveOpens"]["delta"] for d in docs) == 7
        assert sum(d["counters"]["Tcp.OutRsts"]["delta"] for d in docs) == 7
        assert max(d["counters"]["Tcp.AttemptFails"]["rate"] for d in docs) > 0
        other = _snmp_in(lb.server)
        assert other["Tcp.AttemptFails"] == other_before["Tcp.AttemptFails"] == 0


@pytest.mark.root
def test_stats_text_shows_attempt_fails_rate() -> None:
    with netlab.lab("single") as lb:
        loop = netlab.Proc(lb.client, [sys.executable, "-c", REFUSE_LOOP])
        lb.procs.append(loop)
        loop.expect("started")
        p = _rstrace("stats", "--netns", lb.client, "-i", "1.5")
        out, err = p.communicate(timeout=60)
        loop.stop()
    assert p.returncode == 0 and err == "", err
    line = next(ln for ln in out.splitlines() if ln.startswith("  AttemptFails "))
    value, delta, rate = line.split()[1:4]
    assert int(delta) > 0 and float(rate) > 0 and int(value) >= int(delta)
    assert "this host's own connect()s" in line
    assert f"namespace {lb.client}" in out.splitlines()[0]
    assert any(ln.startswith("! ") and "connect()s from this host failed" in ln
               for ln in out.splitlines())  # fmt: skip
    assert out.splitlines()[-3].startswith("sysctl     somaxconn=")


@pytest.mark.root
def test_netns_enter_reads_that_namespace() -> None:
    """The library call diagnose uses: enter(), then /proc/net is the namespace's."""
    code = (
        "import json, os; from rstrace.sources import netns, counters, host; "
        "import sys; netns.enter(sys.argv[1]); "
        "print(json.dumps([netns.inode(), counters.read_counters()['Tcp.AttemptFails'], "
        "host.read_sysctls()['net.ipv4.tcp_syn_retries']]))"
    )
    with netlab.lab("single") as lb:
        lb.sysctl(lb.client, "net.ipv4.tcp_syn_retries", 3)  # differs from the host's 6
        lb.python(lb.client, REFUSE, [5, 7211])
        p = subprocess.run([sys.executable, "-c", code, lb.client], capture_output=True,
                           text=True, cwd=ROOT, timeout=60, check=True)  # fmt: skip
        ino, fails, retries = json.loads(p.stdout)
        assert (
            ino == os.stat(f"/run/netns/{lb.client}").st_ino != os.stat("/proc/self/ns/net").st_ino
        )
        assert fails == 5 and retries == "3"


@pytest.mark.root
def test_netns_errors_are_one_line() -> None:
    missing = "rsts-000000-nothere"
    p = subprocess.run([sys.executable, "-m", "rstrace", "stats", "--netns", missing],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == (
        f"rstrace: error: no network namespace {missing!r}: /run/netns/{missing} does not "
        "exist (`ip netns list` shows them)\n"
    )
    assert not Path(f"/run/netns/{missing}").exists()  # pyroute2 was not allowed to create it
    p = subprocess.run([sys.executable, "-m", "rstrace", "stats", "--netns", "../x"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert p.returncode == 2 and "is not a network namespace name" in p.stderr
    with netlab.lab("single") as lb:
        p = subprocess.run(  # as nobody: setns(2) must refuse
            netlab.as_nobody([sys.executable, "-m", "rstrace", "stats", "--netns", lb.client]),
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"rstrace: error: entering network namespace {lb.client!r} "
                               "needs root")  # fmt: skip
    assert p.stderr.count("\n") == 1


@pytest.mark.root
def test_enter_from_a_thread_is_refused() -> None:
    """setns(2) moves one thread, but /proc/net follows the main thread: refuse."""
    import threading

    from rstrace.sources import netns

    errors: list[Exception] = []

    def run(name: str) -> None:
        try:
            netns.enter(name)
        except Exception as e:
            errors.append(e)

    with netlab.lab("single") as lb:
        t = threading.Thread(target=run, args=(lb.client,))
        t.start()
        t.join()
    assert len(errors) == 1 and isinstance(errors[0], netns.NetnsError)
    assert "main thread" in str(errors[0])


@pytest.mark.root
def test_stats_needs_no_root_without_netns() -> None:
    p = subprocess.run(
        netlab.as_nobody([sys.executable, "-m", "rstrace", "stats", "-i", "0.1", "--json"]),
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0 and p.stderr == "", p.stderr
    doc = json.loads(p.stdout)
    assert doc["netns"] is None and "Tcp.AttemptFails" in doc["counters"]
    assert doc["sysctls"]["net.core.somaxconn"].isdigit()
