"""PNG plots and a self-contained HTML report of one or more results files (matplotlib, Agg).

Only what the files hold is drawn: the latency spectrum from the HDR histograms, the per-second write
and event counts, and the 0.5 s CPU samples. A run without a series is left out of that plot, and a
plot with nothing to draw is not made. Functions return PNG bytes or HTML text; the CLI writes files.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from etcdbench.errors import UsageError
from etcdbench.metrics.cpu import BACKGROUND, OWN_GROUPS
from etcdbench.metrics.latency import fmt_us
from etcdbench.report.compare import Source
from etcdbench.report.console import fmt_cores
from etcdbench.report.export import CPU_SERIES, group_series, latency, spectrum
from etcdbench.results.model import Run, Timeseries
from etcdbench.results.record import ABSENT

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MISSING = "etcdbench plot needs matplotlib: pip install 'etcdbench[plot]'"
SPECTRUM_TICKS = (0.0, 90.0, 99.0, 99.9, 99.99, 99.999)
CPU_TITLES = {
    "watcher": "watcher process (cores)",
    "writers": "writer processes (cores)",
    "etcd": "local etcd (cores)",
    "host": "host (fraction of all cores busy)",
}
RSS_TITLES = {
    "etcdbench": "all etcdbench processes (MB RSS)",
    "watcher": "watcher processes (MB RSS)",
    "writers": "writer processes (MB RSS)",
    "parent": "etcdbench parent process (MB RSS)",
    "etcd": "local etcd (MB RSS)",
}
ETCD_TITLES = {  # etcd's own view, from its /metrics: counters as per-second rates, gauges as they were
    "puts_applied": "puts applied by etcd (per second)",
    "watch_events_sent": "watch events sent by etcd (per second)",
    "slow_watchers": "etcd's slow (unsynced) watchers",
    "pending_events": "etcd's pending watch events",
}
PLOTS = {  # file name -> what it draws, from which part of the file
    "latency.png": "latency percentile spectra, from the HDR histograms",
    "rates.png": "writes acknowledged and events received per second",
    "cpu.png": "CPU samples of the watcher, writers, etcd and host",
    "memory.png": "RSS samples of the etcdbench processes and etcd",
    "etcd.png": "etcd's own view from its metrics: puts applied, watch events sent, slow watchers",
}
LATENCY_TITLES = {
    "watch": "watch latency (intended send → decoded)",
    "put": "put latency (intended send → ack)",
}


@dataclass(frozen=True)
class PlotRun:
    """A run and the name it has in legends: its label, prefixed by its file's name when there are several."""

    name: str
    run: Run
    color: str


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(MISSING) from None


def plot_runs(sources: list[Source]) -> list[PlotRun]:
    several = len(sources) > 1
    out: list[PlotRun] = []
    for source in sources:
        for run in source.results.runs:
            name = f"{source.name}: {run.label}" if several else run.label
            out.append(PlotRun(name, run, f"C{len(out) % 10}"))
    return out


def _figure(height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="best")


def latency_png(runs: list[PlotRun]) -> bytes | None:
    """Watch and put latency against 1/(1-p) on a log axis: the HdrHistogram percentile spectrum."""
    panels = [m for m in LATENCY_TITLES if any(latency(r.run, m).hdr for r in runs)]
    if not panels:
        return None
    fig = _figure(4.0 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, metric in zip(axes, panels, strict=True):
        values: list[float] = []
        for r in runs:
            points = [p for p in spectrum(latency(r.run, metric)) if p.percentile < 100]
            if not points:
                continue
            xs = [1 / (1 - p.percentile / 100) for p in points]
            ys = [p.value_us / 1000 for p in points]
            values += ys
            ax.plot(xs, ys, color=r.color, label=r.name, drawstyle="steps-post")
        ax.set_xscale("log")
        ticks = [t for t in SPECTRUM_TICKS if 1 / (1 - t / 100) <= max(ax.get_xlim()[1], 10)]
        ax.set_xticks([1 / (1 - t / 100) for t in ticks], [f"{t:g}%" for t in ticks])
        ax.minorticks_off()
        if values and max(values) / max(min(values), 1e-3) > 100:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(LATENCY_TITLES[metric])
        ax.set_xlabel("percentile")
        ax.set_ylabel("ms")
        ax.grid(True, which="major", alpha=0.3)
        _legend(ax)
    return _png(fig)


def _window(runs: list[PlotRun]) -> tuple[float, float] | None:
    windows = {(float(r.run.warmup_s), float(r.run.warmup_s + r.run.duration_s)) for r in runs}
    return windows.pop() if len(windows) == 1 else None


def _mark_faults(ax: Axes, runs: list[PlotRun]) -> int:
    """Shade each injected fault (from its start to its end) in its run's colour; returns how many."""
    marked = 0
    for r in runs:
        for fault in r.run.faults or []:
            label = fault.fault if marked == 0 else None
            ax.axvspan(fault.started_s, max(fault.ended_s, fault.started_s + 0.05), color=r.color,
                       alpha=0.2, hatch="//", label=f"fault {label}" if label else None)  # fmt: skip
            ax.annotate(fault.fault, (fault.started_s, 1.0), xycoords=("data", "axes fraction"),
                        fontsize=7, va="top", color=r.color)  # fmt: skip
            marked += 1
    return marked


def _steps(counts: list[int]) -> tuple[list[float], list[float]]:
    """Per-second counts as a step line: second i's count is drawn from i to i + 1."""
    xs = [float(i) for i in range(len(counts) + 1)]
    return xs, [float(c) for c in [*counts, counts[-1]]]


def rates_png(runs: list[PlotRun]) -> bytes | None:
    series: list[tuple[Callable[[Timeseries], list[int]], str]] = [
        (lambda ts: ts.writes_acked, "writes acknowledged per second"),
        (lambda ts: ts.events_received, "events received per second"),
    ]
    if not any(key(r.run.timeseries) for r in runs for key, _ in series):
        return None
    fig = _figure(7.0)
    axes = fig.subplots(2, 1, sharex=True)
    window = _window(runs)
    for ax, (key, title) in zip(axes, series, strict=True):
        for r in runs:
            counts = key(r.run.timeseries)
            if not counts:
                continue
            xs, ys = _steps(counts)
            ax.plot(xs, ys, color=r.color, label=r.name, drawstyle="steps-post")
            ax.axhline(r.run.target_rate, color=r.color, linestyle=":", linewidth=1)
        if window is not None:
            ax.axvspan(*window, color="0.5", alpha=0.1, label="measured window")
        _mark_faults(ax, runs)
        ax.set_title(title + " (dotted: target rate)")
        ax.set_ylabel("per second")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    _legend(axes[0])  # the same runs in the same colours in every panel
    axes[-1].set_xlabel("seconds since the first intended write (t0)")
    return _png(fig)


def _series_png(
    runs: list[PlotRun],
    titles: dict[str, str],
    points: Callable[[Run, str], list[list[float]]],
    scale: float = 1.0,
) -> bytes | None:
    """One panel per series name that some run has, over time; each point is the value of the step
    that ends at its time (the mean CPU, the highest RSS), divided by `scale`."""
    panels = [name for name in titles if any(points(r.run, name) for r in runs)]
    if not panels:
        return None
    fig = _figure(2.6 * len(panels) + 0.6)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    window = _window(runs)
    for ax, name in zip(axes, panels, strict=True):
        for r in runs:
            pts = points(r.run, name)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] / scale for p in pts], color=r.color, label=r.name,
                        drawstyle="steps-pre")  # fmt: skip
        if window is not None:
            ax.axvspan(*window, color="0.5", alpha=0.1, label="measured window")
        _mark_faults(ax, runs)
        ax.set_title(titles[name])
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    _legend(axes[0])
    axes[-1].set_xlabel("seconds since the first intended write (t0)")
    return _png(fig)


def cpu_points(run: Run, name: str) -> list[list[float]]:
    return group_series(run.timeseries.cpu_cores, name)


def cpu_png(runs: list[PlotRun]) -> bytes | None:
    return _series_png(runs, {name: CPU_TITLES[name] for name in CPU_SERIES}, cpu_points)


def rss_points(run: Run, name: str) -> list[list[float]]:
    """A run's RSS series `[[seconds since t0, bytes], ...]` of one group; "etcdbench" is every
    etcdbench group of the run (parent, watcher, writers, and the background if it had one) added
    where all have a point at the same time."""
    rss = run.timeseries.rss_bytes or {}
    if name != "etcdbench":
        return group_series(rss, name)
    groups = [{t: v for t, v in group_series(rss, g)} for g in OWN_GROUPS if g != BACKGROUND or g in rss]
    return [[t, sum(g[t] for g in groups)] for t in sorted(groups[0]) if all(t in g for g in groups)]


def memory_png(runs: list[PlotRun]) -> bytes | None:
    """RSS over time: all etcdbench processes together, each group, and a local etcd."""
    return _series_png(runs, RSS_TITLES, rss_points, scale=1e6)


def etcd_points(run: Run, name: str) -> list[list[float]]:
    """etcd's series of one panel: a counter's increase per step divided by the step, a gauge as is."""
    series = run.timeseries.etcd or {}
    if name == "puts_applied":
        name = "mvcc_puts" if run.backend == "v3" else "v2_puts"
    points = series.get(name) or []
    if name in ("slow_watchers", "pending_events"):
        return points
    rates = []
    for (t_before, _), (t, increase) in itertools.pairwise([[0.0, 0.0], *points]):
        if t > t_before:
            rates.append([t, increase / (t - t_before)])
    return rates[1:]  # the first step starts before t0, at the first scrape: its length is unknown


def etcd_png(runs: list[PlotRun]) -> bytes | None:
    return _series_png(runs, ETCD_TITLES, etcd_points)


def render_pngs(sources: list[Source]) -> dict[str, bytes]:
    """File name -> PNG for every plot the files have data for."""
    require_matplotlib()
    runs = plot_runs(sources)
    out = {}
    makers = (
        ("latency.png", latency_png),
        ("rates.png", rates_png),
        ("cpu.png", cpu_png),
        ("memory.png", memory_png),
        ("etcd.png", etcd_png),
    )
    for name, make in makers:
        png = make(runs)
        if png is not None:
            out[name] = png
    return out


def _cell(v: Any) -> str:
    return html.escape("-" if v is None else str(v))


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,g}"


def html_report(sources: list[Source], pngs: dict[str, bytes]) -> str:
    """One HTML page: a summary table per file, then every plot embedded as a data: URI."""
    e = html.escape
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>etcdbench report</title>',
        "<style>body{font-family:sans-serif;margin:2em;max-width:75em}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
        "th:first-child,td:first-child{text-align:left}.pass{color:#070}.fail{color:#b00}"
        ".env{color:#555}img{max-width:100%}</style></head><body>",
        "<h1>etcdbench report</h1>",
    ]
    header = (
        "run", "target/s", "written/s", "events/s", "missed", "relists", "watch p50", "watch p99",
        "watch p99.9", "put p99", "cpu watcher", "cpu writers", "cpu etcd", "host busy", "verdict",
    )  # fmt: skip
    for source in sources:
        r = source.results
        env = r.environment
        etcd = env.etcd
        where = (
            "embedded" if etcd is not None and etcd.embedded else ", ".join(etcd.endpoints if etcd else [])
        )
        version = etcd.server_version if etcd is not None and etcd.server_version is not ABSENT else None
        out.append(f"<h2>{e(source.name)}</h2>")
        out.append(
            f'<p class="env">{e(str(source.path))} · created {_cell(r.created)} · '
            f"etcdbench {_cell(env.etcdbench_version)} · "
            f"etcd {_cell(version)} ({e(where)}) · "
            f"{_cell(env.cpu_count)} CPUs · host {_cell(env.host)}"
            + ("" if r.complete else " · <b>incomplete</b>")
            + "</p>"
        )
        out.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>")
        for run in r.runs:
            lat, cpu, c, v = run.latency_us, run.cpu, run.counters, run.verdict
            host = cpu.get("host")
            verdict = "PASS" if v.pass_ else "FAIL: " + "; ".join(v.reasons)
            if v.client_bound:
                verdict += " (client-bound)"
            cells = [
                _cell(run.label),
                _rate(run.target_rate),
                _rate(run.write_rate_achieved),
                _rate(run.watch_events_per_s),
                f"{c.missed:,}",
                str(c.relists),
                e(fmt_us(lat.watch.p50)),
                e(fmt_us(lat.watch.p99)),
                e(fmt_us(lat.watch.p999)),
                e(fmt_us(lat.put.p99)),
                fmt_cores(cpu.get("watcher")),
                fmt_cores(cpu.get("writers")),
                fmt_cores(cpu.get("etcd")),
                "-" if host is None else f"{host:.0%}",
                f'<span class="{"pass" if v.pass_ else "fail"}">{e(verdict)}</span>',
            ]
            out.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
        out.append("</table>")
    for name, png in pngs.items():
        data = base64.b64encode(png).decode("ascii")
        caption = PLOTS.get(name, name)
        out.append(f"<h2>{e(caption)}</h2>")
        out.append(f'<img alt="{e(caption)}" src="data:image/png;base64,{data}">')
    out.append("</body></html>")
    return "\n".join(out) + "\n"
