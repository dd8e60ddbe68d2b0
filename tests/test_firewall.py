"""nft rule counters: parsing recorded `nft -j -a list ruleset` output, and the real thing.

The fixtures in tests/data/nft were recorded in a namespace with the ruleset
below loaded, before and after one connect() to each of 7214, 7220, 7231, 7300
(iptables-nft) and 7216 (rejected in output).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rstrace.sources import firewall

DATA = Path(__file__).parent / "data" / "nft"


def _load(name: str) -> dict[firewall.RuleKey, firewall.Rule]:
    return firewall.parse_ruleset(
        (DATA / f"{name}.json").read_text(), (DATA / f"{name}.txt").read_text()
    )


def test_only_drop_and_reject_rules_with_their_facts() -> None:
    rules = _load("before")
    by_handle = {(k.table, k.handle): r for k, r in rules.items()}
    assert set(by_handle) == {("rstd", h) for h in (4, 5, 6, 7, 8, 9)} | {("filter", 2)}
    r4 = by_handle[("rstd", 4)]
    assert (r4.verdict, r4.packets, r4.dports, r4.hook) == ("drop", 0, (7214,), "input")
    assert r4.text == "tcp dport 7214 counter drop"
    r5 = by_handle[("rstd", 5)]
    assert (r5.verdict, r5.packets) == ("reject with tcp reset", None)  # no counter statement
    assert by_handle[("rstd", 7)].dports == tuple(range(7230, 7240))
    assert by_handle[("rstd", 9)].hook == "output"
    assert by_handle[("filter", 2)].dports == (7300,)  # iptables-nft rules are nft rules


def test_moved_lists_rules_whose_counter_went_up() -> None:
    moved = firewall.moved(_load("before"), _load("after"))
    got = {(d.rule.key.table, d.rule.key.handle): d.packets for d in moved}
    assert got == {("rstd", 4): 1, ("rstd", 6): 1, ("rstd", 7): 1, ("rstd", 9): 1,
                   ("filter", 2): 1}  # fmt: skip
    text = {firewall.describe(d.rule) for d in moved}
    assert "inet rstd input: tcp dport 7214 counter drop (handle 4)" in text
    assert "ip filter INPUT: tcp dport 7300 counter drop (handle 2)" in text


def test_empty_ruleset() -> None:
    assert firewall.parse_ruleset('{"nftables": [{"metainfo": {}}]}', "") == {}
    assert firewall.parse_ruleset("", "") == {}


@pytest.mark.root
def test_snapshot_in_a_namespace_sees_the_counter_move() -> None:
    from tests import netlab

    with netlab.lab("single") as lb:
        lb.nft(lb.client, "table inet rstf {\n chain input {\n type filter hook input "
                          "priority 0;\n tcp dport 7240 counter drop\n }\n}\n")  # fmt: skip
        code = ("import json, subprocess, sys, socket\n"
                "sys.path[:0] = json.loads(sys.argv[1])\n"
                "from rstrace.sources import firewall\n"
                "a = firewall.snapshot()\n"
                "s = socket.socket(); s.settimeout(0.3)\n"
                "try: s.connect(('127.0.0.1', 7240))\n"
                "except OSError: pass\n"
                "b = firewall.snapshot()\n"
                "print(json.dumps([[firewall.describe(d.rule), d.packets] "
                "for d in firewall.moved(a, b)]))\n")  # fmt: skip
        import json
        import sys

        out = lb.run(lb.client, sys.executable, "-c", code, json.dumps(sys.path))
    assert json.loads(out) == [["inet rstf input: tcp dport 7240 counter drop (handle 2)", 1]]
