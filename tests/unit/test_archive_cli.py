"""The archive commands' wiring, `ls`, and schema upgraders in results.io.load (no etcd)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cli_console import run_cli, snapshot
from paths import DATA, RESULTS

from etcdbench.cli.app import _Parser
from etcdbench.cli.archive import register
from etcdbench.errors import UsageError
from etcdbench.report.archive import scan
from etcdbench.results import io as results_io
from etcdbench.results.io import load

SAMPLE_V1 = DATA / "results-v1.json"


def test_register_adds_the_archive_commands() -> None:
    parser = _Parser(prog="etcdbench")
    handlers = register(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    assert sorted(handlers) == ["compare", "export", "ls", "merge", "plot"]
    assert all(callable(h) for h in handlers.values())


def test_compare_needs_two_files() -> None:
    code, out, err = run_cli("compare", str(RESULTS / "v3-json-500.json"))
    assert code == 2 and out == ""
    assert err.strip() == (
        "error: compare: needs at least two results files (the first is the baseline), "
        "or one whose runs ran on several etcd versions"
    )


def test_compare_of_an_unreadable_file_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, _, err = run_cli("compare", str(RESULTS / "v3-json-500.json"), str(bad))
    assert code == 2 and err.startswith(f"error: {bad}: not valid JSON")


# --- ls ---------------------------------------------------------------------------------------------


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    for name in ("v3-protobuf-500.json", "v2-json-poll-1000.json", "v3-json-2000.json"):
        shutil.copy(RESULTS / name, tmp_path / name)
    interrupted = load(RESULTS / "v3-json-500.json")
    interrupted["complete"] = False
    interrupted["created"] = "2026-12-01T08:00:00+00:00"
    (tmp_path / "interrupted.json").write_text(json.dumps(interrupted))
    (tmp_path / "not-json.json").write_text("hello")
    (tmp_path / "other-tool.json").write_text('{"version": "v1", "dataItems": []}')
    (tmp_path / "future.json").write_text('{"format": "etcdbench-results", "schema_version": 99}')
    (tmp_path / "notes.txt").write_text("not listed: not .json")
    return tmp_path


def test_ls_newest_first_with_verdicts_and_skips(archive: Path) -> None:
    listing = scan(archive)
    assert [e.path.name for e in listing.entries] == [
        "interrupted.json",  # 2026-12-01
        "v3-json-2000.json",  # 2026-11-29T23:12:35
        "v2-json-poll-1000.json",  # 23:11:03
        "v3-protobuf-500.json",  # 23:09:51
    ]
    first, _, failed, _ = listing.entries
    assert (first.complete, first.passed, first.failed) == (False, 1, 0)
    assert (failed.labels, failed.passed, failed.failed, failed.etcd_version) == (
        ("v2(poll)+json pod @1000/s",),
        0,
        1,
        "3.5.1",
    )
    assert [(s.path.name, s.reason) for s in listing.skipped] == [
        ("future.json", "schema_version 99 is not supported (this etcdbench reads 3)"),
        ("not-json.json", "not valid JSON (line 1: Expecting value)"),
        ("other-tool.json", "not an etcdbench results file"),
    ]


def test_ls_output(archive: Path) -> None:
    code, out, err = run_cli("ls", str(archive))
    assert (code, err) == (0, "")
    snapshot("ls.txt", out)  # newest first, a line of labels under each file; the skipped, not notes.txt


def test_ls_empty_and_missing_directories(tmp_path: Path) -> None:
    code, out, _ = run_cli("ls", str(tmp_path))
    assert code == 0 and out.strip() == f"no etcdbench results files in {tmp_path}"
    code, out, err = run_cli("ls", str(tmp_path / "nope"))
    assert code == 2 and out == ""
    assert err.strip() == f"error: ls: {tmp_path / 'nope'} is not a directory"


def test_ls_shows_scenarios_when_runs_carry_them(tmp_path: Path) -> None:
    doc = load(RESULTS / "v3-json-500.json")
    doc["runs"][0]["scenario"] = "k8s-5000-nodes"
    (tmp_path / "s.json").write_text(json.dumps(doc))
    assert scan(tmp_path).entries[0].scenarios == ("k8s-5000-nodes",)
    _, out, _ = run_cli("ls", str(tmp_path))
    snapshot("ls-scenarios.txt", out)  # "scenario k8s-5000-nodes" under the file


# --- schema upgraders -------------------------------------------------------------------------------


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """A made-up change: version 2 renames `tool` to `producer` and counts runs."""
    doc["producer"] = doc.pop("tool")
    doc["run_count"] = len(doc["runs"])
    return doc


def _v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
    doc["producer"]["upgraded_from"] = doc["schema_version"]
    return doc


def test_load_chains_upgraders_up_to_the_current_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results_io, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(results_io, "UPGRADERS", {1: _v1_to_v2, 2: _v2_to_v3})
    doc = load(SAMPLE_V1)
    assert doc["schema_version"] == 3
    assert "tool" not in doc
    assert doc["producer"] == {"name": "etcdbench", "version": "0.1.0", "upgraded_from": 2}
    assert doc["run_count"] == 1


def test_newer_or_unknown_versions_and_gaps_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(results_io, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(results_io, "UPGRADERS", {1: _v1_to_v2})
    for version in (3, 0, "2", True, None):
        path = tmp_path / f"v{version}.json"
        path.write_text(json.dumps({"format": "etcdbench-results", "schema_version": version}))
        with pytest.raises(UsageError) as info:
            load(path)
        assert (
            str(info.value) == f"{path}: schema_version {version!r} is not supported (this etcdbench reads 2)"
        )
    monkeypatch.setattr(results_io, "SCHEMA_VERSION", 3)  # no upgrader from 2 to 3: cannot read version 1
    with pytest.raises(UsageError, match=r"schema_version 1 is not supported \(this etcdbench reads 3\)"):
        load(SAMPLE_V1)


# --- load_results: what every reading command sees --------------------------------------------------


@pytest.mark.parametrize("path", sorted(DATA.glob("results-v*.json")), ids=lambda p: p.name)
def test_load_results_types_exactly_what_load_upgrades(path: Path) -> None:
    assert results_io.load_results(path).to_dict() == load(path)


def test_a_key_the_types_do_not_know_is_one_line_naming_the_file(tmp_path: Path) -> None:
    doc = load(RESULTS / "v3-json-500.json")
    doc["runs"][0]["counters"]["surprise"] = 1
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(doc))
    expected = f"{odd}: malformed results document: runs[0].counters.surprise: not a key this etcdbench knows"
    with pytest.raises(UsageError) as refused:
        results_io.load_results(odd)
    assert str(refused.value) == expected
    code, out, err = run_cli("show", str(odd))
    assert (code, out, err.strip()) == (2, "", f"error: {expected}")
    (skipped,) = scan(tmp_path).skipped
    assert skipped.reason == expected.removeprefix(f"{odd}: ")
