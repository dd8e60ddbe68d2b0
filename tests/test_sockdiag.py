"""The sock_diag decoder: on recorded kernel answers, against pyroute2, and on kernel errors."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from rstrace.sources import sockdiag
from rstrace.sources.sockets import _ntop

DATA = Path(__file__).parent / "data" / "proc" / "net"


def _ss_lines() -> list[list[str]]:
    return [ln.split() for ln in (DATA / "sock_diag-ss.txt").read_text().splitlines()[1:]]


def _decoded(name: str) -> list[tuple]:
    records, done = sockdiag.parse((DATA / f"sock_diag-{name}.bin").read_bytes())
    assert done
    return records


def test_recorded_dump_matches_ss() -> None:
    """Every socket ss printed at the moment of recording, with its inode and cookie."""
    got = {}
    for fam, state, src, sport, dst, dport, cookie, rq, wq, _uid, inode, v6only in _decoded(
        "inet"
    ) + _decoded("inet6"):
        got[cookie] = (state, f"{_ntop(src)}:{sport}", f"{_ntop(dst)}:{dport}", rq, wq, inode,
                       fam, v6only)  # fmt: skip
    assert len(got) == len(_ss_lines()) == 11
    states = {"LISTEN": 10, "ESTAB": 1, "SYN-SENT": 2}
    for f in _ss_lines():
        cookie = int(next(w for w in f if w.startswith("sk:"))[3:], 16)
        inode = int(next(w for w in f if w.startswith("ino:"))[4:])
        state, local, _peer, rq, wq, ino, fam, v6only = got[cookie]
        assert (state, rq, wq, ino) == (states[f[0]], int(f[1]), int(f[2]), inode)
        # ss prints [::ffff:127.0.0.1]:7212 where we print the plain IPv4 address
        assert local.rsplit(":", 1)[1] == f[3].rsplit(":", 1)[1]
        if "v6only:0" in f:
            assert (fam, v6only) == (socket.AF_INET6, False)
    listen = got[0x44DCD]
    assert listen[:5] == (10, "127.0.0.1:7211", "0.0.0.0:0", 2, 1)


def test_truncated_buffer_is_not_finished() -> None:
    raw = (DATA / "sock_diag-inet.bin").read_bytes()
    records, done = sockdiag.parse(raw[:200])
    assert not done and len(records) == 1


def test_kernel_error_in_dump_done_is_raised() -> None:
    """An unknown protocol makes the kernel end the dump with -ENOENT in NLMSG_DONE,
    as it does when tcp_diag is missing: that must read as 'unavailable', not 'empty'."""
    with pytest.raises(OSError) as err:
        sockdiag.dump(socket.AF_INET, (1 << 14) - 1, protocol=99)
    assert err.value.errno == errno.ENOENT


def test_decoder_agrees_with_pyroute2() -> None:
    """pyroute2's DiagSocket, the reference decoder (and 10x slower), on the same live sockets."""
    from pyroute2 import DiagSocket

    lsn = socket.socket(socket.AF_INET6)
    lsn.bind(("::", 0))
    lsn.listen(3)
    cli = socket.create_connection(("127.0.0.1", lsn.getsockname()[1]), timeout=5)
    cli6 = socket.create_connection(("::1", lsn.getsockname()[1]), timeout=5)
    try:
        ports = {lsn.getsockname()[1], cli.getsockname()[1], cli6.getsockname()[1]}
        for family in (socket.AF_INET, socket.AF_INET6):
            ours = {
                (st, _ntop(src), sp, _ntop(dst), dp, ck, rq, wq, uid, ino)
                for _f, st, src, sp, dst, dp, ck, rq, wq, uid, ino, _v in sockdiag.dump(
                    family, (1 << 12) - 1
                )
                if sp in ports or dp in ports
            }
            with DiagSocket() as ds:
                ds.bind()
                theirs = {
                    (m["idiag_state"], m["idiag_src"].removeprefix("::ffff:"), m["idiag_sport"],
                     m["idiag_dst"].removeprefix("::ffff:"), m["idiag_dport"], m["idiag_cookie"],
                     m["idiag_rqueue"], m["idiag_wqueue"], m["idiag_uid"], m["idiag_inode"])
                    for m in ds.get_sock_stats(family=family, states=(1 << 12) - 1)
                    if ports & {m["idiag_sport"], m["idiag_dport"]}
                }  # fmt: skip
            assert ours == theirs
            # AF_INET: cli. AF_INET6: the listener, cli6, and both server ends (not accepted).
            assert len(ours) == (1 if family == socket.AF_INET else 4)
    finally:
        cli.close()
        cli6.close()
        lsn.close()
