"""attribute.py's joins and words, on records the sources really produce.

The conntrack case uses the recorded /proc fixtures of tests/data/proc: a full table
cannot be made for real on a shared machine (its size is global), so conntrack-full/
is a recorded namespace edited by hand (see tests/data/proc/README.txt).
"""

from __future__ import annotations

from pathlib import Path

from rstrace.attribute import HostView, attribute, how_often, norm_addr
from rstrace.model import Finding, KernelEvent
from rstrace.sources import host

PROC = Path(__file__).parent / "data" / "proc"


def _finding(kind: str, server: str = "192.0.2.20", port: int = 7214, count: int = 6) -> Finding:
    return Finding(kind=kind, server=server, ports=[port], count=count, rate=count / 3,
                   first_ts=1_000_000, last_ts=3_000_000, clients=["192.0.2.10"], ifaces=[],
                   summary="", next_steps=[])  # fmt: skip


def test_a_full_conntrack_table_explains_a_timeout() -> None:
    view = HostView(
        conntrack_before=host.read_conntrack(PROC / "netns-after"),
        conntrack=host.read_conntrack(PROC / "conntrack-full"),
    )
    (a,) = attribute([_finding("timeout")], view, 3.0)
    assert a.notes == [
        "conntrack table 262144 of 262144 entries (full: new connections are dropped); "
        "during the window drop +41, insert_failed +3"
    ]
    assert "gets no answer: conntrack table 262144" in a.headline
    # The same table says nothing about a refused port.
    (b,) = attribute([_finding("refused")], view, 3.0)
    assert b.notes == []


def test_connect_event_joined_by_socket_address() -> None:
    # CLOSE -> SYN_SENT carries sport 0 (set before the port is picked); the socket's
    # next event with the whole 4-tuple names it.
    base = dict(tid=7, context="process", cpu=0, family=4, protocol="tcp")
    events = [
        KernelEvent(ts=1_000_000, event="set_state", pid=7, comm="pusher", saddr="192.0.2.10",
                    sport=0, daddr="192.0.2.20", dport=7214, oldstate="CLOSE",
                    newstate="SYN_SENT", skaddr=0xFFFF1, **base),
        KernelEvent(ts=1_500_000, event="set_state", pid=0, comm="swapper/0",
                    saddr="192.0.2.10", sport=40000, daddr="192.0.2.20", dport=7214,
                    oldstate="SYN_SENT", newstate="CLOSE", skaddr=0xFFFF1, **base),
    ]  # fmt: skip
    view = HostView(events=events, tuples={
        ("unanswered", "192.0.2.20", 7214, "192.0.2.10"):
            [("192.0.2.10", 40000, "192.0.2.20", 7214, 1_000_100)],
    })  # fmt: skip
    view.final_kind = lambda v: "timeout"
    (a,) = attribute([_finding("timeout", count=1)], view, 3.0)
    assert [(c.pid, c.comm, c.count) for c in a.clients] == [(7, "pusher", 1)]
    assert a.headline.startswith("`pusher` (pid 7")


def test_words() -> None:
    assert how_often(2.0) == "twice a second"
    assert how_often(0.2) == "once every 5 s"
    assert how_often(12.34) == "12.3 times a second"
    assert norm_addr("::ffff:127.0.0.1") == "127.0.0.1"
    assert norm_addr("2001:DB8::1") == "2001:db8::1"


def test_headline_agrees_with_several_processes() -> None:
    from rstrace.attribute import Attribution, ClientProcess, headline

    f = _finding("refused", server="127.0.0.1", port=7211, count=6)
    one = Attribution(headline="", clients=[ClientProcess(7, "pusher", 6, None)],
                      server_local=True)  # fmt: skip
    assert headline(f, one, 3.0) == (
        "`pusher` (pid 7) connects to 127.0.0.1:7211 twice a second and is refused: "
        "nothing listens on 7211."
    )
    pushers = [ClientProcess(p, "pusher", 2, None) for p in (7, 8, 9)]
    three = Attribution(headline="", server_local=True, clients=pushers)
    assert headline(f, three, 3.0) == (
        "`pusher` (3 processes: pids 7, 8, 9) connect to 127.0.0.1:7211 twice a second and "
        "are refused: nothing listens on 7211."
    )
