"""The watcher process: one watch on the prefix, every event received *and decoded*.

Like the kube-apiserver's watch cache it decodes the new object and, when the server sends it, the
previous one. Latency is taken after decoding: intended send time of the write -> event decoded here.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint, Relist
from etcdbench.encoding.codec import get_codec
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.scenario import RunConfig
from etcdbench.workload.accounting import EventLedger, parse_stamp
from etcdbench.workload.timeline import NS, PerSecond, Timeline

DRAIN_HARD_LIMIT_S = 120.0  # even a watcher that keeps trickling events stops this long after the writers


@dataclass(frozen=True)
class WatcherPlan:
    config: RunConfig
    endpoint: Endpoint
    start_revision: int


def run_watcher(plan: WatcherPlan, conn: Connection) -> None:
    try:
        conn.send(("done", _watch(plan, conn)))
    except Exception as exc:
        conn.send(("error", f"watcher: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _watch(plan: WatcherPlan, conn: Connection) -> dict[str, Any]:
    cfg = plan.config
    backend = make_backend(cfg.backend, plan.endpoint, v2_watch=cfg.v2_watch)
    codec = get_codec(cfg.encoding)
    base64_values = not backend.binary_safe and cfg.encoding == "protobuf"
    ledger = EventLedger()
    latency = LatencyRecorder()
    relists: list[dict[str, Any]] = []
    foreign = deletes = decode_errors = 0
    state = {"last_event_ns": time.monotonic_ns(), "expected": -1}

    conn.send(("ready", None))
    _, t0_ns = conn.recv()
    timeline = Timeline(t0_ns, cfg.warmup_s, cfg.duration_s)
    events_per_s = PerSecond(t0_ns)
    in_window = 0

    def control() -> None:
        # The parent sends ("drain", n) once the writers are done: n acknowledged writes to expect.
        _, expected = conn.recv()
        state["expected"] = expected
        hard_deadline = time.monotonic_ns() + DRAIN_HARD_LIMIT_S * NS
        while True:
            now = time.monotonic_ns()
            if (
                ledger.distinct >= expected
                or now - state["last_event_ns"] > cfg.drain_s * NS
                or now > hard_deadline
            ):
                backend.cancel()
                return
            time.sleep(0.05)

    threading.Thread(target=control, name="watcher-control", daemon=True).start()

    for item in backend.watch(cfg.prefix, plan.start_revision):
        if isinstance(item, Relist):
            relists.append({"reason": item.reason, "revision": item.revision, "keys": item.keys})
            ledger.restart(item.revision)
            continue
        if item.type != "PUT":
            deletes += 1
            continue
        try:
            value = base64.b64decode(item.value) if base64_values else item.value
            stamp = codec.stamp(value)
            if item.prev_value:
                codec.decode(base64.b64decode(item.prev_value) if base64_values else item.prev_value)
        except Exception:
            decode_errors += 1
            continue
        now = time.monotonic_ns()
        state["last_event_ns"] = now
        if stamp is None:
            foreign += 1
            continue
        writer, seq, intended = parse_stamp(stamp)
        if ledger.record(writer, seq, item.revision):
            events_per_s.add(now)
            in_window += timeline.in_window(now)
            if timeline.in_window(intended):
                latency.record_us((now - intended) // 1000)
        if 0 <= state["expected"] <= ledger.distinct:
            backend.cancel()
    backend.close()
    return {
        "seen": {w: bytes(s.bits) for w, s in ledger.seen.items()},
        "events": ledger.events,
        "duplicates": ledger.duplicates,
        "out_of_order": ledger.out_of_order,
        "received_in_window": in_window,
        "relists": relists,
        "foreign": foreign,
        "deletes": deletes,
        "decode_errors": decode_errors,
        # v2 stream only: the server dropped our stream (its 100-event buffer filled) and we reopened it.
        "stream_reopens": getattr(backend, "stream_ends", 0),
        "watch_latency": latency.summary(),
        "events_per_s": events_per_s.counts,
    }
