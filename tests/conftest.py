"""The suite's hooks and shared fixtures.

Every test under tests/integration is marked `integration` here, so `pytest -m "not integration"` runs
the fast layers (unit, pipeline) alone. The etcds: one for the whole session (etcd_server), one per module
(private_etcd, and its `store`), one per test (own_etcd), one with TLS (tls_etcd, with `pki`); all with
v2 enabled but the TLS one. Helpers that are not fixtures live beside this file: paths, cli_console,
etcd_store, backend_puts, tls_pki, processes, deploy_files, fake_pipeline."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_store import Store
from tls_pki import Pki, ServerPki, make_pki, server_tls

from etcdbench.etcd import LocalEtcd, find_etcd_binary

INTEGRATION = Path(__file__).resolve().parent / "integration"

pytest_plugins = ["schema_check"]  # every results file the tests write matches docs/results.schema.json


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)


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


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[LocalEtcd]:
    with LocalEtcd(find_etcd_binary(), enable_v2=True) as server:
        yield server


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


@pytest.fixture
def own_etcd() -> Iterator[LocalEtcd]:
    """An etcd of this test's own (v2 enabled), for tests that pause or kill it or count all it did."""
    with LocalEtcd(find_etcd_binary(), enable_v2=True) as server:
        yield server


@pytest.fixture
def fresh_prefix() -> str:
    return f"/etcdbench-test/{uuid.uuid4().hex}/"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates made with openssl (tests/tls_pki.py); test_tls.py uses etcdbench's own instead."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test certificates")
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_etcd(pki: ServerPki) -> Iterator[LocalEtcd]:
    """etcd with TLS on its client URL and --client-cert-auth, with the `pki` of the module; no auth."""
    with LocalEtcd(find_etcd_binary(), tls=server_tls(pki)) as server:
        yield server


@pytest.fixture
def no_embedded_etcd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting an embedded etcd fails the test: a refusal must come before it."""
    from etcdbench.bench import target

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("an etcd was started")

    monkeypatch.setattr(target, "LocalEtcd", started)
    monkeypatch.setattr(target, "LocalCluster", started)
    monkeypatch.delenv("ETCDBENCH_RUN_ID", raising=False)
