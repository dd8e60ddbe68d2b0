"""Findings on real captures (tests/data/captures, recorded by tests/scenarios.py).

The manifest written when the captures were recorded holds the ground truth each
scenario knew (kind, server, port, attempts); the findings must match it. The same
captures pin the text and JSON output as golden files (`pytest --update-goldens`).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from rstrace.analyze import AnalysisResult, analyze_files
from rstrace.render.json import result_dict
from rstrace.render.text import render_text

ROOT = Path(__file__).parent
CAPTURES = ROOT / "data" / "captures"
EXPECTED = ROOT / "data" / "expected"
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text())
ALL_CAPTURES = sorted(
    p for p in (ROOT / "data").rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")
)


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT.parent))


def _analyze(path: Path, **kw: object) -> AnalysisResult:
    return analyze_files([_rel(path)], **kw)  # type: ignore[arg-type]


def _comparable(res: AnalysisResult) -> list[dict[str, object]]:
    return result_dict(res)["findings"]  # type: ignore[no-any-return]


def _kinds(res: AnalysisResult) -> list[tuple[str, str | None, list[int], int]]:
    return [(f.kind, f.server, f.ports, f.count) for f in res.findings]


# -- ground truth from the scenarios ------------------------------------------------

EXPECTED_KIND = {
    # scenario kind in the manifest -> finding kind rstrace must report
    "refused": "refused",
    "abort": "abort",
    "timeout": "timeout",
    "listen-overflow": "listen-overflow",
    "half-open": "half-open",
    "stale": "stale",
    "injected": "injected",
    "unreachable": "unreachable",
}


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_findings_match_what_the_scenario_did(name: str) -> None:
    check_findings(name, MANIFEST[name], CAPTURES / MANIFEST[name]["file"])


@pytest.mark.root
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_findings_on_a_fresh_recording(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the scenario on the real kernel now, record it, and diagnose the recording.

    While the scenario records, `rstrace diagnose` watches the same namespace live:
    its findings must be the ones analyze finds in the recording.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import scenarios

    live: list[dict] = []
    for recorder in ("tcpdump", "dumpcap"):
        monkeypatch.setattr(scenarios.netlab, recorder, _watched(getattr(scenarios.netlab,
                            recorder), live))  # fmt: skip
    entry = scenarios.run(name, tmp_path)
    check_findings(name, entry, tmp_path / entry["file"])
    assert len(live) == 1, "one diagnose window per recording"
    recorded = analyze_files([str(tmp_path / entry["file"])])
    want = sorted((f.kind, f.server, f.ports, f.count) for f in recorded.findings)
    got = sorted((f["kind"], f["server"], f["ports"], f["count"]) for f in live[0]["findings"])
    assert got == want, f"diagnose live: {got}; analyze of the recording: {want}"
    # The scenario's own processes call themselves rsts-snippet: diagnose names the client.
    for f in live[0]["findings"]:
        if f["kind"] in CLIENT_NAMED:
            comms = {c["comm"] for c in f["client_processes"]}
            assert "rsts-snippet" in comms, (f["kind"], f["headline"], comms)


# Kinds whose failing connections a process of this host opened with connect() in every
# scenario (the others are raw-socket forgeries or spoofed SYNs: no process to name).
CLIENT_NAMED = {"refused", "timeout", "unreachable", "abort", "stale", "listen-overflow"}


def _watched(recorder, live: list[dict]):  # type: ignore[no-untyped-def]
    """The scenario's recorder, with `rstrace diagnose` watching its namespace around it."""
    from contextlib import contextmanager

    from tests.livediag import watching

    @contextmanager
    def wrapped(ns: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        with watching(ns, live), recorder(ns, *args, **kwargs) as cap:
            yield cap

    return wrapped


def check_findings(name: str, truth: dict, path: Path) -> None:
    res = analyze_files([str(path)])
    kinds = _kinds(res)
    kind = truth["kind"]
    if kind == "clean":
        assert kinds == []
        return
    if kind == "scan":
        scans = [f for f in res.findings if f.kind == "scan"]
        assert len(scans) == 1, kinds
        assert scans[0].clients == [truth["client"]]
        assert len(scans[0].ports) >= 28
        return
    if kind == "firewall-reset":
        want = "firewall-reject" if truth["reset_by"] == "router" else "refused"
        f = next(f for f in res.findings if f.kind == want)
        assert (f.server, f.ports, f.count) == (truth["server"], [truth["port"]], truth["attempts"])
        assert [k for k in kinds if k[0] in ("refused", "firewall-reject")] == [
            (want, truth["server"], [truth["port"]], truth["attempts"])
        ]
        return
    if kind == "injected-ignored":
        # The forged RST was out of window and ignored, but it was still forged.
        assert [k[0] for k in kinds] == ["injected"]
        return
    want = EXPECTED_KIND[kind]
    matching = [f for f in res.findings if f.kind == want]
    assert matching, f"no {want} finding in {kinds}"
    f = matching[0]
    if name == "two-iface-pcapng":
        by_iface = {(f.server, f.ports[0]): f.ifaces for f in res.findings}
        assert by_iface == {(r["server"], r["port"]): [r["iface"]] for r in truth["refusals"]}
        return
    assert (f.server, f.ports) == (truth["server"], [truth["port"]])
    if kind in ("refused", "unreachable") or (kind == "timeout"):
        assert f.count == truth["attempts"]
        assert f.clients == [truth["client"]]
    if kind == "abort":
        expect_by = "responder" if truth["reset_by"] == "server" else "originator"
        assert f.details["reset_by"] == {expect_by: 1}
        assert f.details["bytes_by_resetter"] == {str(truth["bytes_to_client"]): 1}
        assert f.details["bytes_by_peer"] == {str(truth["bytes_to_server"]): 1}
    if kind == "listen-overflow":
        assert f.count == truth["client_results"]["ETIMEDOUT"]
    if kind == "half-open":
        assert f.count >= len(truth["synack_to"])
    assert f.evidence, "every finding shows packets"


# -- invariants over every capture we have -----------------------------------------


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=lambda p: p.name)
def test_prefilter_does_not_change_findings(path: Path) -> None:
    """The BPF prefilter keeps data packets away from Python; findings must not notice."""
    base = _comparable(_analyze(path, mode="none"))
    assert _comparable(_analyze(path, mode="control")) == base
    assert _comparable(_analyze(path, mode="all")) == base


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=lambda p: p.name)
def test_chunk_size_does_not_change_findings(path: Path) -> None:
    base = _comparable(_analyze(path, batch_size=4096))
    assert _comparable(_analyze(path, batch_size=1)) == base
    assert _comparable(_analyze(path, batch_size=7)) == base


# -- golden output -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_golden_text_and_json(name: str, update_goldens: bool) -> None:
    res = _analyze(CAPTURES / MANIFEST[name]["file"])
    buf = io.StringIO()
    render_text(res, buf)
    outputs = {
        f"{name}.txt": buf.getvalue(),
        f"{name}.json": json.dumps(result_dict(res), indent=2) + "\n",
    }
    for fname, text in outputs.items():
        golden = EXPECTED / fname
        if update_goldens:
            EXPECTED.mkdir(parents=True, exist_ok=True)
            golden.write_text(text)
        assert golden.exists(), f"missing {golden}: run pytest --update-goldens and review the diff"
        assert text == golden.read_text(), f"{fname} differs from its golden file"
