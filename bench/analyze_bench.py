"""Benchmark `rstrace analyze` against tcpdump reading the same capture, in the same run.

    python3 bench/analyze_bench.py                # bench/out/big.pcap (build it first)
    python3 bench/analyze_bench.py --quick        # bench/out/quick.pcap, ~50 MB, ~1 minute
    python3 bench/analyze_bench.py --capture F    # any Ethernet pcap
    python3 bench/analyze_bench.py --control      # also bench/out/control.pcap (control packets)

Absolute times are noise on a shared machine; only ratios measured in the same run count.
Runs are paired A B A B ...: A is rstrace, B is tcpdump with a BPF filter passing the same
control packets (SYN/FIN/RST, IPv4 and IPv6), each pair gives one ratio A/B; we report
the median, min and max of the ratios, and the peak RSS of every child (wait4 rusage).

Paths:
  findings   rstrace analyze --json FILE >/dev/null          target <= 1.7x, RSS < 150 MB
  zeek-json  rstrace analyze --format zeek-json FILE >/dev/null   target <= 5x
  tshark     tshark -q -z conv,tcp -r FILE (reference only, one or two runs)
  control    rstrace analyze --json CONTROL >/dev/null, B = the same tcpdump filter on
             a capture dominated by control packets (bench/make_control_capture.py:
             >= 2.5 M packets, >= 1 M 4-tuples)       target <= 5x, RSS < 150 MB
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from pcapstats import PcapStats  # noqa: E402

TCPDUMP_FILTER = (
    "(tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0) or (ip6 and ip6[6] == 6 and ip6[53] & 7 != 0)"
)
TARGETS = {"findings": (1.7, 150.0), "zeek-json": (5.0, None), "control": (5.0, 150.0)}


@dataclass
class Run:
    wall_s: float
    maxrss_mb: float
    rc: int
    stderr: str


@dataclass
class PathResult:
    name: str
    cmd: list[str]
    runs: list[Run] = field(default_factory=list)
    ref_runs: list[Run] = field(default_factory=list)
    error: str | None = None

    @property
    def ratios(self) -> list[float]:
        return [a.wall_s / b.wall_s for a, b in zip(self.runs, self.ref_runs, strict=False)]

    def as_dict(self) -> dict[str, object]:
        r = self.ratios
        return {
            "name": self.name,
            "cmd": " ".join(self.cmd),
            "error": self.error,
            "ratio_median": round(statistics.median(r), 3) if r else None,
            "ratio_min": round(min(r), 3) if r else None,
            "ratio_max": round(max(r), 3) if r else None,
            "wall_s": [round(x.wall_s, 3) for x in self.runs],
            "ref_wall_s": [round(x.wall_s, 3) for x in self.ref_runs],
            "peak_rss_mb": round(max(x.maxrss_mb for x in self.runs), 1) if self.runs else None,
            "ref_peak_rss_mb": (
                round(max(x.maxrss_mb for x in self.ref_runs), 1) if self.ref_runs else None
            ),
        }


GNU_TIME = "/usr/bin/time"


def run_child(cmd: list[str], stdout_path: str | None = None) -> Run:
    """Run cmd with stdout to /dev/null (or a file); wall time and the command's peak RSS.

    A child's ru_maxrss includes the memory it had before exec, i.e. this (larger) Python
    parent's: so the command runs under GNU time, whose own small process forks it, and
    %M is the command's true peak RSS. Both A and B pay the same ~1 ms for that.
    """
    use_time = os.access(GNU_TIME, os.X_OK)
    with (
        open(stdout_path or os.devnull, "wb") as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".rss") as rss,
    ):
        full = [GNU_TIME, "-f", "%M", "-o", rss.name, *cmd] if use_time else cmd
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
        maxrss_kb = float(ru.ru_maxrss)
        if use_time:
            lines = [ln for ln in rss.read().splitlines() if ln.strip().isdigit()]
            if lines:
                maxrss_kb = float(lines[-1])
    return Run(wall, maxrss_kb / 1024.0, p.returncode, text)


def warm_page_cache(path: str) -> float:
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass
    return time.perf_counter() - t0


def paired(name: str, cmd: list[str], ref: list[str], pairs: int) -> PathResult:
    res = PathResult(name, cmd)
    for i in range(pairs):
        a = run_child(cmd)
        if a.rc != 0:
            res.error = f"exit {a.rc}: {a.stderr.strip().splitlines()[-1:] or ''}"
            print(f"  {name}: FAILED ({res.error})", flush=True)
            return res
        b = run_child(ref)
        if b.rc != 0:
            raise SystemExit(f"tcpdump failed (exit {b.rc}): {b.stderr.strip()}")
        res.runs.append(a)
        res.ref_runs.append(b)
        print(
            f"  {name} pair {i + 1}/{pairs}: rstrace {a.wall_s:.3f} s ({a.maxrss_mb:.0f} MB), "
            f"tcpdump {b.wall_s:.3f} s ({b.maxrss_mb:.0f} MB), ratio {a.wall_s / b.wall_s:.2f}",
            flush=True,
        )
    return res


def rstrace_cmd() -> list[str]:
    exe = shutil.which("rstrace")
    if exe is None:
        raise SystemExit("rstrace is not on PATH (pip install -e .)")
    return [exe]


def ensure_quick_capture(path: str, size_mb: float) -> None:
    if os.path.exists(path):
        return
    print(f"building {path} ({size_mb:g} MB) with make_capture.py ...", flush=True)
    subprocess.run(
        [sys.executable, str(BENCH / "make_capture.py"), "--size-mb", str(size_mb), "--out", path],
        check=True,
    )


def git_rev() -> str:
    """Last commit that touched src/, +dirty when src/ has uncommitted changes."""
    root = BENCH.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h", "--", "src"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def fmt_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--capture", help="pcap to read (default bench/out/big.pcap)")
    ap.add_argument("--quick", action="store_true", help="small capture (built if missing)")
    ap.add_argument("--quick-size-mb", type=float, default=50.0)
    ap.add_argument("--pairs", type=int, default=5, help="A/B pairs per path (default 5)")
    ap.add_argument("--tshark-runs", type=int, default=None, help="default 1 (2 with --quick)")
    ap.add_argument(
        "--skip", action="append", default=[], choices=["findings", "zeek-json", "tshark"]
    )
    ap.add_argument("--json-out", help="write the results as JSON here")
    ap.add_argument(
        "--control",
        action="store_true",
        help="also bench the findings path on the control-dominated capture",
    )
    ap.add_argument("--control-capture", help="default bench/out/control.pcap")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the rstrace runs (e.g. a switch to another code path)",
    )
    a = ap.parse_args()
    for kv in a.env:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            ap.error(f"--env wants KEY=VALUE, not {kv!r}")
        os.environ[key] = value  # inherited by every child; tcpdump ignores it
    if a.pairs < 1 or a.pairs > 50:
        ap.error("--pairs must be within 1..50")
    if a.quick:
        cap = a.capture or str(BENCH / "out" / "quick.pcap")
        ensure_quick_capture(cap, a.quick_size_mb)
    else:
        cap = a.capture or str(BENCH / "out" / "big.pcap")
    if not os.path.exists(cap):
        raise SystemExit(f"{cap} does not exist: build it with python3 bench/make_capture.py")
    tshark_runs = a.tshark_runs if a.tshark_runs is not None else (2 if a.quick else 1)

    # In a child: mapping the capture would count in this process's RSS, and a child's
    # rusage starts from its parent's.
    st = PcapStats(**json.loads(subprocess.run(
        [sys.executable, str(BENCH / "pcapstats.py"), "--json", cap],
        check=True, capture_output=True, text=True,
    ).stdout))  # fmt: skip
    print(st.summary(), flush=True)
    warm = warm_page_cache(cap)
    print(f"warm-up read: {warm:.2f} s ({st.bytes / warm / 1e6:.0f} MB/s)", flush=True)

    rs = rstrace_cmd()
    tcpdump = ["tcpdump", "-n", "-r", cap, "-w", "/dev/null", TCPDUMP_FILTER]
    results: list[PathResult] = []
    extra: dict[str, object] = {}

    # Warm-up run (not measured): compiles .pyc files, and its output gives the counts.
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out_path = tmp.name
    try:
        w = run_child([*rs, "analyze", "--json", cap], stdout_path=out_path)
        if w.rc == 0:
            doc = json.loads(Path(out_path).read_text())
            extra["rstrace_json_keys"] = sorted(doc)[:20]
            for k in ("totals", "summary", "read"):
                if isinstance(doc.get(k), dict):
                    extra[f"rstrace_{k}"] = doc[k]
            print(f"warm-up rstrace --json: {w.wall_s:.2f} s, {w.maxrss_mb:.0f} MB", flush=True)
            if isinstance(doc.get("totals"), dict):
                print(f"  rstrace totals: {json.dumps(doc['totals'])}", flush=True)
        else:
            print(f"warm-up rstrace --json failed: {w.stderr.strip()[-300:]}", flush=True)
    finally:
        os.unlink(out_path)

    if "findings" not in a.skip:
        print("findings path (A = rstrace analyze --json, B = tcpdump filter):", flush=True)
        results.append(paired("findings", [*rs, "analyze", "--json", cap], tcpdump, a.pairs))
    if "zeek-json" not in a.skip:
        print("zeek-json path (A = rstrace analyze --format zeek-json, B = tcpdump):", flush=True)
        zcmd = [*rs, "analyze", "--format", "zeek-json", cap]
        results.append(paired("zeek-json", zcmd, tcpdump, a.pairs))
    ctl_stats: PcapStats | None = None
    if a.control:
        ctl = a.control_capture or str(BENCH / "out" / "control.pcap")
        if not os.path.exists(ctl):
            raise SystemExit(f"{ctl} does not exist: build it with "
                             "python3 bench/make_control_capture.py")  # fmt: skip
        ctl_stats = PcapStats(**json.loads(subprocess.run(
            [sys.executable, str(BENCH / "pcapstats.py"), "--json", ctl],
            check=True, capture_output=True, text=True,
        ).stdout))  # fmt: skip
        print(ctl_stats.summary(), flush=True)
        warm_page_cache(ctl)
        run_child([*rs, "analyze", "--json", ctl])  # warm-up, not measured
        print("control path (A = rstrace analyze --json, B = tcpdump filter):", flush=True)
        ctl_dump = ["tcpdump", "-n", "-r", ctl, "-w", "/dev/null", TCPDUMP_FILTER]
        results.append(paired("control", [*rs, "analyze", "--json", ctl], ctl_dump, a.pairs))
    tshark: PathResult | None = None
    if "tshark" not in a.skip and tshark_runs > 0 and shutil.which("tshark"):
        tshark = PathResult("tshark conv,tcp", ["tshark", "-q", "-z", "conv,tcp", "-r", cap])
        print(f"tshark reference ({tshark_runs} run(s), each paired with tcpdump):", flush=True)
        for _ in range(tshark_runs):
            tr = run_child(tshark.cmd)
            tb = run_child(tcpdump)
            tshark.runs.append(tr)
            tshark.ref_runs.append(tb)
            print(f"  tshark {tr.wall_s:.2f} s ({tr.maxrss_mb:.0f} MB), tcpdump {tb.wall_s:.3f} s")
        results.append(tshark)

    rows = [["path", "pairs", "ratio med", "min", "max", "A med s", "B med s", "peak RSS MB",
             "target", "result"]]  # fmt: skip
    for r in results:
        d = r.as_dict()
        tgt = TARGETS.get(r.name)
        if r.error or not r.runs:
            rows.append([r.name, "0", "-", "-", "-", "-", "-", "-", "-", f"ERROR {r.error}"])
            continue
        ok = True
        target = "reference"
        if tgt is not None:
            ok = d["ratio_median"] <= tgt[0]  # type: ignore[operator]
            target = f"<= {tgt[0]}x"
            if tgt[1] is not None:
                ok = ok and d["peak_rss_mb"] < tgt[1]  # type: ignore[operator]
                target += f", RSS < {tgt[1]:.0f} MB"
        rows.append(
            [
                r.name,
                str(len(r.runs)),
                f"{d['ratio_median']:.2f}x",
                f"{d['ratio_min']:.2f}x",
                f"{d['ratio_max']:.2f}x",
                f"{statistics.median(x.wall_s for x in r.runs):.3f}",
                f"{statistics.median(x.wall_s for x in r.ref_runs):.3f}",
                f"{d['peak_rss_mb']:.0f}",
                target,
                ("PASS" if ok else "FAIL") if tgt else "-",
            ]
        )
    report_rev = git_rev()
    tcpdump_rss = max((x.maxrss_mb for r in results for x in r.ref_runs), default=0.0)
    print()
    print(
        f"capture {cap}: {st.bytes / 1e6:.0f} MB, {st.packets} packets, {st.tuples} TCP 4-tuples, "
        f"SYN/FIN/RST {st.control_share * 100:.1f} % ({st.control} packets), "
        f"IPv6 {st.ipv6_share * 100:.1f} %"
    )
    if ctl_stats is not None:
        print(
            f"control capture {ctl_stats.path}: {ctl_stats.bytes / 1e6:.0f} MB, "
            f"{ctl_stats.packets} packets, {ctl_stats.tuples} TCP 4-tuples, SYN/FIN/RST "
            f"{ctl_stats.control_share * 100:.1f} %"
        )
    print(f"B = {' '.join(tcpdump[:-1])} '<filter>' (peak RSS {tcpdump_rss:.0f} MB)")
    load = os.getloadavg()[0]
    env = f", env {' '.join(a.env)}" if a.env else ""
    print(f"rstrace src@{report_rev}{env}, {dt.date.today().isoformat()}, load avg {load:.2f}")
    if a.quick:
        print("(quick: a 50 MB capture is dominated by interpreter startup; the targets are")
        print(" meant for the ~1 GB capture, so read these ratios as a smoke test only)")
    print(fmt_table(rows))
    report = {
        "date": dt.date.today().isoformat(),
        "env": a.env,
        "rstrace_rev": report_rev,
        "load_avg_after": os.getloadavg(),
        "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "capture": st.as_dict(),
        "control_capture": ctl_stats.as_dict() if ctl_stats is not None else None,
        "pairs": a.pairs,
        "results": [r.as_dict() for r in results],
        "rstrace_output": extra,
    }
    json_out = a.json_out or str(Path(cap).with_suffix(".bench.json"))
    Path(json_out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"results: {json_out}")
    failed = any(r.error for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
