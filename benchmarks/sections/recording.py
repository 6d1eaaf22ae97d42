"""F (what recording an event costs) and the in-process microbenchmarks of the watcher's per-event work,
with no network: WatchBook.event on real Pods, and its bookkeeping parts one by one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pywatch import new_book
from table import Table, f1, fr, log, ratio

from etcdbench.backends.base import WatchEvent
from etcdbench.encoding.codec import get_codec
from etcdbench.encoding.objects import build_object
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.workload.accounting import EventLedger, format_stamp, parse_stamp


@dataclass(frozen=True)
class RecordingCost:
    """µs per event of each part of the watcher's bookkeeping, and of all of them together."""

    timestamp: float
    parse_stamp: float
    ledger: float
    histogram: float
    together: float


def decode_cost(encoding: str, n: int = 20_000) -> float:
    """µs per event of WatchBook.event (full decode of new + previous object, stamp, ledger,
    histogram) on real etcdbench Pods, with no network: the Python work per event of the watcher."""
    codec = get_codec(encoding)
    template = codec.encode(build_object("pod", 1))
    now = time.monotonic_ns()
    values = [template.replace(b"?" * 38, format_stamp(0, i, now).encode(), 1) for i in range(n)]
    events = [WatchEvent("PUT", "/registry/pods/x", i + 1, values[i], values[i - 1]) for i in range(n)]
    best = float("inf")
    for _ in range(3):
        book = new_book(now)
        start = time.perf_counter()
        for ev in events:
            book.event(ev, codec, False)
        best = min(best, time.perf_counter() - start)
        assert book.ledger.distinct == n and not book.decode_errors
    return best * 1e6 / n


def recording_cost(n: int = 200_000) -> RecordingCost:
    """µs per event of our bookkeeping: a timestamp, parse_stamp, EventLedger.record, LatencyRecorder."""
    base = time.monotonic_ns()
    stamps = [format_stamp(i % 4, i // 4, base + i * 200_000) for i in range(n)]

    def timed(fn: Callable[[], None]) -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best * 1e6 / n

    def clock() -> None:
        f = time.monotonic_ns
        for _ in stamps:
            f()

    def parse() -> None:
        for s in stamps:
            parse_stamp(s)

    parsed = [parse_stamp(s) for s in stamps]

    def ledger() -> None:
        led = EventLedger()
        for rev, (w, seq, _) in enumerate(parsed, 1):
            led.record(w, seq, rev)

    def histogram() -> None:
        rec = LatencyRecorder()
        for i in range(n):
            rec.record_us(1000 + (i * 7919) % 900_000)

    def together() -> None:
        led, rec, f = EventLedger(), LatencyRecorder(), time.monotonic_ns
        for rev, s in enumerate(stamps, 1):
            now = f()
            w, seq, intended = parse_stamp(s)
            if led.record(w, seq, rev):
                rec.record_us((now - intended) // 1000)

    return RecordingCost(
        timestamp=timed(clock),
        parse_stamp=timed(parse),
        ledger=timed(ledger),
        histogram=timed(histogram),
        together=timed(together),
    )


def section_f(t: Table, go_us_per_event: float | None) -> RecordingCost:
    """`go_us_per_event`: the Go watcher's whole CPU per event at B's fixed rate (protobuf), if B ran."""
    log("F recording overhead (in-process microbenchmark)")
    cost = recording_cost()
    parts = {"timestamp": cost.timestamp, "parse_stamp": cost.parse_stamp, "ledger": cost.ledger,
             "histogram": cost.histogram}  # fmt: skip
    go = go_us_per_event
    t.add(
        "F. recording per event: timestamp + parse_stamp + ledger + HDR histogram "
        f"({', '.join(f'{k} {v:.2f}' for k, v in parts.items())} µs)",
        f"{cost.together:.2f} µs",
        f"{f1(go)} µs = Go watcher's whole CPU/event" if go else "—",
        fr(ratio(cost.together, go)),
        "(stated)",
        "info",
    )
    return cost
