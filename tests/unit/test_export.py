"""Exporters (.hgrm, perfdash, CSV) from the committed results files, checked against the histograms."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cli_console import run_cli
from paths import RESULTS

from etcdbench.errors import UsageError
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.report.export import (
    cpu_per_second,
    export,
    hgrm,
    perfdash,
    perfdash_artifacts,
    timeseries_csv,
)
from etcdbench.results.io import load
from etcdbench.results.model import ResultsFile

# The README's one-run sample files (10 s windows); the CI example's baseline has two runs of 60 s.
ALL = sorted(p for p in RESULTS.glob("*.json") if not p.name.startswith("ci-baseline"))


def results(name: str) -> dict[str, Any]:
    """A committed results file as a document, to edit before `typed` reads it as the exporters take it."""
    return load(RESULTS / name)


def typed(doc: dict[str, Any]) -> ResultsFile:
    return ResultsFile.from_dict(doc)


def hgrm_rows(text: str) -> list[tuple[float, float, int]]:
    rows = []
    for line in text.splitlines()[2:]:
        if line.startswith("#"):
            break
        fields = line.split()
        rows.append((float(fields[0]), float(fields[1]), int(fields[2])))
    return rows


# --- .hgrm ------------------------------------------------------------------------------------------


def test_hgrm_layout_and_footer() -> None:
    text = hgrm(typed(results("v3-protobuf-500.json")))
    lines = text.splitlines()
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    assert lines[1] == ""
    assert lines[2] == "       0.559 0.000000000000          1           1.00"
    assert lines[-5] == "       7.967 1.000000000000       5000"  # the last row has no 1/(1-p)
    assert lines[-4] == "#[Mean    =        1.152, StdDeviation   =        0.409]"
    assert lines[-3] == "#[Max     =        7.967, Total count    =         5000]"
    assert lines[-2] == "#[Buckets =           22, SubBuckets     =         2048]"
    assert lines[-1].startswith("#[Value units = ms; watch latency")
    assert "run v3+protobuf pod @500/s" in lines[-1]


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
@pytest.mark.parametrize("metric", ["watch", "put"])
def test_hgrm_rows_are_the_histograms_cumulative_counts(path: Path, metric: str) -> None:
    doc = load(path)
    summary = doc["runs"][0]["latency_us"][metric]
    hist = LatencyRecorder.decode(summary["hdr"]).hist
    cumulative: dict[int, int] = {}
    total = 0
    for item in hist.get_recorded_iterator():
        total += int(item.count_added_in_this_iter_step)
        cumulative[int(hist.get_highest_equivalent_value(item.value_iterated_to))] = total
    rows = hgrm_rows(hgrm(typed(doc), metric))
    for value_ms, _, count in rows:
        assert cumulative[round(value_ms * 1000)] == count  # ms with 3 decimals: microseconds, exactly
    assert [r[2] for r in rows] == sorted(r[2] for r in rows)
    assert rows[-1] == (summary["max"] / 1000, 1.0, summary["count"])


def test_hgrm_choices() -> None:
    text = export(typed(results("v3-protobuf-500.json")), "hgrm", metric="put")
    assert "#[Max     =        8.463, Total count    =         5000]" in text
    assert "put latency, intended send -> acknowledged" in text
    two = results("v3-protobuf-500.json")
    two["runs"].append(copy.deepcopy(results("v3-json-500.json")["runs"][0]))
    with pytest.raises(UsageError, match=r"^--run: an \.hgrm holds one histogram; choose one run with --run"):
        hgrm(typed(two))
    assert "run v3+json pod @500/s" in hgrm(typed(two), label="v3+json pod @500/s")
    with pytest.raises(UsageError, match=r"^--run: no run labelled 'nope' \(runs: 'v3\+protobuf pod @500/s'"):
        hgrm(typed(two), label="nope")
    empty = results("v3-protobuf-500.json")
    empty["runs"][0]["latency_us"]["watch"].update(hdr="", count=0)
    with pytest.raises(UsageError, match="no watch latency recorded"):
        hgrm(typed(empty))


# --- perfdash ---------------------------------------------------------------------------------------


def test_perfdash_is_clusterloader2_shaped() -> None:
    doc = json.loads(perfdash(typed(results("v2-json-poll-1000.json"))))
    assert doc["version"] == "v1"
    assert [i["labels"]["Operation"] for i in doc["dataItems"]] == ["WATCH", "PUT", "SCHEDULE-SLIP"]
    watch = doc["dataItems"][0]
    assert watch == {
        "data": {"Perc50": 443.903, "Perc90": 976.895, "Perc99": 1073.151},
        "unit": "ms",
        "labels": {
            "Operation": "WATCH",
            "Backend": "v2",
            "Encoding": "json",
            "Kind": "pod",
            "Rate": "1000",
            "V2Watch": "poll",
            "Run": "v2(poll)+json pod @1000/s",
        },
    }
    for item in doc["dataItems"]:
        assert all(isinstance(v, float) for v in item["data"].values())
        assert all(isinstance(v, str) for v in item["labels"].values())


def test_perfdash_metric_filter_and_empty_metrics() -> None:
    doc = results("v3-protobuf-500.json")
    only_put = json.loads(export(typed(doc), "perfdash", metric="put"))
    assert [i["labels"]["Operation"] for i in only_put["dataItems"]] == ["PUT"]
    assert only_put["dataItems"][0]["labels"]["V2Watch"] == ""
    doc["runs"][0]["latency_us"]["schedule_slip"].update(p50=None, p90=None, p99=None)
    assert len(json.loads(perfdash(typed(doc)))["dataItems"]) == 2  # perfdash values must be numbers


def perfdash_reads(
    build: Path,
    artifacts_dir: str = "artifacts",
    output_file_prefix: str = "EtcdAPI",
    name: str = "benchmark",
) -> dict[str, list[dict[str, Any]]]:
    """What perfdash makes of one build's files for one TestDescription (kubernetes/perf-tests
    perfdash/metrics-downloader.go getJobData, parser.go parsePerfData), by category.

    Files: every file whose path starts with `<ArtifactsDir>/<OutputFilePrefix>_<Name>`. Category: the
    description's own when one file matches; with several, `<suite id>_<category>`, the suite id being
    the name's token after that prefix and "_" up to the next "_". Each file decodes as
    perftype.PerfData: `version` (string) and `dataItems`, each with `data` (map[string]float64), `unit`
    (string) and `labels` (map[string]string); the `Count` and `SlowCount` labels are stripped. A file
    that does not decode is skipped, as perfdash logs and skips it; one whose version differs from the
    first file's is ignored.
    """
    file_prefix = f"{output_file_prefix}_{name}"
    search = f"{artifacts_dir}/{file_prefix}"
    found = sorted(
        p for p in build.rglob("*") if p.is_file() and p.relative_to(build).as_posix().startswith(search)
    )
    out: dict[str, list[dict[str, Any]]] = {}
    version = ""
    for path in found:
        category = "EtcdAPIPerformance"
        if len(found) > 1:
            category = f"{path.name.removeprefix(file_prefix + '_').split('_')[0]}_{category}"
        doc = json.loads(path.read_text())
        assert isinstance(doc.get("version"), str) and isinstance(doc.get("dataItems"), list), path
        for item in doc["dataItems"]:
            assert isinstance(item["unit"], str)
            data, labels = item["data"], item.get("labels", {})
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in data.values()), path
            assert all(isinstance(v, str) for v in labels.values()), path
            labels.pop("Count", None)
            labels.pop("SlowCount", None)
        version = version or doc["version"]
        if doc["version"] == version:
            out.setdefault(category, []).extend(doc["dataItems"])
    return out


def test_perfdash_artifacts_are_named_as_etcds_benchmark_names_them() -> None:
    doc = results("v2-json-poll-1000.json")
    files = perfdash_artifacts(typed(doc))
    stamp = "20261129T231103Z"
    assert doc["created"] == "2026-11-29T23:11:03+00:00"
    assert sorted(files) == [
        f"EtcdAPI_benchmark_put_{stamp}.json",
        f"EtcdAPI_benchmark_schedule-slip_{stamp}.json",
        f"EtcdAPI_benchmark_watch_{stamp}.json",
    ]
    watch = json.loads(files[f"EtcdAPI_benchmark_watch_{stamp}.json"])
    assert watch == {"version": "v1", "dataItems": [json.loads(perfdash(typed(doc)))["dataItems"][0]]}
    assert perfdash_artifacts(typed(doc), "etcdbench_k8s16", metric="watch") == {
        f"etcdbench_k8s16_watch_{stamp}.json": files[f"EtcdAPI_benchmark_watch_{stamp}.json"]
    }
    with pytest.raises(UsageError, match="--perfdash-prefix"):
        perfdash_artifacts(typed(doc), "../x")


def test_perfdash_finds_and_parses_the_artifacts(tmp_path: Path) -> None:
    """An unmodified perfdash's etcdAPIBenchmark job type (OutputFilePrefix EtcdAPI, Name benchmark,
    ArtifactsDir artifacts) reads what `export --artifacts` writes: one category per operation."""
    build = tmp_path / "ci-etcdbench" / "1234"
    artifacts = build / "artifacts"
    for name in ("v3-protobuf-500.json", "v3-json-500.json"):
        code, out, err = run_cli(
            "export", str(RESULTS / name), "--format", "perfdash", "--artifacts", str(artifacts)
        )
        assert (code, err) == (0, ""), err
        assert out.count("wrote ") == 3
    assert len(list(artifacts.iterdir())) == 6  # two results files, three operations each
    seen = perfdash_reads(build)
    assert sorted(seen) == [
        "put_EtcdAPIPerformance",
        "schedule-slip_EtcdAPIPerformance",
        "watch_EtcdAPIPerformance",
    ]
    watch = seen["watch_EtcdAPIPerformance"]
    assert [(i["labels"]["Operation"], i["labels"]["Encoding"]) for i in watch] == [
        ("WATCH", "protobuf"),  # file names sort by time: the protobuf results file is the older
        ("WATCH", "json"),
    ]
    summary = results("v3-protobuf-500.json")["runs"][0]["latency_us"]["watch"]
    assert watch[0]["data"] == {f"Perc{p}": summary[f"p{p}"] / 1000 for p in (50, 90, 99)}
    assert all(i["unit"] == "ms" for items in seen.values() for i in items)


def test_perfdash_prefix_picks_another_test_description(tmp_path: Path) -> None:
    build = tmp_path / "job" / "1"
    code, _, _ = run_cli(
        "export",
        str(RESULTS / "v3-json-500.json"),
        "--format",
        "perfdash",
        "--metric",
        "watch",
        "--artifacts",
        str(build / "artifacts"),
        "--perfdash-prefix",
        "Etcdbench_watch",
    )
    assert code == 0
    assert perfdash_reads(build) == {}  # not an EtcdAPI_benchmark file
    (only,) = perfdash_reads(build, output_file_prefix="Etcdbench", name="watch").values()
    assert [i["labels"]["Operation"] for i in only] == ["WATCH"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "csv", "--artifacts", "x"], "--artifacts: only with --format perfdash"),
        (
            ["--format", "perfdash", "--artifacts", "x", "--out", "y"],
            "--artifacts: writes one file per metric",
        ),
        (["--format", "perfdash", "--artifacts", "x", "--perfdash-prefix", "a/b"], "--perfdash-prefix"),
    ],
)
def test_perfdash_artifacts_bad_usage(tmp_path: Path, extra: list[str], message: str) -> None:
    argv = [a if a not in ("x", "y") else str(tmp_path / a) for a in extra]
    code, out, err = run_cli("export", str(RESULTS / "v3-json-500.json"), *argv)
    assert code == 2 and out == "" and message in err


# --- CSV --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_csv_counts_add_up_to_the_counters(path: Path) -> None:
    doc = load(path)
    run = doc["runs"][0]
    rows = list(csv.DictReader(io.StringIO(timeseries_csv(typed(doc)))))
    assert {r["run"] for r in rows} == {run["label"]}
    assert [int(r["second"]) for r in rows] == list(range(len(rows)))
    assert sum(int(r["writes_acked"]) for r in rows) == run["counters"]["written"]
    assert sum(int(r["events_received"]) for r in rows) == run["counters"]["received"]
    assert sum(int(r["measured"]) for r in rows) == 10  # the 10 s window, 2..11
    assert [int(r["second"]) for r in rows if r["measured"] == "1"] == list(range(2, 12))


def test_csv_exact_rows() -> None:
    text = timeseries_csv(typed(results("v3-protobuf-500.json")))
    lines = text.splitlines()
    assert lines[0] == (
        "run,second,measured,writes_acked,events_received,cpu_watcher,cpu_writers,cpu_etcd,cpu_host,"
        "rss_parent_mb,rss_watcher_mb,rss_writers_mb,rss_etcd_mb"
    )
    assert len(lines) == 13
    # a file from before RSS was recorded: the RSS columns are empty
    assert lines[1] == "v3+protobuf pod @500/s,0,0,500,500,0.119,0.288,0.278,0.353,,,,"
    assert lines[3] == "v3+protobuf pod @500/s,2,1,500,500,0.139,0.338,0.368,0.442,,,,"


def test_cpu_resampling_is_a_time_weighted_mean() -> None:
    # samples cover (0, .5], (.5, 1], (1, 1.5]; the first one covers one interval before its end
    points = [[0.5, 1.0], [1.0, 0.0], [1.5, 2.0]]
    assert cpu_per_second(points, 0.5, 3) == [0.5, 2.0, None]
    # an uneven sample is weighted by its length: 0.8 s at 1.0 and 0.2 s at 0.5
    assert cpu_per_second([[0.0, 9.0], [0.8, 1.0], [1.0, 0.5]], 0.5, 1) == [0.9]


def test_csv_without_etcd_cpu_leaves_the_column_empty() -> None:
    doc = results("v3-protobuf-500.json")
    del doc["runs"][0]["timeseries"]["cpu_cores"]["etcd"]
    row = next(csv.DictReader(io.StringIO(timeseries_csv(typed(doc)))))
    assert row["cpu_etcd"] == "" and row["cpu_watcher"] == "0.119"


# --- through the command ----------------------------------------------------------------------------


def test_export_to_stdout_is_exactly_the_text() -> None:
    path = RESULTS / "v2-json-poll-2000.json"
    code, out, err = run_cli("export", str(path), "--format", "csv")
    assert (code, err) == (0, "")
    assert out == timeseries_csv(typed(load(path)))
    code, out, _ = run_cli("export", str(path), "--format", "hgrm", "--metric", "put")
    assert out == hgrm(typed(load(path)), "put")


def test_export_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "watch.hgrm"
    code, out, _ = run_cli(
        "export", str(RESULTS / "v3-json-500.json"), "--format", "hgrm", "--out", str(target)
    )
    assert code == 0
    assert out.strip() == f"wrote {target}"
    assert target.read_text() == hgrm(typed(results("v3-json-500.json")))


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--format", "xml"], "--format"),
        ([], "--format"),
        (["--format", "hgrm", "--metric", "slip"], "--metric"),
        (["--format", "hgrm", "--run", "nope"], "--run"),
        (["--format", "csv", "--out", "/proc/x.csv"], "--out"),
    ],
)
def test_export_bad_usage(argv: list[str], names: str) -> None:
    code, out, err = run_cli("export", str(RESULTS / "v3-json-500.json"), *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and names in err and len(err.strip().splitlines()) == 1
