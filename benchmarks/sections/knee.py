"""K (the capacity knee, like for like): etcdbench's knee against etcd's Go client's, searched the same way.

Both sides run etcdbench.bench.capacity.search (same start, resolution and budget) on one fresh etcd for
the whole search, each step on the same open-loop schedule, judged by the same rules:

- etcdbench: `etcdbench capacity --backend v3 --encoding protobuf --writers W` (its own search, its own
  verdict; protobuf Pods decoded by the watcher);
- Go: `etcdref put -rate R` writing etcdbench's stamped protobuf Pod, 64 in flight over 4 connections,
  with `etcdref watch` attached from the revision before the first write and measuring from the stamps.
  `go_verdict` applies etcdbench's PASS rules to what they report: writes and events received at >= 99%
  of the rate in the measured window, nothing missed, no write failed, watch p99 within the 1 s SLO.

Then the Go writer's closed-loop maximum with the Go watcher attached (fresh etcd): an open-loop knee
with a p99 bound sits below any closed-loop maximum by queueing alone, so both knees are stated against
it. With tls the same runs on an etcd serving TLS only, with client certificates (as `--tls` sets up).
The Go watcher does not decode the Pods (Debian ships no k8s.io/api): the comparison favours Go.

One search per side moves with the host: on this VM the Go pair's closed-loop maximum has ranged from
3,600 to 9,000 writes/s between runs an hour apart. So K runs --knee-searches rounds (ours, Go, Go's
closed loop; each on a fresh etcd), alternating so that a slow spell of the host falls on both sides,
and judges the median knee of each side.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness import GO_CONNS, GO_INFLIGHT, PREFIX, Bench, tls_etcd
from reference import PutReport, WatcherReport, last_json
from table import Table, f0, fr, log, ms, ratio, status

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint
from etcdbench.bench.capacity import search
from etcdbench.results.io import load
from etcdbench.results.model import Verdict
from etcdbench.results.verdict import RECEIVED_RATE_FLOOR
from sections.end_to_end import SLO_P99_US

T_KNEE = 1.0  # the target: etcdbench's knee over Go's, like for like


@dataclass(frozen=True)
class GoStep:
    """One Go step: the writer's and the watcher's reports, the events the watcher should have had,
    and etcdbench's verdict rules applied to them."""

    rate: float
    put: PutReport
    watch: WatcherReport
    expected: int  # revisions written after the watch's start revision
    verdict: Verdict


@dataclass(frozen=True)
class Search:
    """One side's search in one round."""

    knee: float | None  # the highest passing rate (None: even the first rate failed)
    interval: list[float | None]  # [knee, lowest failing rate above it]; None above: out of budget
    steps: int
    limited_by: str  # ours: the run's own attribution; Go: why its lowest failing rate failed (first reason)

    @property
    def bracketed(self) -> bool:
        return self.interval[1] is not None


@dataclass(frozen=True)
class KneePair:
    mode: str  # "plain" or "tls"
    ours: list[Search]  # one per round
    go: list[Search]
    # per round: the Go writer at max, and the Go watcher attached to it
    go_closed_loop: list[tuple[PutReport, WatcherReport]]

    @property
    def ours_median(self) -> float | None:
        return _median_knee(self.ours)

    @property
    def go_median(self) -> float | None:
        return _median_knee(self.go)


def _median_knee(searches: list[Search]) -> float | None:
    """The median knee; a search that passed no rate counts as 0."""
    return statistics.median(s.knee or 0.0 for s in searches) if searches else None


def go_verdict(rate: float, put: PutReport, watch: WatcherReport, expected: int) -> Verdict:
    """etcdbench's PASS rules (etcdbench.results.verdict) on the Go pair's reports."""
    floor = RECEIVED_RATE_FLOOR * rate
    reasons = []
    if watch.window_events_per_s is None or watch.window_events_per_s < floor:
        reasons.append(f"watcher received {watch.window_events_per_s} events/s < {floor:g} (99% of target)")
    if watch.events < expected:
        reasons.append(f"{expected - watch.events} events missed")
    if watch.p99_us is None:
        reasons.append("no watch latency recorded in the measured window")
    elif watch.p99_us > SLO_P99_US:
        reasons.append(f"watch p99 {ms(watch.p99_us)} > SLO {ms(SLO_P99_US)}")
    if put.errors:
        reasons.append(f"{put.errors} writes failed")
    if put.window_writes_per_s < floor:
        reasons.append(f"writers achieved {put.window_writes_per_s:g} writes/s < {floor:g} (99% of target)")
    return Verdict(
        pass_=not reasons, reasons=reasons, client_bound=False, client_bound_reasons=[], warnings=[]
    )


class GoPair:
    """The Go writer with the Go watcher attached, step after step on one etcd (as `etcdbench capacity`
    keeps one etcd for its whole search)."""

    def __init__(self, b: Bench, url: str, endpoint: Endpoint, tls_argv: list[str]) -> None:
        self.b, self.url, self.tls_argv = b, url, tls_argv
        self.admin = make_backend("v3", endpoint)

    def close(self) -> None:
        self.admin.close()

    def step(self, *writer: str) -> tuple[PutReport, WatcherReport, int]:
        b = self.b
        assert b.etcdref
        d, hard = b.args.duration, b.args.duration + 120
        start = self.admin.current_revision() + 1
        value = str(b.values["protobuf"])
        cmd = [b.etcdref, "watch", "-endpoints", self.url, "-prefix", PREFIX, "-duration", str(hard),
               "-start-rev", str(start), "-until-stdin", "-value-file", value, "-warmup", "2",
               "-window", f"{d:g}", *self.tls_argv]  # fmt: skip
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdin and proc.stdout
            if '"ready"' not in proc.stdout.readline():
                raise RuntimeError("the Go watcher did not start")
            put = b.go_put(self.url, *writer, "-value-file", value, *self.tls_argv)
            final = self.admin.current_revision()
            proc.stdin.write(f"{final}\n")
            proc.stdin.flush()
            out, _ = proc.communicate(timeout=hard)
            return put, WatcherReport.from_doc(last_json(out, "Go watcher")), final - start + 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def measure(self, rate: float) -> GoStep:
        put, watch, expected = self.step("-rate", f"{rate:g}")
        verdict = go_verdict(rate, put, watch, expected)
        log(f"  Go @{rate:,.0f}/s: wrote {put.window_writes_per_s:,.0f}/s, "
            f"received {watch.window_events_per_s}/s, p99 {ms(watch.p99_us)}, "
            f"missed {max(0, expected - watch.events)}: "
            f"{'PASS' if verdict.pass_ else 'FAIL ' + '; '.join(verdict.reasons)}")  # fmt: skip
        return GoStep(rate, put, watch, expected, verdict)


@contextlib.contextmanager
def _go_pair(b: Bench, tls: bool) -> Iterator[GoPair]:
    """A GoPair on a fresh etcd, plain or TLS-only with client certificates."""
    with contextlib.ExitStack() as stack:
        if tls:
            secure = stack.enter_context(tls_etcd(b.etcd_bin))
            url, endpoint, flags = secure.server.client_url, secure.endpoint, secure.etcdref_flags
        else:
            url = stack.enter_context(b.etcd()).client_url
            endpoint, flags = Endpoint((url,)), []
        pair = GoPair(b, url, endpoint, flags)
        stack.callback(pair.close)
        yield pair


def _ours(b: Bench, tls: bool, round_: int) -> Search:
    """`etcdbench capacity` on its own embedded etcd: the search its results file records."""
    a = b.args
    out = b.tmp / f"capacity-{'tls' if tls else 'plain'}-{round_}.json"
    cmd = [sys.executable, "-m", "etcdbench", "capacity", "--backend", "v3", "--encoding", "protobuf",
           "--writers", str(a.writers), "--max-inflight", str(a.max_inflight),
           "--duration", f"{a.duration:g}", "--warmup", "2", "--start", f"{a.knee_start:g}",
           "--budget", f"{a.knee_budget:g}", "--resolution", f"{a.knee_resolution:g}",
           "--output", str(out), *(["--tls"] if tls else [])]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=a.knee_budget * 3 + 600, check=False)
    if r.returncode not in (0, 1) or not out.exists():
        raise RuntimeError(f"etcdbench capacity exited {r.returncode}: {r.stderr.strip()[-400:]}")
    capacity: dict[str, Any] = load(out)["capacity"]
    limited = capacity.get("limited_by")
    return Search(capacity["knee"], list(capacity["interval"]), len(capacity["curve"]),
                  limited["text"] if limited else "—")  # fmt: skip


def _go(b: Bench, tls: bool) -> Search:
    """The Go pair searched the same way, on a fresh etcd."""
    a = b.args
    with _go_pair(b, tls) as pair:
        found = search(pair.measure, start=a.knee_start, resolution=a.knee_resolution, budget_s=a.knee_budget)
    limiting = found.limiting_step
    reasons = limiting.run.verdict.reasons if limiting else []
    why = reasons[0] + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else "") if reasons else "—"
    return Search(found.knee, [found.knee, found.lowest_fail], len(found.steps), why)


def knee_pair(b: Bench, tls: bool) -> KneePair:
    a, mode = b.args, "tls" if tls else "plain"
    pair = KneePair(mode, [], [], [])
    for n in range(1, a.knee_searches + 1):
        log(f"K ({mode}) {n}/{a.knee_searches} etcdbench capacity v3+protobuf, --writers {a.writers}, "
            f"from {a.knee_start:g}/s")  # fmt: skip
        pair.ours.append(_ours(b, tls, n))
        if not b.etcdref:
            continue
        log(f"K ({mode}) {n}/{a.knee_searches} Go writer -rate R + Go watcher, the same search")
        pair.go.append(_go(b, tls))
        log(f"K ({mode}) {n}/{a.knee_searches} Go writer at max + Go watcher, fresh etcd")
        with _go_pair(b, tls) as go:
            closed, closed_watch, _ = go.step("-max")
        pair.go_closed_loop.append((closed, closed_watch))
    return pair


def section_k(b: Bench, t: Table) -> list[KneePair]:
    pairs = [knee_pair(b, tls) for tls in b.args.knee_modes]
    for p in pairs:
        over = " over TLS (client certificates)" if p.mode == "tls" else ""
        ours, go = p.ours_median, p.go_median
        r = ratio(ours, go)
        bracketed = all(s.bracketed for s in p.ours + p.go)  # every knee has a failing rate above it
        n = len(p.ours)
        t.add(
            f"K. capacity knee{over}, like for like, median of {n} alternating searches per side: "
            f"v3+protobuf, watch p99 <= 1 s, nothing missed, >= 99% of the rate (etcdbench --writers "
            f"{b.args.writers}; Go: put -rate R, {GO_INFLIGHT} in flight over {GO_CONNS} connections, "
            f"+ Go watcher), the same search (resolution {b.args.knee_resolution:g})",
            f"{f0(ours)}/s ({_searches(p.ours)})",
            f"{f0(go)}/s ({_searches(p.go)})" if p.go else "—",
            fr(r),
            f">= {T_KNEE:g}",
            _verdict(r, bracketed),
        )
        if p.go_closed_loop:
            closed = statistics.median(c.writes_per_s for c, _ in p.go_closed_loop)
            p99s = ", ".join(ms(w.p99_us) for _, w in p.go_closed_loop)
            t.add(
                f"K. both median knees{over} against the median of the Go writer's closed-loop maximum "
                f"with the Go watcher attached (fresh etcd each round; watcher p99 {p99s})",
                f"{fr(ratio(ours, closed))} of it",
                f"{f0(closed)} writes/s max ({', '.join(f0(c.writes_per_s) for c, _ in p.go_closed_loop)}); "
                f"Go's knee {fr(ratio(go, closed))} of it",
                fr(ratio(ours, closed)),
                "(stated)",
                "info",
            )
    return pairs


def _verdict(r: float | None, bracketed: bool) -> str:
    if r is None:
        return "n/a"
    return status(r >= T_KNEE) if bracketed else "n/a: a search ran out of budget"


def _searches(searches: list[Search]) -> str:
    """Each search's knee, its interval, steps and why it stopped there."""
    return "; ".join(
        f"{f0(s.knee)} (interval {_interval(s.interval)}, {s.steps} steps, limited by {s.limited_by})"
        for s in searches
    )


def _interval(bounds: list[float | None]) -> str:
    low, high = bounds
    return f"{f0(low)} to {f0(high)}" if high is not None else f">= {f0(low)}"
