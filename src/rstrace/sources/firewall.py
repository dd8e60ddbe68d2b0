"""Firewall rule counters (nftables), to name the rule that drops or rejects.

A SYN dropped by a firewall leaves no packet and no reset: the only trace is a
rule counter that moves. We snapshot the counters of every rule that drops or
rejects, before and after diagnose's window, and report the rules that moved.

We run `nft -j -a list ruleset` rather than talking netlink ourselves: the nft
JSON schema is stable and documented (libnftables-json(5)), while nftables'
netlink messages are not meant to be parsed outside libnftnl; pyroute2's
nftables support is experimental. On Debian 12 `iptables` is iptables-nft, so
its rules are listed here too. Rules without a `counter` statement have no
counters (iptables-nft adds one to every rule; hand-written nft rules often lack
it): we list them as "cannot be seen moving".
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass

VERDICTS = ("drop", "reject")


@dataclass(frozen=True, slots=True)
class RuleKey:
    family: str
    table: str
    chain: str
    handle: int


@dataclass(slots=True)
class Rule:
    key: RuleKey
    verdict: str
    """'drop' or 'reject' (with its type, e.g. 'reject with tcp reset')."""
    text: str
    """The rule as `nft list ruleset` prints it, counter values left out."""
    packets: int | None
    """Counter value, or None for a rule without a counter."""
    dports: tuple[int, ...]
    """Destination ports the rule matches (empty: any or unknown)."""
    hook: str | None
    """The base chain's hook (input, output, forward, prerouting, ...) when known."""


@dataclass(slots=True)
class RuleDelta:
    rule: Rule
    packets: int
    """Packets the rule counted during the window."""


class FirewallUnavailable(Exception):
    """nft is missing or refused to run (not root)."""


def snapshot(timeout: float = 5.0) -> dict[RuleKey, Rule]:
    """The drop/reject rules of the current network namespace with their counters."""
    nft = shutil.which("nft")
    if nft is None:
        raise FirewallUnavailable("nft not installed: firewall rule counters not read")
    try:
        js = subprocess.run([nft, "-j", "-a", "list", "ruleset"], capture_output=True,
                            text=True, timeout=timeout, check=True).stdout  # fmt: skip
        txt = subprocess.run([nft, "-a", "list", "ruleset"], capture_output=True,
                             text=True, timeout=timeout, check=True).stdout  # fmt: skip
    except subprocess.CalledProcessError as e:
        why = (e.stderr or "").strip().splitlines()[-1:] or ["failed"]
        if "Operation not permitted" in why[0]:
            raise FirewallUnavailable("reading nft rule counters needs root") from None
        raise FirewallUnavailable(f"nft list ruleset: {why[0]}") from None
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FirewallUnavailable(f"nft list ruleset: {e}") from None
    return parse_ruleset(js, txt)


def parse_ruleset(json_text: str, listing: str) -> dict[RuleKey, Rule]:
    """Rules that drop or reject, from `nft -j -a list ruleset` and `nft -a list ruleset`."""
    texts = rule_texts(listing)
    items = json.loads(json_text).get("nftables", []) if json_text.strip() else []
    hooks: dict[tuple[str, str, str], str] = {}
    rules: dict[RuleKey, Rule] = {}
    for item in items:
        chain = item.get("chain")
        if chain and chain.get("hook"):
            hooks[(chain["family"], chain["table"], chain["name"])] = chain["hook"]
    for item in items:
        r = item.get("rule")
        if not r:
            continue
        verdict, packets, dports = _expr_facts(r.get("expr", []))
        if verdict is None:
            continue
        key = RuleKey(r["family"], r["table"], r["chain"], int(r["handle"]))
        rules[key] = Rule(
            key=key,
            verdict=verdict,
            text=texts.get(key, verdict),
            packets=packets,
            dports=dports,
            hook=hooks.get((key.family, key.table, key.chain)),
        )
    return rules


def _expr_facts(exprs: list[dict]) -> tuple[str | None, int | None, tuple[int, ...]]:
    verdict: str | None = None
    packets: int | None = None
    dports: list[int] = []
    for e in exprs:
        if "drop" in e:
            verdict = "drop"
        elif "reject" in e:
            kind = (e["reject"] or {}).get("type")
            verdict = f"reject with {kind}" if kind else "reject"
        elif "counter" in e and isinstance(e["counter"], dict):
            packets = int(e["counter"].get("packets", 0))
        elif "match" in e:
            dports.extend(_match_dports(e["match"]))
    return verdict, packets, tuple(dports)


def _match_dports(m: dict) -> list[int]:
    left = m.get("left", {})
    payload = left.get("payload", {}) if isinstance(left, dict) else {}
    if payload.get("field") != "dport" or m.get("op") not in ("==", "in"):
        return []
    right = m.get("right")
    if isinstance(right, int):
        return [right]
    if isinstance(right, dict) and "set" in right:
        return [p for p in right["set"] if isinstance(p, int)]
    if isinstance(right, dict) and "range" in right:
        lo, hi = right["range"]
        return list(range(lo, hi + 1)) if hi - lo < 1024 else [lo, hi]
    return []


_TABLE = re.compile(r"^table (\S+) (\S+) \{")
_CHAIN = re.compile(r"^\s+chain (\S+) \{")
_HANDLE = re.compile(r"\s*# handle (\d+)\s*$")
_COUNTER = re.compile(r"counter packets \d+ bytes \d+")


def rule_texts(listing: str) -> dict[RuleKey, str]:
    """Rule lines of `nft -a list ruleset`, keyed like the JSON (counter values removed)."""
    out: dict[RuleKey, str] = {}
    family = table = chain = ""
    for line in listing.splitlines():
        if m := _TABLE.match(line):
            family, table, chain = m.group(1), m.group(2), ""
            continue
        if m := _CHAIN.match(line):
            chain = m.group(1)
            continue
        h = _HANDLE.search(line)
        if (
            h
            and chain
            and line.startswith("\t\t")
            and not line.strip().startswith(("type ", "chain ", "set ", "map "))
        ):
            text = _COUNTER.sub("counter", line[: h.start()].strip())
            out[RuleKey(family, table, chain, int(h.group(1)))] = text
    return out


def moved(before: dict[RuleKey, Rule], after: dict[RuleKey, Rule]) -> list[RuleDelta]:
    """Rules whose counter went up between the two snapshots, most packets first."""
    out = []
    for key, rule in after.items():
        old = before.get(key)
        if rule.packets is None:
            continue
        was = old.packets if old is not None and old.packets is not None else 0
        delta = rule.packets - was
        if delta > 0:
            out.append(RuleDelta(rule, delta))
    out.sort(key=lambda d: -d.packets)
    return out


def describe(rule: Rule) -> str:
    """`inet t in: tcp dport 7214 counter drop (handle 2)`."""
    k = rule.key
    return f"{k.family} {k.table} {k.chain}: {rule.text} (handle {k.handle})"
