"""`rstrace sockets` against `ss`, with many sockets, in a lab namespace (root).

    sudo python3 bench/sockets_bench.py [--conns 1000,5000] [--runs 5]

For each count N: one process in a fresh namespace holds a listener and N established
loopback connections (both ends: 2N + 1 sockets). Then, inside that namespace, the
median wall time of
  * `ss -tan`   vs the sock_diag read alone (tcp_sockets(), in-process),
  * `ss -tanp`  vs tcp_sockets() + owners_by_inode() (the /proc/*/fd scan), in-process,
  * `ss -tanp`  vs the `rstrace sockets --all` command (Python start-up included),
and prints ratios (rstrace / ss). Bounded: N <= 20000, every step has a timeout; the
namespace and the holder process are removed in a `finally` (tests/netlab.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import netlab  # noqa: E402

HOLDER = r"""
import json, resource, socket, sys
n = json.loads(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * n + 100), hard))
lsn = socket.socket(); lsn.bind(("127.0.0.1", 7400)); lsn.listen(4096)
keep = []
for _ in range(n):
    keep.append(socket.create_connection(("127.0.0.1", 7400)))
    keep.append(lsn.accept()[0])
print("ready", len(keep), flush=True)
sys.stdin.readline()
"""

IN_PROCESS = r"""
import json, statistics, sys, time
from rstrace.sources.sockets import owners_by_inode, tcp_sockets
runs = json.loads(sys.argv[1])
diag, full, count, owned = [], [], 0, 0
for _ in range(runs):
    t = time.perf_counter(); socks = tcp_sockets(); diag.append(time.perf_counter() - t)
    t = time.perf_counter()
    socks = tcp_sockets(); who = owners_by_inode(inodes={s.inode for s in socks if s.inode})
    full.append(time.perf_counter() - t)
    count, owned = len(socks), len(who)
print(json.dumps({"diag": statistics.median(diag), "full": statistics.median(full),
                  "sockets": count, "owned": owned}))
"""


def _median_run(ns: str, argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        netlab.ns_run(ns, argv, timeout=120)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(n: int, runs: int) -> dict:
    with netlab.lab("single") as lb:
        holder = lb.spawn_python(lb.client, HOLDER, n)
        holder.expect("ready", timeout=120)
        ns = lb.client
        ss_tan = _median_run(ns, ["ss", "-tan"], runs)
        ss_tanp = _median_run(ns, ["ss", "-tanp"], runs)
        inproc = lb.python(ns, IN_PROCESS, runs, timeout=300)
        cli = _median_run(ns, [sys.executable, "-m", "rstrace", "sockets", "--all"], runs)
    return {"n": n, "ss_tan": ss_tan, "ss_tanp": ss_tanp, "cli": cli, **inproc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", default="1000,5000")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(f"{'conns':>6} {'sockets':>8} {'owned':>6} {'ss -tan':>8} {'diag':>8} {'ratio':>6}"
          f" {'ss -tanp':>9} {'diag+fd':>8} {'ratio':>6} {'cli':>7} {'ratio':>6}")  # fmt: skip
    for n in (int(x) for x in args.conns.split(",")):
        if not 0 < n <= 20000:
            raise SystemExit(f"--conns: {n} is outside 1..20000")
        r = bench(n, args.runs)
        print(
            f"{n:>6} {r['sockets']:>8} {r['owned']:>6} {r['ss_tan'] * 1e3:>6.1f}ms"
            f" {r['diag'] * 1e3:>6.1f}ms {r['diag'] / r['ss_tan']:>6.2f}"
            f" {r['ss_tanp'] * 1e3:>7.1f}ms {r['full'] * 1e3:>6.1f}ms"
            f" {r['full'] / r['ss_tanp']:>6.2f} {r['cli'] * 1e3:>5.0f}ms"
            f" {r['cli'] / r['ss_tanp']:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
