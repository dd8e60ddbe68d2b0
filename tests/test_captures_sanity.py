"""Sanity of the committed real captures (tests/data/captures) and their scenarios.

The offline tests use only the stdlib and pcapy (libpcap): each capture named
in manifest.json exists, is small, opens, and holds the packets the manifest
says.  The root-only test replays a few scenarios live in fresh ``rsts-*``
namespaces to check that the recipes still produce what they claim.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

pcapy = pytest.importorskip("pcapy")

HERE = Path(__file__).resolve().parent
CAPTURES = HERE / "data" / "captures"
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text())
REQUIRED = ("kind", "server", "port", "client", "attempts", "iface_linktype", "note", "file")
DLT = {"EN10MB": 1, "LINUX_SLL": 113, "LINUX_SLL2": 276}


def _pcapy_count(path: Path) -> tuple[int, int]:
    """(datalink, packet count) as libpcap sees the file; .gz is unpacked first."""
    if path.suffix == ".gz":
        with tempfile.NamedTemporaryFile(suffix=".pcap", delete=False) as tmp:
            tmp.write(gzip.decompress(path.read_bytes()))
        try:
            return _pcapy_count(Path(tmp.name))
        finally:
            os.unlink(tmp.name)
    reader = pcapy.open_offline(str(path))
    count = 0
    while True:
        hdr, _data = reader.next()
        if hdr is None:
            break
        count += 1
    return reader.datalink(), count


def test_manifest_lists_every_capture() -> None:
    files = {p.name for p in CAPTURES.iterdir() if p.name.endswith((".pcap", ".pcapng", ".gz"))}
    assert files == {e["file"] for e in MANIFEST.values()}


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_capture_readable(name: str) -> None:
    entry = MANIFEST[name]
    for key in REQUIRED:
        assert key in entry, f"{name}: manifest lacks {key}"
    path = CAPTURES / entry["file"]
    assert 100 < path.stat().st_size < 150_000
    datalink, count = _pcapy_count(path)
    assert count > 0
    if entry["format"] != "pcapng":
        assert datalink == DLT[entry["iface_linktype"]]
    # the manifest counts IP packets only; ARP may come on top
    assert count >= entry["packets"]


def test_capture_formats() -> None:
    magic = {n: (CAPTURES / e["file"]).read_bytes()[:4] for n, e in MANIFEST.items()}
    assert magic["refused-nano"] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    assert magic["two-iface-pcapng"] == b"\x0a\x0d\x0d\x0a"
    assert magic["refused-v4-gz"][:2] == b"\x1f\x8b"
    assert [i["name"] for i in MANIFEST["two-iface-pcapng"]["interfaces"]] == ["lo", "veth-c"]


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, tcpdump")


def _live_modules():  # type: ignore[no-untyped-def]
    """Import netlab/scenarios (tests/ is on sys.path under pytest's rootdir conftest)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import netlab
    import scenarios

    return netlab, scenarios


@pytest.mark.root
@needs_root
@pytest.mark.parametrize("name", ["refused-netns", "abort-linger", "firewall-reject-router"])
def test_scenario_live(name: str, tmp_path: Path) -> None:
    _netlab, scenarios = _live_modules()
    entry = scenarios.run(name, tmp_path)
    want = MANIFEST[name]
    for key in ("kind", "port", "attempts", "reset_by", "tcp_counts", "ttl", "client_errors"):
        assert entry.get(key) == want.get(key), key
    datalink, count = _pcapy_count(tmp_path / entry["file"])
    assert datalink == 1 and count >= entry["packets"]


@pytest.mark.root
@needs_root
def test_lab_cleans_up_on_failure() -> None:
    netlab, _scenarios = _live_modules()
    with pytest.raises(RuntimeError, match="boom"), netlab.lab("routed") as lb:
        names = lb.namespaces
        lb.spawn_python(lb.server, "import time; print('up', flush=True); time.sleep(30)")
        proc = lb.procs[0]
        proc.expect("up")
        raise RuntimeError("boom")
    assert proc.popen.poll() is not None
    listed = {line.split()[0] for line in os.popen("ip netns list").read().splitlines() if line}
    assert not listed & set(names)
