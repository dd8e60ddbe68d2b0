"""The README's test command is exactly what CI runs (.ci/run), so neither can drift."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```(?:sh|bash|console|shell|)[ \t]*\n(.*?)^```", text, re.M | re.S)


def test_ci_runs_the_readme_test_command() -> None:
    install_and_test = _blocks()[1].strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install_and_test in ci


def test_readme_main_job_uses_a_committed_capture() -> None:
    main_job = _blocks()[0]
    captures = re.findall(r"tests/data/\S+\.pcap\S*", main_job)
    assert captures and all((ROOT / c).exists() for c in captures)
