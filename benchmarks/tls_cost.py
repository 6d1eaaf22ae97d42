"""What TLS costs our writers: client CPU per put over TLS against plaintext, and against Go over TLS.

Two local etcds from the same binary, one plain and one serving only TLS with client-certificate
auth (certificates from etcdbench.etcd.certs, as `--tls` makes them), and on each:

  1  the v3 transport alone: CPU µs per put of the v3 backend's put_async in this process, closed loop,
     64 puts in flight, 3,636-byte values (a protobuf Pod) — native HTTP/2 client, and grpcio over TLS
  2  the v2 transport alone: the same for the v2 backend's put_async (its pool of HTTP/1.1 connections)
  3  Go's v3 client (benchmarks/goref `put -max`, 64 in flight over 4 connections): CPU µs per write
  4  end to end: `etcdbench watch --backend v3 --encoding protobuf` at a fixed rate, plain and --tls:
     the writer processes' CPU per write from the results file

Measurements alternate plain and TLS, and each figure is the median of --repeat runs. Figures are
printed, never asserted (this machine's 2 cores are shared). Run it alone:

    python benchmarks/tls_cost.py                   # builds benchmarks/.bin/etcdref if Go is there
    python benchmarks/tls_cost.py --etcdref PATH    # a Go reference client built elsewhere
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness import POD_BYTES, EtcdbenchRun, tls_etcd
from reference import PutReport, go_reference, run_etcdref
from table import log

from etcdbench.backends import make_backend
from etcdbench.backends.base import Backend, Endpoint
from etcdbench.etcd.local import LocalEtcd, etcd_version, find_etcd_binary

ROOT = Path(__file__).resolve().parent.parent
INFLIGHT = 64
TARGET_RATIO = 1.3


def put_cost(backend: Backend, n: int, prefix: str) -> float:
    """CPU µs per put (this process) of `backend.put_async`, INFLIGHT in flight, closed loop."""
    slots = threading.Semaphore(INFLIGHT)
    finished = threading.Event()
    left = [n]
    lock = threading.Lock()
    value = b"x" * POD_BYTES
    failures: list[BaseException] = []

    def done(exc: BaseException | None) -> None:
        slots.release()
        with lock:
            left[0] -= 1
            if exc is not None:
                failures.append(exc)
            if not left[0]:
                finished.set()

    for i in range(min(n, 200)):  # connections up and warm before the clock starts
        slots.acquire()
        with lock:
            left[0] += 1
        backend.put_async(f"{prefix}warm-{i}", value, done)
    for _ in range(INFLIGHT):
        slots.acquire()
    for _ in range(INFLIGHT):
        slots.release()
    start = time.process_time()
    for i in range(n):
        slots.acquire()
        backend.put_async(f"{prefix}cost-{i % 1000}", value, done)
    finished.wait()
    took = time.process_time() - start
    if failures:
        raise RuntimeError(f"{len(failures)} puts failed, e.g. {failures[0]}")
    return took / n * 1e6


def client(endpoint: Endpoint, name: str) -> Backend:
    """A backend in this process: "v2", or v3 on its "native" or "grpcio" client (ETCDBENCH_V3_CLIENT)."""
    if name == "v2":
        return make_backend("v2", endpoint, max_inflight=INFLIGHT)
    os.environ["ETCDBENCH_V3_CLIENT"] = name
    try:
        return make_backend("v3", endpoint)
    finally:
        del os.environ["ETCDBENCH_V3_CLIENT"]


def measured(endpoint: Endpoint, name: str, n: int, prefix: str) -> float:
    """put_cost of a new client(endpoint, name), closed afterwards."""
    backend = client(endpoint, name)
    try:
        return put_cost(backend, n, prefix)
    finally:
        backend.close()


def go_put(etcdref: str, url: str, tls_flags: list[str], seconds: float) -> PutReport:
    argv = ["put", "-endpoints", url, "-max", "-duration", f"{seconds:g}", "-warmup", "1"]
    argv += ["-value-bytes", str(POD_BYTES), "-inflight", str(INFLIGHT), "-conns", "4", *tls_flags]
    return PutReport.from_doc(run_etcdref(etcdref, *argv, timeout=300))


def etcdbench_run(rate: int, seconds: float, tls: bool) -> tuple[EtcdbenchRun, bool, str]:
    """(the run, whether it spoke TLS, its v3 client) of `etcdbench watch` at `rate`, plain or --tls."""
    argv = [sys.executable, "-m", "etcdbench", "watch", "--backend", "v3", "--encoding", "protobuf"]
    argv += ["--rate", str(rate), "--duration", f"{seconds:g}", "--warmup", "2", "--json"]
    argv += ["--tls"] if tls else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, env=env)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"etcdbench watch exited {r.returncode}: {r.stderr.strip()[-300:]}")
    results = json.loads(r.stdout)
    environment = results["environment"]
    return EtcdbenchRun.from_run(results["runs"][0]), environment["tls"], environment["v3_client"]


@dataclass(frozen=True)
class Settings:
    puts: int = 20_000  # v3 puts per transport measurement
    v2_puts: int = 5_000
    repeat: int = 3  # alternating plain/TLS rounds; figures are medians
    go_seconds: float = 5.0
    rate: int = 3000  # end-to-end runs: writes/s
    run_seconds: float = 10.0
    e2e: bool = True


def measure(binary: str, etcdref: str | None, s: Settings) -> dict[str, list[float]]:
    """Every figure, by name ("v3 native plain", "go v3 tls", "e2e writers tls", ...): one value per round."""
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)
        log(f"{name}: {value:.1f}")

    with LocalEtcd(binary) as plain, tls_etcd(binary) as secure:
        ends = {"plain": Endpoint((plain.client_url,)), "tls": secure.endpoint}
        go_flags = {"plain": [], "tls": secure.etcdref_flags}
        for r in range(s.repeat):
            for mode in ("plain", "tls"):
                ep = ends[mode]
                prefix = f"/tls-cost/{mode}-{r}/"
                add(f"v3 native {mode}", measured(ep, "native", s.puts, prefix))
                add(f"v2 {mode}", measured(ep, "v2", s.v2_puts, prefix))
                if etcdref:
                    out = go_put(etcdref, ep.urls[0], go_flags[mode], s.go_seconds)
                    add(f"go v3 {mode}", float(out.cpu_us_per_write or "nan"))
            add("v3 grpcio tls", measured(ends["tls"], "grpcio", s.puts // 2, f"/tls-cost/g{r}/"))
    if s.e2e:
        for _ in range(s.repeat):
            for tls in (False, True):
                run, spoke_tls, v3_client = etcdbench_run(s.rate, s.run_seconds, tls)
                assert spoke_tls is tls
                us = run.writer_us_per_write
                add(f"e2e writers {'tls' if tls else 'plain'}", float("nan") if us is None else us)
                c = run.counters
                counts = f"written {c['written']}, received {c['received']}, missed {c['missed']}"
                log(f"  ({v3_client}, {counts})")
    return figures


def medians(figures: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--puts", type=int, default=20_000, help="v3 puts per transport measurement")
    p.add_argument("--v2-puts", type=int, default=5_000, help="v2 puts per transport measurement")
    p.add_argument("--repeat", type=int, default=3, help="alternating plain/TLS rounds (median)")
    p.add_argument("--go-seconds", type=float, default=5.0)
    p.add_argument("--rate", type=int, default=3000, help="end-to-end runs: writes/s")
    p.add_argument("--run-seconds", type=float, default=10.0)
    p.add_argument("--etcdref", help="Go reference client (default: benchmarks/.bin/etcdref, built)")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end etcdbench runs")
    args = p.parse_args()

    binary = find_etcd_binary()
    etcdref, found = go_reference(args.etcdref, build=True)
    if etcdref is None:
        log(f"no Go reference client: {found}")
    settings = Settings(args.puts, args.v2_puts, args.repeat, args.go_seconds, args.rate, args.run_seconds,
                        not args.no_e2e)  # fmt: skip
    figures = measure(binary, etcdref, settings)
    m = medians(figures)
    print(
        f"etcd {etcd_version(binary)}, {os.cpu_count()} cores, {POD_BYTES}-byte values, "
        f"{INFLIGHT} in flight, median of {args.repeat}; client CPU µs per put"
    )
    print(f"{'':34} {'plaintext':>10} {'TLS':>10} {'TLS/plain':>10}")
    for label, key in (
        ("v3 native HTTP/2 (transport)", "v3 native"),
        ("v2 HTTP/1.1 (transport)", "v2"),
        ("Go clientv3 (closed loop, max)", "go v3"),
        (f"etcdbench writers, {args.rate}/s e2e", "e2e writers"),
    ):
        a, b = m.get(f"{key} plain"), m.get(f"{key} tls")
        if a is None or b is None:
            continue
        print(f"{label:34} {a:10.1f} {b:10.1f} {b / a:9.2f}x")
    if "v3 grpcio tls" in m:
        print(f"{'v3 grpcio (transport)':34} {'':>10} {m['v3 grpcio tls']:10.1f}")
    if "go v3 tls" in m:
        print(f"ours over TLS / Go over TLS (v3 transport): {m['v3 native tls'] / m['go v3 tls']:.2f}x")
    print(f"target: TLS/plain <= {TARGET_RATIO}x for our writers, and <= Go's over TLS")
    print("raw: " + json.dumps({k: [round(v, 1) for v in vs] for k, vs in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
