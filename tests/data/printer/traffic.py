#!/usr/bin/env python3
"""Real loopback traffic for capture_real.sh (stdlib only; run as: traffic.py SCENARIO).

Only 127.0.0.1 and ::1, or the 192.0.2.1 / 2001:db8::1 addresses that
capture_real.sh gives a private rstp- namespace.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time


def serve(fam: int, addr: str, port: int, reply: bytes | None, linger0: bool = False) -> None:
    """Accept one connection in a thread; echo/answer once, then close."""
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        data = conn.recv(4096)
        if reply is not None:
            conn.sendall(reply if reply else data)
        if linger0:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.05)
        conn.close()
        srv.close()

    threading.Thread(target=run, daemon=True).start()


def try_connect(fam: int, addr: str, port: int) -> None:
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect((addr, port))
    except OSError as e:
        print(f"{addr}:{port}: {e}", file=sys.stderr)
    finally:
        s.close()


def session(fam: int, addr: str, port: int, payload: bytes, reply: bytes = b"",
            linger0_client: bool = False, linger0_server: bool = False) -> None:
    serve(fam, addr, port, reply, linger0_server)
    time.sleep(0.05)
    c = socket.socket(fam, socket.SOCK_STREAM)
    c.connect((addr, port))
    c.sendall(payload)
    if linger0_client:
        time.sleep(0.05)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        return
    c.recv(4096)
    time.sleep(0.1)
    c.close()
    time.sleep(0.1)


def main(what: str) -> None:
    v4, v6 = socket.AF_INET, socket.AF_INET6
    if what == "refused":
        try_connect(v4, "127.0.0.1", 7211)
        try_connect(v6, "::1", 7211)
    elif what == "session":
        session(v4, "127.0.0.1", 7212, b"hello\n")
        session(v6, "::1", 7212, b"hello over v6\n")
    elif what == "linger":
        session(v4, "127.0.0.1", 7213, b"bye", linger0_client=True)
        session(v6, "::1", 7213, b"bye", linger0_client=True)
        session(v4, "127.0.0.1", 7213, b"x", reply=b"", linger0_server=True)
    elif what == "http":
        rsp = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
        session(v4, "127.0.0.1", 8080, b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n", reply=rsp)
    elif what == "reject":
        for port in range(7301, 7308):
            try_connect(v4, "192.0.2.1", port)
        for port in range(7301, 7306):
            try_connect(v6, "2001:db8::1", port)
    else:
        raise SystemExit(f"unknown scenario {what}")
    time.sleep(0.2)


if __name__ == "__main__":
    main(sys.argv[1])
