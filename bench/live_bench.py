"""Live benchmark: `rstrace diagnose` under a bounded flood of refused connections.

In a network namespace of its own (nothing leaves it: loopback only), worker
processes named `rst-flood` connect to a closed port on 127.0.0.1 at a target
rate for a fixed time, while `rstrace diagnose --netns NS` and, for comparison,
`tcpdump -i lo` with the same control-packet filter run side by side. For each
rate it prints: the rate reached (AttemptFails delta inside the namespace / s),
packets the kernel dropped before libpcap read them, trace events lost, the CPU
share and peak RSS of diagnose and of tcpdump (and their ratio), and whether the
finding names `rst-flood` with a rate within 10 % of the AttemptFails delta.
Then the idle cost: (CPU of `diagnose --duration N` - CPU of `--duration 1`) /
(N - 1) s in an idle namespace.

Every flood is bounded in count and time; the namespace and every process we
started (by pid) are removed in a `finally`.

    sudo python3 bench/live_bench.py                      # 1k, 10k, 50k/s for 10 s each
    sudo python3 bench/live_bench.py --rates 1000 --seconds 5 --idle 10   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

PORT = 7399
ROOT = Path(__file__).resolve().parent.parent

FLOOD = r"""
import ctypes, socket, sys, time
PORT = int(sys.argv[4])
ctypes.CDLL(None).prctl(15, b"rst-flood", 0, 0, 0)
rate, count, limit = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
t0 = time.monotonic()
done = 0
while done < count and time.monotonic() - t0 < limit:
    # Pace in steps of 1 ms worth of connects; sleep off any lead.
    lead = done / rate - (time.monotonic() - t0)
    if lead > 0:
        time.sleep(lead)
    for _ in range(max(1, int(rate / 1000))):
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", PORT))
        except OSError:
            pass
        s.close()
        done += 1
print(done, flush=True)
"""

CONTROL_FILTER = (
    "(tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0) or (ip6 and ip6[6] == 6 and ip6[53] & 7 != 0)"
)


def ns_argv(ns: str, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", *argv]


def attempt_fails(ns: str) -> int:
    text = subprocess.run(ns_argv(ns, ["cat", "/proc/net/snmp"]), capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    lines = [ln.split() for ln in text.splitlines() if ln.startswith("Tcp:")]
    head, vals = lines[0], lines[1]
    return int(vals[head.index("AttemptFails")])


def timed(argv: list[str]) -> subprocess.Popen:
    """Start argv under GNU time (elapsed, user, sys, max RSS KB on the last stderr line)."""
    return subprocess.Popen(["/usr/bin/time", "-f", "TIME %e %U %S %M", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def time_line(stderr: str) -> tuple[float, float, int]:
    """(elapsed s, cpu s, max RSS MB) from the TIME line."""
    line = [ln for ln in stderr.splitlines() if ln.startswith("TIME ")][-1]
    e, u, s, m = line.split()[1:]
    return float(e), float(u) + float(s), int(m) // 1024


def wait_line(proc: subprocess.Popen, word: str, limit: float = 30.0) -> None:
    end = time.monotonic() + limit
    assert proc.stderr is not None
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if word in line:
            return
        if not line and proc.poll() is not None:
            break
    raise SystemExit(f"did not see {word!r} from {proc.args}")


def one_rate(ns: str, rate: int, seconds: float, workers: int) -> dict:
    before = attempt_fails(ns)
    diag = timed(ns_argv(ns, [sys.executable, "-m", "rstrace", "diagnose", "--json",
                              "--duration", str(seconds + 3), "-i", "lo"]))  # fmt: skip
    wait_line(diag, "watching")
    tcpd = timed(ns_argv(ns, ["tcpdump", "-i", "lo", "-n", "-q", "-B", "8192", "-w", "/dev/null",
                              "--immediate-mode", CONTROL_FILTER]))  # fmt: skip
    try:
        wait_line(tcpd, "listening on")
        return _flood_and_read(ns, rate, seconds, workers, before, diag, tcpd)
    finally:
        for p in (tcpd, diag):  # ours, by pid; both end by themselves on success
            if p.poll() is None:
                p.kill()
                p.wait()


def _flood_and_read(ns: str, rate: int, seconds: float, workers: int, before: int,
                    diag: subprocess.Popen, tcpd: subprocess.Popen) -> dict:  # fmt: skip
    per = rate / workers
    count = int(per * seconds)
    t0 = time.monotonic()
    argv = [sys.executable, "-c", FLOOD, str(per), str(count), str(seconds + 5), str(PORT)]
    floods = [subprocess.Popen(ns_argv(ns, argv), stdout=subprocess.PIPE, text=True)
              for _ in range(workers)]  # fmt: skip
    sent = 0
    for f in floods:
        out, _ = f.communicate(timeout=seconds + 30)
        sent += int(out.strip() or 0)
    flood_s = time.monotonic() - t0
    after = attempt_fails(ns)
    d_out, d_err = diag.communicate(timeout=seconds + 60)
    for child in psutil.Process(tcpd.pid).children():  # tcpdump under time: stop it
        child.send_signal(signal.SIGINT)
    _, t_err = tcpd.communicate(timeout=30)
    res = json.loads(d_out)
    d_el, d_cpu, d_rss = time_line(d_err)
    t_el, t_cpu, t_rss = time_line(t_err)
    fails = after - before
    hits = [f for f in res["findings"] if f["kind"] == "refused" and PORT in f["ports"]]
    f = hits[0] if hits else None
    named = bool(f and f["client_processes"] and f["client_processes"][0]["comm"] == "rst-flood")
    found = f["count"] if f else 0
    return {
        "target_rate": rate,
        "reached_rate": round(fails / flood_s),
        "connects": sent,
        "attempt_fails": fails,
        "finding_count": found,
        "finding_vs_attempt_fails": round(found / fails, 3) if fails else None,
        "names_process": named,
        "pcap_dropped": res["totals"]["packets_dropped"],
        "events_lost": res["totals"]["kernel_events_lost"],
        "diagnose_cpu_share": round(d_cpu / d_el, 3),
        "diagnose_rss_mb": d_rss,
        "tcpdump_cpu_share": round(t_cpu / t_el, 3),
        "tcpdump_rss_mb": t_rss,
        "cpu_ratio_vs_tcpdump": round((d_cpu / d_el) / max(t_cpu / t_el, 1e-3), 1),
    }


def idle_cost(ns: str, seconds: float) -> dict:
    cpu = {}
    for dur in (1.0, seconds):
        p = timed(ns_argv(ns, [sys.executable, "-m", "rstrace", "diagnose", "--json",
                               "--duration", str(dur)]))  # fmt: skip
        _, err = p.communicate(timeout=dur + 60)
        cpu[dur] = time_line(err)[1]
    share = (cpu[seconds] - cpu[1.0]) / (seconds - 1.0)
    return {"cpu_s_1": cpu[1.0], f"cpu_s_{seconds:g}": cpu[seconds],
            "idle_cpu_share": round(share, 4)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--idle", type=float, default=60.0, help="idle window (0: skip)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (namespaces, capture, tracefs)")
    ns = f"rstb-live-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rates": []}
    try:
        subprocess.run(ns_argv(ns, ["ip", "link", "set", "lo", "up"]), check=True)
        for rate in args.rates:
            r = one_rate(ns, rate, args.seconds, args.workers)
            results["rates"].append(r)
            print(json.dumps(r), flush=True)
        if args.idle:
            results["idle"] = idle_cost(ns, args.idle)
            print(json.dumps(results["idle"]), flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "live.bench.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
