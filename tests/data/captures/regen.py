#!/usr/bin/env python3
"""Regenerate the committed captures and manifest.json from the real scenarios.

Run as root from anywhere::

    sudo python3 tests/data/captures/regen.py            # all scenarios
    sudo python3 tests/data/captures/regen.py stale scan # only these (manifest merged)

Each scenario builds its own ``rsts-*`` namespaces, plays real traffic on the
real kernel, records it with tcpdump/dumpcap into ``<name>.pcap`` (or
``.pcapng`` / ``.pcap.gz``) next to this file and returns its ground truth,
which is written to ``manifest.json`` (keys sorted, one entry per capture).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/

import netlab  # noqa: E402
import scenarios  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the chosen (default: all) scenarios and merge their entries into the manifest."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="capture names (default: all)")
    ap.add_argument("--out", type=Path, default=HERE, help="output directory")
    args = ap.parse_args(argv)
    if not netlab.is_root():
        print("regen.py needs root (network namespaces, tcpdump)", file=sys.stderr)
        return 2
    names = args.names or list(scenarios.SCENARIOS)
    unknown = [n for n in names if n not in scenarios.SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    failed = []
    for name in names:
        t0 = time.monotonic()
        try:
            entry = scenarios.run(name, args.out)
        except Exception as exc:  # report and go on with the other scenarios
            failed.append(name)
            print(f"FAIL {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        manifest[name] = entry
        size = (args.out / entry["file"]).stat().st_size
        print(f"ok   {name:24} {entry['packets']:4d} pkts {size:7d} B "
              f"{time.monotonic() - t0:5.1f} s")  # fmt: skip
    manifest = {k: manifest[k] for k in sorted(manifest) if k in scenarios.SCENARIOS}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
