"""Record raw tracefs pages for tests/data/tracefs/6.18/pages (run as root, by hand).

    .venv/bin/python -m tests.record_tracefs

A process named ``rst-fixture`` makes one refused connect() to 127.0.0.1 and one to
::1 (a port with no listener), with the syscall events on; every page the CPUs
filled is saved as it came out of trace_pipe_raw, and a JSON file says what was done
(pid, ports), so the decoder test knows what it must find.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import time
from pathlib import Path

from rstrace.sources.kernel import KernelTrace

OUT = Path(__file__).parent / "data" / "tracefs" / "6.18" / "pages"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    ctypes.CDLL(None).prctl(15, b"rst-fixture", 0, 0, 0)  # PR_SET_NAME
    port = _free_port()
    done = []
    with KernelTrace(syscalls=True) as kt:
        for host, fam in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
            with socket.socket(fam) as s:
                try:
                    s.connect((host, port))
                except ConnectionRefusedError:
                    done.append({"daddr": host, "dport": port, "sport": s.getsockname()[1]})
        time.sleep(0.2)
        n = 0
        for cpu, fd in zip(kt.instance.cpus(), kt.fds, strict=True):
            while True:
                try:
                    page = os.read(fd, 4096)
                except BlockingIOError:
                    break
                if not page:
                    break
                (OUT / f"refused-cpu{cpu}-{n}.raw").write_bytes(page)
                n += 1
    meta = {"pid": os.getpid(), "comm": "rst-fixture", "connects": done}
    (OUT / "refused.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{n} pages, {meta}")


if __name__ == "__main__":
    main()
