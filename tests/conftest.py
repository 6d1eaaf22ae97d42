"""Shared fixtures: one real local etcd (v2 enabled) for the whole session, and fresh key prefixes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from etcd_store import Store

from etcdbench.etcd import LocalEtcd, find_etcd_binary

pytest_plugins = ["schema_check"]  # every results file the tests write matches docs/results.schema.json


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[LocalEtcd]:
    with LocalEtcd(find_etcd_binary(), enable_v2=True) as server:
        yield server


@pytest.fixture
def fresh_prefix() -> str:
    return f"/etcdbench-test/{uuid.uuid4().hex}/"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true a skip is a failure: a test skipped for a missing tool tests nothing, silently.

    .ci/run installs every tool a test needs; an expected failure (xfail) is still reported as such.
    """
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (install what it needs in .ci/run): {reason}"


@pytest.fixture(scope="module")
def private_etcd() -> Iterator[LocalEtcd]:
    """An etcd of one test module alone, for tests that compare its whole store before and after a run:
    the session's shared etcd holds whatever the other tests left there (megabytes of it)."""
    with LocalEtcd(find_etcd_binary(), enable_v2=True) as server:
        yield server


@pytest.fixture
def store(private_etcd: LocalEtcd) -> Iterator[Store]:
    """The private etcd's two key spaces; the foreign keys a test seeds are removed after it."""
    s = Store(private_etcd.client_url)
    yield s
    s.close()
