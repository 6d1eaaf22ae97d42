"""The comparison table and conclusions, from fixed runs: what they say, and what they must not."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from cli_console import as_text, snapshot
from paths import DATA

from etcdbench.config.run import RunConfig
from etcdbench.report.matrix import (
    comparison,
    conclusions,
    matrix_table,
    varying,
)
from etcdbench.results.io import load, load_results
from etcdbench.results.model import Capacity, ResultsFile, Run

TEMPLATE = load(DATA / "results-v2.json")["runs"][0]  # upgraded to the current version
FILE = load_results(DATA / "results-v3.json")  # one run, no scenario, no capacity


def results_of(
    runs: list[Run], *, scenario: dict[str, Any] | None = None, capacity: Capacity | None = None
) -> ResultsFile:
    """A results file of these runs (the rest from a committed sample)."""
    return replace(FILE, runs=runs, scenario=scenario, capacity=capacity)


def make_run(
    backend: str,
    encoding: str,
    rate: float,
    *,
    received: float | None = None,
    p99_us: int = 2_000,
    missed: int = 0,
    bound: list[str] | None = None,
    v2_watch: str = "poll",
    **config: Any,
) -> Run:
    """A run shaped like a real one (from tests/data), with the figures that matter set."""
    run = copy.deepcopy(TEMPLATE)
    received = rate if received is None else received
    passed = received >= 0.99 * rate and not missed and p99_us <= 1_000_000
    cfg = RunConfig(backend=backend, encoding=encoding, rate=rate, v2_watch=v2_watch, **config)
    run.update(
        label=cfg.label,
        backend=backend,
        encoding=encoding,
        v2_watch=v2_watch if backend == "v2" else None,
        target_rate=rate,
        watch_events_per_s=received,
        write_rate_achieved=rate,
        config=cfg.to_dict(),
    )
    run["counters"].update(missed=missed, relists=1 if missed else 0, written=1000, received=1000 - missed)
    run["latency_us"]["watch"].update(p50=p99_us // 3, p99=p99_us)
    run["cpu"] = {"watcher": 0.2, "writers": 0.4, "etcd": 0.3, "host": 0.5}
    run["verdict"] = {
        "pass": passed,
        "reasons": []
        if passed
        else [f"watcher received {received:g} events/s < {0.99 * rate:g} (99% of target)"],
        "client_bound": bool(bound),
        "client_bound_reasons": bound or [],
        "warnings": [],
    }
    return Run.from_dict(run)


def test_table_fits_an_80_column_terminal() -> None:
    runs = [*V2_V3, make_run("v3", "protobuf", 500, size_profile="modern", workload="churn", received=420)]
    text = as_text(matrix_table(runs, title="t"), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    snapshot("matrix-table-80-columns.txt", text)  # FAIL, client-bound: folded to the column, not cut off


V2_V3 = [
    make_run("v2", "json", 500, p99_us=14_100),
    make_run("v3", "protobuf", 500, p99_us=2_900),
    make_run(
        "v2",
        "json",
        2000,
        received=204,
        p99_us=840_000,
        missed=3013,
        bound=["writers fell behind their schedule (slip p99 304.6 ms)"],
    ),
    make_run("v3", "protobuf", 2000, received=1999.9, p99_us=1_200),
]


def test_conclusions_compare_best_and_worst_per_rate_honestly() -> None:
    lines = conclusions(V2_V3)
    assert lines[0] == "3 of 4 runs passed."
    assert (
        lines[1] == "@500/s: all 2 passed; watch p99 from 2.90 ms (v3+protobuf) to 14.10 ms (v2(poll)+json)."
    )
    assert lines[2] == (
        "@2,000/s: 1 of 2 passed; v3+protobuf sustained 9.8x the events/s of v2(poll)+json "
        "(1,999.9 vs 204) at watch p99 1.20 ms vs 840.00 ms, 3,013 missed (1 relists) "
        "[client-bound: writers fell behind their schedule (slip p99 304.6 ms)]."
    )
    assert "v2(poll)+json: passed up to 500/s, failed from 2,000/s (client-bound where it failed)." in lines
    assert "v3+protobuf: passed every rate tried, up to 2,000/s." in lines
    assert lines[-1].startswith("1 run(s) were client-bound")


def test_no_ratio_is_claimed_when_events_per_s_are_alike() -> None:
    runs = [make_run("v3", "protobuf", 1000), make_run("v3", "json", 1000, received=998, p99_us=1_500_000)]
    (line,) = [x for x in conclusions(runs) if x.startswith("@1,000/s")]
    assert "x the events/s" not in line
    assert "v3+protobuf kept up and v3+json did not" in line


def test_none_passing_names_best_and_worst_without_claiming_a_winner() -> None:
    runs = [
        make_run("v2", "json", 4000, received=900, missed=10),
        make_run("v2", "json", 4000, received=400, missed=90, v2_watch="stream"),
    ]
    (line,) = [x for x in conclusions(runs) if x.startswith("@4,000/s")]
    assert line.startswith("@4,000/s: none of 2 passed; the best, v2(poll)+json, received 900 events/s")
    assert "sustained" not in line


def test_fields_outside_the_label_are_shown_when_they_vary() -> None:
    runs = [
        make_run("v3", "protobuf", 500, size_profile="k8s-1.6"),
        make_run("v3", "protobuf", 500, size_profile="modern", received=300),
    ]
    assert varying(runs) == ["size_profile"]
    text = as_text(matrix_table(runs), width=200)
    snapshot("matrix-table-varying-fields.txt", text)  # "size_profile=k8s-1.6", "size_profile=modern"
    assert any("v3+protobuf size_profile=k8s-1.6 sustained" in line for line in conclusions(runs))


def test_fields_the_label_shows_are_not_repeated_but_names_keep_them() -> None:
    runs = [make_run("v3", "protobuf", 500), make_run("v3", "protobuf", 500, watchers=10, received=300)]
    assert varying(runs) == []
    text = as_text(matrix_table(runs), width=200)
    snapshot("matrix-table-label-fields.txt", text)  # "x10 watchers", never "watchers=10"
    assert any(
        "v3+protobuf watchers=1 sustained" in line and "watchers=10" in line for line in conclusions(runs)
    )


def test_single_run() -> None:
    runs = [make_run("v3", "protobuf", 500)]
    assert conclusions(runs)[1] == "@500/s: v3+protobuf passed: 500 events/s received, watch p99 2.00 ms."
    assert conclusions([]) == []


def test_comparison_picks_the_view_from_the_file() -> None:
    matrix = results_of(V2_V3, scenario={"name": "v2-vs-v3"})
    text = as_text(*comparison(matrix)[:1], width=200)
    snapshot("matrix-table.txt", text)  # the table titled by the scenario, as test_console_snapshots has it
    single = results_of(V2_V3[:1])
    assert comparison(single) == []
