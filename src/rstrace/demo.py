"""`rstrace demo`: the case study, replayed on loopback, diagnosed, then fixed.

A client named `metrics-push` connects to 127.0.0.1:7211 twice a second while
nothing listens there (the case study's missing component). We diagnose a short
window, then start the missing listener (`metrics-sink`) and diagnose again: the
failures stop. Both processes are ours; they are ended by pid, and die with us
(PR_SET_PDEATHSIG) if we are killed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rstrace.investigate import Investigation

CLIENT_NAME = "metrics-push"
LISTENER_NAME = "metrics-sink"
FIRST_PORT = 7211

# Both helpers set their comm (what ps, the kernel's tracepoints and rstrace show)
# and ask to be killed when their parent dies, so a crash of ours leaves nothing.
_PRELUDE = r"""
import ctypes, signal, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, sys.argv[1].encode(), 0, 0, 0)      # PR_SET_NAME
libc.prctl(1, signal.SIGTERM, 0, 0, 0)             # PR_SET_PDEATHSIG
port, limit = int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + limit
"""

_CLIENT = (
    _PRELUDE
    + r"""
print("ready", flush=True)
while time.monotonic() < end:
    s = socket.socket()
    s.settimeout(1.0)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"cpu.load 0.42\n")
    except OSError:
        pass
    finally:
        s.close()
    time.sleep(0.5)
"""
)

_LISTENER = (
    _PRELUDE
    + r"""
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
srv.settimeout(0.2)
print("ready", flush=True)
while time.monotonic() < end:
    try:
        c, _ = srv.accept()
    except socket.timeout:
        continue
    c.settimeout(1.0)
    try:
        c.recv(4096)
    except OSError:
        pass
    c.close()
"""
)


def free_port(first: int = FIRST_PORT, tries: int = 50) -> int:
    """The first port from `first` on that nothing on 127.0.0.1 listens on or uses."""
    for port in range(first, first + tries):
        s = socket.socket()
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError(f"no free port in {first}-{first + tries - 1} on 127.0.0.1")


class Helper:
    """One of our demo processes; ended by pid."""

    def __init__(self, code: str, name: str, port: int, limit_s: float) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, name, str(port), str(limit_s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the demo's {name} process did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        if self.proc.stdout:
            self.proc.stdout.close()


def run_demo(
    say: Callable[[str], None],
    show: Callable[[Investigation], None],
    *,
    broken_s: float = 6.0,
    fixed_s: float = 4.0,
) -> tuple[Investigation, Investigation]:
    """Play the case study; return the two investigations (broken, fixed)."""
    from rstrace.investigate import investigate

    port = free_port()
    limit = broken_s + fixed_s + 30.0  # the helpers end by themselves after this
    say(
        f"1. Starting `{CLIENT_NAME}`, which connects to 127.0.0.1:{port} twice a second. "
        f"Nothing listens on {port}: the case study's missing component."
    )
    client = Helper(_CLIENT, CLIENT_NAME, port, limit)
    listener = None
    try:
        say(f"   (pid {client.pid}) Running `rstrace diagnose -i lo --duration {broken_s:.0f}`:")
        broken = investigate(broken_s, interfaces=["lo"])
        show(broken)
        say(f"2. Starting the missing listener `{LISTENER_NAME}` on 127.0.0.1:{port}.")
        listener = Helper(_LISTENER, LISTENER_NAME, port, limit)
        time.sleep(0.6)  # one connect of the client's cycle succeeds before we watch
        say(f"   (pid {listener.pid}) Running `rstrace diagnose -i lo --duration {fixed_s:.0f}`:")
        fixed = investigate(fixed_s, interfaces=["lo"])
        show(fixed)
    finally:
        client.stop()
        if listener is not None:
            listener.stop()
    before, after = _failures_to(broken, port), _failures_to(fixed, port)
    say(
        f"3. 127.0.0.1:{port}: {before} failed connections in the first window, {after} in "
        f"the second{': fixed' if before and not after else ''}. Demo processes ended."
    )
    return broken, fixed


def _failures_to(inv: Investigation, port: int) -> int:
    """Failed connections to 127.0.0.1:port in one investigation."""
    return sum(f.count for f in inv.findings if f.server == "127.0.0.1" and port in f.ports)
