"""What is supposed to listen on a port: systemd units that say so, and /etc/services.

systemd's own answer (``systemctl list-sockets``) needs a running systemd, which a
container or a host with another init does not have, and says nothing about units that
are not loaded. So unit files are read here directly, with systemd's precedence: the
first directory of *unit_dirs* that has a unit wins (/etc over /run over /usr/lib),
drop-ins (``NAME.d/*.conf``) from every directory apply in file-name order, and a unit
linked to /dev/null is masked. configparser cannot read unit files (repeated keys, an
empty assignment that resets a list), hence the small parser.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..model import ExpectedListener

# systemd.unit(5), "Unit File Load Path", system then user managers.
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/etc/systemd/user",
    "/usr/local/lib/systemd/user",
    "/usr/lib/systemd/user",
)


def parse_unit(text: str) -> Iterator[tuple[str, str, str]]:
    """(section, key, value) of each assignment in a unit file, in order.

    Comments (# ;) and blank lines are skipped; a line ending in a backslash continues
    on the next (joined with a space, as systemd does).
    """
    section, pending = "", ""
    for raw in text.splitlines():
        line = raw.strip()
        if pending:
            line = pending + " " + line
            pending = ""
        elif not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line:
            key, value = line.split("=", 1)
            yield section, key.strip(), value.strip()


def parse_listen_stream(value: str) -> tuple[str | None, int] | None:
    """(address or None, port) of a ListenStream= value; None for unix/vsock/other sockets.

    Forms (systemd.socket(5)): ``7211``, ``127.0.0.1:7211``, ``[::1]:7211``,
    ``[fe80::1%eth0]:7211``.
    """
    value = value.strip()
    if value.isdigit():
        return None, int(value)
    if value.startswith("["):
        addr, _, port = value[1:].partition("]:")
        addr = addr.split("%", 1)[0]
    elif value.count(":") == 1 and not value.startswith(("/", "@", "vsock:")):
        addr, port = value.split(":")
    else:
        return None
    return (addr, int(port)) if port.isdigit() else None


def _unit_files(dirs: Sequence[str]) -> dict[str, list[Path]]:
    """Unit name -> its file then its drop-ins, by systemd's precedence; masked units left out."""
    main: dict[str, Path] = {}
    dropins: dict[str, dict[str, Path]] = {}
    seen_dirs: set[str] = set()
    for d in dirs:
        real = os.path.realpath(d)  # /lib is /usr/lib on merged-/usr systems
        if real in seen_dirs or not os.path.isdir(real):
            continue
        seen_dirs.add(real)
        for path in sorted(Path(d).iterdir()):
            name = path.name
            if name.endswith((".socket", ".service")) and name not in main:
                main[name] = path
            elif name.endswith((".socket.d", ".service.d")) and path.is_dir():
                for conf in sorted(path.glob("*.conf")):
                    dropins.setdefault(name[:-2], {}).setdefault(conf.name, conf)
    out: dict[str, list[Path]] = {}
    for name, path in main.items():
        if os.path.realpath(path) == "/dev/null":
            continue  # masked
        out[name] = [path, *(dropins.get(name, {})[k] for k in sorted(dropins.get(name, {})))]
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _socket_unit(name: str, files: list[Path], port: int) -> list[ExpectedListener]:
    listens: list[tuple[str, Path]] = []
    service, accept = None, False
    for path in files:
        for section, key, value in parse_unit(_read(path)):
            if section != "Socket":
                continue
            if key == "ListenStream":
                if value:
                    listens.append((value, path))
                else:
                    listens.clear()  # an empty assignment resets the list
            elif key == "Service":
                service = value
            elif key == "Accept":
                accept = value.lower() in ("yes", "true", "1", "on")
    stem = name[: -len(".socket")]
    if service is None:
        service = f"{stem}@.service" if accept else f"{stem}.service"
    out = []
    for value, path in listens:
        parsed = parse_listen_stream(value)
        if parsed and parsed[1] == port:
            out.append(
                ExpectedListener(
                    unit=name,
                    path=str(path),
                    port=port,
                    address=parsed[0],
                    directive=f"ListenStream={value}",
                    service=service,
                    guess=False,
                )
            )
    return out


_MENTION_KEYS = ("ExecStart", "ExecStartPre", "Environment")


def _service_unit(name: str, files: list[Path], port: int) -> list[ExpectedListener]:
    mention = re.compile(rf"(?<![\w.]){port}(?![\w.])")
    out = []
    for path in files:
        for section, key, value in parse_unit(_read(path)):
            if section == "Service" and key in _MENTION_KEYS and mention.search(value):
                out.append(
                    ExpectedListener(
                        unit=name,
                        path=str(path),
                        port=port,
                        address=None,
                        directive=f"{key}={value}",
                        service=None,
                        guess=True,
                    )
                )
    return out


def expected_listeners(port: int, unit_dirs: Sequence[str] = UNIT_DIRS) -> list[ExpectedListener]:
    """systemd units that should listen on *port*: .socket units with a ListenStream= for it,
    then .service units whose ExecStart=/Environment= mention it (``guess=True``)."""
    units = _unit_files(unit_dirs)
    sockets, services = [], []
    for name, files in units.items():
        if name.endswith(".socket"):
            sockets += _socket_unit(name, files, port)
        else:
            services += _service_unit(name, files, port)
    return sorted(sockets, key=lambda e: e.unit) + sorted(services, key=lambda e: e.unit)


def service_name(port: int) -> str | None:
    """The well-known TCP service of *port* from /etc/services (e.g. 443 -> https)."""
    try:
        return socket.getservbyport(port, "tcp")
    except (OSError, OverflowError):
        return None
