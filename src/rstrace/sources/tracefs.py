"""tracefs plumbing: find or mount it, own one instance, parse format files and raw pages.

Hand-written because no maintained Python library does this: the Python bindings of
libtraceevent/libtracefs are not packaged for pip, and bcc/bpftrace need BPF and
kernel headers.  We read the kernel's own self-description instead:

* ``events/<system>/<event>/format``: every field's type, offset and size, and the
  ``print fmt`` whose ``__print_symbolic`` tables name enum values (drop reasons,
  TCP states, RST reasons) for *this* kernel, so no number is hard-coded;
* ``events/header_page`` and the ring buffer's 32-bit event headers, to walk the
  binary pages of ``per_cpu/cpuN/trace_pipe_raw``.

The parsers take text/bytes (tested on recorded fixtures); :class:`Instance` is the
thin I/O part.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import re
import signal
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")
INSTANCE_PREFIX = "rstrace-"


class TracefsError(RuntimeError):
    """tracefs cannot be used at all (not mounted and not mountable, no permission)."""


# --------------------------------------------------------------------------- format files


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an event record, as its format file describes it."""

    name: str
    type: str
    """C type without the name, e.g. ``__u16``, ``const void *``, ``__u8[4]``."""
    offset: int
    size: int
    signed: bool


@dataclass(slots=True)
class EventFormat:
    """An event's ``format`` file: id, fields and the enum tables of its ``print fmt``."""

    system: str
    name: str
    id: int
    fields: dict[str, Field]
    symbols: dict[str, dict[int, str]] = field(default_factory=dict)
    """``__print_symbolic`` tables by field name: value -> name (numeric keys only)."""
    unresolved: dict[str, list[str]] = field(default_factory=dict)
    """Tables whose keys the kernel left as C names (e.g. ``TCP_ESTABLISHED``)."""

    def values(self, field_name: str, names: set[str] | None = None) -> dict[str, int]:
        """name -> value of *field_name*'s table, optionally only the given names."""
        table = self.symbols.get(field_name, {})
        return {n: v for v, n in table.items() if names is None or n in names}


_FIELD_RE = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(\d+);\s*size:(\d+);\s*signed:(\d+);")
_SYMBOLIC = "__print_symbolic(REC->"
_ENTRY_RE = re.compile(r'\{\s*([^,{}]+?)\s*,\s*"([^"]*)"\s*\}')


def _split_decl(decl: str) -> tuple[str, str]:
    """``'__u8 saddr[4]'`` -> ``('saddr', '__u8[4]')``; ``'const void * skaddr'`` too."""
    decl = decl.strip()
    m = re.match(r"^(?P<type>.*?)\s*\b(?P<name>\w+)\s*(?P<arr>\[[^\]]*\])?$", decl)
    if not m:
        raise ValueError(f"cannot read field declaration {decl!r}")
    return m["name"], m["type"].strip() + (m["arr"] or "")


def _symbolic_tables(fmt: str) -> Iterator[tuple[str, str]]:
    """(field, body) of every ``__print_symbolic(REC->field, ...)`` in a print fmt."""
    pos = 0
    while (start := fmt.find(_SYMBOLIC, pos)) >= 0:
        i = start + len(_SYMBOLIC)
        name = re.match(r"\w+", fmt[i:])
        if not name:
            break
        depth, j = 1, i
        while j < len(fmt) and depth:
            depth += {"(": 1, ")": -1}.get(fmt[j], 0)
            j += 1
        yield name.group(), fmt[i:j]
        pos = j


def parse_format(text: str, system: str = "") -> EventFormat:
    """Parse one ``format`` file (text as the kernel prints it)."""
    name = re.search(r"^name:\s*(\S+)", text, re.M)
    ident = re.search(r"^ID:\s*(\d+)", text, re.M)
    if not name or not ident:
        raise ValueError("not a tracefs format file (no name/ID)")
    fields: dict[str, Field] = {}
    for m in _FIELD_RE.finditer(text):
        fname, ftype = _split_decl(m["decl"])
        fields[fname] = Field(fname, ftype, int(m[2]), int(m[3]), m[4] == "1")
    ev = EventFormat(system, name.group(1), int(ident.group(1)), fields)
    fmt_at = text.find("print fmt:")
    for fname, body in _symbolic_tables(text[fmt_at:] if fmt_at >= 0 else ""):
        table: dict[int, str] = {}
        unresolved: list[str] = []
        for key, label in _ENTRY_RE.findall(body):
            try:
                table[int(key, 0)] = label
            except ValueError:
                unresolved.append(label)
        # A field can have one table per branch of a ternary: merge them.
        ev.symbols.setdefault(fname, {}).update(table)
        if unresolved:
            ev.unresolved.setdefault(fname, []).extend(unresolved)
    return ev


# --------------------------------------------------------------------------- raw pages


@dataclass(frozen=True, slots=True)
class PageLayout:
    """Where a ring-buffer page keeps its timestamp, commit size and data (header_page)."""

    ts_offset: int = 0
    commit_offset: int = 8
    commit_size: int = 8
    data_offset: int = 16


def parse_header_page(text: str) -> PageLayout:
    """Parse ``events/header_page``."""
    offs: dict[str, tuple[int, int]] = {}
    for m in re.finditer(r"field:\s*[^;]*?(\w+);\s*offset:(\d+);\s*size:(\d+);", text):
        offs.setdefault(m[1], (int(m[2]), int(m[3])))
    try:
        return PageLayout(
            offs["timestamp"][0], offs["commit"][0], offs["commit"][1], offs["data"][0]
        )
    except KeyError as exc:
        raise ValueError(f"header_page lacks field {exc}") from None


# Ring buffer event header: 5 bits type_len, 27 bits time_delta (kernel ring_buffer.c).
_PADDING, _TIME_EXTEND, _TIME_STAMP = 29, 30, 31
_COMMIT_MASK = (1 << 30) - 1  # high bits flag missed events (RB_MISSED_EVENTS/STORED)


def iter_page(page: bytes, layout: PageLayout = PageLayout()) -> Iterator[tuple[int, bytes]]:
    """(timestamp in trace-clock ns, record bytes) of every event in one raw page.

    Discarded events (rejected by an event filter after they were reserved) show
    as padding with a length and are skipped, as libtraceevent's kbuffer does.
    """
    if len(page) < layout.data_offset:
        return
    (ts,) = struct.unpack_from("<Q", page, layout.ts_offset)
    commit = int.from_bytes(
        page[layout.commit_offset : layout.commit_offset + layout.commit_size], "little"
    )
    end = min(len(page), layout.data_offset + (commit & _COMMIT_MASK))
    pos = layout.data_offset
    while pos + 4 <= end:
        (head,) = struct.unpack_from("<I", page, pos)
        type_len, delta = head & 0x1F, head >> 5
        if type_len == _PADDING:
            if delta == 0 or pos + 8 > end:
                return  # the rest of the page is empty
            (length,) = struct.unpack_from("<I", page, pos + 4)
            pos += 4 + length
            ts += delta
        elif type_len == _TIME_EXTEND:
            (hi,) = struct.unpack_from("<I", page, pos + 4)
            ts += (hi << 27) + delta
            pos += 8
        elif type_len == _TIME_STAMP:
            (hi,) = struct.unpack_from("<I", page, pos + 4)
            ts = (ts & ~((1 << 59) - 1)) | (hi << 27) | delta
            pos += 8
        elif type_len == 0:
            (length,) = struct.unpack_from("<I", page, pos + 4)
            ts += delta
            yield ts, page[pos + 8 : pos + 4 + length]
            pos += 4 + length
        else:
            ts += delta
            yield ts, page[pos + 4 : pos + 4 + type_len * 4]
            pos += 4 + type_len * 4


def parse_stats(text: str) -> dict[str, int]:
    """``per_cpu/cpuN/stats`` -> {'overrun': .., 'dropped events': .., ...} (integers only)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        with contextlib.suppress(ValueError):
            out[key.strip()] = int(value.strip())
    return out


# --------------------------------------------------------------------------- mounting


def _mounted_tracefs() -> Path | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "tracefs":
                return Path(parts[1].replace("\\040", " "))
    return None


def find_tracefs(*, mount: bool = True) -> tuple[Path, str | None]:
    """The tracefs root, and a one-line note when we had to mount it ourselves."""
    root = _mounted_tracefs()
    if root is not None:
        try:
            os.stat(root / "instances")
            return root, None
        except PermissionError:
            raise TracefsError(f"{root} is not readable: needs root") from None
        except OSError:
            pass  # mounted without instances (very old kernel) or a stale entry
    if not mount:
        raise TracefsError("tracefs is not mounted")
    if os.geteuid() != 0:
        raise TracefsError("tracefs is not mounted and mounting it needs root")
    proc = subprocess.run(
        ["mount", "-t", "tracefs", "nodev", str(TRACEFS)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if proc.returncode != 0 or not (TRACEFS / "instances").is_dir():
        raise TracefsError(f"cannot mount tracefs on {TRACEFS}: {proc.stderr.strip()}")
    return TRACEFS, f"mounted tracefs on {TRACEFS} (it was not mounted)"


# --------------------------------------------------------------------------- instance


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (in our pid namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_instances(root: Path) -> list[str]:
    """Remove ``instances/rstrace-<pid>`` left by dead processes; their names."""
    removed = []
    inst = root / "instances"
    with contextlib.suppress(OSError):
        for entry in inst.iterdir():
            m = re.fullmatch(re.escape(INSTANCE_PREFIX) + r"(\d+)", entry.name)
            if m and not pid_alive(int(m[1])):
                with contextlib.suppress(OSError):
                    (entry / "tracing_on").write_text("0")
                    entry.rmdir()
                    removed.append(entry.name)
    return removed


class Instance:
    """Our own ftrace instance ``instances/rstrace-<pid>``: created here, removed on close.

    Removal runs from :meth:`close`, from ``atexit`` and from a SIGTERM handler
    (installed only when nobody else handles SIGTERM), so Ctrl-C, a normal exit and
    a polite kill leave nothing behind; after SIGKILL the next run's
    :func:`remove_stale_instances` does it.
    """

    def __init__(self, root: Path, name: str | None = None) -> None:
        self.root = root
        self.name = name or f"{INSTANCE_PREFIX}{os.getpid()}"
        self.path = root / "instances" / self.name
        self._owner = os.getpid()
        self._fds: list[int] = []
        self._closed = False
        try:
            self.path.mkdir()
        except FileExistsError:
            # Our own pid's leftover (pid reuse after a crash): start afresh.
            self._rmdir()
            self.path.mkdir()
        except OSError as exc:
            raise TracefsError(f"cannot create {self.path}: {exc.strerror}") from None
        atexit.register(self.close)
        self._old_term = None
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            with contextlib.suppress(ValueError):  # not the main thread
                self._old_term = signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, signum: int, _frame: object) -> None:
        self.close()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def write(self, rel: str, value: str) -> None:
        """Write a control file of this instance (``trace_clock``, ``events/.../enable``)."""
        with open(self.path / rel, "w") as f:
            f.write(value)

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text()

    def cpus(self) -> list[int]:
        """CPU numbers that have a per-CPU buffer."""
        out = []
        for entry in (self.path / "per_cpu").iterdir():
            if entry.name.startswith("cpu") and entry.name[3:].isdigit():
                out.append(int(entry.name[3:]))
        return sorted(out)

    def open_raw(self) -> list[int]:
        """Non-blocking fds of every CPU's ``trace_pipe_raw`` (owned: closed by close())."""
        for cpu in self.cpus():
            path = self.path / f"per_cpu/cpu{cpu}/trace_pipe_raw"
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            self._fds.append(fd)
        return list(self._fds)

    def lost(self) -> int:
        """Events lost so far on all CPUs (overwritten before read + dropped when full)."""
        total = 0
        for cpu in self.cpus():
            with contextlib.suppress(OSError):
                st = parse_stats(self.read(f"per_cpu/cpu{cpu}/stats"))
                total += st.get("overrun", 0) + st.get("dropped events", 0)
        return total

    def _rmdir(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / "tracing_on").write_text("0")
        for attempt in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                # EBUSY while a reader still holds a pipe open; retry briefly.
                if exc.errno != errno.EBUSY or attempt == 49:
                    return
                os.sched_yield()

    def close(self) -> None:
        """Close our pipes and remove the instance (idempotent; only in the owning process)."""
        if self._closed or os.getpid() != self._owner:
            return
        self._closed = True
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        self._rmdir()
        atexit.unregister(self.close)
        if self._old_term is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._old_term)
