"""A run's verdict, and how several runs' summaries and series add up (shards, watches).

Every figure's meaning is stated in docs/methodology.md; the names say what they measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from etcdbench.config.run import RunConfig
from etcdbench.metrics.cpu import SATURATED_CORES
from etcdbench.metrics.etcd_view import disagreements
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.results.model import Run, Summary, Verdict

RECEIVED_RATE_FLOOR = 0.99  # of the target rate, over the measured window
SLIP_CLIENT_BOUND_US = 100_000  # writers dispatching p99 100 ms late could not keep the schedule


def add_series(series: Sequence[Sequence[int]]) -> list[int]:
    """Per-second series added index by index (the shorter ones count as zero past their end)."""
    out = [0] * max((len(s) for s in series), default=0)
    for s in series:
        for i, n in enumerate(s):
            out[i] += n
    return out


def merged(summaries: Sequence[Summary]) -> Summary:
    """One summary from several: their encoded HDR histograms added, out-of-range counts summed."""
    rec = LatencyRecorder()
    for s in summaries:
        rec.merge(LatencyRecorder.decode(s.hdr or "", s.out_of_range))
    return Summary.from_dict(rec.summary())


def unjudged() -> Verdict:
    """The verdict of a Run being built, until `judged` gives it its own."""
    return Verdict(
        pass_=False, reasons=["not judged"], client_bound=False, client_bound_reasons=[], warnings=[]
    )


def judged(run: Run, config: RunConfig) -> Run:
    """`run` with its verdict on what it holds now (after a block was added: network, incomplete)."""
    return replace(run, verdict=verdict(run, config))


def verdict(run: Run, config: RunConfig) -> Verdict:
    """PASS: events received at >= 99% of the target rate, nothing missed, watch p99 within the SLO."""
    reasons: list[str] = []
    incomplete = run.incomplete
    if incomplete:
        reasons.append(f"incomplete: {incomplete}")
    # An interrupted warm-up never opened the window: its rates and latencies are not failures of etcd.
    window = run.duration_s > 0
    c = run.counters
    floor = RECEIVED_RATE_FLOOR * config.rate / config.shards  # a shard answers for its share
    if window and run.watch_events_per_s < floor:
        who = "slowest of the watchers" if run.watchers > 1 else "watcher"
        reasons.append(f"{who} received {run.watch_events_per_s:g} events/s < {floor:g} (99% of target)")
    if c.missed:
        reasons.append(f"{c.missed} events missed ({c.relists} relists)")
    if c.duplicates_redelivered:
        reasons.append(f"{c.duplicates_redelivered} events delivered twice at the same revision")
    p99 = run.latency_us.watch.p99
    if p99 is None:
        if window:
            reasons.append("no watch latency recorded in the measured window")
    elif p99 > config.slo_p99_us:
        reasons.append(f"watch p99 {_ms(p99)} > SLO {_ms(config.slo_p99_us)}")
    if c.errors:
        reasons.append(f"{c.errors} writes failed")
    if c.unsent and not incomplete:  # else the reason it is incomplete says why
        reasons.append(f"{c.unsent} writes never sent (the writers gave up on an unreachable etcd)")
    if window and run.write_rate_achieved < floor:
        reasons.append(f"writers achieved {run.write_rate_achieved:g} writes/s < {floor:g} (99% of target)")

    bound: list[str] = []
    cpu = run.cpu
    # Each of our processes decodes or encodes on one core (the GIL): one near 1.0 is saturated.
    watcher_max = cpu.get("watcher_max") or cpu.get("watcher") or 0
    writer_max = cpu.get("writer_max") or (cpu.get("writers") or 0) / config.writers
    if watcher_max >= SATURATED_CORES:
        bound.append(f"a watcher process used {watcher_max:.2f} of its one core")
    if writer_max >= SATURATED_CORES:
        bound.append(f"a writer process used {writer_max:.2f} of its one core")
    network = run.network
    if network is not None and network.proxy_fell_behind:
        bound.append(f"the delay proxy fell behind its schedule (lag p99 {network.proxy_lag_p99_ms:g} ms)")
    if network is not None and (network.proxy_cpu_cores or 0) >= SATURATED_CORES:
        bound.append(f"the delay proxy used {network.proxy_cpu_cores:.2f} of its one core")
    background = run.background
    if background is not None and background.fell_behind:
        why = ", ".join(background.fell_behind_because)
        bound.append(f"the background load fell behind its schedule ({why})")
    if (cpu.get("background") or 0) >= SATURATED_CORES:
        bound.append(f"the background load's process used {cpu['background']:.2f} of its one core")
    warnings = []
    slip_p99 = run.latency_us.schedule_slip.p99
    if slip_p99 is not None and slip_p99 > SLIP_CLIENT_BOUND_US:
        if run.faults:  # writes held up by a stalled or failing etcd also fill the window
            warnings.append(
                f"writers fell behind their schedule during injected faults (slip p99 {_ms(slip_p99)})"
            )
        else:
            bound.append(f"writers fell behind their schedule (slip p99 {_ms(slip_p99)})")
    if (cpu.get("host") or 0) >= SATURATED_CORES:
        warnings.append(f"host CPU {cpu['host']:.0%} busy: etcd and etcdbench competed for the same cores")
    ops = run.operations
    seen = disagreements(
        run.etcd,
        backend=run.backend,
        acked_puts=ops.create + ops.update,
        received=c.received,
        missed=c.missed,
    )
    warnings += [f"etcd disagrees: {line}" for line in seen]
    return Verdict(
        pass_=not reasons,
        reasons=reasons,
        client_bound=bool(bound),
        client_bound_reasons=bound,
        warnings=warnings,
    )


def _ms(us: int) -> str:
    return f"{us / 1000:.1f} ms" if us < 1_000_000 else f"{us / 1e6:.2f} s"
