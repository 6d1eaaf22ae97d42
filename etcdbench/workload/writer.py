"""A writer process: Kubernetes-shaped objects on an open-loop schedule.

Write i of the whole run (all writers together) is intended at t0 + i / rate; writer w takes every
write with i % writers == w. The schedule never resets: a writer that falls behind sends late writes
at once, and their latency still counts from the intended time, so a stall is charged to every write
it delays (no coordinated omission). Requests in flight are capped; waiting for a free slot is
schedule slip, which is reported.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint
from etcdbench.encoding.codec import get_codec
from etcdbench.encoding.objects import STAMP_PLACEHOLDER, build_object, object_key
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.scenario import RunConfig
from etcdbench.workload.accounting import SeqSet, format_stamp
from etcdbench.workload.timeline import NS, PerSecond, Timeline

PLACEHOLDER = STAMP_PLACEHOLDER.encode("ascii")


@dataclass(frozen=True)
class WriterPlan:
    writer_id: int
    config: RunConfig
    endpoint: Endpoint


class ValueTemplates:
    """Each object encoded once; a write only swaps in its stamp (same width, so still valid)."""

    def __init__(self, config: RunConfig) -> None:
        self.codec = get_codec(config.encoding)
        self.kind = config.kind
        self.prefix = config.prefix
        self._cache: dict[int, tuple[str, bytes]] = {}

    def get(self, index: int) -> tuple[str, bytes]:
        hit = self._cache.get(index)
        if hit is None:
            value = self.codec.encode(build_object(self.kind, index))
            if PLACEHOLDER not in value:
                raise AssertionError(f"{self.kind} object has no stamp placeholder")
            hit = self._cache[index] = (self.prefix + object_key(self.kind, index), value)
        return hit


def run_writer(plan: WriterPlan, conn: Connection) -> None:
    """Process entry point: report ready, wait for t0, write, send the result."""
    try:
        conn.send(("done", _write(plan, conn)))
    except Exception as exc:  # reported to the parent, which owns the exit code
        conn.send(("error", f"writer {plan.writer_id}: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _write(plan: WriterPlan, conn: Connection) -> dict[str, Any]:
    cfg = plan.config
    backend = make_backend(cfg.backend, plan.endpoint, v2_watch=cfg.v2_watch, max_inflight=cfg.max_inflight)
    templates = ValueTemplates(cfg)
    needs_base64 = not backend.binary_safe and cfg.encoding == "protobuf"
    my_writes = range(plan.writer_id, cfg.total_writes, cfg.writers)
    for i in my_writes[: cfg.objects]:
        templates.get(i % cfg.objects)  # encode up front so the schedule starts hot

    conn.send(("ready", None))
    _, t0_ns = conn.recv()
    timeline = Timeline(t0_ns, cfg.warmup_s, cfg.duration_s)
    interval_ns = NS / cfg.rate

    lock = threading.Condition()
    inflight = 0
    acked = SeqSet()
    errors = 0
    error_sample = ""
    put_latency = LatencyRecorder()
    slip = LatencyRecorder()
    acks_per_s = PerSecond(t0_ns)
    value_bytes = 0
    acked_in_window = 0

    def done_cb(seq: int, intended: int) -> Any:
        def done(exc: BaseException | None) -> None:
            nonlocal inflight, errors, error_sample, acked_in_window
            now = time.monotonic_ns()
            with lock:
                inflight -= 1
                if exc is None:
                    acked.add(seq)
                    acks_per_s.add(now)
                    acked_in_window += timeline.in_window(now)
                    if timeline.in_window(intended):
                        put_latency.record_us((now - intended) // 1000)
                else:
                    errors += 1
                    error_sample = error_sample or f"{type(exc).__name__}: {exc}"
                lock.notify()

        return done

    for seq, i in enumerate(my_writes):
        intended = t0_ns + round(i * interval_ns)
        delay = intended - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / NS)
        with lock:
            while inflight >= cfg.max_inflight:
                lock.wait()
            inflight += 1
        if timeline.in_window(intended):
            slip.record_us((time.monotonic_ns() - intended) // 1000)
        key, template = templates.get(i % cfg.objects)
        value = template.replace(PLACEHOLDER, format_stamp(plan.writer_id, seq, intended).encode("ascii"), 1)
        if needs_base64:
            value = base64.b64encode(value)
        value_bytes += len(value)
        backend.put_async(key, value, done_cb(seq, intended))

    with lock:
        while inflight > 0:
            lock.wait()
    backend.close()
    return {
        "writer_id": plan.writer_id,
        "attempted": len(my_writes),
        "acked": bytes(acked.bits),
        "acked_in_window": acked_in_window,
        "errors": errors,
        "error_sample": error_sample,
        "put_latency": put_latency.summary(),
        "slip": slip.summary(),
        "acks_per_s": acks_per_s.counts,
        "value_bytes_total": value_bytes,
    }
