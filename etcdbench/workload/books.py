"""One run's figures, computed once here from what the writer and watcher processes reported.

Every figure's meaning is stated in docs/methodology.md; the names say what they measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from etcdbench.config.run import RunConfig
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.results.model import (
    Background,
    Counters,
    EtcdView,
    Fault,
    Latencies,
    Memory,
    Operations,
    Point,
    Preload,
    Relist,
    Run,
    Summary,
    Timeseries,
    Watch,
    WatchCounters,
    WatchLatency,
)
from etcdbench.results.verdict import add_series, judged, merged, unjudged
from etcdbench.workload.accounting import Revisions, reconcile, split_missed
from etcdbench.workload.reports import RelistReport, StreamReport, WatchReport, WriterReport
from etcdbench.workload.timeline import Timeline

EXPIRY_GRACE_S = 3.0  # etcd revokes expired leases in periodic batches: allow this much lateness


WATCH_COUNTERS = (
    "written", "received", "missed", "missed_relist", "missed_undelivered", "missed_expiries",
    "expiries_received", "expiries_pending", "duplicates", "duplicates_retried", "duplicates_redelivered",
    "out_of_order", "relists", "unacknowledged_seen", "decode_errors", "foreign_events",
    "other_shard_events",
)  # fmt: skip
# Counters about the writes themselves, the same for every watch: a run with several watches reports
# them once, not summed (three watches of 300 writes were written 300, not 900). The others are totals
# over the watches; each watch's own books are in run.watches.
PER_RUN_COUNTERS = ("written", "expiries_pending")


def _watch_books(
    writer_results: Sequence[WriterReport],
    watch: WatchReport,
    ended_ns: int,
    sharded: bool,
) -> WatchCounters:
    """One watch's exact counters."""
    acked = {r.writer_id: r.acked for r in writer_results}
    # Only writers that reported: a writer killed after an interrupt has no books to join with.
    seen = {w: s for w, s in watch.seen.items() if w in acked}
    books = reconcile(acked, seen)
    seen_deletes = watch.deletes_seen
    deletes = [d for r in writer_results for d in r.deletes]
    expiring = [e for r in writer_results for e in r.expiring]
    deletes_received = sum(d.key in seen_deletes for d in deletes)
    deleted = {d.key for d in deletes}
    expiries_due = expiries_received = 0
    for key, due in expiring:
        if key in deleted:
            continue  # results of older writers: a key we deleted has one DELETE, ours, not an expiry
        if key in seen_deletes:
            expiries_received += 1
            expiries_due += 1
        elif due + round(EXPIRY_GRACE_S * 1e9) <= ended_ns:
            expiries_due += 1  # overdue and never seen: missed; not yet due: pending, not counted
    # Deleted keys we did not delete: another shard's (their books are theirs), or someone else's.
    unknown_deletes = len(seen_deletes.keys() - deleted - {k for k, _ in expiring})
    written = books.written + len(deletes) + expiries_due
    received = books.received + deletes_received + expiries_received
    # Why a write was lost: its revision inside a relist's gap (history lost: v2 401, v3 compaction),
    # or outside every gap (the watch never delivered it). A revision the API did not report is
    # charged to the relist if there was one.
    relists = watch.relists
    gaps = [(r.after_revision, r.revision) for r in relists]
    revisions = {r.writer_id: Revisions(*r.revisions) for r in writer_results}
    lost_deletes = [d.revision for d in deletes if d.key not in seen_deletes]
    lost_relist, lost_undelivered, lost_unknown = split_missed(acked, seen, revisions, gaps, lost_deletes)
    if relists:
        lost_relist += lost_unknown
    else:
        lost_undelivered += lost_unknown
    retried = watch.duplicates_retried
    redelivered = watch.duplicates_redelivered
    return WatchCounters(
        written=written,
        received=received,
        missed=written - received,
        missed_relist=lost_relist,
        missed_undelivered=lost_undelivered,
        missed_expiries=expiries_due - expiries_received,
        expiries_received=expiries_received,
        expiries_pending=len(expiring) - expiries_due - len({k for k, _ in expiring} & deleted),
        duplicates=retried + redelivered,
        duplicates_retried=retried,
        duplicates_redelivered=redelivered,
        out_of_order=watch.out_of_order,
        relists=len(relists),
        unacknowledged_seen=books.unacknowledged_seen,
        decode_errors=watch.decode_errors,
        foreign_events=watch.foreign + (0 if sharded else unknown_deletes),
        other_shard_events=watch.other_shards + (unknown_deletes if sharded else 0),
    )


def build_run(
    config: RunConfig,
    writer_results: Sequence[WriterReport],
    watcher_results: Sequence[StreamReport],
    *,
    timeline: Timeline,
    preload: Preload,
    cpu: dict[str, float | None],
    cpu_timeseries: dict[str, Any],
    drain_s: float,
    faults: list[Fault] | None = None,
    rss_timeseries: dict[str, Any] | None = None,
    memory: dict[str, Memory] | None = None,
    incomplete: str | None = None,
    missing: Sequence[str] = (),
    etcd: EtcdView | None = None,
    etcd_series: dict[str, list[Point]] | None = None,
    background: Background | None = None,
) -> Run:
    """The run's figures from what its processes reported, and etcd's own view (`etcd`, from its
    metrics, and its `etcd_series`) beside them. An interrupted run passes the timeline with the window
    closed at the interrupt, why it is `incomplete`, and the processes `missing` from it (killed before
    they reported); the figures then cover what the others measured until then."""
    duration = timeline.duration_s
    watches: list[Watch] = []
    total = LatencyRecorder()
    summed = dict.fromkeys(WATCH_COUNTERS, 0)  # zeros when no watch reported (killed after an interrupt)
    for stream in watcher_results:
        for watch in stream.watches:
            counters = _watch_books(writer_results, watch, stream.ended_ns, config.shards > 1)
            total.merge(LatencyRecorder.decode(watch.latency["hdr"], watch.latency["out_of_range"]))
            for name in WATCH_COUNTERS:
                n = getattr(counters, name)
                summed[name] = max(summed[name], n) if name in PER_RUN_COUNTERS else summed[name] + n
            watches.append(
                Watch(
                    watch=len(watches),
                    stream=stream.stream,
                    counters=counters,
                    watch_events_per_s=_per_s(watch.received_in_window, duration),
                    latency_us=WatchLatency(watch=Summary.from_dict(watch.latency)),
                    relists=[_relist(r) for r in watch.relists],
                    events_received=watch.events_per_s,
                )
            )
    ops = Operations(
        **{op: sum(r.ops_acked[op] for r in writer_results) for op in ("create", "update", "delete")}
    )
    counters = Counters(
        attempted=sum(r.attempted for r in writer_results),
        writes=ops.create + ops.update + ops.delete,
        **summed,
        errors=sum(r.errors for r in writer_results),
        unsent=sum(r.unsent for r in writer_results),
        stream_reopens=sum(s.stream_reopens for s in watcher_results),
        watch_reconnects=sum(s.reconnects for s in watcher_results),
        write_retries=sum(r.retries for r in writer_results),
        expired_before_update=sum(r.expired_before_update for r in writer_results),
    )
    sizes = {
        name: merged([Summary.from_dict(r.value_bytes[name]) for r in writer_results])
        for name in (writer_results[0].value_bytes if writer_results else ())
    }
    rates = [w.watch_events_per_s for w in watches]
    run = Run(
        label=config.label,
        scenario=config.scenario or None,
        backend=config.backend,
        encoding=config.encoding,
        kind=config.kind,
        workload=config.workload,
        v2_watch=config.v2_watch if config.backend == "v2" else None,
        watchers=len(watches),
        target_rate=config.rate,
        duration_s=round(duration, 3),
        warmup_s=config.warmup_s,
        config=config.to_dict(),
        object_bytes=round(sizes["stored"].mean or 0) if sizes else 0,
        object_sizes={name: replace(s, hdr=None) for name, s in sizes.items()} or None,
        preload=preload,
        operations=ops,
        counters=counters,
        watch_events_per_s=min(rates, default=0.0),  # the slowest watch: the one the verdict is about
        watch_events_per_s_total=round(sum(rates), 2),
        write_rate_achieved=_per_s(sum(r.acked_in_window for r in writer_results), duration),
        drain_s=round(drain_s, 3),
        latency_us=Latencies(
            watch=Summary.from_dict(total.summary()),
            put=merged([Summary.from_dict(r.put_latency) for r in writer_results]),
            schedule_slip=merged([Summary.from_dict(r.slip) for r in writer_results]),
        ),
        relists=[replace(r, watch=w.watch) for w in watches for r in w.relists],
        watches=watches if len(watches) > 1 else None,  # one watch: the run's own figures are its figures
        timeseries=Timeseries(
            interval_s=1,
            writes_acked=add_series([r.acks_per_s for r in writer_results]),
            events_received=add_series([w.events_received for w in watches]),
            cpu_cores=cpu_timeseries,
            rss_bytes=rss_timeseries or {},
            etcd=etcd_series or {},
        ),
        cpu={name: None if v is None else round(v, 3) for name, v in cpu.items()},
        memory=memory or {},
        error_samples=sorted({r.error_sample for r in writer_results if r.error_sample}),
        faults=faults,
        etcd=etcd,
        background=background,  # the apiserver's other traffic beside the measured writes
        incomplete=incomplete,
        missing=list(missing) or None,
        verdict=unjudged(),
    )
    return judged(run, config)


def _relist(r: RelistReport) -> Relist:
    return Relist(
        reason=r.reason,
        revision=r.revision,
        keys=r.keys,
        after_revision=r.after_revision,
        duration_s=r.duration_s,
        bytes=r.bytes,
    )


def _per_s(count: int, seconds: float) -> float:
    """A rate over the measured window; 0 for a window that never opened (interrupted in the warm-up)."""
    return round(count / seconds, 2) if seconds > 0 else 0.0
