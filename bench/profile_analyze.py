"""Where does `rstrace analyze` spend its time? Startup, libpcap, decode, tracker, rules.

    python3 bench/profile_analyze.py [--capture bench/out/big.pcap] [--runs 3]

Three views, each in fresh child processes:
  1. startup: `python -c pass`, the imports of the analyze path, `-X importtime` top list;
  2. stages, timed without a profiler (best of --runs: the least disturbed run on a
     shared machine; the collector tuned as analyze_files() does), each adding one layer:
       libpcap   pcapy open_offline + BPF prefilter + next_batch loop (C only)
       read      CaptureReader.batches(): the above + Python decode into records
       track     + ConnectionTable.feed/flush
       analyze   analyze_files(): + Diagnoser rules and findings (or, when it applies,
                 whatever faster path analyze_files() itself takes: then the first
                 three stages describe the reference pipeline only)
       cli       `rstrace analyze --json FILE >/dev/null` (+ startup, imports, JSON render)
     for mode "control" (the --json findings path) and "all" (the zeek-json path);
  3. cProfile of the CLI on the findings path: top functions and time per component.
Only bench/ is touched: rstrace is imported, never changed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
PY = sys.executable

from analyze_bench import TCPDUMP_FILTER  # noqa: E402

ANALYZE_IMPORTS = (
    "import rstrace.cli, rstrace.analyze, rstrace.render.zeek, rstrace.sources.capfile"
)

# One child per stage: imports first (not timed), then the stage, printed as JSON.
STAGE_CODE = r"""
import json, sys, time
stage, path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
import pcapy
from rstrace.sources.capfile import CaptureReader
from rstrace.sources.bpf import all_tcp_filter, control_filter
from rstrace.track import ConnectionTable
from rstrace.analyze import analyze_files
import gc
gc.set_threshold(200_000, 50, 100)  # as analyze_files() does while reading
n = 0
t0 = time.perf_counter()
if stage == "libpcap":
    h = pcapy.open_offline(path)
    lt = h.datalink()
    h.setfilter(control_filter(lt) if mode == "control" else all_tcp_filter(lt))
    while True:
        pkts, meta = h.next_batch(4096)
        if not meta:
            break
        n += len(meta) // 16
elif stage == "read":
    for batch in CaptureReader([path], mode=mode).batches():
        n += len(batch)
elif stage == "track":
    table = ConnectionTable()
    for batch in CaptureReader([path], mode=mode).batches():
        n += len(batch)
        table.feed(batch)
    table.flush()
elif stage == "analyze":
    res = analyze_files([path], mode=mode)
    n = res.connections
dt = time.perf_counter() - t0
import resource
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"s": dt, "n": n, "rss_mb": rss}))
"""

PROFILE_CODE = r"""
import cProfile, os, sys
prof_out, path = sys.argv[1], sys.argv[2:]
sys.argv = ["rstrace", "analyze", *path]
sys.stdout = open(os.devnull, "w")
pr = cProfile.Profile()
pr.enable()
from rstrace.cli import main
try:
    main()
except SystemExit:
    pass
pr.disable()
pr.dump_stats(prof_out)
"""

COMPONENTS = (
    ("libpcap+BPF (C, next_batch)", ("next_batch", "open_offline", "setfilter", "pcapy")),
    (
        "vectorized fast path (fastpath.py, sources/columns.py)",
        ("rstrace/fastpath.py", "sources/columns.py"),
    ),
    ("numpy", ("numpy/", "<method 'argsort'", "numpy.")),
    ("decode (sources/decode.py)", ("sources/decode.py",)),
    ("read loop (sources/capfile.py)", ("sources/capfile.py", "sources/blockreader.py")),
    ("tracker (track.py)", ("rstrace/track.py",)),
    ("rules (diagnose.py, explain.py)", ("rstrace/diagnose.py", "rstrace/explain.py")),
    ("render (render/*)", ("rstrace/render/",)),
    ("records (model.py, dataclass __init__)", ("rstrace/model.py", "<string>")),
    ("imports (importlib, marshal)", ("<frozen importlib", "marshal", "<built-in method _imp")),
    ("click / cli", ("click/", "rstrace/cli.py")),
)


def wall(cmd: list[str], runs: int) -> float:
    """Best wall time of cmd over runs; NaN (and a note) when it fails."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - t0)
        if p.returncode != 0:
            print(f"  {' '.join(cmd[:3])}...: exit {p.returncode}: {p.stderr.strip()[-200:]}")
            return float("nan")
    return min(times)


def startup(runs: int) -> dict[str, object]:
    rs = shutil.which("rstrace") or "rstrace"
    out: dict[str, object] = {
        "python -c pass": wall([PY, "-c", "pass"], runs),
        "python -c 'import rstrace.cli'": wall([PY, "-c", "import rstrace.cli"], runs),
        "python -c '<analyze-path imports>'": wall([PY, "-c", ANALYZE_IMPORTS], runs),
        "rstrace --version": wall([rs, "--version"], runs),
    }
    # Optional modules the analyze path may import lazily (if present in this tree).
    for mod in ("numpy", "rstrace.fastpath"):
        if importlib.util.find_spec(mod) is not None:
            out[f"python -c 'import {mod}'"] = wall([PY, "-c", f"import {mod}"], runs)
    p = subprocess.run(
        [PY, "-X", "importtime", "-c", ANALYZE_IMPORTS], capture_output=True, text=True
    )
    rows: list[tuple[int, int, int, str]] = []
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            depth = (len(m.group(3)) - 1) // 2
            rows.append((int(m.group(1)), int(m.group(2)), depth, m.group(4)))
    top = sorted((r for r in rows if r[2] == 0), key=lambda r: -r[1])[:14]
    heavy = sorted(rows, key=lambda r: -r[0])[:10]
    out["importtime_total_us"] = sum(r[1] for r in rows if r[2] == 0)
    out["importtime_top_level"] = [(name, cum) for _, cum, _, name in top]
    out["importtime_self_top"] = [(name, own) for own, _, _, name in heavy]
    return out


def stages(path: str, mode: str, runs: int) -> dict[str, dict[str, float]]:
    res: dict[str, dict[str, float]] = {}
    for stage in ("libpcap", "read", "track", "analyze"):
        vals = []
        for _ in range(runs):
            p = subprocess.run(
                [PY, "-c", STAGE_CODE, stage, path, mode], capture_output=True, text=True
            )
            if p.returncode != 0:
                err = p.stderr.strip().splitlines()[-1:] or ["?"]
                print(f"  stage {stage}/{mode} failed: {err[0]}", flush=True)
                break
            vals.append(json.loads(p.stdout.strip().splitlines()[-1]))
        if vals:
            res[stage] = {
                "s": min(v["s"] for v in vals),
                "n": vals[0]["n"],
                "rss_mb": max(v["rss_mb"] for v in vals),
            }
    rs = shutil.which("rstrace") or "rstrace"
    args = ["--json"] if mode == "control" else ["--format", "zeek-json"]
    res["cli"] = {"s": wall([rs, "analyze", *args, path], runs), "n": 0, "rss_mb": 0.0}
    td = ["tcpdump", "-n", "-r", path, "-w", "/dev/null", TCPDUMP_FILTER]
    res["tcpdump (reference)"] = {"s": wall(td, runs), "n": 0, "rss_mb": 0.0}
    return res


def profile(path: str, prof_out: str, top: int) -> dict[str, object]:
    t0 = time.perf_counter()
    subprocess.run([PY, "-c", PROFILE_CODE, prof_out, "--json", path], check=True)
    elapsed = time.perf_counter() - t0
    st = pstats.Stats(prof_out)
    raw = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())  # sum of tottime
    comp: dict[str, float] = {}
    for (fname, _line, func), (_cc, _nc, tt, _ct, _callers) in raw.items():
        where = f"{fname}:{func}"
        name = "other (stdlib, interpreter)"
        for label, keys in COMPONENTS:
            if any(k in where for k in keys):
                name = label
                break
        comp[name] = comp.get(name, 0.0) + tt
    rows = sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]
    funcs = [
        (f"{Path(f).name}:{line}({fn})", nc, round(tt, 3), round(ct, 3))
        for (f, line, fn), (_cc, nc, tt, ct, _callers) in rows
    ]
    return {
        "wall_under_profiler_s": elapsed,
        "tottime_sum_s": total,
        "components": sorted(comp.items(), key=lambda kv: -kv[1]),
        "top_functions": funcs,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--capture", default=str(BENCH / "out" / "big.pcap"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--json-out", help="default: <capture>.profile.json")
    a = ap.parse_args()
    if not os.path.exists(a.capture):
        raise SystemExit(f"{a.capture} missing: build it with bench/make_capture.py")
    with open(a.capture, "rb") as f:  # page cache warm-up
        while f.read(8 << 20):
            pass
    report: dict[str, object] = {"capture": a.capture}

    print("== startup (best of runs, wall s)")
    su = startup(max(a.runs, 5))
    report["startup"] = su
    for k, v in su.items():
        if isinstance(v, float):
            print(f"  {k:40s} {v:.3f}")
    print(f"  -X importtime, analyze-path imports: {su['importtime_total_us'] / 1e3:.0f} ms total")
    for name, us in su["importtime_top_level"]:  # type: ignore[attr-defined]
        print(f"    {us / 1e3:7.1f} ms  {name}")
    print("  heaviest single modules (self):")
    for name, us in su["importtime_self_top"]:  # type: ignore[attr-defined]
        print(f"    {us / 1e3:7.1f} ms  {name}")

    for mode in ("control", "all"):
        print(f"== stages, mode {mode!r} (best of runs; in-process after imports; cli: wall)")
        sg = stages(a.capture, mode, a.runs)
        report[f"stages_{mode}"] = sg
        prev = 0.0
        for k, v in sg.items():
            extra = ""
            if k in ("libpcap", "read", "track", "analyze"):
                extra = f"  (+{v['s'] - prev:.3f})  n={int(v['n'])}  rss {v['rss_mb']:.0f} MB"
                prev = v["s"]
            print(f"  {k:22s} {v['s']:.3f} s{extra}")

    print("== cProfile: rstrace analyze --json (profiler overhead inflates Python-heavy parts)")
    with tempfile.TemporaryDirectory() as td:
        pr = profile(a.capture, os.path.join(td, "analyze.prof"), a.top)
    report["cprofile"] = pr
    print(
        f"  wall under profiler {pr['wall_under_profiler_s']:.2f} s, "
        f"sum of tottime {pr['tottime_sum_s']:.2f} s"
    )
    for name, s in pr["components"]:  # type: ignore[attr-defined]
        print(f"    {s:7.3f} s  {name}")
    print("  top functions by own time: calls, tottime, cumtime")
    for fn, nc, tt, ct in pr["top_functions"]:  # type: ignore[attr-defined]
        print(f"    {tt:7.3f} {ct:7.3f} {nc:9d}  {fn}")
    out = a.json_out or str(Path(a.capture).with_suffix(".profile.json"))
    Path(out).write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
