"""`rstrace demo` replays the case study for real on this host's loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root


def test_demo_names_the_client_then_the_failures_stop() -> None:
    run = subprocess.run([sys.executable, "-m", "rstrace", "demo", "--json"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    broken, fixed = (json.loads(line) for line in run.stdout.splitlines())
    refused = [f for f in broken["findings"] if f["kind"] == "refused"
               and f["server"] == "127.0.0.1" and f["client_processes"]
               and f["client_processes"][0]["comm"] == "metrics-push"]  # fmt: skip
    assert refused, [(f["kind"], f["ports"], f["headline"]) for f in broken["findings"]]
    f = refused[0]
    port = f["ports"][0]
    assert 7211 <= port < 7261
    assert 1.0 <= f["rate"] <= 3.0  # twice a second
    assert f["listener"] is None and "nothing listens" in f["headline"]
    assert not [g for g in fixed["findings"] if g["server"] == "127.0.0.1" and port in g["ports"]]
    # Our helper processes are gone.
    pid = f["client_processes"][0]["pid"]
    assert not os.path.exists(f"/proc/{pid}") or _zombie_or_other(pid)


def _zombie_or_other(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip() != "metrics-push"
    except OSError:
        return True
