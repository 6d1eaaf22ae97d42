"""Long runs (soaks): durations in minutes, RSS over time in the results, a results file that stays
small, memory growth in the console, CSV and plot; from synthetic samples, no etcd needed."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from paths import RESULTS
from rich.console import Console

from etcdbench.cli.app import build_parser
from etcdbench.config.run import parse_duration
from etcdbench.errors import UsageError
from etcdbench.metrics.cpu import (
    MAX_SERIES_POINTS,
    NO_RSS,
    cores_series,
    memory_trend,
    peak_series,
    sampling_interval,
    series_step,
)
from etcdbench.report.console import memory_line, summary
from etcdbench.report.export import timeseries_csv
from etcdbench.report.plot import memory_png, plot_runs
from etcdbench.results.io import load, load_results, write_atomic
from etcdbench.results.model import ResultsFile, Run

MB = 1_000_000


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10", 10.0), ("2.5", 2.5), ("90s", 90.0), ("30m", 1800.0), ("1.5h", 5400.0), ("500ms", 0.5)],
)
def test_durations_take_a_unit(text: str, seconds: float) -> None:
    assert parse_duration("--duration", text) == seconds
    args = build_parser().parse_args(["watch", "--duration", text, "--warmup", text])
    assert (args.duration, args.warmup) == (seconds, seconds)


def test_a_duration_without_a_known_unit_is_refused() -> None:
    with pytest.raises(
        UsageError, match=r"^--duration: '30x' is not a duration: seconds \(10\), or with a unit"
    ):
        parse_duration("--duration", "30x")
    with pytest.raises(UsageError, match=r"argument --duration: '3 days' is not a duration"):
        build_parser().parse_args(["watch", "--duration", "3 days"])


@pytest.mark.parametrize(
    ("span_s", "finest", "step"),
    [(12.0, 0.5, 0.5), (300.0, 0.5, 0.5), (301.0, 0.5, 1.0), (12.0, 1.0, 1.0), (1210.0, 1.0, 5.0),
     (1810.0, 0.5, 5.0), (3010.0, 1.0, 10.0), (86400.0, 1.0, 300.0)],
)  # fmt: skip
def test_long_runs_store_wider_steps(span_s: float, finest: float, step: float) -> None:
    assert series_step(span_s, finest) == step
    assert span_s / step <= MAX_SERIES_POINTS


@pytest.mark.parametrize(
    ("run_s", "interval"), [(12.0, 0.5), (1200.0, 0.5), (1202.0, 1.25), (1800.0, 1.25), (86400.0, 75.0)]
)
def test_long_runs_are_sampled_less_often(run_s: float, interval: float) -> None:
    assert sampling_interval(run_s) == interval
    assert run_s / interval <= 4 * MAX_SERIES_POINTS  # the sampler's own memory is bounded


def test_cpu_points_are_means_over_each_step() -> None:
    times = [0.5 * i for i in range(9)]  # 0 .. 4 s, one sample every 0.5 s
    cpu_s = [0.25 * i for i in range(9)]  # half a core throughout
    assert cores_series(times, cpu_s, 0.0, 0.5, 0.5) == [[0.5 * i, 0.5] for i in range(1, 9)]
    assert cores_series(times, cpu_s, 1.0, 2.0, 0.5) == [[1.0, 0.5], [3.0, 0.5]]
    # a step that does not divide the run: its last, shorter step still ends at the last sample
    assert cores_series(times, [0, 0, 0, 0, 0, 0, 0, 1, 1], 0.0, 3.0, 0.5) == [[3.0, 0.0], [4.0, 1.0]]


def test_rss_points_are_the_peak_of_each_step() -> None:
    times = [0.5 * i for i in range(7)]
    rss = [10, 30, 20, 25, NO_RSS, NO_RSS, 5]
    assert peak_series(times, rss, 0.0, 1.0, 0.5) == [[0.0, 10], [1.0, 30], [2.0, 25], [3.0, 5]]
    assert peak_series(times, [NO_RSS] * 7, 0.0, 1.0, 0.5) == []  # the group never ran


def test_memory_trend_is_a_least_squares_slope() -> None:
    # 150 MB growing 0.1 MB/min, with a spike the fit must not follow
    points = [(float(t), 150 * MB + round(t * 0.1 * MB / 60)) for t in range(0, 1801, 10)]
    points[90] = (points[90][0], points[90][1] + 5 * MB)
    trend = memory_trend(points)
    assert trend is not None
    assert trend.start_bytes == 150 * MB and trend.end_bytes == 153 * MB
    assert trend.max_bytes == points[90][1]
    assert round(trend.slope_bytes_per_min) == 100_000
    assert memory_trend(points[:1]) is None


def soak_run(minutes: int = 30) -> dict[str, Any]:
    """A committed run stretched to `minutes` with the series a sampler stores for it."""
    doc = load(RESULTS / "v3-protobuf-500.json")
    run = doc["runs"][0]
    seconds = minutes * 60 + 2
    run["duration_s"], run["warmup_s"] = minutes * 60.0, 2.0
    run["timeseries"]["writes_acked"] = [500] * seconds
    run["timeseries"]["events_received"] = [500] * seconds
    times = [0.5 * i - 0.5 for i in range(2 * seconds + 2)]
    step = series_step(times[-1] - times[0], 0.5)
    cpu = cores_series(times, [0.123456 * t for t in times], 0.0, step, 0.5)
    run["timeseries"]["cpu_cores"] = {"interval_s": step} | {
        n: cpu for n in ("watcher", "writers", "etcd", "host")
    }
    rss_step = series_step(times[-1] - times[0], 1.0)
    rss = {
        name: peak_series(times, [base + round(1000 * t) for t in times], 0.0, rss_step, 0.5)
        for name, base in (
            ("parent", 52 * MB),
            ("watcher", 53 * MB),
            ("writers", 47 * MB),
            ("etcd", 900 * MB),
        )
    }
    run["timeseries"]["rss_bytes"] = {"interval_s": rss_step, **rss}
    run["memory"] = {
        "etcdbench": {"start_bytes": 152 * MB, "end_bytes": 157_400_000, "max_bytes": 157_400_000,
                      "slope_bytes_per_min": 180_000},
        "etcd": {"start_bytes": 900 * MB, "end_bytes": 1_100 * MB, "max_bytes": 1_200 * MB,
                 "slope_bytes_per_min": 6_666_667},
    }  # fmt: skip
    return doc


def test_a_30_minute_run_writes_a_small_file(tmp_path: Path) -> None:
    doc = soak_run(30)
    ts = doc["runs"][0]["timeseries"]
    assert ts["cpu_cores"]["interval_s"] == ts["rss_bytes"]["interval_s"] == 5.0
    assert len(ts["cpu_cores"]["watcher"]) == len(ts["rss_bytes"]["parent"]) - 1 == 361
    path = tmp_path / "soak.json"
    write_atomic(path, doc)
    assert path.stat().st_size < 300_000  # "well under 1 MB"
    assert load(path) == json.loads(path.read_text())


def test_console_shows_memory_growth_of_long_runs_only() -> None:
    doc = soak_run(30)
    run = Run.from_dict(doc["runs"][0])
    line = (
        "etcdbench RSS 152 MB → 157 MB over 30 min, +0.18 MB/min · etcd RSS 900 MB → 1,100 MB, +6.67 MB/min"
    )
    assert memory_line(run) == line
    console = Console(file=io.StringIO(), width=300, color_system=None)
    console.print(summary(ResultsFile.from_dict(doc)))
    assert line in console.file.getvalue()  # type: ignore[attr-defined]
    assert memory_line(replace(run, duration_s=59.0)) is None


def test_csv_has_the_rss_of_every_second() -> None:
    doc = soak_run(1)
    rss = doc["runs"][0]["timeseries"]["rss_bytes"]
    assert rss["interval_s"] == 1.0 and rss["parent"][:3] == [
        [-0.5, 51_999_500],
        [0.5, 52_000_500],
        [1.5, 52_001_500],
    ]
    rows = list(csv.DictReader(io.StringIO(timeseries_csv(ResultsFile.from_dict(doc)))))
    assert len(rows) == 62
    # second s: the point of the step that holds s + 1, i.e. the sample taken at s + 1.5
    assert [rows[i]["rss_parent_mb"] for i in (0, 1, 60)] == ["52.002", "52.002", "52.062"]
    rss["interval_s"], rss["parent"] = 5.0, [[0.0, 10 * MB], [5.0, 20 * MB], [10.0, 15 * MB]]
    rows = list(csv.DictReader(io.StringIO(timeseries_csv(ResultsFile.from_dict(doc)))))
    assert [r["rss_parent_mb"] for r in rows[:11]] == ["20.0"] * 5 + ["15.0"] * 5 + [""]
    old = load_results(RESULTS / "v3-protobuf-500.json")  # files from before RSS: empty columns
    row = next(csv.DictReader(io.StringIO(timeseries_csv(old))))
    assert row["rss_parent_mb"] == row["rss_etcd_mb"] == ""


def test_plot_draws_memory_when_the_file_has_it() -> None:
    from etcdbench.report.compare import Source

    pytest.importorskip("matplotlib")
    png = memory_png(plot_runs([Source("soak", Path("soak.json"), ResultsFile.from_dict(soak_run(2)))]))
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    old = Source("old", RESULTS / "v3-protobuf-500.json", load_results(RESULTS / "v3-protobuf-500.json"))
    assert memory_png(plot_runs([old])) is None
