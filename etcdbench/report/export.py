"""Exporters: a results file as `.hgrm`, perfdash JSON or a per-second CSV. Each returns text.

- hgrm: HdrHistogram's percentile distribution (Value, Percentile, TotalCount, 1/(1-Percentile), then
  the `#[Mean ...]`, `#[Max ...]`, `#[Buckets ...]` footer) of one run's latency histogram. Values are
  in **milliseconds** (the file's microseconds / 1000, three decimals, so nothing is lost); a last
  `#[Value units = ms ...]` line says so and names the run and metric.
- perfdash: clusterloader2's `{"version": "v1", "dataItems": [...]}`, one item per run and latency
  metric, Perc50/Perc90/Perc99 in ms, labelled `Operation` like etcd's `benchmark --report-perfdash`;
  `perfdash_artifacts` splits them into files named the way perfdash finds them.
- csv: one row per second since t0 per run: writes acknowledged and events received in that second,
  each CPU series resampled to the second (time-weighted mean of the samples overlapping it), and each
  RSS series in MB (the point whose step holds the end of the second).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from etcdbench.errors import UsageError
from etcdbench.metrics.cpu import BACKGROUND, OWN_GROUPS
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.results.model import Point, ResultsFile, Run, Summary

FORMATS = ("hgrm", "perfdash", "csv")
LATENCY_METRICS = ("watch", "put", "schedule_slip")
METRIC_MEANING = {
    "watch": "watch latency, intended send -> event received and decoded",
    "put": "put latency, intended send -> acknowledged",
    "schedule_slip": "schedule slip, intended send -> handed to the client",
}
TICKS_PER_HALF_DISTANCE = 5  # rows per halving of the distance to 100%, as HdrHistogram prints by default
CPU_SERIES = ("watcher", "writers", "etcd", "host")
# A fixed CSV header: the etcdbench groups every run has, and etcd.
RSS_SERIES = (*(g for g in OWN_GROUPS if g != BACKGROUND), "etcd")
CSV_COLUMNS = (
    "run",
    "second",
    "measured",
    "writes_acked",
    "events_received",
    *(f"cpu_{name}" for name in CPU_SERIES),
    *(f"rss_{name}_mb" for name in RSS_SERIES),
)


def select_runs(results: ResultsFile, label: str | None) -> list[Run]:
    """All runs, or the one whose label is `label` (UsageError naming --run when none is)."""
    runs = results.runs
    if label is None:
        return runs
    chosen = [r for r in runs if r.label == label]
    if not chosen:
        known = ", ".join(repr(r.label) for r in runs) or "none"
        raise UsageError(f"--run: no run labelled {label!r} (runs: {known})")
    return chosen


@dataclass(frozen=True)
class SpectrumPoint:
    percentile: float  # 0..100
    value_us: int  # highest value equivalent to the bucket reached
    total_count: int


def spectrum(summary: Summary) -> list[SpectrumPoint]:
    """The percentile spectrum of a latency summary's histogram, HdrHistogram's iteration steps."""
    if not summary.hdr:
        return []
    hist = LatencyRecorder.decode(summary.hdr).hist
    return [
        SpectrumPoint(
            float(it.percentile_level_iterated_to),
            int(it.value_iterated_to),
            int(it.total_count_to_this_value),
        )
        for it in hist.get_percentile_iterator(TICKS_PER_HALF_DISTANCE)
    ]


def latency(run: Run, metric: str) -> Summary:
    """The run's latency summary named `metric` (one of LATENCY_METRICS, its key in the file)."""
    lat = run.latency_us
    return {"watch": lat.watch, "put": lat.put, "schedule_slip": lat.schedule_slip}[metric]


def hgrm(results: ResultsFile, metric: str = "watch", label: str | None = None) -> str:
    runs = select_runs(results, label)
    if len(runs) != 1:
        known = ", ".join(repr(r.label) for r in runs) or "none"
        raise UsageError(f"--run: an .hgrm holds one histogram; choose one run with --run (runs: {known})")
    run = runs[0]
    summary = latency(run, metric)
    if not summary.hdr or not summary.count:
        raise UsageError(f"{run.label}: no {metric} latency recorded, nothing to export")
    hist = LatencyRecorder.decode(summary.hdr).hist
    ms = 1000.0
    lines = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}", ""]
    for point in spectrum(summary):
        fraction = point.percentile / 100
        if point.percentile < 100:
            inverse = 1 / (1 - fraction)
            lines.append(
                f"{point.value_us / ms:12.3f} {fraction:2.12f} {point.total_count:10d} {inverse:14.2f}"
            )
        else:
            lines.append(f"{point.value_us / ms:12.3f} {fraction:2.12f} {point.total_count:10d}")
    lines.append(
        f"#[Mean    = {hist.get_mean_value() / ms:12.3f}, StdDeviation   = {hist.get_stddev() / ms:12.3f}]"
    )
    lines.append(
        f"#[Max     = {hist.get_max_value() / ms:12.3f}, Total count    = {hist.get_total_count():12d}]"
    )
    lines.append(f"#[Buckets = {hist.bucket_count:12d}, SubBuckets     = {hist.sub_bucket_count:12d}]")
    lines.append(
        f"#[Value units = ms; {METRIC_MEANING[metric]}; run {run.label}; "
        f"out of range (> 1 h, not in the histogram) = {summary.out_of_range}]"
    )
    return "\n".join(lines) + "\n"


# perfdash finds a job's files by name: `<ArtifactsDir>/<OutputFilePrefix>_<Name>*`. Its `etcdAPIBenchmark`
# job type (the one etcd's `benchmark --report-perfdash` feeds) is OutputFilePrefix "EtcdAPI", Name
# "benchmark", so files named like etcd's own are read by an unmodified perfdash.
PERFDASH_PREFIX = "EtcdAPI_benchmark"
# The <op> of `<prefix>_<op>_<time>.json`: perfdash turns the token between the prefix and the next "_"
# into the category when a build has several files, so an op holds no "_".
PERFDASH_OPS = {"watch": "watch", "put": "put", "schedule_slip": "schedule-slip"}
PERFDASH_TIME = "%Y%m%dT%H%M%SZ"  # no ":" (refused by actions/upload-artifact and by Windows file systems)
_PREFIX_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def perfdash_items(
    results: ResultsFile, label: str | None = None, metric: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(metric, PerfData item) per run and latency metric (all three, or only `metric`).

    Labels are strings (perfdash reads them as map[string]string): `Operation` as etcd's benchmark
    names it (the op, upper case), then what the run measured. A metric with nothing recorded has none.
    """
    items = []
    for run in select_runs(results, label):
        for metric_name in LATENCY_METRICS if metric is None else (metric,):
            s = latency(run, metric_name)
            if s.p50 is None or s.p90 is None or s.p99 is None:
                continue  # nothing recorded: perfdash data values must be numbers
            item = {
                "data": {"Perc50": s.p50 / 1000, "Perc90": s.p90 / 1000, "Perc99": s.p99 / 1000},
                "unit": "ms",
                "labels": {
                    "Operation": PERFDASH_OPS[metric_name].upper(),
                    "Backend": run.backend,
                    "Encoding": run.encoding,
                    "Kind": run.kind,
                    "Rate": f"{run.target_rate:g}",
                    "V2Watch": run.v2_watch or "",
                    "Run": run.label,
                },
            }
            items.append((metric_name, item))
    return items


def _perf_data(items: list[dict[str, Any]]) -> str:
    return json.dumps({"version": "v1", "dataItems": items}, indent=2) + "\n"


def perfdash(results: ResultsFile, label: str | None = None, metric: str | None = None) -> str:
    """One PerfData document with every item (stdout or --out)."""
    return _perf_data([item for _, item in perfdash_items(results, label, metric)])


def perfdash_artifacts(
    results: ResultsFile,
    prefix: str = PERFDASH_PREFIX,
    label: str | None = None,
    metric: str | None = None,
) -> dict[str, str]:
    """File name -> PerfData, one file per latency metric, named `<prefix>_<op>_<created>.json` as etcd's
    `benchmark --report-perfdash` names its files; the time is the results file's `created` (UTC), so
    exporting the same file again writes the same names."""
    if not _PREFIX_OK.match(prefix):
        raise UsageError(f"--perfdash-prefix: {prefix!r} is not a file name prefix (letters, digits, _ . -)")
    try:
        created = datetime.fromisoformat(results.created)
    except ValueError:
        raise UsageError("the results file has no valid `created` time to name perfdash files by") from None
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    stamp = created.astimezone(UTC).strftime(PERFDASH_TIME)
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for metric_name, item in perfdash_items(results, label, metric):
        by_metric.setdefault(metric_name, []).append(item)
    return {
        f"{prefix}_{PERFDASH_OPS[name]}_{stamp}.json": _perf_data(items) for name, items in by_metric.items()
    }


def cpu_per_second(points: list[list[float]], interval_s: float, seconds: int) -> list[float | None]:
    """Per-interval samples `[end time, cores]` as one value per whole second since t0.

    Each sample covers (previous end, its end]; the first covers one interval before its end. A second's
    value is the time-weighted mean of the samples overlapping it, None when none does.
    """
    spans = []
    start = None
    for end, cores in points:
        begin = end - interval_s if start is None else start
        if end > begin:
            spans.append((begin, end, cores))
        start = end
    out: list[float | None] = []
    for s in range(seconds):
        weight = total = 0.0
        for begin, end, cores in spans:
            overlap = min(end, s + 1) - max(begin, s)
            if overlap > 0:
                weight += overlap
                total += overlap * cores
        out.append(round(total / weight, 3) if weight > 0 else None)
    return out


def rss_per_second(points: list[list[float]], interval_s: float, seconds: int) -> list[float | None]:
    """RSS points `[end time, bytes]`, each the peak of the step (end - interval, end], as MB per whole
    second since t0: the point whose step holds the second's end; None when none does."""
    out: list[float | None] = [None] * seconds
    for end, v in points:
        # second s ends in the step when end - interval < s + 1 <= end
        for s in range(max(0, math.floor(end - interval_s)), min(seconds, math.floor(end))):
            out[s] = round(v / 1e6, 3)
    return out


def group_series(group: dict[str, float | list[Point]], name: str) -> list[Point]:
    """One process group's points from a `cpu_cores` or `rss_bytes` block (none: [])."""
    found = group.get(name)
    return found if isinstance(found, list) else []


def _interval(group: dict[str, float | list[Point]], default: float) -> float:
    found = group.get("interval_s", default)
    return float(found) if isinstance(found, int | float) else default


def timeseries_rows(run: Run) -> list[list[Any]]:
    ts = run.timeseries
    writes = ts.writes_acked
    events = ts.events_received
    seconds = max(len(writes), len(events))
    cpu = ts.cpu_cores
    interval = _interval(cpu, 0.5)
    columns = {
        name: cpu_per_second(points, interval, seconds)
        if (points := group_series(cpu, name))
        else [None] * seconds
        for name in CPU_SERIES
    }
    rss = ts.rss_bytes or {}
    rss_step = _interval(rss, 1.0)
    columns.update(
        {
            f"rss_{name}": rss_per_second(points, rss_step, seconds)
            if (points := group_series(rss, name))
            else [None] * seconds
            for name in RSS_SERIES
        }
    )
    window_start = run.warmup_s
    window_end = run.warmup_s + run.duration_s
    rows = []
    for s in range(seconds):
        rows.append(
            [
                run.label,
                s,
                int(window_start <= s and s + 1 <= window_end),
                writes[s] if s < len(writes) else 0,  # the per-second lists end at their last event
                events[s] if s < len(events) else 0,
                *(columns[name][s] for name in CPU_SERIES),
                *(columns[f"rss_{name}"][s] for name in RSS_SERIES),
            ]
        )
    return rows


def timeseries_csv(results: ResultsFile, label: str | None = None) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for run in select_runs(results, label):
        for row in timeseries_rows(run):
            writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def export(results: ResultsFile, fmt: str, *, metric: str | None = None, label: str | None = None) -> str:
    """`metric`: the histogram for hgrm (default watch); perfdash keeps only it when given."""
    if fmt == "hgrm":
        return hgrm(results, metric or "watch", label)
    if fmt == "perfdash":
        return perfdash(results, label, metric)
    if fmt == "csv":
        return timeseries_csv(results, label)
    raise UsageError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
