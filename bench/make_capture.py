"""Build a large pcap of real TCP traffic for the analyze benchmark (needs root).

Two network namespaces (rstb-<id>-cli, rstb-<id>-srv) joined by a veth pair (MTU 1500,
TSO/GSO/GRO off on both ends, so every packet is wire-sized); tcpdump records on the
client end. bench/traffic.py runs the server and the client: bulk transfers dominate,
interleaved with short connections and failures of every kind (refused v4/v6, server
aborts with SO_LINGER 0, close with unread data, client aborts, SYN timeouts behind an
nft drop rule, nft reject with tcp reset, a small port scan, listen-queue overflow).

    python3 bench/make_capture.py                       # ~1 GB -> bench/out/big.pcap
    python3 bench/make_capture.py --size-mb 50 --out bench/out/quick.pcap

Everything happens inside the two namespaces and the documentation ranges 192.0.2.0/24
and 2001:db8::/32: no firewall rule or sysctl in the root namespace. Counts are bounded,
there is a hard deadline, and the namespaces and every process started (by pid) are
cleaned up in a finally, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from pcapstats import pcap_stats  # noqa: E402
from traffic import Plan  # noqa: E402

NS_PREFIX = "rstb-"
CLIENT4, SERVER4 = "192.0.2.10", "192.0.2.20"
CLIENT6, SERVER6 = "2001:db8:5eb::10", "2001:db8:5eb::20"
# Extra client addresses (many clients, as on a real server) and a separate scanner.
CLIENTS4 = [f"192.0.2.{i}" for i in range(100, 124)]
CLIENTS6 = [f"2001:db8:5eb::{i:x}" for i in range(0x100, 0x118)]
SCANNER4, SCANNER6 = "192.0.2.66", "2001:db8:5eb::66"

NFT_RULES = """
table inet rstb {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 9000 drop
    tcp dport 9001 reject with tcp reset
  }
}
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(*cmd: str, ns: str | None = None, stdin: str | None = None) -> None:
    if ns is not None:
        if not ns.startswith(NS_PREFIX):
            raise ValueError(f"refusing to touch namespace {ns!r}")
        cmd = ("ip", "netns", "exec", ns, *cmd)
    subprocess.run(cmd, check=True, input=stdin, text=True, capture_output=True)


def make_plan(size_mb: float, out: str, seed: int, deadline_s: float) -> Plan:
    """Counts scale with the target size; ~7 % of packets carry SYN/FIN/RST at 1 GB."""
    scale = size_mb / 1000.0

    def n(full: int, floor: int = 20) -> int:
        return max(floor, round(full * scale))

    return Plan(
        pcap=out,
        target_bytes=int(size_mb * 1e6),
        deadline_s=deadline_s,
        server4=SERVER4,
        server6=SERVER6,
        clients4=CLIENTS4,
        clients6=CLIENTS6,
        scanner4=SCANNER4,
        scanner6=SCANNER6,
        seed=seed,
        v6_share=0.3,
        bulk_v6_share=0.3,
        short=n(13500, 200),
        refused=n(600),
        linger=n(300),
        unread=n(300),
        client_abort=n(200),
        timeouts=max(50, n(300)),
        rejects=n(300),
        scan_ports=n(1024, 128),
        overflow=n(60, 8),
        bulk_workers=2,
        bulk_min_mb=2,
        bulk_max_mb=48,
    )


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if this script dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Lab:
    """Namespaces, veth, nft and sysctls inside them; processes tracked by pid."""

    def __init__(self) -> None:
        tag = secrets.token_hex(2)
        self.cli, self.srv = f"{NS_PREFIX}{tag}-cli", f"{NS_PREFIX}{tag}-srv"
        self.veth_c, self.veth_s = f"{NS_PREFIX}{tag}c", f"{NS_PREFIX}{tag}s"
        self.procs: list[subprocess.Popen[str]] = []
        self.made: list[str] = []

    def setup(self) -> None:
        for ns in (self.cli, self.srv):
            run("ip", "netns", "add", ns)
            self.made.append(ns)
        run("ip", "link", "add", self.veth_c, "type", "veth", "peer", "name", self.veth_s,
            ns=self.cli)  # fmt: skip
        run("ip", "link", "set", self.veth_s, "netns", self.srv, ns=self.cli)
        for ns, dev, a4, a6 in (
            (self.cli, self.veth_c, CLIENT4, CLIENT6),
            (self.srv, self.veth_s, SERVER4, SERVER6),
        ):
            run("sysctl", "-qw", f"net.ipv6.conf.{dev}.accept_ra=0", ns=ns)
            run("ip", "link", "set", "lo", "up", ns=ns)
            run("ip", "link", "set", dev, "mtu", "1500", ns=ns)
            run("ip", "addr", "add", f"{a4}/24", "dev", dev, ns=ns)
            run("ip", "-6", "addr", "add", f"{a6}/64", "dev", dev, "nodad", ns=ns)
            run("ip", "link", "set", dev, "up", ns=ns)
            run("ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", ns=ns)
        for a4 in (*CLIENTS4, SCANNER4):
            run("ip", "addr", "add", f"{a4}/24", "dev", self.veth_c, ns=self.cli)
        for a6 in (*CLIENTS6, SCANNER6):
            run("ip", "-6", "addr", "add", f"{a6}/64", "dev", self.veth_c, "nodad", ns=self.cli)
        # SYN timeouts in ~3 s instead of ~2 min; SYN-ACK retries bounded on the server.
        run("sysctl", "-qw", "net.ipv4.tcp_syn_retries=1", ns=self.cli)
        run("sysctl", "-qw", "net.ipv4.tcp_synack_retries=1", ns=self.srv)
        run("nft", "-f", "-", ns=self.srv, stdin=NFT_RULES)

    def spawn(self, ns: str, *cmd: str, stderr: int | None = None) -> subprocess.Popen[str]:
        assert ns in self.made
        # `ip netns exec` execs the command: the pid is the command's own.
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *cmd],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            preexec_fn=_die_with_parent,
        )
        self.procs.append(p)
        return p

    def cleanup(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        for ns in self.made:
            # Anything still in our namespaces was started by us (threads' children).
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made.clear()


def _wait_line(p: subprocess.Popen[str], stream: str, needle: str, timeout: float) -> list[str]:
    """Read lines of p's stdout/stderr until one contains needle; keep reading after."""
    lines: list[str] = []
    found = threading.Event()

    def reader() -> None:
        f = p.stdout if stream == "stdout" else p.stderr
        assert f is not None
        for line in f:
            lines.append(line.rstrip("\n"))
            if needle in line:
                found.set()

    threading.Thread(target=reader, daemon=True).start()
    if not found.wait(timeout):
        raise RuntimeError(f"timed out waiting for {needle!r}: {lines[-5:]}")
    return lines


def build(out: str, size_mb: float, seed: int, deadline_s: float) -> dict[str, object]:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if os.path.exists(out):
        os.unlink(out)
    plan = make_plan(size_mb, os.path.abspath(out), seed, deadline_s)
    lab = Lab()
    t0 = time.monotonic()
    plan_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
    try:
        json.dump(asdict(plan), plan_file)
        plan_file.close()
        lab.setup()
        log(f"namespaces {lab.cli} / {lab.srv}, veth {lab.veth_c} <-> {lab.veth_s}")
        traffic = str(BENCH / "traffic.py")
        srv = lab.spawn(lab.srv, sys.executable, traffic, "server")
        _wait_line(srv, "stdout", "ready", 10)
        dump = lab.spawn(
            lab.cli,
            "tcpdump", "-n", "-i", lab.veth_c, "-B", "262144", "-w", plan.pcap,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        dump_err = _wait_line(dump, "stderr", "listening on", 10)
        log(f"tcpdump recording on {lab.veth_c} -> {out}; target {size_mb:g} MB")
        cli = lab.spawn(lab.cli, sys.executable, traffic, "client", plan_file.name)
        try:
            cli_out, _ = cli.communicate(timeout=deadline_s + 60)
        except subprocess.TimeoutExpired:
            os.kill(cli.pid, signal.SIGKILL)
            raise RuntimeError("traffic client overran its deadline") from None
        if cli.returncode != 0:
            raise RuntimeError(f"traffic client failed with exit code {cli.returncode}")
        counts = json.loads(cli_out.strip().splitlines()[-1])
        time.sleep(0.5)
        os.kill(dump.pid, signal.SIGINT)
        dump.wait(timeout=30)
        time.sleep(0.2)
        build_s = time.monotonic() - t0
        tcpdump_report = [ln for ln in dump_err if "packets" in ln]
    finally:
        lab.cleanup()
        with contextlib.suppress(OSError):
            os.unlink(plan_file.name)
    log(f"capture done in {build_s:.1f} s; tcpdump: {'; '.join(tcpdump_report)}")
    log("counting packets ...")
    st = pcap_stats(out)
    return {
        "build_s": round(build_s, 1),
        "tcpdump": tcpdump_report,
        "traffic": counts,
        "stats": st.as_dict(),
        "summary": st.summary(),
    }


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=str(BENCH / "out" / "big.pcap"))
    ap.add_argument("--size-mb", type=float, default=1000.0, help="target capture size (MB)")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--deadline", type=float, default=900.0, help="seconds of traffic at most")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("make_capture.py: needs root (namespaces, tcpdump)", file=sys.stderr)
        return 2
    if not 1 <= a.size_mb <= 4000:
        print("make_capture.py: --size-mb must be within 1..4000", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        res = build(a.out, a.size_mb, a.seed, a.deadline)
    except KeyboardInterrupt as e:
        print(f"make_capture.py: interrupted ({e or 'Ctrl-C'}); cleaned up", file=sys.stderr)
        return 130
    print(res["summary"])
    print(f"build time {res['build_s']} s; tcpdump: {'; '.join(res['tcpdump'])}")  # type: ignore[arg-type]
    print("traffic:", json.dumps(res["traffic"], sort_keys=True))
    meta = Path(a.out).with_suffix(".json")
    res.pop("summary")
    meta.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    print(f"wrote {a.out} and {meta}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
