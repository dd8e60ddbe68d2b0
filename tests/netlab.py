"""Small network lab for real-traffic tests: namespaces, veth pairs, tcpdump.

Everything here drives the real kernel: ``ip netns`` namespaces joined by veth
pairs, firewall rules and sysctls *inside those namespaces only*, and the real
``tcpdump``/``dumpcap`` to record what happens.  It needs root.

Safety rules enforced here (see the project brief):

* every namespace is called ``rsts-<random>-<role>``; commands that change
  state (sysctl, nft, iptables, ip) are only ever run through :func:`ns_run`,
  which refuses any namespace whose name does not start with ``rsts-``;
* the only addresses used are 127.0.0.0/8, ::1, 192.0.2.0/24,
  198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32, all living inside the
  namespaces created here;
* every process started is remembered by pid and ended by pid on exit; the
  namespaces are deleted in a ``finally`` even when the body raised.

It also holds a tiny stdlib pcap/pcapng reader (:func:`read_packets`) used by
the scenarios to measure the ground truth (TTLs, counts) from what was recorded.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import os
import queue
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

NS_PREFIX = "rsts-"

ALLOWED_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "::1/128",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "2001:db8::/32",
    )
)

#: Link-layer header type names as in ``tcpdump -L`` / manifest ``iface_linktype``.
LINKTYPE_NAMES = {1: "EN10MB", 101: "RAW", 113: "LINUX_SLL", 276: "LINUX_SLL2"}


def is_root() -> bool:
    """True when running with euid 0 (needed for namespaces and capture)."""
    return os.geteuid() == 0


_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
           "--bounding-set=-all"]  # fmt: skip
_nobody_python: list[str] | None = None


def as_nobody(argv: Sequence[str]) -> list[str]:
    """argv run as user nobody without capabilities (setpriv from util-linux).

    When argv[0] is this interpreter and nobody cannot import rstrace with it (the
    checkout or venv lives in root's home, mode 700, as on a fresh machine's
    /root/rstrace), the base interpreter runs instead, with a world-readable copy
    of this environment's site-packages on PYTHONPATH (made once, removed at exit).
    """
    argv = list(argv)
    if argv and argv[0] == sys.executable:
        argv = _python_for_nobody() + argv[1:]
    return [*_NOBODY, *argv]


def _python_for_nobody() -> list[str]:
    global _nobody_python
    if _nobody_python is not None:
        return _nobody_python
    probe = subprocess.run([*_NOBODY, sys.executable, "-c", "import rstrace, click, pcapy"],
                           capture_output=True, cwd="/", timeout=60, check=False)  # fmt: skip
    if probe.returncode == 0:
        _nobody_python = [sys.executable]
        return _nobody_python
    import atexit
    import site
    import sysconfig
    import tempfile

    copy = Path(tempfile.mkdtemp(prefix="rstrace-nobody-"))
    atexit.register(shutil.rmtree, copy, True)
    copy.chmod(0o755)
    dirs = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    for i, d in enumerate(dirs):
        if Path(d).is_dir():
            shutil.copytree(d, copy / str(i), symlinks=True)
    for p in copy.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    path = ":".join(str(copy / str(i)) for i in range(len(dirs)) if (copy / str(i)).is_dir())
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
    _nobody_python = ["env", f"PYTHONPATH={path}", base]
    return _nobody_python


def check_addr(addr: str) -> str:
    """Return *addr* if it is inside the lab's allowed ranges, else raise ValueError."""
    ip = ipaddress.ip_address(addr)
    if not any(ip in net for net in ALLOWED_NETS):
        raise ValueError(f"address {addr} is outside the lab ranges")
    return addr


def _check_ns(ns: str) -> str:
    if not ns.startswith(NS_PREFIX):
        raise ValueError(f"refusing to act on namespace {ns!r}: not ours ({NS_PREFIX}*)")
    return ns


# --------------------------------------------------------------------------- running


def ns_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs *argv* inside namespace *ns*.

    nsenter enters the network namespace only. `ip netns exec` also remounts /sys
    (which hides tracefs, and fails where / is not a mount point, e.g. in a chroot);
    nothing here needs /sys: sysctl's /proc/sys/net follows the caller's namespace.
    """
    return ["nsenter", f"--net=/run/netns/{_check_ns(ns)}", "--", *argv]


def ns_run(
    ns: str,
    argv: Sequence[str],
    *,
    input: str | None = None,
    timeout: float = 20.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command inside namespace *ns* and wait (bounded by *timeout*)."""
    proc = subprocess.run(
        ns_argv(ns, argv),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"[{ns}] {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc


def ns_python(ns: str, code: str, args: object = None, *, timeout: float = 30.0) -> dict:
    """Run a ``python3 -c`` snippet in *ns*; it gets ``json.dumps(args)`` as argv[1].

    The snippet must print one JSON object as its last stdout line; that object
    is returned.
    """
    proc = ns_run(ns, [sys.executable, "-c", code, json.dumps(args)], timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"[{ns}] snippet printed nothing; stderr: {proc.stderr}")
    return json.loads(lines[-1])


class Proc:
    """A background process started inside a namespace, read line by line.

    stdout lines are pushed to a queue by a reader thread so that
    :meth:`readline` can wait with a timeout.  stdin is a pipe: :meth:`send`
    writes one line (used to tell a server "go on").
    """

    def __init__(self, ns: str, argv: Sequence[str]) -> None:
        self.ns = ns
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            ns_argv(ns, argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.popen.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._t_out = threading.Thread(target=self._pump_out, daemon=True)
        self._t_err = threading.Thread(target=self._pump_err, daemon=True)
        self._t_out.start()
        self._t_err.start()

    def _pump_out(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _pump_err(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        """What the process wrote to stderr so far."""
        return "".join(self._stderr)

    def readline(self, timeout: float = 10.0) -> str:
        """Next stdout line; raises TimeoutError/EOFError (with stderr) otherwise."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"[{self.ns}] no output in {timeout}s: {self.stderr}") from None
        if line is None:
            self.popen.wait(timeout=5)
            raise EOFError(f"[{self.ns}] process ended ({self.popen.returncode}): {self.stderr}")
        return line

    def expect(self, word: str, timeout: float = 10.0) -> str:
        """Read lines until one starts with *word*; return it (bounded by *timeout*)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"[{self.ns}] never said {word!r}: {self.stderr}")
            line = self.readline(left)
            if line.startswith(word):
                return line

    def result(self, timeout: float = 10.0) -> dict:
        """Wait for the process to print its JSON result line and end."""
        line = self.expect("{", timeout)
        self.popen.wait(timeout=timeout)
        return json.loads(line)

    def send(self, line: str = "go") -> None:
        """Write one line to the process's stdin."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 3.0) -> None:
        """End this process (by its own pid only): *sig*, then SIGKILL if needed."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
                self.popen.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.popen.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=timeout)
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                with suppress(OSError):
                    stream.close()


# --------------------------------------------------------------------------- topology


@dataclass
class Lab:
    """Namespaces for one scenario, as created by :func:`lab`.

    ``topology`` is ``"single"`` (only ``client``; use its ``lo``),
    ``"direct"`` (client --veth-- server, both in 192.0.2.0/24 and
    2001:db8:1::/64) or ``"routed"`` (client --veth-- router --veth-- server;
    client side 192.0.2.0/24 / 2001:db8:1::/64, server side 198.51.100.0/24 /
    2001:db8:2::/64, forwarding on the router, default routes via it).
    """

    suffix: str
    topology: str
    ipv6: bool
    client: str
    server: str
    router: str | None = None
    client_if: str = "veth-c"
    server_if: str = "veth-s"
    router_client_if: str = "veth-rc"
    router_server_if: str = "veth-rs"
    client_ip: str = "127.0.0.1"
    server_ip: str = "127.0.0.1"
    client_ip6: str = "::1"
    server_ip6: str = "::1"
    router_client_ip: str | None = None
    router_server_ip: str | None = None
    procs: list[Proc] = field(default_factory=list)

    @property
    def namespaces(self) -> list[str]:
        """All namespaces of this lab (client first)."""
        names = [self.client]
        if self.router:
            names.append(self.router)
        if self.server != self.client:
            names.append(self.server)
        return names

    def run(self, ns: str, *argv: str, input: str | None = None) -> str:
        """Run a command in one of the lab's namespaces; return its stdout."""
        if ns not in self.namespaces:
            raise ValueError(f"{ns} is not part of this lab")
        return ns_run(ns, argv, input=input).stdout

    def sysctl(self, ns: str, key: str, value: str | int) -> None:
        """Set a sysctl inside a lab namespace (never the root namespace)."""
        self.run(ns, "sysctl", "-q", "-w", f"{key}={value}")

    def nft(self, ns: str, ruleset: str) -> None:
        """Load an nft ruleset (text) inside a lab namespace."""
        self.run(ns, "nft", "-f", "-", input=ruleset)

    def python(self, ns: str, code: str, args: object = None, timeout: float = 30.0) -> dict:
        """Run a snippet in *ns* (see :func:`ns_python`)."""
        if ns not in self.namespaces:
            raise ValueError(f"{ns} is not part of this lab")
        return ns_python(ns, code, args, timeout=timeout)

    def spawn(self, ns: str, argv: Sequence[str]) -> Proc:
        """Start a background process in *ns*; it is ended by pid at lab exit."""
        if ns not in self.namespaces:
            raise ValueError(f"{ns} is not part of this lab")
        proc = Proc(ns, argv)
        self.procs.append(proc)
        return proc

    def spawn_python(self, ns: str, code: str, args: object = None) -> Proc:
        """Start a ``python3 -c`` snippet in the background (argv[1] = JSON args)."""
        return self.spawn(ns, [sys.executable, "-u", "-c", code, json.dumps(args)])

    def netstat(self, ns: str) -> dict[str, int]:
        """The TcpExt counters of ``/proc/net/netstat`` as seen inside *ns*."""
        text = self.run(ns, "cat", "/proc/net/netstat")
        lines = text.splitlines()
        out: dict[str, int] = {}
        for head, vals in zip(lines[::2], lines[1::2], strict=False):
            names, values = head.split()[1:], vals.split()[1:]
            prefix = head.split(":")[0]
            if prefix != "TcpExt":
                continue
            out.update({n: int(v) for n, v in zip(names, values, strict=False)})
        return out


def _link_pair(a_ns: str, a_if: str, a_mac: str, b_ns: str, b_if: str, b_mac: str) -> None:
    subprocess.run(
        ["ip", "link", "add", a_if, "netns", _check_ns(a_ns), "address", a_mac, "type", "veth",
         "peer", "name", b_if, "netns", _check_ns(b_ns), "address", b_mac],
        check=True, capture_output=True, text=True, timeout=10,
    )  # fmt: skip


def _setup_if(lab: Lab, ns: str, ifname: str, v4: str, v6: str | None) -> None:
    lab.run(ns, "ip", "addr", "add", v4, "dev", ifname)
    if lab.ipv6 and v6:
        lab.run(ns, "ip", "-6", "addr", "add", v6, "dev", ifname, "nodad")
    # No offloads: what tcpdump sees is what is on the wire (no 64 KB GSO frames).
    lab.run(ns, "ethtool", "-K", ifname, "tso", "off", "gso", "off", "gro", "off")
    lab.run(ns, "ip", "link", "set", ifname, "up")


def _prepare_ns(lab: Lab, ns: str) -> None:
    subprocess.run(["ip", "netns", "add", _check_ns(ns)], check=True, capture_output=True,
                   timeout=10)  # fmt: skip
    if lab.ipv6:
        for key in ("all", "default"):
            lab.sysctl(ns, f"net.ipv6.conf.{key}.accept_dad", 0)
            lab.sysctl(ns, f"net.ipv6.conf.{key}.router_solicitations", 0)
    else:
        for key in ("all", "default"):
            lab.sysctl(ns, f"net.ipv6.conf.{key}.disable_ipv6", 1)
    lab.run(ns, "ip", "link", "set", "lo", "up")


def _delete_ns(ns: str) -> None:
    subprocess.run(["ip", "netns", "del", _check_ns(ns)], capture_output=True, timeout=10,
                   check=False)  # fmt: skip


@contextmanager
def lab(topology: str = "direct", *, ipv6: bool = False) -> Iterator[Lab]:
    """Create namespaces for one scenario; always delete them (and our processes).

    See :class:`Lab` for the three topologies and addresses.  Namespace names
    are ``rsts-<6 hex>-c`` / ``-r`` / ``-s``.
    """
    if topology not in ("single", "direct", "routed"):
        raise ValueError(topology)
    suffix = secrets.token_hex(3)
    client = f"{NS_PREFIX}{suffix}-c"
    server = client if topology == "single" else f"{NS_PREFIX}{suffix}-s"
    router = f"{NS_PREFIX}{suffix}-r" if topology == "routed" else None
    lb = Lab(suffix, topology, ipv6, client, server, router)
    created: list[str] = []
    try:
        for ns in lb.namespaces:
            created.append(ns)
            _prepare_ns(lb, ns)
        if topology == "direct":
            lb.client_ip, lb.server_ip = "192.0.2.10", "192.0.2.20"
            lb.client_ip6, lb.server_ip6 = "2001:db8:1::10", "2001:db8:1::20"
            _link_pair(client, lb.client_if, "02:00:00:00:00:10",
                       server, lb.server_if, "02:00:00:00:00:20")  # fmt: skip
            _setup_if(lb, client, lb.client_if, "192.0.2.10/24", "2001:db8:1::10/64")
            _setup_if(lb, server, lb.server_if, "192.0.2.20/24", "2001:db8:1::20/64")
        elif topology == "routed":
            assert router is not None
            lb.client_ip, lb.server_ip = "192.0.2.10", "198.51.100.20"
            lb.client_ip6, lb.server_ip6 = "2001:db8:1::10", "2001:db8:2::20"
            lb.router_client_ip, lb.router_server_ip = "192.0.2.1", "198.51.100.1"
            _link_pair(client, lb.client_if, "02:00:00:00:00:10",
                       router, lb.router_client_if, "02:00:00:00:00:01")  # fmt: skip
            _link_pair(router, lb.router_server_if, "02:00:00:00:01:01",
                       server, lb.server_if, "02:00:00:00:01:20")  # fmt: skip
            _setup_if(lb, client, lb.client_if, "192.0.2.10/24", "2001:db8:1::10/64")
            _setup_if(lb, router, lb.router_client_if, "192.0.2.1/24", "2001:db8:1::1/64")
            _setup_if(lb, router, lb.router_server_if, "198.51.100.1/24", "2001:db8:2::1/64")
            _setup_if(lb, server, lb.server_if, "198.51.100.20/24", "2001:db8:2::20/64")
            lb.sysctl(router, "net.ipv4.ip_forward", 1)
            lb.run(client, "ip", "route", "add", "default", "via", "192.0.2.1")
            lb.run(server, "ip", "route", "add", "default", "via", "198.51.100.1")
            if ipv6:
                lb.sysctl(router, "net.ipv6.conf.all.forwarding", 1)
                lb.run(client, "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1")
                lb.run(server, "ip", "-6", "route", "add", "default", "via", "2001:db8:2::1")
        yield lb
    finally:
        for proc in reversed(lb.procs):
            proc.stop()
        for ns in reversed(created):
            _delete_ns(ns)


# --------------------------------------------------------------------------- capture


@dataclass
class Capture:
    """Result of a recording: the file, the tool's own counts, its stderr."""

    path: Path
    iface: str
    packets: int | None = None
    dropped: int | None = None
    stderr: str = ""


def _wait_stopped(proc: Proc, timeout: float) -> None:
    try:
        proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.stop(signal.SIGKILL)


@contextmanager
def tcpdump(
    ns: str,
    iface: str,
    path: Path | str,
    *,
    snaplen: int | None = None,
    linktype: str | None = None,
    nano: bool = False,
    bpf: str | None = None,
    settle: float = 0.2,
    lab_: Lab | None = None,
) -> Iterator[Capture]:
    """Record *iface* in *ns* with ``tcpdump -w PATH -U`` for the body of the ``with``.

    Waits until tcpdump says ``listening on`` before yielding; on exit waits
    *settle* seconds for in-flight packets, sends SIGINT to tcpdump's own pid
    and waits for it to flush and end, so no packet is lost at the end.
    """
    path = Path(path)
    # --immediate-mode matters: with TPACKET_V3 (libpcap 1.10) packets still in an
    # unretired ring block when SIGINT arrives are lost ("4 received by filter,
    # 0 captured"); -U alone only flushes what tcpdump already got.
    argv = ["tcpdump", "-n", "-i", iface, "-w", str(path), "-U", "--immediate-mode"]
    argv += ["-Z", "root"]  # write the file as root, do not drop to user tcpdump
    if snaplen:
        argv += ["-s", str(snaplen)]
    if linktype:
        argv += ["-y", linktype]
    if nano:
        argv += ["--time-stamp-precision=nano"]
    if bpf:
        argv.append(bpf)
    proc = Proc(ns, argv)
    cap = Capture(path, iface)
    try:
        _wait_ready(proc, lambda: "listening on" in proc.stderr, "tcpdump", ns)
        yield cap
        time.sleep(settle)
    finally:
        cap.stderr = _interrupt(proc)
    for line in cap.stderr.splitlines():
        words = line.split()
        if len(words) >= 3 and words[1:3] == ["packets", "captured"]:
            cap.packets = int(words[0])
        if len(words) >= 5 and words[1:5] == ["packets", "dropped", "by", "kernel"]:
            cap.dropped = int(words[0])


def _wait_ready(proc: Proc, ready: Callable[[], bool], what: str, ns: str) -> None:
    deadline = time.monotonic() + 10
    while not ready():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start in {ns}: {proc.stderr}")
        time.sleep(0.02)


def _interrupt(proc: Proc) -> str:
    """Stop a recorder the way Ctrl-C does (it flushes and writes its stats); its stderr."""
    if proc.popen.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
    _wait_stopped(proc, 10)
    time.sleep(0.05)  # let the stderr reader finish
    proc.stop()
    return proc.stderr


@contextmanager
def dumpcap(ns: str, ifaces: Sequence[str], path: Path | str, *,
            settle: float = 0.3) -> Iterator[Capture]:  # fmt: skip
    """Record several interfaces into one pcapng with ``dumpcap -i A -i B -w PATH``."""
    path = Path(path)
    argv = ["dumpcap", "-q"]
    for iface in ifaces:
        argv += ["-i", iface]
    argv += ["-w", str(path)]
    proc = Proc(ns, argv)
    cap = Capture(path, ",".join(ifaces))
    try:
        # dumpcap -q prints nothing until the end: wait for the file and a header.
        _wait_ready(proc, lambda: path.exists() and path.stat().st_size > 0, "dumpcap", ns)
        time.sleep(0.5)
        yield cap
        time.sleep(settle)
    finally:
        cap.stderr = _interrupt(proc)


# --------------------------------------------------------------------------- reading


@dataclass
class Pkt:
    """One decoded packet (IPv4/IPv6 + TCP/ICMP), enough for ground-truth checks."""

    ts: float
    iface: int
    src: str
    dst: str
    proto: str  # "tcp", "icmp", "icmp6" or "other"
    ttl: int
    ipid: int = 0
    sport: int = 0
    dport: int = 0
    flags: str = ""  # tcpdump style: S, S., R, R., P., F., .
    seq: int = 0
    ack: int = 0
    win: int = 0
    plen: int = 0
    icmp_type: int = -1
    icmp_code: int = -1

    @property
    def rst(self) -> bool:
        """True for a TCP segment with RST set."""
        return "R" in self.flags

    @property
    def syn(self) -> bool:
        """True for a TCP segment with SYN set."""
        return "S" in self.flags


def _tcp_flags(b: int) -> str:
    out = "".join(ch for bit, ch in ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"))
                  if b & bit)  # fmt: skip
    return out + ("." if b & 0x10 else "") if out or b & 0x10 else "none"


def _decode_ip(data: bytes, ts: float, iface: int) -> Pkt | None:
    if not data:
        return None
    ver = data[0] >> 4
    if ver == 4 and len(data) >= 20:
        ihl = (data[0] & 0xF) * 4
        total = struct.unpack("!H", data[2:4])[0]
        ipid = struct.unpack("!H", data[4:6])[0]
        ttl, proto = data[8], data[9]
        src = str(ipaddress.IPv4Address(data[12:16]))
        dst = str(ipaddress.IPv4Address(data[16:20]))
        l4, l4len, pname = data[ihl:], total - ihl, {6: "tcp", 1: "icmp"}.get(proto, "other")
    elif ver == 6 and len(data) >= 40:
        plen_, nxt, ttl = struct.unpack("!HBB", data[4:8])
        src = str(ipaddress.IPv6Address(data[8:24]))
        dst = str(ipaddress.IPv6Address(data[24:40]))
        ipid = 0
        l4, l4len, pname = data[40:], plen_, {6: "tcp", 58: "icmp6"}.get(nxt, "other")
    else:
        return None
    pkt = Pkt(ts, iface, src, dst, pname, ttl, ipid)
    if pname == "tcp" and len(l4) >= 20:
        sport, dport, seq, ack, off, fl, win = struct.unpack("!HHIIBBH", l4[:16])
        pkt.sport, pkt.dport, pkt.seq, pkt.ack, pkt.win = sport, dport, seq, ack, win
        pkt.flags = _tcp_flags(fl)
        pkt.plen = l4len - (off >> 4) * 4
    elif pname in ("icmp", "icmp6") and len(l4) >= 2:
        pkt.icmp_type, pkt.icmp_code = l4[0], l4[1]
    return pkt


def _strip_link(linktype: int, frame: bytes) -> bytes | None:
    if linktype == 1:  # Ethernet, maybe one 802.1Q tag
        off, etype = 14, struct.unpack("!H", frame[12:14])[0]
        if etype == 0x8100:
            off, etype = 18, struct.unpack("!H", frame[16:18])[0]
    elif linktype == 113:  # Linux cooked v1
        off, etype = 16, struct.unpack("!H", frame[14:16])[0]
    elif linktype == 276:  # Linux cooked v2
        off, etype = 20, struct.unpack("!H", frame[0:2])[0]
    elif linktype in (101, 12, 228, 229):
        return frame
    else:
        return None
    return frame[off:] if etype in (0x0800, 0x86DD) else None


def read_packets(path: Path | str) -> tuple[list[int], list[Pkt]]:
    """Decode a pcap (µs/ns, optionally gzip) or pcapng file.

    Returns (link types per interface, packets).  Only IPv4/IPv6 packets are
    returned; ARP, ND-free ICMPv6 etc. are kept, other ethertypes skipped.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    pkts: list[Pkt] = []
    magic = raw[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(raw)
    for endian in ("<", ">"):
        m = struct.unpack(endian + "I", magic)[0]
        if m in (0xA1B2C3D4, 0xA1B23C4D):
            break
    else:
        raise ValueError(f"{path}: not a pcap file")
    div = 1e9 if m == 0xA1B23C4D else 1e6
    linktype = struct.unpack(endian + "I", raw[20:24])[0] & 0x0FFFFFFF
    pos = 24
    while pos + 16 <= len(raw):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", raw[pos : pos + 16])
        frame = raw[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        ip = _strip_link(linktype, frame)
        pkt = _decode_ip(ip, sec + frac / div, 0) if ip is not None else None
        if pkt:
            pkts.append(pkt)
    return [linktype], pkts


def _read_pcapng(raw: bytes) -> tuple[list[int], list[Pkt]]:
    pos, endian = 0, "<"
    links: list[int] = []
    pkts: list[Pkt] = []
    while pos + 12 <= len(raw):
        btype = struct.unpack(endian + "I", raw[pos : pos + 4])[0]
        if btype == 0x0A0D0D0A:
            endian = "<" if raw[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        blen = struct.unpack(endian + "I", raw[pos + 4 : pos + 8])[0]
        body = raw[pos + 8 : pos + blen - 4]
        if btype == 1:
            links.append(struct.unpack(endian + "H", body[:2])[0])
        elif btype == 6:
            iface, hi, lo, incl = struct.unpack(endian + "IIII", body[:16])
            frame = body[20 : 20 + incl]
            ip = _strip_link(links[iface], frame)
            pkt = _decode_ip(ip, ((hi << 32) | lo) / 1e6, iface) if ip is not None else None
            if pkt:
                pkts.append(pkt)
        pos += blen
    return links, pkts


def pcapng_interfaces(path: Path | str) -> list[dict]:
    """Interface Description Blocks of a pcapng file: link type and if_name."""
    raw = Path(path).read_bytes()
    pos, endian = 0, "<"
    out: list[dict] = []
    while pos + 12 <= len(raw):
        btype = struct.unpack(endian + "I", raw[pos : pos + 4])[0]
        if btype == 0x0A0D0D0A:
            endian = "<" if raw[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        blen = struct.unpack(endian + "I", raw[pos + 4 : pos + 8])[0]
        if btype == 1:
            body = raw[pos + 8 : pos + blen - 4]
            info: dict = {"linktype": struct.unpack(endian + "H", body[:2])[0]}
            opos = 8
            while opos + 4 <= len(body):
                code, olen = struct.unpack(endian + "HH", body[opos : opos + 4])
                if code == 0:
                    break
                if code == 2:
                    info["name"] = body[opos + 4 : opos + 4 + olen].decode()
                opos += 4 + ((olen + 3) & ~3)
            out.append(info)
        pos += blen
    return out
