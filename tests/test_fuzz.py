"""Mutated captures never raise: results so far plus a warning, or a CaptureError.

Seeds are valid pcap, pcapng and gzip files of every link type; random bytes alone
would only exercise the magic check. Derandomized, so CI cannot flake.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rstrace.analyze import analyze_files
from rstrace.render.json import result_dict
from rstrace.render.text import render_text
from rstrace.sources.capfile import CaptureError
from tests import pcapgen as g


def _seeds() -> list[bytes]:
    out = []
    for link in ("ether", "raw", "sll", "sll2", "null", "loop"):
        for version in (4, 6):
            pkts = g.refused_exchange(version, n=2)
            out.append(g.pcap([(t, g.wrap(link, p)) for t, p in pkts], g.LINKTYPE[link]))
    mixed = [(0, t, g.ethernet(p)) for t, p in g.refused_exchange(4, n=2)]
    mixed += [(1, t, g.sll2(p)) for t, p in g.refused_exchange(6, n=2)]
    out.append(g.pcapng([(1, "eth0"), (276, "any")], mixed))
    out.append(g.pcapng([(1, "lo")], mixed[:4]))
    out.append(gzip.compress(out[0]))
    out.append(gzip.compress(out[-2]))
    return out


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "set32"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "set32" and len(data) >= pos + 4:
            data[pos : pos + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\0\0\0\0",
                                                        b"\x00\x00\x01\x00"]))  # fmt: skip
    return bytes(data)


@settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mutated())
def test_mutated_captures_never_raise(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.pcap"
        path.write_bytes(data)
        # control: the fast path; reference: the per-packet path it must match.
        for mode, reference in (("control", False), ("control", True), ("none", False),
                                ("all", False)):  # fmt: skip
            os.environ["RSTRACE_REFERENCE"] = "1" if reference else "0"
            try:
                res = analyze_files([str(path)], mode=mode)
            except CaptureError as e:
                assert "\n" not in str(e)
                continue
            finally:
                os.environ.pop("RSTRACE_REFERENCE", None)
            assert all("\n" not in w for w in res.warnings)
            json.dumps(result_dict(res))  # rendering must not raise either
            render_text(res, io.StringIO())
