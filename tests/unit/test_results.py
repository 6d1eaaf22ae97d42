"""Results file, verdict and console summary, from fixed data: no etcd needed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from paths import DATA
from rich.console import Console

from etcdbench.config.run import RunConfig
from etcdbench.errors import UsageError
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.report.console import summary
from etcdbench.results.io import SCHEMA_VERSION, check_writable, load, write_atomic
from etcdbench.results.model import ResultsFile, Run, Verdict
from etcdbench.results.verdict import verdict

SAMPLE = DATA / "results-v1.json"
SAMPLE_V2 = DATA / "results-v2.json"
SAMPLE_V3 = DATA / "results-v3.json"


def sample() -> dict[str, Any]:
    return load(SAMPLE)


def test_committed_sample_of_schema_1_loads_through_the_upgrader() -> None:
    raw = json.loads(SAMPLE.read_text())
    assert raw["schema_version"] == 1
    results = sample()
    assert results["schema_version"] == SCHEMA_VERSION == 3
    (run,) = results["runs"]
    c = raw["runs"][0]["counters"]
    assert run["workload"] == "update" and run["watchers"] == 1 and run["scenario"] is None
    assert run["operations"] == {"create": 0, "update": c["written"], "delete": 0}
    assert run["counters"]["writes"] == c["written"]
    assert run["counters"]["missed_relist"] == c["missed"] > 0  # that run relisted
    assert run["counters"]["missed_undelivered"] == 0
    assert run["watch_events_per_s_total"] == run["watch_events_per_s"]


def test_committed_sample_of_schema_2_loads_through_the_upgrader() -> None:
    raw = json.loads(SAMPLE_V2.read_text())
    assert raw["schema_version"] == 2
    results = load(SAMPLE_V2)
    assert results["schema_version"] == 3
    (run,) = results["runs"]
    (old,) = raw["runs"]
    assert run["watchers"] == 2 and len(run["watches"]) == 2
    assert sum(run["operations"].values()) == run["counters"]["writes"]
    # That file summed `written` over its two watches; version 3 counts each write once.
    assert old["counters"]["written"] == 2 * old["counters"]["writes"]
    assert run["counters"]["written"] == run["counters"]["writes"] == 500
    assert run["counters"]["received"] + run["counters"]["missed"] == 2 * run["counters"]["written"]
    # Derived from its own figures: no duplicate, one shard, no TTL. Nothing else is added.
    for c in [run["counters"], *(w["counters"] for w in run["watches"])]:
        assert c["duplicates_retried"] == c["duplicates_redelivered"] == c["other_shard_events"] == 0
    assert run["counters"]["expired_before_update"] == 0
    assert {"etcd_server", "memory", "network", "background", "etcd"}.isdisjoint(run)
    assert {"v3_client", "tls", "json_decoder"}.isdisjoint(results["environment"])
    assert {**run, "counters": None, "watches": None} == {**old, "counters": None, "watches": None}
    for new_watch, old_watch in zip(run["watches"], old["watches"], strict=True):
        assert {**new_watch, "counters": None} == {**old_watch, "counters": None}
        assert new_watch["counters"].items() >= old_watch["counters"].items()  # only added to
    assert {**results, "runs": None, "schema_version": 2} == {**raw, "runs": None}
    assert run["preload"]["keys"] >= 50


def test_version_2_files_keep_what_cannot_be_derived_absent() -> None:
    """Duplicates of a file that did not split them, another shard's events of a sharded run, and
    expiries of a run with a TTL stay unknown: the upgrader invents no figure."""
    from etcdbench.results.io import UPGRADERS

    doc = json.loads(SAMPLE_V2.read_text())
    run = doc["runs"][0]
    run["counters"]["duplicates"] = 3
    run["config"].update(shards=2, shard=0, ttl_s=5.0)
    del run["watches"]
    run["counters"]["written"] = 700  # one watch: nothing to tell a sum from
    upgraded = UPGRADERS[2](doc)["runs"][0]["counters"]
    assert upgraded["written"] == 700
    for key in (
        "duplicates_retried",
        "duplicates_redelivered",
        "other_shard_events",
        "expired_before_update",
    ):
        assert key not in upgraded


def test_committed_sample_of_schema_3_loads_as_is() -> None:
    raw = json.loads(SAMPLE_V3.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION == 3
    assert load(SAMPLE_V3) == raw


@pytest.mark.parametrize("path", [SAMPLE, SAMPLE_V2, SAMPLE_V3], ids=["v1", "v2", "v3"])
def test_committed_samples_keep_their_invariants(path: Path) -> None:
    results = load(path)
    for key in ("host", "cpu_count", "python", "etcdbench_version", "etcd"):
        assert key in results["environment"]
    (run,) = results["runs"]
    c = run["counters"]
    assert c["written"] * run["watchers"] == c["received"] + c["missed"]
    for name in ("watch", "put"):
        s = run["latency_us"][name]
        assert LatencyRecorder.decode(s["hdr"]).summary()["p99"] == s["p99"]
    assert set(run["verdict"]) >= {"pass", "reasons", "client_bound"}


def test_write_atomic_leaves_no_temporary_files(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "r.json"
    write_atomic(out, sample())
    assert json.loads(out.read_text())["format"] == "etcdbench-results"
    assert out.stat().st_mode & 0o044  # readable by others, as a shared file should be
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]


def test_check_writable_refuses_directories_and_unwritable_places(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        check_writable(tmp_path)
    with pytest.raises(UsageError, match="cannot be written"):
        check_writable(Path("/proc/etcdbench.json"))
    check_writable(tmp_path / "new" / "dir" / "r.json")  # made at save time
    assert not (tmp_path / "new").exists()


def a_run(**changes: Any) -> Run:
    run: dict[str, Any] = copy.deepcopy(sample()["runs"][0])
    run["counters"].update(missed=0, relists=0, errors=0)
    run["watch_events_per_s"] = run["write_rate_achieved"] = 500.0
    run["latency_us"]["watch"]["p99"] = 2_000
    run["latency_us"]["schedule_slip"]["p99"] = 100
    run["cpu"] = {"watcher": 0.2, "writers": 0.3, "etcd": 0.3, "host": 0.4}
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = run
        for p in parents:
            node = node[p]
        node[leaf] = value
    return Run.from_dict(run)


CONFIG = RunConfig(rate=500)


def test_verdict_passes_a_clean_run() -> None:
    v = verdict(a_run(), CONFIG)
    assert v == Verdict(pass_=True, reasons=[], client_bound=False, client_bound_reasons=[], warnings=[])


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"watch_events_per_s": 494.0}, "watcher received 494 events/s < 495"),
        ({"counters.missed": 3, "counters.relists": 1}, "3 events missed (1 relists)"),
        ({"latency_us.watch.p99": 1_200_000}, "watch p99 1.20 s > SLO 1.00 s"),
        ({"latency_us.watch.p99": None}, "no watch latency recorded"),
        ({"counters.errors": 2}, "2 writes failed"),
        ({"write_rate_achieved": 400.0}, "writers achieved 400 writes/s < 495"),
    ],
)
def test_verdict_fails_with_the_reason_stated(changes: dict[str, Any], reason: str) -> None:
    v = verdict(a_run(**changes), CONFIG)
    assert not v.pass_
    assert any(r.startswith(reason) for r in v.reasons), v.reasons


def test_watch_events_exactly_at_99_percent_pass() -> None:
    assert verdict(a_run(watch_events_per_s=495.0), CONFIG).pass_


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"cpu.watcher": 0.95}, "a watcher process used 0.95 of its one core"),
        ({"cpu.writers": 0.92}, "a writer process used 0.92 of its one core"),
        ({"latency_us.schedule_slip.p99": 250_000}, "writers fell behind their schedule"),
    ],
)
def test_client_bound_is_called_with_its_reason(changes: dict[str, Any], reason: str) -> None:
    v = verdict(a_run(**changes), CONFIG)
    assert v.client_bound
    assert any(r.startswith(reason) for r in v.client_bound_reasons)


def test_busy_host_is_a_warning_not_client_bound() -> None:
    v = verdict(a_run(**{"cpu.host": 0.97}), CONFIG)
    assert not v.client_bound and v.warnings


def _rendered(results: dict[str, Any]) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(summary(ResultsFile.from_dict(results)))
    return console.export_text()


def test_console_says_written_counts_each_write_once_across_watches() -> None:
    results = sample()
    run = results["runs"][0]
    run["watchers"] = 3
    run["counters"].update(written=300, received=900, missed=0, duplicates=0)
    text = _rendered(results)
    assert "events (3 watches)" in text
    assert "written 300 (each to 3 watches) · received in all 900 · missed in all 0" in text


def test_console_splits_duplicates_by_kind() -> None:
    results = sample()
    results["runs"][0]["counters"].update(duplicates=5, duplicates_retried=4, duplicates_redelivered=1)
    assert "duplicates 5 (retried 4, redelivered 1)" in _rendered(results)


def test_console_shows_etcds_view() -> None:
    results = sample()
    run = results["runs"][0]
    run["backend"] = "v3"
    run["etcd"] = {
        "members": 1,
        "scraped": 1,
        "restarted": 0,
        "errors": [],
        "increase": {"mvcc_puts": 1234, "watch_events_sent": 1200},
        "max": {"slow_watchers": 2, "pending_events": 7},
        "last": {"db_bytes": 25_100_000},
    }
    text = _rendered(results)
    assert (
        "etcd's view  applied 1,234 puts · sent 1,200 watch events · slow watchers max 2 · "
        "pending events max 7 · db 25.1 MB"
    ) in text
