"""`rstrace diagnose --json` run in the background inside a namespace, for live tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Diagnose:
    """`rstrace diagnose` running in the background inside a namespace."""

    def __init__(self, ns: str, duration: float = 30.0, *extra: str) -> None:
        argv = [sys.executable, "-m", "rstrace", "diagnose", "--netns", ns, "--json",
                "--duration", str(duration), *extra]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)  # fmt: skip
        self.stderr_head = ""
        end = time.monotonic() + 30
        assert self.proc.stderr is not None
        while time.monotonic() < end:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.stderr_head += line
            if "watching" in line:
                return
        self.proc.kill()
        _, err = self.proc.communicate(timeout=10)
        raise AssertionError(f"diagnose did not start: {self.stderr_head}{err}")

    def result(self, stop: bool = True) -> dict:
        """End the window (SIGINT, like Ctrl-C) and return the JSON it printed."""
        if stop:
            time.sleep(0.3)  # let the last packets reach the capture
            self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, self.stderr_head + err
        return json.loads(out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


@contextmanager
def watching(ns: str, results: list[dict]) -> Iterator[None]:
    """Run diagnose in *ns* around the block; append its JSON to *results*."""
    d = Diagnose(ns)
    try:
        yield
        results.append(d.result())
    finally:
        d.kill()
