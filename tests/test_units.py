"""What should listen on a port: systemd unit files and /etc/services.

PID 1 on this machine is not systemd, so the units are hand-written fixtures in
tests/data/systemd (see its README); the reader works on files, not on a running systemd.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rstrace.sources.units import (
    expected_listeners,
    parse_listen_stream,
    parse_unit,
    service_name,
)

ROOT = Path(__file__).parent / "data" / "systemd"
DIRS = (str(ROOT / "etc/systemd/system"), str(ROOT / "usr/lib/systemd/system"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7211", (None, 7211)),
        ("127.0.0.1:7211", ("127.0.0.1", 7211)),
        ("[::1]:7211", ("::1", 7211)),
        ("0.0.0.0:7211", ("0.0.0.0", 7211)),
        ("[fe80::1%eth0]:7211", ("fe80::1", 7211)),
        (" 7211 ", (None, 7211)),
        ("/run/foo.sock", None),
        ("@abstract", None),
        ("vsock:2:7211", None),
        ("localhost:http", None),
    ],
)
def test_listen_stream_forms(value: str, expected: tuple | None) -> None:
    assert parse_listen_stream(value) == expected


def test_parse_unit_sections_continuations_and_repeats() -> None:
    text = "# c\n[Socket]\nListenStream=1\nListenStream=2\n; c\n[Service]\nExecStart=/a \\\n  -b\n"
    assert list(parse_unit(text)) == [
        ("Socket", "ListenStream", "1"),
        ("Socket", "ListenStream", "2"),
        ("Service", "ExecStart", "/a -b"),
    ]


def test_expected_listeners_for_7211() -> None:
    found = expected_listeners(7211, DIRS)
    sockets = {e.unit: e for e in found if not e.guess}
    guesses = {e.unit: e for e in found if e.guess}
    assert set(sockets) == {
        "legacy-sink.socket",
        "metrics-sink.socket",
        "sink-any.socket",
        "sink-port.socket",
        "sink6.socket",
    }
    # Sockets (certain) come before services (guesses).
    assert [e.guess for e in found] == sorted(e.guess for e in found)
    sink = sockets["metrics-sink.socket"]
    assert (sink.address, sink.service, sink.directive) == (
        "127.0.0.1",
        "metrics-collector.service",
        "ListenStream=127.0.0.1:7211",
    )
    assert sockets["sink6.socket"].address == "::1"
    assert sockets["sink-port.socket"].address is None
    assert sockets["sink-any.socket"].service == "sink-any@.service"  # Accept=yes
    # The drop-in reset the list and moved the socket to 7211.
    assert sockets["legacy-sink.socket"].path.endswith("legacy-sink.socket.d/10-port.conf")
    assert expected_listeners(7300, DIRS) == []
    # /etc overrides /usr/lib: only the /etc ExecStart counts.
    assert guesses["metrics-collector.service"].directive.startswith(
        "ExecStart=/usr/local/bin/metrics-collector"
    )
    assert "SINK_PORT=7211" in guesses["env-sink.service"].directive
    assert set(guesses) == {"metrics-collector.service", "env-sink.service"}


def test_masked_and_lookalike_ports_do_not_match() -> None:
    units = {e.unit for e in expected_listeners(7211, DIRS)}
    assert "old-sink.socket" not in units  # masked in /etc
    assert "other.socket" not in units and "unrelated.service" not in units
    assert {e.unit for e in expected_listeners(17211, DIRS)} == {"other.socket"}
    # With /usr/lib alone, the unmasked old-sink.socket and the /usr/lib ExecStart appear.
    only_usr = expected_listeners(7211, DIRS[1:])
    assert "old-sink.socket" in {e.unit for e in only_usr}
    assert any("--listen 127.0.0.1:7211" in e.directive for e in only_usr)


def test_missing_dirs_give_nothing(tmp_path: Path) -> None:
    assert expected_listeners(7211, (str(tmp_path / "nope"),)) == []


def test_service_name_from_etc_services() -> None:
    try:
        expected = socket.getservbyport(22, "tcp")
    except OSError:
        pytest.skip("no /etc/services entry for port 22 on this host")
    assert service_name(22) == expected == "ssh"
    assert service_name(7211) is None
    assert service_name(70000) is None
