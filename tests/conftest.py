"""Pin the environment like Zeek's btest and tcpdump's TESTrun: UTC, C locale.

Tests marked `root` need root (namespaces, tcpdump, firewall rules). They are
skipped when not root; as root (CI), a skip of such a test is turned into a
failure, so a missing tool or kernel feature cannot hide behind a green run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator

import pytest

os.environ["TZ"] = "UTC"
os.environ["LC_ALL"] = "C"
time.tzset()

IS_ROOT = os.geteuid() == 0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens", action="store_true", help="rewrite the expected output files"
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") and not IS_ROOT:
        pytest.skip("needs root (network namespaces, tcpdump, firewall rules)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if IS_ROOT and report.skipped and item.get_closest_marker("root"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"root-only test skipped while running as root: {reason}"
