"""Is `rstrace analyze --format zeek-json` still byte-identical on a big capture?

    python3 bench/zeek_identity.py --save     # before a change: keep the output's digest
    python3 bench/zeek_identity.py            # after it: compare (exit 1 on a difference)

The digest (SHA-256, line count) goes to bench/out/<capture>.zeek.sha256 (git-ignored,
like the capture). With --keep the whole output is kept next to it, so a difference
can be shown line by line (`--diff`); the goldens in tests/ cover the small captures.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def run(capture: Path) -> bytes:
    cmd = [sys.executable, "-m", "rstrace", "analyze", "--format", "zeek-json", str(capture)]
    return subprocess.run(cmd, capture_output=True, check=True).stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture", default=str(BENCH / "out" / "big.pcap"))
    ap.add_argument("--save", action="store_true", help="store the digest (the reference)")
    ap.add_argument("--keep", action="store_true", help="with --save: keep the whole output")
    ap.add_argument("--diff", action="store_true", help="show the first differing lines")
    args = ap.parse_args()
    capture = Path(args.capture)
    digest_file = capture.with_suffix(".zeek.sha256")
    kept = capture.with_suffix(".zeek.json")
    out = run(capture)
    lines = out.count(b"\n")
    digest = f"{hashlib.sha256(out).hexdigest()} {lines}\n"
    if args.save:
        digest_file.write_text(digest)
        if args.keep:
            kept.write_bytes(out)
        print(f"saved {digest_file}: {digest.strip()}")
        return 0
    want = digest_file.read_text()
    if digest == want:
        print(f"identical: {digest.strip()}")
        return 0
    print(f"DIFFERENT: now {digest.strip()}, saved {want.strip()}")
    if args.diff and kept.exists():
        old = kept.read_bytes().splitlines()
        for i, (a, b) in enumerate(zip(old, out.splitlines(), strict=False)):
            if a != b:
                print(f"line {i + 1}:\n  saved {a.decode()}\n  now   {b.decode()}")
                break
    return 1


if __name__ == "__main__":
    sys.exit(main())
