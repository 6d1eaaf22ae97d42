"""Tables that compare runs: a scenario's cells side by side, a capacity search's curve, and one-line
conclusions drawn from the figures alone. Pure: results in, rich renderables or strings out."""

from __future__ import annotations

import json
from collections.abc import Iterable

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from etcdbench.config.run import BACKGROUND_LOAD, conditions_text
from etcdbench.metrics.latency import fmt_us
from etcdbench.results.model import Capacity, ResultsFile, Run

# Fields a run's label already shows ("v2(poll)+json pod @500/s churn x10 watchers"), or that say
# where the run came from; `name` (the label without the rate) shows fewer of them itself.
_IN_LABEL = ("backend", "encoding", "kind", "rate", "v2_watch", "workload", "watchers", "scenario", "scale")
_IN_NAME = ("backend", "encoding", "kind", "rate", "v2_watch", "scenario", "scale")
# The conditions of a run, which both show in full: the network ("rtt 1ms±0.1ms", "100Mbit/s"), TLS
# ("tls"), and whether the background load ran ("+background": its rates are named only where runs
# with background load differ in them).
_CONDITIONS = ("rtt_us", "jitter_us", "bandwidth_mbit", "tls")
SAME_RATE = 1.05  # events/s within 5% of each other are not called a difference


def varying(runs: list[Run], shown: tuple[str, ...] = _IN_LABEL) -> list[str]:
    """Config fields, other than those `shown` (by the label), whose value differs between the runs."""
    keys: list[str] = []
    for run in runs:
        keys.extend(k for k in run.config if k not in keys)
    out = []
    for key in keys:
        if key in shown or key in _CONDITIONS:
            continue
        among = [r for r in runs if _has_background(r)] if key.startswith("bg_") else runs
        values = {json.dumps(r.config.get(key), sort_keys=True) for r in among}
        if len(values) > 1:
            out.append(key)
    return out


def _has_background(run: Run) -> bool:
    return any(run.config.get(k) for k in BACKGROUND_LOAD)


def _conditions(run: Run) -> str:
    c = run.config
    return conditions_text(
        rtt_us=c.get("rtt_us", 0),
        jitter_us=c.get("jitter_us", 0),
        bandwidth_mbit=c.get("bandwidth_mbit", 0.0),
        background=_has_background(run),
        tls=bool(c.get("tls")),
    )


def _extras(run: Run, fields: Iterable[str]) -> str:
    config = run.config
    parts = []
    for key in fields:
        value = config.get(key)
        shown = ",".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else f"{value}"
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def label(run: Run, fields: Iterable[str] = ()) -> str:
    extras = _extras(run, fields)
    return f"{run.label} {extras}" if extras else run.label


def name(run: Run, fields: Iterable[str] = (), *, with_kind: bool = False) -> str:
    """The run's setup without its rate: 'v2(poll)+json', plus what else varies."""
    mode = f"({run.v2_watch})" if run.backend == "v2" and run.v2_watch else ""
    base = f"{run.backend}{mode}+{run.encoding}" + (f" {run.kind}" if with_kind else "") + _conditions(run)
    extras = _extras(run, fields)
    return f"{base} {extras}" if extras else base


def _verdict(run: Run) -> Text:
    v = run.verdict
    text = Text("PASS" if v.pass_ else "FAIL", style="bold green" if v.pass_ else "bold red")
    if v.client_bound:
        text.append(", client-bound", style="yellow")
    return text


def _cpu(run: Run) -> str:
    cpu = run.cpu
    parts = ["-" if cpu.get(k) is None else f"{cpu[k]:.2f}" for k in ("watcher", "writers", "etcd")]
    return " ".join(parts)


def matrix_table(runs: list[Run], title: str | None = None) -> Table:
    """One row per run: label, target rate, events/s, watch p50 and p99, missed (relists), CPU, verdict."""
    extra = varying(runs)
    table = Table(
        box=box.SIMPLE_HEAD,
        title=title,
        caption="watch: latency from intended send to decoded event; "
        "CPU: cores used by the watcher, the writers and etcd (embedded only)",
        header_style="bold",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("run", overflow="fold")
    for col in ("target/s", "events/s", "watch p50", "watch p99", "missed (relists)"):
        table.add_column(col, justify="right")
    table.add_column("CPU")
    table.add_column("verdict", overflow="fold")
    for run in runs:
        watch = run.latency_us.watch
        c = run.counters
        table.add_row(
            label(run, extra),
            f"{run.target_rate:,g}",
            f"{run.watch_events_per_s:,g}",
            fmt_us(watch.p50),
            fmt_us(watch.p99),
            f"{c.missed:,} ({c.relists:,})",
            _cpu(run),
            _verdict(run),
        )
    return table


def _rank(run: Run) -> tuple[bool, int, float, float]:
    """Better is larger: passed, fewer missed, more events/s, lower p99."""
    p99 = run.latency_us.watch.p99
    return (
        run.verdict.pass_,
        -run.counters.missed,
        run.watch_events_per_s,
        -(p99 if p99 is not None else float("inf")),
    )


def _bound(run: Run) -> str:
    v = run.verdict
    if not v.client_bound:
        return ""
    return f" [client-bound: {'; '.join(v.client_bound_reasons)}]"


def _p99(run: Run) -> str:
    return fmt_us(run.latency_us.watch.p99)


def conclusions(runs: list[Run]) -> list[str]:
    """Sentences the figures support, and nothing more.

    Per target rate: how many passed, and the best cell against the worst (events/s ratio only when
    they differ by more than 5%). Per setup tried at several rates: where it stopped passing. A
    client-bound run is named as such wherever it appears: its limit was our client, not etcd."""
    if not runs:
        return []
    extra = varying(runs, _IN_NAME)
    with_kind = len({r.kind for r in runs}) > 1
    passed = sum(r.verdict.pass_ for r in runs)
    lines = [f"{passed} of {len(runs)} runs passed."]

    by_rate: dict[float, list[Run]] = {}
    for run in runs:
        by_rate.setdefault(run.target_rate, []).append(run)
    for rate in sorted(by_rate):
        group = by_rate[rate]
        at = f"@{rate:,g}/s"
        if len(group) == 1:
            (run,) = group
            lines.append(f"{at}: {_one(run, extra, with_kind)}")
            continue
        best = max(group, key=_rank)
        worst = min(group, key=_rank)
        bn, wn = name(best, extra, with_kind=with_kind), name(worst, extra, with_kind=with_kind)
        n_pass = sum(r.verdict.pass_ for r in group)
        if n_pass == len(group):
            by_p99 = sorted(group, key=lambda r: r.latency_us.watch.p99 or 0)
            low, high = by_p99[0], by_p99[-1]
            line = (
                f"{at}: all {len(group)} passed; watch p99 from {_p99(low)} "
                f"({name(low, extra, with_kind=with_kind)}) to {_p99(high)} "
                f"({name(high, extra, with_kind=with_kind)})"
            )
        elif n_pass:
            line = f"{at}: {n_pass} of {len(group)} passed; {_versus(best, worst, bn, wn)}"
        else:
            line = (
                f"{at}: none of {len(group)} passed; the best, {bn}, received "
                f"{best.watch_events_per_s:,g} events/s (p99 {_p99(best)}){_lost(best)}{_bound(best)}; "
                f"the worst, {wn}, {worst.watch_events_per_s:,g} events/s (p99 {_p99(worst)})"
                f"{_lost(worst)}"
            )
        if n_pass < len(group) and worst is not best:
            line += _bound(worst)
        lines.append(line + ".")

    lines.extend(_per_setup(runs, extra, with_kind))
    bound = [r for r in runs if r.verdict.client_bound]
    if bound:
        lines.append(
            f"{len(bound)} run(s) were client-bound (etcdbench's own watcher or writers were saturated): "
            "their figures describe our client as much as etcd, and their failures are not etcd's limit."
        )
    return lines


def _one(run: Run, extra: list[str], with_kind: bool) -> str:
    v = run.verdict
    state = "passed" if v.pass_ else "failed (" + "; ".join(v.reasons) + ")"
    return (
        f"{name(run, extra, with_kind=with_kind)} {state}: {run.watch_events_per_s:,g} events/s received, "
        f"watch p99 {_p99(run)}{_lost(run)}{_bound(run)}."
    )


def _lost(run: Run) -> str:
    c = run.counters
    return f", {c.missed:,} missed ({c.relists} relists)" if c.missed else ""


def _versus(best: Run, worst: Run, bn: str, wn: str) -> str:
    b, w = best.watch_events_per_s, worst.watch_events_per_s
    if w > 0 and b / w >= SAME_RATE:
        head = f"{bn} sustained {b / w:.1f}x the events/s of {wn} ({b:,g} vs {w:,g})"
    elif w <= 0 < b:
        head = f"{bn} received {b:,g} events/s, {wn} none"
    else:
        head = f"{bn} kept up and {wn} did not ({'; '.join(worst.verdict.reasons)})"
        return f"{head}; p99 {_p99(best)} vs {_p99(worst)}{_lost(worst)}"
    return f"{head} at watch p99 {_p99(best)} vs {_p99(worst)}{_lost(worst)}"


def _per_setup(runs: list[Run], extra: list[str], with_kind: bool) -> list[str]:
    setups: dict[str, list[Run]] = {}
    for run in runs:
        setups.setdefault(name(run, extra, with_kind=with_kind), []).append(run)
    lines = []
    for setup, group in setups.items():
        rates = {r.target_rate for r in group}
        if len(rates) < 2:
            continue
        ok = sorted({r.target_rate for r in group if r.verdict.pass_})
        bad = sorted({r.target_rate for r in group if not r.verdict.pass_})
        bound = " (client-bound where it failed)" if any(r.verdict.client_bound for r in group) else ""
        if not bad:
            lines.append(f"{setup}: passed every rate tried, up to {max(ok):,g}/s.")
        elif not ok:
            lines.append(f"{setup}: failed every rate tried, from {min(bad):,g}/s{bound}.")
        elif max(ok) < min(bad):
            lines.append(f"{setup}: passed up to {max(ok):,g}/s, failed from {min(bad):,g}/s{bound}.")
        else:
            lines.append(
                f"{setup}: passed at {', '.join(f'{r:,g}' for r in ok)}/s and failed at "
                f"{', '.join(f'{r:,g}' for r in bad)}/s: not monotonic in the rate{bound}."
            )
    return lines


def capacity_table(capacity: Capacity, runs: list[Run]) -> Table:
    """The search's curve by rate: events/s, p50, p99, missed, verdict, client-bound; which step."""
    table = Table(title="capacity search", header_style="bold", title_justify="left")
    table.add_column("rate/s", justify="right")
    table.add_column("step")
    for col in ("events/s", "watch p50", "watch p99", "missed"):
        table.add_column(col, justify="right")
    table.add_column("verdict", overflow="fold")
    for point in capacity.curve:
        run = runs[point.run] if point.run < len(runs) else None
        verdict = (
            _verdict(run)
            if run
            else Text(("PASS" if point.pass_ else "FAIL") + (", client-bound" if point.client_bound else ""))
        )
        table.add_row(
            f"{point.rate:,g}",
            point.phase,
            f"{point.events_per_s:,g}",
            fmt_us(point.p50_us),
            fmt_us(point.p99_us),
            f"{point.missed:,}",
            verdict,
        )
    return table


def capacity_lines(capacity: Capacity) -> list[str]:
    return [headline(capacity), *(f"note: {n}" for n in capacity.notes)]


def comparison(results: ResultsFile) -> list[RenderableType]:
    """What `show` adds after the run panels: the matrix or capacity view, when the file has one."""
    runs = results.runs
    out: list[RenderableType] = []
    if results.capacity is not None:
        out.append(capacity_table(results.capacity, runs))
        out.extend(Text(line) for line in capacity_lines(results.capacity))
    elif len(runs) > 1 or results.scenario:
        title = (results.scenario or {}).get("name")
        out.append(matrix_table(runs, title=title))
        out.extend(Text(line) for line in conclusions(runs))
    return out


def headline(capacity: Capacity) -> str:
    """One line: 'knee: 1,800 writes/s (within 4.2%: passed at 1,800, failed at 1,875) — limited by etcd'."""
    knee, fail = capacity.interval
    limited = capacity.limited_by
    tail = f" — limited by {limited.text}" if limited else ""
    if knee is None:
        lowest = min((p.rate for p in capacity.curve), default=None)
        at = f" (lowest rate tried: {_writes(lowest)})" if lowest is not None else ""
        return f"no passing rate found{at}{tail}"
    if fail is None:
        return f"knee: at least {_writes(knee)} writes/s — no rate tried failed before the budget ran out"
    width = capacity.relative_width
    unconfirmed = "" if capacity.confirmed else "; see the note"
    return (
        f"knee: {_writes(knee)} writes/s (within {width:.1%}: passed at {_writes(knee)}, "
        f"failed at {_writes(fail)}{unconfirmed}){tail}"
    )


def _writes(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:,.3g}"
