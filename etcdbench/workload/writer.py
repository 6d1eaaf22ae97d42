"""A writer process: Kubernetes-shaped objects on an open-loop schedule.

Write i of the whole run (all writers together) is intended at t0 + i / rate; writer w takes every
write with i % writers == w. The schedule never resets: a writer that falls behind sends late writes
at once, and their latency still counts from the intended time, so a stall is charged to every write
it delays (no coordinated omission). Requests in flight are capped; waiting for a free slot is
schedule slip, which is reported.

Before reporting ready, a writer stores its share of the preload (the cluster's standing state) and,
for the update and mix workloads, the objects it will update: both as fast as its window allows.
"""

from __future__ import annotations

import base64
import functools
import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import NamedTuple

from etcdbench.backends import make_backend
from etcdbench.backends.base import Backend, Endpoint, KeyGone, PutCallback
from etcdbench.config.run import ENCODINGS, RunConfig
from etcdbench.encoding.codec import get_codec
from etcdbench.encoding.objects import STAMP_PLACEHOLDER, object_key
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.metrics.sizes import SizeRecorder
from etcdbench.workload.accounting import Revisions, SeqSet, format_stamp
from etcdbench.workload.ops import Op, op_stream, seeded
from etcdbench.workload.preload import PreloadValues
from etcdbench.workload.reports import AckedDelete, WriterReady, WriterReport, report_to
from etcdbench.workload.timeline import NS, PerSecond, Timeline

PLACEHOLDER = STAMP_PLACEHOLDER.encode("ascii")
# A failed write is retried with exponential backoff: 0.05, 0.1, ... 1 s (each jittered by ±50%), then
# counted as failed (about 6 s in all, so that a restarted etcd's writes are not lost, but a dead one
# does not hang us).
RETRY_ATTEMPTS = 10
RETRY_BASE_S = 0.05
RETRY_MAX_S = 1.0
# Past its schedule's end plus this, a writer sends nothing more and retries nothing: an etcd that
# never comes back ends the run at a known time instead of hanging it.
GIVE_UP_AFTER_S = 10.0
STOP_POLL_S = 0.05  # a writer waiting (for its next write, or a free slot) looks at its stop this often


@dataclass(frozen=True)
class WriterPlan:
    writer_id: int
    config: RunConfig
    endpoint: Endpoint


class ValueTemplates:
    """Each object encoded once; a write only swaps in its stamp (same width, so still valid).

    Also records the size of every value written, as stored and in each encoding.
    """

    def __init__(self, config: RunConfig, base64_values: bool) -> None:
        self.codecs = {name: get_codec(name) for name in ENCODINGS}
        self.encoding = config.encoding
        self.profile = config.size_profile
        self.prefix = config.prefix
        self.base64 = base64_values
        self._cache: dict[tuple[str, int], tuple[str, bytes, dict[str, int]]] = {}
        # Values made from per-class templates, byte-identical to building and encoding each object.
        self.values = {name: PreloadValues(codec, self.profile) for name, codec in self.codecs.items()}
        self.sizes = {name: SizeRecorder() for name in (*ENCODINGS, "stored")}

    def get(self, kind: str, index: int) -> tuple[str, bytes, dict[str, int]]:
        """(key, encoded template, {encoding: bytes}) of an object."""
        hit = self._cache.get((kind, index))
        if hit is None:
            encoded = {name: values.value(kind, index) for name, values in self.values.items()}
            value = encoded[self.encoding]
            if PLACEHOLDER not in value:
                raise AssertionError(f"{kind} object has no stamp placeholder")
            sizes = {name: len(v) for name, v in encoded.items()}
            sizes["stored"] = len(base64.b64encode(value)) if self.base64 else len(value)
            hit = self._cache[(kind, index)] = (self.prefix + object_key(kind, index), value, sizes)
        return hit

    def value(self, kind: str, index: int, stamp: str) -> tuple[str, bytes]:
        key, template, sizes = self.get(kind, index)
        value = template.replace(PLACEHOLDER, stamp.encode("ascii"), 1)
        for name, n in sizes.items():
            self.sizes[name].record_bytes(n)
        return key, base64.b64encode(value) if self.base64 else value

    def forget(self, kind: str, index: int) -> None:
        self._cache.pop((kind, index), None)


def run_writer(plan: WriterPlan, conn: Connection, stop: threading.Event | None = None) -> None:
    """Process entry point: preload, report ready, wait for t0, write, send the result.

    Once `stop` is set (the run was interrupted) the writer sends nothing more: the rest of its
    schedule is `unsent`, and it reports once the writes in flight are answered.
    """
    report_to(conn, f"writer {plan.writer_id}", lambda: _write(plan, conn, stop or threading.Event()))


class _Retries:
    """Failed writes wait here for their retry: one thread and a heap for the whole writer, not a thread
    per retry (an etcd that restarts fails every write in flight at once).

    Each wait is the capped exponential backoff times a random factor from 0.5 to 1.5 (the same wait on
    average), so that the writers of a run, and the retries of one writer, do not all hit a restarted
    etcd in the same millisecond.
    """

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._order = itertools.count()  # ties in time keep the order they were scheduled in
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="retries", daemon=True)
        self._thread.start()

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry `attempt + 1`."""
        backoff = min(RETRY_BASE_S * (1 << attempt), RETRY_MAX_S)
        return backoff * self._random.uniform(0.5, 1.5)

    def after(self, seconds: float, action: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._order), action))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._closed:
                    return
                _, _, action = heapq.heappop(self._heap)
            action()  # outside the lock: a send may block on the connection

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()


class _Window:
    """At most `limit` requests in flight; acquire() blocks for a free slot."""

    def __init__(self, limit: int) -> None:
        self.cond = threading.Condition()
        self.limit = limit
        self.inflight = 0

    def acquire(
        self,
        until_ns: int | None = None,
        before_wait: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ) -> bool:
        """Take a slot; False (and no slot) if `until_ns` passes or `stop` is set first.

        `before_wait` runs (outside the lock) before blocking: held requests must go out first, or
        no slot would ever free.
        """
        if before_wait is not None:
            with self.cond:
                if self.inflight < self.limit:
                    self.inflight += 1
                    return True
            before_wait()
        with self.cond:
            while self.inflight >= self.limit:
                if stop is not None and stop.is_set():
                    return False
                if until_ns is None:
                    self.cond.wait(STOP_POLL_S if stop is not None else None)
                    continue
                left = until_ns - time.monotonic_ns()
                if left <= 0:
                    return False
                self.cond.wait(min(left / NS, STOP_POLL_S))
            self.inflight += 1
            return True

    def release(self) -> None:
        with self.cond:
            self.inflight -= 1
            self.cond.notify()

    def drain(self) -> None:
        with self.cond:
            while self.inflight:
                self.cond.wait()


PRELOAD_TXN_BYTES = 1 << 20  # a preload Txn carries at most this many value bytes (etcd takes 1.5 MiB)
PRELOAD_TXNS_IN_FLIGHT = 4  # per writer: enough to keep etcd busy, few enough to hold little memory
PRELOAD_PROGRESS_S = 0.5  # how often a preloading writer reports how far it got


class _TxnBatch:
    """Preload puts gathered for one Txn: at most `max_ops` of them, PRELOAD_TXN_BYTES of values."""

    def __init__(self, max_ops: int) -> None:
        self.max_ops = max_ops
        self.puts: list[tuple[str, bytes]] = []
        self.size = 0  # value bytes

    def full_for(self, value: bytes) -> bool:
        """Whether `value` would take the batch past a limit (an empty batch takes anything)."""
        return bool(self.puts) and (
            len(self.puts) >= self.max_ops or self.size + len(value) > PRELOAD_TXN_BYTES
        )

    def add(self, key: str, value: bytes) -> None:
        self.puts.append((key, value))
        self.size += len(value)

    def take(self) -> list[tuple[str, bytes]]:
        """The puts gathered; the batch starts again empty."""
        puts, self.puts, self.size = self.puts, [], 0
        return puts


def _preload(
    plan: WriterPlan,
    backend: Backend,
    templates: ValueTemplates,
    window: _Window,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Store this writer's share of the standing state, closed-loop; return how many keys.

    On v3, up to the backend's max_txn_ops puts go in one Txn (PRELOAD_TXNS_IN_FLIGHT of them at a
    time); on v2, which has no batching, one PUT per key with `window` in flight over its connections.
    The keys and values are exactly those of one put per key, made from templates (workload/preload.py).
    The first failure stops the preload; it is raised once the requests in flight are answered.
    `progress(stored)` is called every PRELOAD_PROGRESS_S while it runs.
    """
    cfg = plan.config
    counts = dict(cfg.preload)
    if seeded(cfg):
        counts[cfg.kind] = max(counts.get(cfg.kind, 0), cfg.objects)
    failures: list[BaseException] = []
    max_ops = backend.max_txn_ops
    put_many = backend.put_many_async if max_ops > 1 else None
    txns = _Window(PRELOAD_TXNS_IN_FLIGHT) if put_many is not None else window

    def done(exc: BaseException | None) -> None:
        if exc is not None:
            failures.append(exc)
        txns.release()

    def value(kind: str, index: int) -> tuple[str, bytes]:
        if kind == cfg.kind and index < cfg.objects:  # the writer's own objects: their templates stay
            key, template, _ = templates.get(kind, index)
        else:  # standing state is written once: keep no copy
            template = templates.values[templates.encoding].value(kind, index)
            key = templates.prefix + object_key(kind, index)
        return key, base64.b64encode(template) if templates.base64 else template

    stored = 0
    batch = _TxnBatch(max_ops)
    next_report = time.monotonic() + PRELOAD_PROGRESS_S

    def send_batch(puts: list[tuple[str, bytes]]) -> None:
        txns.acquire()
        assert put_many is not None
        try:
            put_many(puts, done)
        except Exception as exc:
            done(exc)

    for kind, n in counts.items():
        for index in range(plan.writer_id, n, cfg.total_writers):
            if failures:
                break
            key, data = value(kind, index)
            if put_many is not None:
                if batch.full_for(data):
                    send_batch(batch.take())
                batch.add(key, data)
            else:
                window.acquire()
                backend.put_async(key, data, done)
            stored += 1
            if progress is not None and time.monotonic() >= next_report:
                progress(stored)
                next_report = time.monotonic() + PRELOAD_PROGRESS_S
    if batch.puts and not failures:
        send_batch(batch.take())
    txns.drain()
    if failures:
        raise RuntimeError(f"preload: {len(failures)} puts failed, e.g. {failures[0]}")
    return stored


def _write(plan: WriterPlan, conn: Connection, stop: threading.Event) -> WriterReport:
    cfg = plan.config
    backend = make_backend(cfg.backend, plan.endpoint, v2_watch=cfg.v2_watch, max_inflight=cfg.max_inflight)
    templates = ValueTemplates(cfg, base64_values=not backend.binary_safe and cfg.encoding == "protobuf")
    window = _Window(cfg.max_inflight)
    started = time.monotonic()
    preloaded = _preload(plan, backend, templates, window, lambda n: conn.send(("preloading", n)))
    conn.send(("ready", WriterReady(preloaded=preloaded, preload_s=time.monotonic() - started)))
    _, t0_ns = conn.recv()
    writes = _Writes(plan, backend, templates, window, t0_ns)
    writes.run(stop)
    backend.close()
    return writes.report()


class _Write(NamedTuple):
    """One write of the schedule: what is sent again on a retry."""

    seq: int
    intended_ns: int
    op: Op
    key: str
    value: bytes


class _Writes:
    """One writer's schedule from t0 on: sending, the books of the answers, and retries.

    Sends come from the schedule loop and the retry thread; answers from the connection's reader
    thread. `lock` guards the books and `waiting`.
    """

    def __init__(
        self, plan: WriterPlan, backend: Backend, templates: ValueTemplates, window: _Window, t0_ns: int
    ) -> None:
        cfg = self.config = plan.config
        self.writer_id = plan.writer_id
        self.backend = backend
        self.templates = templates
        self.window = window
        self.timeline = Timeline(t0_ns, cfg.warmup_s, cfg.duration_s)
        self.give_up_ns = t0_ns + round((cfg.warmup_s + cfg.duration_s + GIVE_UP_AFTER_S) * NS)
        self.ttl_ns = round(cfg.ttl_s * NS)
        self.renews_ttl = backend.update_renews_ttl
        self.slots = range(plan.writer_id, cfg.total_writes, cfg.total_writers)  # this writer's writes
        self.retry = _Retries(seed=plan.writer_id)
        self.lock = threading.Lock()
        # Books of the answers.
        self.acked = SeqSet()
        # The revision each acknowledged put made, by seq (0: not acknowledged, or the API did not say):
        # the books place a write the watcher never saw inside or outside a relist's gap by it.
        self.revisions = Revisions()
        self.deletes: list[AckedDelete] = []
        self.delete_revision: dict[str, int] = {}  # key -> revision its delete reported, until acknowledged
        # key -> latest expected expiry (ns) of keys created with a TTL and not deleted by us: a DELETE
        # event of a key has exactly one cause, our delete or its expiry.
        self.expiring: dict[str, int] = {}
        self.ops_acked = {"create": 0, "update": 0, "delete": 0}
        self.expired_before_update = 0
        self.errors = 0
        self.error_sample = ""
        self.retries = 0
        self.unsent = 0
        self.put_latency = LatencyRecorder()
        self.slip = LatencyRecorder()
        self.acks_per_s = PerSecond(t0_ns)
        self.acked_in_window = 0
        # Keys this writer created with a TTL and has not deleted: only their updates must keep an expiry
        # (a seeded object has none, and v2 would give it one). Kept by the send loop, read by retries.
        self.ttl_keys: set[str] = set()
        # One write in flight per key: the writes of one key (a pod's create, update and delete) reach
        # etcd in their order. Writes on separate requests are applied in any order (etcd serves the
        # streams of a connection concurrently), so a writer that fell behind and sent a lane's update
        # and delete at once could see the delete applied first: it would delete nothing (no event),
        # and the update re-create the key. The apiserver never has two writes of one object in flight.
        self.waiting: dict[str, deque[Callable[[], None]]] = {}  # key -> sends held until answered

    def run(self, stop: threading.Event) -> None:
        """The schedule: write i of the run at t0 + i / rate, until it ends, `stop` is set or the
        writer gives up; then wait for every answer (and retry)."""
        cfg, backend, templates, timeline = self.config, self.backend, self.templates, self.timeline
        interval_ns = NS / cfg.rate
        # Writes are held until the writer sleeps or waits: on schedule that is one write per send, and
        # a writer that fell behind sends everything it owes at once.
        backend.hold_sends()
        for seq, (i, op) in enumerate(zip(self.slots, op_stream(cfg, self.writer_id), strict=False)):
            intended = timeline.t0_ns + round(i * interval_ns)
            delay = intended - time.monotonic_ns()
            if delay > 0:
                backend.flush()
                if delay > STOP_POLL_S * NS:
                    stop.wait(delay / NS)  # a slow schedule still notices a stop at once
                else:
                    time.sleep(delay / NS)
            if (
                stop.is_set()
                or time.monotonic_ns() > self.give_up_ns
                or not self.window.acquire(self.give_up_ns, backend.flush, stop)
            ):
                self.unsent = len(self.slots) - seq
                break
            if timeline.in_window(intended):
                self.slip.record_us((time.monotonic_ns() - intended) // 1000)
            if op.action == "delete":
                key, value = templates.get(cfg.kind, op.index)[0], b""
                templates.forget(cfg.kind, op.index)
                self.ttl_keys.discard(key)
            else:
                stamp = format_stamp(self.writer_id, seq, intended)
                key, value = templates.value(cfg.kind, op.index, stamp)
                if op.action == "create" and self.ttl_ns:
                    self.ttl_keys.add(key)
            write = _Write(seq, intended, op, key, value)
            self._in_order(key, functools.partial(self._send, write, self._answer(write)))
        backend.flush()
        self.window.drain()  # every retry has been answered: none is left waiting
        self.retry.close()

    def _in_order(self, key: str, start: Callable[[], None]) -> None:
        with self.lock:
            queue = self.waiting.get(key)
            if queue is not None:
                queue.append(start)
                return
            self.waiting[key] = deque()
        start()

    def _settled(self, key: str) -> None:
        """A write of `key` is answered for good: free its slot, and send the next write of the key.

        From the retry thread, not here: this runs on the connection's reader thread, which must not
        block on sending."""
        self.window.release()
        with self.lock:
            queue = self.waiting[key]
            if not queue:
                del self.waiting[key]
                return
            start = queue.popleft()
        self.retry.after(0.0, start)

    def _send(self, write: _Write, done: PutCallback) -> None:
        """From the send loop or the retry thread. A failure before the request left (e.g. a v3 TTL
        create's LeaseGrant while etcd is down) must reach `done`, which retries or counts it and frees
        the slot, never escape and end the run or leak the slot."""
        key, action, cfg = write.key, write.op.action, self.config
        revision = functools.partial(self._revision, write)
        try:
            if action == "delete":
                self.backend.delete_async(key, done, revision=revision)
            elif action == "update" and key in self.ttl_keys:
                # The key keeps its expiry (v3: its lease; v2: its ttl, sent again): an update
                # without it would make an expiring key permanent.
                self.backend.put_async(key, write.value, done, cfg.ttl_s, keep_lease=True, revision=revision)
            else:
                ttl_s = cfg.ttl_s if action == "create" else 0.0
                self.backend.put_async(key, write.value, done, ttl_s, revision=revision)
        except Exception as exc:
            done(exc)

    def _revision(self, write: _Write, rev: int) -> None:
        with self.lock:
            if write.op.action == "delete":
                self.delete_revision[write.key] = rev
            else:
                self.revisions.set(write.seq, rev)

    def _answer(self, write: _Write, attempt: int = 0) -> PutCallback:
        """The callback of one attempt of `write`."""
        return functools.partial(self._answered, write, attempt)

    def _answered(self, write: _Write, attempt: int, exc: BaseException | None) -> None:
        action, key = write.op.action, write.key
        if isinstance(exc, KeyGone):
            if action == "delete":
                # Gone already: our earlier attempt was applied but its answer lost (a retry),
                # or the key expired first. Either way one DELETE event is due: our delete's.
                exc = None
            else:  # an update of a key that expired first: nothing written, nothing to see
                with self.lock:
                    self.expired_before_update += 1
                self._settled(key)
                return
        if exc is not None and attempt + 1 < RETRY_ATTEMPTS and time.monotonic_ns() < self.give_up_ns:
            # A failed write is retried (its latency keeps counting from the intended time); a
            # retried put that etcd had applied shows up as a duplicate event, never hidden.
            with self.lock:
                self.retries += 1
            again = self._answer(write, attempt + 1)
            self.retry.after(self.retry.delay(attempt), functools.partial(self._send, write, again))
            return
        now = time.monotonic_ns()
        intended, timeline = write.intended_ns, self.timeline
        with self.lock:
            if exc is None:
                self.ops_acked[action] += 1
                if action == "delete":
                    self.deletes.append(AckedDelete(key, intended, self.delete_revision.pop(key, 0)))
                    self.expiring.pop(key, None)
                else:
                    self.acked.add(write.seq)
                    expiring = self.expiring
                    if self.ttl_ns and (action == "create" or (self.renews_ttl and key in expiring)):
                        expiring[key] = max(expiring.get(key, 0), now + self.ttl_ns)
                self.acks_per_s.add(now)
                self.acked_in_window += timeline.in_window(now)
                if timeline.in_window(intended):
                    self.put_latency.record_us((now - intended) // 1000)
            else:
                self.errors += 1
                self.error_sample = self.error_sample or f"{type(exc).__name__}: {exc}"
        self._settled(key)

    def report(self) -> WriterReport:
        return WriterReport(
            writer_id=self.writer_id,
            attempted=len(self.slots),
            acked=bytes(self.acked.bits),
            revisions=self.revisions.encode(),
            deletes=self.deletes,
            expiring=sorted(self.expiring.items()),
            expired_before_update=self.expired_before_update,
            ops_acked=self.ops_acked,
            acked_in_window=self.acked_in_window,
            errors=self.errors,
            unsent=self.unsent,
            retries=self.retries,
            error_sample=self.error_sample,
            put_latency=self.put_latency.summary(),
            slip=self.slip.summary(),
            acks_per_s=self.acks_per_s.counts,
            value_bytes={name: rec.summary() for name, rec in self.templates.sizes.items()},
        )
