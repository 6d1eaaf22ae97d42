"""The console summary of a results file: one panel per run, built from the typed results alone."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from etcdbench.metrics.etcd_view import etcd_line
from etcdbench.metrics.latency import fmt_us
from etcdbench.network.summary import network_line
from etcdbench.results.model import ResultsFile, Run


def fmt_cores(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


MEMORY_SHOWN_FROM_S = 60.0  # shorter runs: RSS still settling after start-up says nothing about a trend


def fmt_minutes(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 60 else f"{seconds / 60:.3g} min"


def memory_line(run: Run) -> str | None:
    """'etcdbench RSS 150 MB → 152 MB over 30 min, +0.07 MB/min · etcd ...', from the run's `memory`."""
    memory = run.memory or {}
    if run.duration_s < MEMORY_SHOWN_FROM_S or "etcdbench" not in memory:
        return None
    parts = []
    for name in ("etcdbench", "etcd"):
        m = memory.get(name)
        if m is not None:
            parts.append(
                f"{name} RSS {m.start_bytes / 1e6:,.0f} MB → {m.end_bytes / 1e6:,.0f} MB"
                + (f" over {fmt_minutes(run.duration_s)}" if name == "etcdbench" else "")
                + f", {m.slope_bytes_per_min / 1e6:+.2f} MB/min"
            )
    return " · ".join(parts)


def background_line(run: Run) -> str | None:
    """What the measured watcher competed with: the background load's ops, its p99s and CPU."""
    bg = run.background
    if bg is None:
        return None
    parts = []
    for s, noun in ((bg.lists, "LISTs"), (bg.gets, "GETs"), (bg.events, "Event writes")):
        if s.rate:
            extra = f", {s.keys:,} keys in {s.pages:,} pages" if s is bg.lists else ""
            parts.append(
                f"{s.done:,} {noun} ({s.rate:g}/s{extra}, p99 {fmt_us(s.latency_us.p99)}, "
                f"{s.errors:,} errors)"
            )
    w = bg.watches
    if w.count:
        parts.append(f"{w.count} watches received {w.events_received:,} events")
    line = " · ".join(parts) + f" · cpu {fmt_cores(run.cpu.get('background'))}"
    if bg.fell_behind:
        line += f" · fell behind its schedule ({', '.join(bg.fell_behind_because)})"
    return line


def run_panel(run: Run) -> Panel:
    c = run.counters
    lat = run.latency_us
    v = run.verdict

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    sizes = run.object_sizes
    if sizes:
        stored = sizes["stored"]
        size = (
            f"{run.kind} objects as stored: p50 {stored.p50:,} B, p99 {stored.p99:,} B, "
            f"max {stored.max:,} B (p50 as json {sizes['json'].p50:,} B, "
            f"as protobuf {sizes['protobuf'].p50:,} B)"
        )
    else:
        size = f"{run.kind} objects, {run.object_bytes:,} bytes each as stored"
    facts.add_row("objects", size)
    ops = run.operations
    facts.add_row(
        "workload",
        f"{run.workload}: {ops.create:,} creates · {ops.update:,} updates · {ops.delete:,} deletes",
    )
    preload = run.preload
    if preload.keys:
        db = preload.db_size_bytes
        facts.add_row(
            "preload",
            f"{preload.keys:,} keys in {preload.seconds:g} s" + (f" · db {db / 1e6:,.1f} MB" if db else ""),
        )
    facts.add_row(
        "rate",
        f"target {run.target_rate:g} writes/s · written {run.write_rate_achieved:g}/s · "
        f"watcher received {run.watch_events_per_s:g} events/s",
    )
    watches = run.watchers
    # With several watches `written` counts each write once, while received/missed add up every watch's.
    written = f"written {c.written:,}" + (f" (each to {watches} watches)" if watches > 1 else "")
    in_all = " in all" if watches > 1 else ""
    duplicates = f"duplicates {c.duplicates:,}"
    if c.duplicates:
        retried, redelivered = c.duplicates_retried or 0, c.duplicates_redelivered or 0
        duplicates += f" (retried {retried:,}, redelivered {redelivered:,})"
    facts.add_row(
        "events" if watches == 1 else f"events ({watches} watches)",
        f"{written} · received{in_all} {c.received:,} · missed{in_all} {c.missed:,} · "
        f"{duplicates} · out of order {c.out_of_order:,} · relists {c.relists} · "
        f"write errors {c.errors:,}",
    )
    if c.expiries_received or c.expiries_pending:
        facts.add_row(
            "expiries",
            f"received {c.expiries_received:,} · missed {c.missed_expiries:,} · "
            f"not yet due at the end {c.expiries_pending:,}",
        )
    for w in run.watches or []:
        wc = w.counters
        facts.add_row(
            f"watch {w.watch}",
            f"stream {w.stream} · {w.watch_events_per_s:g} events/s · received {wc.received:,} · "
            f"missed {wc.missed:,} · p99 {fmt_us(w.latency_us.watch.p99)}",
        )
    cpu = run.cpu
    host_cpu = cpu.get("host")
    host = "-" if host_cpu is None else f"{host_cpu:.0%} busy"
    facts.add_row(
        "cpu (cores)",
        f"watcher {fmt_cores(cpu.get('watcher'))} · writers {fmt_cores(cpu.get('writers'))} · "
        f"etcd {fmt_cores(cpu.get('etcd'))} · host {host}",
    )
    network = network_line(run.network)
    if network:
        facts.add_row("network", network)
    background = background_line(run)
    if background:
        facts.add_row("background", background)
    etcd = etcd_line(run.etcd, run.backend)
    if etcd:
        facts.add_row("etcd's view", etcd)
    memory = memory_line(run)
    if memory:
        facts.add_row("memory", memory)

    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("latency")
    for name in ("p50", "p90", "p99", "p99.9", "max", "count"):
        table.add_column(name, justify="right")
    labels = (
        ("watch (intended send → decoded)", lat.watch),
        ("put (intended send → ack)", lat.put),
        ("schedule slip", lat.schedule_slip),
    )
    for label, s in labels:
        row = [fmt_us(p) for p in (s.p50, s.p90, s.p99, s.p999, s.max)]
        table.add_row(label, *row, f"{s.count:,}")

    verdict = Text()
    verdict.append("PASS" if v.pass_ else "FAIL", style="bold green" if v.pass_ else "bold red")
    if v.reasons:
        verdict.append(": " + "; ".join(v.reasons))
    parts: list[RenderableType] = [facts, Text(""), table, Text(""), verdict]
    if v.client_bound:
        parts.append(Text("client-bound: " + "; ".join(v.client_bound_reasons), style="yellow"))
    for warning in v.warnings:
        parts.append(Text("warning: " + warning, style="yellow"))
    return Panel(Group(*parts), title=f"[bold]{run.label}[/]", title_align="left")


def server_versions(results: ResultsFile) -> list[str]:
    """Every etcd server version a results file's runs ran on, in run order ("3.4.23", "3.5.1"): each
    run's own `etcd_server.server_version` (a scenario's `etcd` axis runs several), else the environment's."""
    etcd = results.environment.etcd
    env = etcd.server_version if etcd is not None and isinstance(etcd.server_version, str) else None
    versions = [(r.etcd_server.server_version if r.etcd_server else None) or env for r in results.runs]
    if not versions:
        versions.append(env)
    return [str(v) for v in dict.fromkeys(versions) if v]


def summary(results: ResultsFile) -> RenderableType:
    env = results.environment
    etcd = env.etcd
    endpoints = ", ".join(etcd.endpoints if etcd is not None else [])
    where = "embedded" if etcd is not None and etcd.embedded else endpoints
    head = Text.assemble(
        ("etcdbench ", "bold"),
        f"{results.tool.version} · etcd {', '.join(server_versions(results)) or '?'} "
        f"({where}) · {env.cpu_count} CPUs · {env.host}",
    )
    if not results.complete:
        head.append("  [incomplete]", style="bold yellow")
    return Group(head, *[run_panel(r) for r in results.runs])
