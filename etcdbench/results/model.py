"""One run's figures, computed once here from what the processes reported, and its verdict.

Every figure's meaning is stated in docs/methodology.md; the names say what they measure.
"""

from __future__ import annotations

from typing import Any

from etcdbench.metrics.cpu import SATURATED_CORES
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.scenario import RunConfig
from etcdbench.workload.accounting import reconcile

RECEIVED_RATE_FLOOR = 0.99  # of the target rate, over the measured window
SLIP_CLIENT_BOUND_US = 100_000  # writers dispatching p99 100 ms late could not keep the schedule


def _merge(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    rec = LatencyRecorder()
    for s in summaries:
        rec.merge(LatencyRecorder.decode(s["hdr"], s["out_of_range"]))
    return rec.summary()


def _add_series(series: list[list[int]]) -> list[int]:
    out = [0] * max((len(s) for s in series), default=0)
    for s in series:
        for i, n in enumerate(s):
            out[i] += n
    return out


def build_run(
    config: RunConfig,
    writer_results: list[dict[str, Any]],
    watcher_result: dict[str, Any],
    *,
    cpu: dict[str, float | None],
    cpu_timeseries: dict[str, Any],
    drain_s: float,
) -> dict[str, Any]:
    books = reconcile({r["writer_id"]: r["acked"] for r in writer_results}, watcher_result["seen"])
    duration = config.duration_s
    attempted = sum(r["attempted"] for r in writer_results)
    value_bytes = sum(r["value_bytes_total"] for r in writer_results)
    relists = watcher_result["relists"]
    counters = {
        "attempted": attempted,
        "written": books.written,
        "received": books.received,
        "missed": books.missed,
        "duplicates": watcher_result["duplicates"],
        "out_of_order": watcher_result["out_of_order"],
        "relists": len(relists),
        "errors": sum(r["errors"] for r in writer_results),
        "unacknowledged_seen": books.unacknowledged_seen,
        "decode_errors": watcher_result["decode_errors"],
        "foreign_events": watcher_result["foreign"],
        "stream_reopens": watcher_result["stream_reopens"],
    }
    run: dict[str, Any] = {
        "label": config.label,
        "backend": config.backend,
        "encoding": config.encoding,
        "kind": config.kind,
        "v2_watch": config.v2_watch if config.backend == "v2" else None,
        "target_rate": config.rate,
        "duration_s": duration,
        "warmup_s": config.warmup_s,
        "config": config.to_dict(),
        "object_bytes": round(value_bytes / attempted) if attempted else 0,
        "counters": counters,
        "watch_events_per_s": round(watcher_result["received_in_window"] / duration, 2),
        "write_rate_achieved": round(sum(r["acked_in_window"] for r in writer_results) / duration, 2),
        "drain_s": round(drain_s, 3),
        "latency_us": {
            "watch": watcher_result["watch_latency"],
            "put": _merge([r["put_latency"] for r in writer_results]),
            "schedule_slip": _merge([r["slip"] for r in writer_results]),
        },
        "relists": relists,
        "timeseries": {
            "interval_s": 1,
            "writes_acked": _add_series([r["acks_per_s"] for r in writer_results]),
            "events_received": watcher_result["events_per_s"],
            "cpu_cores": cpu_timeseries,
        },
        "cpu": {name: None if v is None else round(v, 3) for name, v in cpu.items()},
        "error_samples": sorted({r["error_sample"] for r in writer_results if r["error_sample"]}),
    }
    run["verdict"] = verdict(run, config)
    return run


def verdict(run: dict[str, Any], config: RunConfig) -> dict[str, Any]:
    """PASS: events received at >= 99% of the target rate, nothing missed, watch p99 within the SLO."""
    reasons: list[str] = []
    c = run["counters"]
    floor = RECEIVED_RATE_FLOOR * config.rate
    if run["watch_events_per_s"] < floor:
        reasons.append(f"watcher received {run['watch_events_per_s']:g} events/s < {floor:g} (99% of target)")
    if c["missed"]:
        reasons.append(f"{c['missed']} events missed ({c['relists']} relists)")
    p99 = run["latency_us"]["watch"]["p99"]
    if p99 is None:
        reasons.append("no watch latency recorded in the measured window")
    elif p99 > config.slo_p99_us:
        reasons.append(f"watch p99 {_ms(p99)} > SLO {_ms(config.slo_p99_us)}")
    if c["errors"]:
        reasons.append(f"{c['errors']} writes failed")
    if run["write_rate_achieved"] < floor:
        reasons.append(
            f"writers achieved {run['write_rate_achieved']:g} writes/s < {floor:g} (99% of target)"
        )

    bound: list[str] = []
    cpu = run["cpu"]
    if (cpu.get("watcher") or 0) >= SATURATED_CORES:
        bound.append(f"watcher process used {cpu['watcher']:.2f} of its one core")
    if (cpu.get("writers") or 0) >= SATURATED_CORES * config.writers:
        bound.append(f"writer processes used {cpu['writers']:.2f} of {config.writers} core(s)")
    slip_p99 = run["latency_us"]["schedule_slip"]["p99"]
    if slip_p99 is not None and slip_p99 > SLIP_CLIENT_BOUND_US:
        bound.append(f"writers fell behind their schedule (slip p99 {_ms(slip_p99)})")
    warnings = []
    if (cpu.get("host") or 0) >= SATURATED_CORES:
        warnings.append(f"host CPU {cpu['host']:.0%} busy: etcd and etcdbench competed for the same cores")
    return {
        "pass": not reasons,
        "reasons": reasons,
        "client_bound": bool(bound),
        "client_bound_reasons": bound,
        "warnings": warnings,
    }


def _ms(us: int) -> str:
    return f"{us / 1000:.1f} ms" if us < 1_000_000 else f"{us / 1e6:.2f} s"
