"""`etcdbench merge`: shard results files combined exactly, and files that are not shards refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from paths import DATA

from etcdbench.cli.app import main
from etcdbench.errors import UsageError
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.results.io import load, write_atomic
from etcdbench.results.merge import merge, merge_files
from etcdbench.results.model import ResultsFile

# Each shard's watcher timed different events: the merged percentiles must come from the sum of
# the histograms, not from the shards' percentiles.
SHARD_LATENCIES = [
    [1_000 + 10 * k for k in range(300)],
    [2_000 + 7 * k for k in range(250)] + [400_000 + k for k in range(12)],
]


def _part(value: int, i: int, n: int) -> int:
    """Shard i's part of a count split n ways (the parts add up to `value`)."""
    return value // n + (1 if i < value % n else 0)


def _split(counts: dict[str, int], i: int, n: int) -> dict[str, int]:
    return {k: _part(v, i, n) for k, v in counts.items()}


def _hist(values: list[int]) -> dict[str, Any]:
    rec = LatencyRecorder()
    for v in values:
        rec.record_us(v)
    return rec.summary()


def shard_docs(n: int = 2) -> list[dict[str, Any]]:
    """The run of tests/data/results-v2.json as if n shards had made it against one external etcd."""
    base = load(DATA / "results-v2.json")
    docs = []
    for i in range(n):
        doc = copy.deepcopy(base)
        doc["environment"]["host"] = f"loadgen-{i}"
        doc["environment"]["etcd"] = {
            "embedded": False,
            "endpoints": ["http://10.0.0.1:2379"],
            "server_version": "3.5.1",
        }
        run = doc["runs"][0]
        run["config"].update(shard=i, shards=n)
        run["label"] += f" shard {i}/{n}"
        run["counters"] = _split(run["counters"], i, n)
        run["operations"] = _split(run["operations"], i, n)
        run["preload"]["keys"] = _part(run["preload"]["keys"], i, n)
        for name in ("watch_events_per_s", "watch_events_per_s_total", "write_rate_achieved"):
            run[name] = run[name] / n
        ts = run["timeseries"]
        for name in ("writes_acked", "events_received"):
            ts[name] = [_part(v, i, n) for v in ts[name]]
        for w in run["watches"]:
            w["counters"] = _split(w["counters"], i, n)
            w["watch_events_per_s"] = w["watch_events_per_s"] / n
            w["events_received"] = [_part(v, i, n) for v in w["events_received"]]
            w["latency_us"]["watch"] = _hist(SHARD_LATENCIES[i % 2])
        run["latency_us"]["watch"] = _hist(SHARD_LATENCIES[i % 2] * 2)  # two watches
        docs.append(doc)
    return docs


def named(docs: list[dict[str, Any]]) -> list[tuple[str, ResultsFile]]:
    """The shards' documents as `load_results` reads them."""
    return [(f"shard{i}.json", ResultsFile.from_dict(d)) for i, d in enumerate(docs)]


def test_merged_counts_are_the_sums_and_percentiles_those_of_the_added_histograms() -> None:
    base = load(DATA / "results-v2.json")["runs"][0]
    docs = shard_docs(2)
    merged = merge(named(docs)).to_dict()  # compared with the documents key by key
    (run,) = merged["runs"]

    assert run["counters"] == base["counters"]
    assert run["operations"] == base["operations"]
    c = run["counters"]
    assert c["written"] * run["watchers"] == c["received"] + c["missed"]  # each write to each watch
    assert run["timeseries"]["writes_acked"] == base["timeseries"]["writes_acked"]
    assert run["timeseries"]["events_received"] == base["timeseries"]["events_received"]
    assert run["watch_events_per_s"] == base["watch_events_per_s"]
    assert run["watch_events_per_s_total"] == base["watch_events_per_s_total"]
    assert run["write_rate_achieved"] == base["write_rate_achieved"]
    assert run["preload"]["keys"] == base["preload"]["keys"]

    every = LatencyRecorder()
    for values in SHARD_LATENCIES:
        for v in values * 2:
            every.record_us(v)
    expected = every.summary()
    for name in ("p50", "p90", "p99", "p999", "max", "count"):
        assert run["latency_us"]["watch"][name] == expected[name], name
    assert run["latency_us"]["watch"]["p99"] >= 400_000  # set by shard 1's tail alone
    (watch0, watch1) = run["watches"]
    assert watch0["latency_us"]["watch"]["count"] == len(SHARD_LATENCIES[0]) + len(SHARD_LATENCIES[1])
    assert watch0["counters"] == base["watches"][0]["counters"]
    assert watch1["events_received"] == base["watches"][1]["events_received"]

    # One run at the full rate, not a shard: label, config and verdict say so.
    assert run["label"] == base["label"]
    assert run["target_rate"] == 200.0
    assert run["config"]["rate"] == 200.0 and run["config"]["shards"] == 1
    assert run["shards"] == 2
    assert run["verdict"]["pass"], run["verdict"]
    assert [cpu["shard"] for cpu in run["cpu_shards"]] == [0, 1]
    assert run["cpu"]["watcher"] == round(2 * base["cpu"]["watcher"], 3)

    env = merged["environment"]
    assert env["merge"] == {"files": ["shard0.json", "shard1.json"], "shards": 2}
    assert [e["host"] for e in env["shards"]] == ["loadgen-0", "loadgen-1"]
    assert env["etcd"]["endpoints"] == ["http://10.0.0.1:2379"]
    assert merged["complete"] is True


def test_the_merged_verdict_is_taken_again_over_the_whole_run() -> None:
    docs = shard_docs(3)
    docs[2]["runs"][0]["counters"]["missed"] += 3
    docs[2]["runs"][0]["counters"]["written"] += 3
    (run,) = merge(named(docs)).runs
    assert not run.verdict.pass_
    assert any("3 events missed" in r for r in run.verdict.reasons)


def test_files_are_merged_in_shard_order_whatever_the_argument_order() -> None:
    docs = shard_docs(2)
    a = merge(named(docs))
    b = merge(list(reversed(named(docs))))
    assert a.runs == b.runs
    assert a.environment.merge is not None
    assert a.environment.merge.files == ["shard0.json", "shard1.json"]


def _refused(docs: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        merge(named(docs))
    assert "\n" not in str(info.value)


def test_a_missing_shard_is_refused() -> None:
    _refused(shard_docs(3)[:2], r"3 shards make this run; shard\(s\) \[2\] missing")


def test_the_same_shard_twice_is_refused() -> None:
    docs = shard_docs(2)
    _refused([docs[0], docs[0]], "are both shard 0/2")


def test_runs_that_differ_are_refused() -> None:
    docs = shard_docs(2)
    docs[1]["runs"][0]["config"]["objects"] = 21
    _refused(docs, "not shards of the same run: .* differ in run")


def test_shards_of_a_different_split_are_refused() -> None:
    docs = shard_docs(2)
    other = shard_docs(3)[1]
    _refused([docs[0], other], "not shards of the same run: .* is shard 1/3, not of 2")


def test_a_file_made_without_shard_is_refused() -> None:
    plain = load(DATA / "results-v2.json")
    _refused([shard_docs(2)[0], plain], r"not a shard's results .*--shard I/N")


def test_shards_on_embedded_etcds_are_refused() -> None:
    docs = shard_docs(2)
    docs[1]["environment"]["etcd"]["embedded"] = True
    _refused(docs, "its own embedded etcd")


def test_one_file_is_refused() -> None:
    _refused(shard_docs(2)[:1], "at least two shards")


def test_merge_command_writes_a_loadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for i, doc in enumerate(shard_docs(2)):
        paths.append(tmp_path / f"shard{i}.json")
        write_atomic(paths[-1], doc)
    out = tmp_path / "merged.json"
    assert main(["merge", *map(str, paths), "-o", str(out)]) == 0
    merged = load(out)
    assert merged["runs"][0]["counters"]["written"] == 500  # each write once, however many watches
    assert merged["environment"]["merge"]["files"] == [str(p) for p in paths]
    assert f"merged 2 shards: {out}" in capsys.readouterr().out
    assert json.loads(json.dumps(merge_files(paths).to_dict()["runs"])) == merged["runs"]
    assert main(["show", str(out)]) == 0  # a merged file reads like any other
    assert main(["export", str(out), "--format", "csv"]) == 0
    assert main(["compare", str(out), str(out), "--fail-if", "missed > 0"]) == 0


def test_merge_refusal_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(load(DATA / "results-v2.json")))
    assert main(["merge", str(path), str(path), "-o", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: merge: ") and "\n" not in err
    assert not (tmp_path / "m.json").exists()
