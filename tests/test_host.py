"""Sysctl and conntrack readers on recorded /proc files (tests/data/proc/README.txt).

The conntrack table size is global: it is never shrunk here to fill it for real, so
the full table is a recorded file edited by hand (conntrack-full/, see README.txt).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rstrace.sources.host import (
    SYSCTLS,
    HostParseError,
    conntrack_missing,
    parse_conntrack_stat,
    read_conntrack,
    read_sysctls,
)

PROC = Path(__file__).parent / "data" / "proc"


def test_sysctls_recorded() -> None:
    s = read_sysctls(PROC / "root")
    assert list(s) == list(SYSCTLS)
    assert s["net.ipv4.ip_local_port_range"] == "32768 60999"  # a tab in the file
    assert s["net.core.somaxconn"] == (PROC / "root/sys/net/core/somaxconn").read_text().strip()
    assert s["net.ipv4.tcp_syncookies"] in ("0", "1", "2")


def test_sysctl_this_kernel_lacks_is_left_out(tmp_path: Path) -> None:
    shutil.copytree(PROC / "root", tmp_path / "p")
    (tmp_path / "p/sys/net/ipv4/tcp_syn_retries").unlink()
    s = read_sysctls(tmp_path / "p")
    assert "net.ipv4.tcp_syn_retries" not in s and len(s) == len(SYSCTLS) - 1


def test_sysctls_live_match_the_files() -> None:
    live = read_sysctls()
    assert live["net.core.somaxconn"] == Path("/proc/sys/net/core/somaxconn").read_text().strip()


def test_conntrack_recorded_idle_namespace() -> None:
    ct = read_conntrack(PROC / "netns-after")
    assert ct is not None
    assert (ct.count, ct.max, ct.full) == (0, 262144, False)
    assert "entries" not in ct.stats and ct.stats["drop"] == 0
    assert conntrack_missing(PROC / "netns-after") is None


def test_conntrack_full_hand_edited() -> None:
    ct = read_conntrack(PROC / "conntrack-full")
    assert ct is not None and ct.full and ct.fill == 1.0
    assert ct.stats["drop"] == 0x1B + 0x0E
    assert ct.stats["insert_failed"] == 3
    assert ct.stats["insert"] == 0xA2C1 + 0x9E07


def test_entries_column_is_not_summed() -> None:
    """`entries` is nf_conntrack_count printed on every CPU's line, not a per-CPU count."""
    text = (PROC / "conntrack-full/net/stat/nf_conntrack").read_text()
    assert text.count("00040000  ") == 2
    assert "entries" not in parse_conntrack_stat(text)


def test_conntrack_not_loaded(tmp_path: Path) -> None:
    shutil.copytree(PROC / "netns-after", tmp_path / "p")
    shutil.rmtree(tmp_path / "p/sys/net/netfilter")
    (tmp_path / "p/net/stat/nf_conntrack").unlink()
    assert read_conntrack(tmp_path / "p") is None
    assert "not loaded" in (conntrack_missing(tmp_path / "p") or "")


@pytest.mark.parametrize(
    "text",
    ["", "entries drop\n00000001\n", "entries drop\n0000000g 00000000\n"],
)
def test_bad_conntrack_stat(text: str) -> None:
    with pytest.raises(HostParseError, match="nf_conntrack"):
        parse_conntrack_stat(text)
