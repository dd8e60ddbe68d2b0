"""Record the /proc fixtures of tests/test_counters.py, test_host.py and test_stats.py.

Run as root from the repository root: `python -m tests.data.proc.record`.

* root/           this machine's own namespace, as found (read only; nothing changed)
* netns-before/   a fresh namespace made by tests/netlab.py, before any traffic
* netns-after/    the same namespace after 7 IPv4 and 5 IPv6 connect()s to a closed
                  port on loopback (all refused)
* conntrack-full/ netns-after edited BY HAND (see README.txt): the table size is
                  global and must not be shrunk on a shared machine
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests import netlab

HERE = Path(__file__).parent
FILES = [
    "net/snmp",
    "net/netstat",
    "net/snmp6",
    "net/stat/nf_conntrack",
    "sys/net/netfilter/nf_conntrack_count",
    "sys/net/netfilter/nf_conntrack_max",
    "sys/net/core/somaxconn",
    "sys/net/ipv4/tcp_max_syn_backlog",
    "sys/net/ipv4/tcp_abort_on_overflow",
    "sys/net/ipv4/tcp_syncookies",
    "sys/net/ipv4/tcp_syn_retries",
    "sys/net/ipv4/ip_local_port_range",
]

READ = """
import json, sys
out = {}
for f in json.loads(sys.argv[1]):
    out[f] = open("/proc/" + f).read()
print(json.dumps(out))
"""

REFUSE = """
import json, socket, sys
n4, n6, port = json.loads(sys.argv[1])
fails = 0
for fam, addr, n in ((socket.AF_INET, "127.0.0.1", n4), (socket.AF_INET6, "::1", n6)):
    for _ in range(n):
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.connect((addr, port))
        except ConnectionRefusedError:
            fails += 1
        finally:
            s.close()
print(json.dumps({"refused": fails}))
"""


def _write(dest: Path, files: dict[str, str]) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    for rel, text in files.items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def main() -> None:
    _write(HERE / "root", {f: (Path("/proc") / f).read_text() for f in FILES})
    with netlab.lab("single", ipv6=True) as lb:
        _write(HERE / "netns-before", lb.python(lb.client, READ, FILES))
        res = lb.python(lb.client, REFUSE, [7, 5, 7211])
        assert res["refused"] == 12, res
        _write(HERE / "netns-after", lb.python(lb.client, READ, FILES))


if __name__ == "__main__":
    main()
