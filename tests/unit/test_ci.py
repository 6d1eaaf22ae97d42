"""CI does not skip silently: under CI=true (which .ci/run sets) a skipped test is a failed one."""

from __future__ import annotations

import pytest
from paths import ROOT, TESTS

pytest_plugins = ["pytester"]

SKIPPING = """
import pytest

def test_needs_a_tool():
    pytest.skip("the frobnicate command is needed")

@pytest.mark.skipif(True, reason="not installed")
def test_marked():
    pass

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False
"""


@pytest.mark.parametrize(("ci", "failed", "skipped"), [("true", 2, 0), ("", 0, 2)])
def test_a_skip_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, failed: int, skipped: int
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    pytester.makepyfile(SKIPPING)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == failed
    assert outcomes.get("skipped", 0) == skipped and outcomes.get("xfailed", 0) == 1
    if failed:
        result.stdout.fnmatch_lines(["*skipped under CI=true*the frobnicate command is needed*"])


def test_ci_installs_the_tools_that_tests_would_skip_without() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    for package in ("openssl", "golang-go", "golang-etcd-server-dev", "etcd-server"):
        assert package in script
    assert 'export CI="${CI:-true}"' in script
