"""P: preload keys/s (the standing state) against the Go writer's closed-loop rate for values of the same
size on new keys, alternating."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from harness import GO_INFLIGHT, Bench
from table import Table, f0, fr, log, ratio, status

T_PRELOAD = 0.8


@dataclass(frozen=True)
class PreloadRates:
    go: list[float]  # writes/s per trial; empty without Go
    py: list[float]  # keys/s per trial


def section_p(b: Bench, t: Table) -> dict[str, PreloadRates]:
    """Keyed "api_encoding"."""
    args = b.args
    keys = args.preload_keys
    cells = (("v3", "protobuf", "put"), ("v3", "json", "put"), ("v2", "json", "v2put"))
    raw: dict[str, PreloadRates] = {}
    for api, encoding, cmd in cells:
        go_rates: list[float] = []
        py_rates: list[float] = []
        for trial in range(args.trials):
            if b.etcdref:
                log(f"P{trial + 1} {api} {encoding}: Go writer closed loop, new keys, fresh etcd")
                with b.etcd() as server:
                    go = b.go_put(server.client_url, "-max", "-value-file", str(b.values[encoding]),
                                  "-keys", "100000000", cmd=cmd)  # fmt: skip
                go_rates.append(go.writes_per_s)
            log(f"P{trial + 1} {api} {encoding}: etcdbench preload of {keys:,} pods, {args.writers} writers")
            run = b.etcdbench("--backend", api, "--encoding", encoding, "--preload", f"pod={keys}",
                              "--writers", str(args.writers), "--rate", "100", "--duration", "1",
                              "--warmup", "0")  # fmt: skip
            pre = run.preload
            if pre is None or pre["keys"] != keys:
                raise RuntimeError(f"preload stored {pre and pre['keys']} keys, not {keys}")
            py_rates.append(pre["keys"] / pre["seconds"])
        raw[f"{api}_{encoding}"] = PreloadRates(go_rates, py_rates)
        py = statistics.mean(py_rates)
        go_mean = statistics.mean(go_rates) if go_rates else None
        r = ratio(py, go_mean)
        t.add(
            f"P. preload keys/s, {api} + {encoding} Pods ({b.values_bytes[encoding]:,} B), {keys:,} keys, "
            f"{args.writers} writers (Go: closed loop, new keys, {GO_INFLIGHT} in flight), "
            f"mean of {args.trials} alternating",
            f"{f0(py)}/s ({', '.join(f0(x) for x in py_rates)})",
            f"{f0(go_mean)}/s ({', '.join(f0(x) for x in go_rates)})" if go_rates else "—",
            fr(r),
            f">= {T_PRELOAD}",
            status(r is not None and r >= T_PRELOAD) if r is not None else "n/a",
        )
    return raw
