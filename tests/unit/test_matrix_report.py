"""The comparison table and conclusions, from fixed run dicts: what they say, and what they must not."""

from __future__ import annotations

import copy
import json
from typing import Any

from paths import DATA
from rich.console import Console

from etcdbench.config.run import RunConfig
from etcdbench.report.matrix import (
    capacity_lines,
    capacity_table,
    comparison,
    conclusions,
    matrix_table,
    varying,
)

TEMPLATE = json.loads((DATA / "results-v2.json").read_text())["runs"][0]


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
) -> dict[str, Any]:
    """A run dict shaped like a real one (from tests/data), with the figures that matter set."""
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
    return run


def render(renderable: Any, width: int = 200) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_table_fits_an_80_column_terminal() -> None:
    runs = [*V2_V3, make_run("v3", "protobuf", 500, size_profile="modern", workload="churn", received=420)]
    text = render(matrix_table(runs, title="t"), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "FAIL" in text and "client-" in text  # folded to the column, not cut off


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


def test_table_has_one_row_per_run_with_the_figures() -> None:
    text = render(matrix_table(V2_V3, title="v2-vs-v3"))
    assert "v2-vs-v3" in text
    for label in ("v2(poll)+json pod @500/s", "v3+protobuf pod @2000/s"):
        assert label in text
    row = next(line for line in text.splitlines() if "v2(poll)+json pod @2000/s" in line)
    for figure in ("2,000", "204", "840.00 ms", "3,013 (1)", "FAIL, client-bound", "0.20 0.40 0.30"):
        assert figure in row, (figure, row)
    assert "PASS" in next(line for line in text.splitlines() if "v3+protobuf pod @500/s" in line)


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
    text = render(matrix_table(runs))
    assert "v3+protobuf pod @500/s size_profile=k8s-1.6" in text and "size_profile=modern" in text
    assert any("v3+protobuf size_profile=k8s-1.6 sustained" in line for line in conclusions(runs))


def test_fields_the_label_shows_are_not_repeated_but_names_keep_them() -> None:
    runs = [make_run("v3", "protobuf", 500), make_run("v3", "protobuf", 500, watchers=10, received=300)]
    assert varying(runs) == []
    text = render(matrix_table(runs))
    assert "v3+protobuf pod @500/s x10 watchers" in text and "watchers=" not in text
    assert any(
        "v3+protobuf watchers=1 sustained" in line and "watchers=10" in line for line in conclusions(runs)
    )


def test_single_run() -> None:
    runs = [make_run("v3", "protobuf", 500)]
    assert conclusions(runs)[1] == "@500/s: v3+protobuf passed: 500 events/s received, watch p99 2.00 ms."
    assert conclusions([]) == []


def test_comparison_picks_the_view_from_the_file() -> None:
    matrix = {"runs": V2_V3, "scenario": {"name": "v2-vs-v3"}}
    text = render(*comparison(matrix)[:1])
    assert "v2-vs-v3" in text
    single = {"runs": V2_V3[:1]}
    assert comparison(single) == []


def test_capacity_view() -> None:
    runs = [
        make_run("v3", "protobuf", r, received=r if r <= 1800 else 0.6 * r)
        for r in (500, 1000, 2000, 1800, 1800)
    ]
    capacity = {
        "knee": 1800,
        "confirmed": True,
        "interval": [1800, 2000],
        "relative_width": 0.1111,
        "limited_by": {"by": "etcd", "text": "etcd", "rate": 2000},
        "notes": ["the budget ran out before the interval reached the resolution"],
        "curve": [
            {
                "rate": r["target_rate"],
                "phase": ph,
                "run": i,
                "events_per_s": r["watch_events_per_s"],
                "p50_us": 600,
                "p99_us": 2000,
                "missed": 0,
                "pass": r["verdict"]["pass"],
                "client_bound": False,
            }
            for i, (r, ph) in enumerate(zip(runs, ["rise", "rise", "rise", "bisect", "repeat"], strict=True))
        ],
    }
    text = render(capacity_table(capacity, runs))
    assert "repeat" in text and "1,800" in text and "FAIL" in text
    lines = capacity_lines(capacity)
    assert (
        lines[0] == "knee: 1,800 writes/s (within 11.1%: passed at 1,800, failed at 2,000) — limited by etcd"
    )
    assert lines[1].startswith("note: the budget ran out")
    assert len(comparison({"runs": runs, "capacity": capacity})) == 3
