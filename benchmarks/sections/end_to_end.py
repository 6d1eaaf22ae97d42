"""A (end to end at etcd's ceiling) and C (what a write costs our writers), against the Go writer."""

from __future__ import annotations

from dataclasses import dataclass

import tls_cost
from harness import POD_BYTES, PREFIX, Bench, EtcdbenchRun
from reference import PutReport
from table import Table, f0, f1, fr, log, ms, ratio, status

from etcdbench.backends.base import Endpoint

SLO_P99_US = 1_000_000
T_E2E = 0.9  # the target: etcdbench's events/s at 0.9x the Go writer's max


@dataclass(frozen=True)
class EndToEnd:
    rate: int  # what `etcdbench watch` was asked for: 0.9x Go's max, or --fallback-rate without Go
    run: EtcdbenchRun
    go_max: PutReport | None  # the Go writer at max on a fresh etcd, before the run
    go_max_after: PutReport | None  # and after it: the machine's drift is the spread of the two


@dataclass(frozen=True)
class WriterCost:
    one_writer: EtcdbenchRun  # one writer process asked for Go's max
    put_cost_us: dict[str, float]  # v3 client -> CPU µs per put, closed loop
    go_same_rate: PutReport | None  # the Go writer open loop at A's rate


def section_a(b: Bench, t: Table) -> EndToEnd:
    args = b.args
    go_max = go_max_after = None
    if b.etcdref:
        log("A1 Go writer at max, 3,636-byte values, fresh etcd")
        with b.etcd() as server:
            go_max = b.go_put(server.client_url, "-max", "-value-bytes", str(POD_BYTES))
        rate = round(0.9 * go_max.writes_per_s)
    else:
        rate = args.fallback_rate
    log(f"A2 etcdbench watch v3+protobuf at {rate}/s, {args.writers} writers, fresh etcd")
    run = b.etcdbench("--backend", "v3", "--encoding", "protobuf", "--rate", str(rate),
                      "--writers", str(args.writers), "--max-inflight", str(args.max_inflight),
                      "--duration", f"{args.duration:g}", "--warmup", "2")  # fmt: skip
    if b.etcdref:
        log("A3 Go writer at max again (after A2), fresh etcd")
        with b.etcd() as server:
            go_max_after = b.go_put(server.client_url, "-max", "-value-bytes", str(POD_BYTES))
    events, p99 = run.watch_events_per_s, run.watch_p99_us
    missed = run.counters["missed"]
    ok_run = missed == 0 and p99 is not None and p99 <= SLO_P99_US
    if go_max and go_max_after:
        r = ratio(events, go_max.writes_per_s)
        t.add(
            "A. end to end: `etcdbench watch` v3+protobuf events/s at 0.9x Go max (ratio to Go max writes/s)",
            f"{f0(events)}/s (target rate {rate}/s, written {f0(run.write_rate_achieved)}/s)",
            f"{f0(go_max.writes_per_s)} writes/s max (again after A: {f0(go_max_after.writes_per_s)}/s)",
            fr(r),
            f">= {T_E2E}",
            status(r is not None and r >= T_E2E),
        )
    else:
        t.add(
            "A. end to end: `etcdbench watch` v3+protobuf events/s (no Go: fixed rate)",
            f"{f0(events)}/s of {rate}/s",
            "—",
            "—",
            f">= {T_E2E} of Go max",
            "n/a",
        )
    cb = "; client-bound: " + ", ".join(run.client_bound_reasons) if run.client_bound_reasons else ""
    t.add(
        "A. same run: missed, watch p99 (SLO 1 s), verdict",
        f"missed {missed}, p99 {ms(p99)}, {'PASS' if run.passed else 'FAIL'}{cb}",
        "—",
        "—",
        "missed 0, p99 < 1 s",
        status(ok_run),
    )
    return EndToEnd(rate, run, go_max, go_max_after)


def section_c(b: Bench, t: Table, a: EndToEnd) -> WriterCost:
    args = b.args
    rate = a.rate
    ours = a.run.writer_us_per_write
    go_same = None
    if a.go_max:
        log(f"C Go writer open loop at {rate}/s (the rate of A2)")
        with b.etcd() as server:
            go_same = b.go_put(server.client_url, "-rate", str(rate), "-value-bytes", str(POD_BYTES))
        go_us = go_same.cpu_us_per_write
        t.add(
            f"C. writer CPU µs per write, open loop at {rate}/s ({args.writers} etcdbench writers)",
            f"{f1(ours)} µs",
            f"{f1(go_us)} µs (Go achieved {f0(go_same.writes_per_s)}/s of {rate}/s; "
            f"at max: {f1(a.go_max.cpu_us_per_write)} µs)",
            fr(ratio(ours, go_us)),
            "(stated)",
            "info",
        )
    else:
        t.add(f"C. writer CPU µs per write at {rate}/s", f"{f1(ours)} µs", "—", "—", "(stated)", "info")
    target = a.go_max.writes_per_s if a.go_max else 2 * rate
    log(f"C etcdbench watch with ONE writer process asked for {target:.0f}/s")
    one = b.etcdbench("--backend", "v3", "--encoding", "protobuf", "--rate", f"{target:.0f}",
                      "--writers", "1", "--max-inflight", str(args.max_inflight),
                      "--duration", f"{args.duration:g}", "--warmup", "2")  # fmt: skip
    per_proc = one.write_rate_achieved
    note = f"(writer {one.writer_max_cpu:.2f} cores, slip p99 {ms(one.slip_p99_us)})"
    if a.go_max:
        go_proc = a.go_max.writes_per_s
        t.add(
            "C. writes/s one writer process sustains (ours: asked for Go's max; Go: at max)",
            f"{f0(per_proc)}/s {note}",
            f"{f0(go_proc)}/s",
            fr(ratio(per_proc, go_proc)),
            "(stated)",
            "info",
        )
    else:
        t.add(
            "C. writes/s one writer process sustains",
            f"{f0(per_proc)}/s {note}",
            "—",
            "—",
            "(stated)",
            "info",
        )
    # The transport alone, both v3 clients, closed loop: what each costs per put, no schedule or books.
    with b.etcd() as server:
        endpoint = Endpoint((server.client_url,))
        cost = {name: tls_cost.measured(endpoint, name, 20_000, PREFIX) for name in ("native", "grpcio")}
    go_max_us = a.go_max.cpu_us_per_write if a.go_max else None
    t.add(
        f"C. of which the v3 client alone: CPU µs per put, closed loop, {args.max_inflight} in flight "
        "(native HTTP/2 client vs grpcio)",
        f"{f1(cost['native'])} µs native, {f1(cost['grpcio'])} µs grpcio",
        f"{f1(go_max_us)} µs (at max)",
        fr(ratio(cost["native"], go_max_us)),
        "(stated)",
        "info",
    )
    return WriterCost(one, cost, go_same)
