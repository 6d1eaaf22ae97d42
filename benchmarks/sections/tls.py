"""T (what TLS costs our writers): benchmarks/tls_cost.py's measurements as rows of this run's table.

Plain and TLS-only etcds (client certificates) from the same binary, alternating rounds, medians: the v3
transport's CPU per put closed loop (ours and Go's clientv3), and our writer processes' CPU per write end
to end in `etcdbench watch` at a fixed rate, plain and --tls.
"""

from __future__ import annotations

from harness import Bench
from table import Table, f1, fr, ratio, status
from tls_cost import INFLIGHT, TARGET_RATIO, Settings, measure, medians


def section_t(b: Bench, t: Table) -> dict[str, list[float]]:
    settings = Settings(repeat=b.args.trials, run_seconds=b.args.duration)
    figures = measure(b.etcd_bin, b.etcdref, settings)
    m = medians(figures)
    rounds = f"median of {settings.repeat} alternating rounds"

    def pair(key: str) -> tuple[float | None, float | None]:
        return m.get(f"{key} plain"), m.get(f"{key} tls")

    plain, tls = pair("e2e writers")
    r = ratio(tls, plain)
    t.add(
        "T. our writers' CPU µs per write over TLS against plaintext, end to end "
        f"(`etcdbench watch` v3+protobuf at {settings.rate}/s, --tls: client certificates), {rounds}",
        f"{f1(plain)} → {f1(tls)} µs",
        "—",
        fr(r),
        f"<= {TARGET_RATIO:g}",
        status(r <= TARGET_RATIO) if r is not None else "n/a",
    )
    plain, tls = pair("v3 native")
    go_plain, go_tls = pair("go v3")
    t.add(
        "T. the v3 transport alone over TLS against plaintext: CPU µs per put, closed loop, "
        f"{INFLIGHT} in flight (Go: clientv3 at max), {rounds}",
        f"{f1(plain)} → {f1(tls)} µs ({fr(ratio(tls, plain))}x)",
        f"{f1(go_plain)} → {f1(go_tls)} µs ({fr(ratio(go_tls, go_plain))}x)",
        fr(ratio(tls, plain)),
        "(stated)",
        "info",
    )
    r = ratio(tls, go_tls)
    t.add(
        "T. CPU µs per put over TLS, ours against Go's (v3 transport, closed loop)",
        f"{f1(tls)} µs (grpcio over TLS: {f1(m.get('v3 grpcio tls'))} µs)",
        f"{f1(go_tls)} µs",
        fr(r),
        "<= 1.0",
        status(r <= 1.0) if r is not None else "n/a",
    )
    return figures
