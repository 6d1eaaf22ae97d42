"""A watcher process: one watch stream on the kind's directory under the prefix (`/registry/pods/`),
carrying one or more watches (v3 multiplexes).

Like the kube-apiserver's watch cache it decodes every event's new object, and the previous one where
the apiserver's watcher of that API does (RunConfig.decodes_prev_on_put: a delete's always; an
update's on v2, or with --decode-prev always). Latency is taken after decoding: intended send time of
the write -> event decoded here. Each watch keeps its own books; a stream with several watches decodes
every event once per watch, as several independent watchers would.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint, Relist, WatchEvent, WatchItem
from etcdbench.config.run import RunConfig
from etcdbench.encoding.codec import Codec, get_codec
from etcdbench.encoding.objects import STAMP_PLACEHOLDER, resource_prefix
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.workload.accounting import EventLedger, SeqSet, parse_stamp
from etcdbench.workload.reports import Drain, RelistReport, StreamReport, WatchReport, report_to
from etcdbench.workload.timeline import NS, PerSecond, Timeline

DRAIN_HARD_LIMIT_S = 120.0  # even a watcher that keeps trickling events stops this long after the writers
# Told to stop (the run was interrupted), the watcher keeps receiving the writes acknowledged before the
# stop for at most this long, then reports; the parent waits runner.STOP_WAIT_S in all.
STOP_DRAIN_S = 3.0
CONTROL_POLL_S = 0.05  # how often the control thread looks at the drain's end conditions


@dataclass(frozen=True)
class WatcherPlan:
    config: RunConfig
    endpoint: Endpoint
    start_revision: int
    stream: int  # which stream of the run this process holds
    watches: int  # watches on this stream


class WatchBook:
    """Everything one watch saw: the ledger of puts, the deletes by key, latency and time series."""

    def __init__(self, timeline: Timeline, own_writers: range, prev_on_put: bool = True) -> None:
        self.timeline = timeline
        self.own_writers = own_writers  # this shard's writers: other shards' events are not ours to count
        self.prev_on_put = prev_on_put  # decode an update's previous object too (a delete's: always)
        self.other_shards = 0
        # writer -> acknowledged seqs, once the writers are done
        self.expected: dict[int, SeqSet] | None = None
        self.awaited = 0  # acknowledged puts not seen yet (kept from when `expected` is set)
        self.expected_keys: set[str] = set()
        self.expected_keys_seen = 0
        self.ledger = EventLedger()
        self.latency = LatencyRecorder()
        self.per_s = PerSecond(timeline.t0_ns)
        self.deletes_seen: dict[str, int] = {}  # key -> first receive time (ns)
        self.deletes: Sequence[tuple[str, int]] = ()  # (key, intended ns) of acknowledged deletes
        self.delete_revisions: dict[str, int] = {}  # key -> revision of its first DELETE event
        self.more_delete_revisions: dict[str, set[int]] = {}  # the rare later ones
        self.delete_retried = 0  # a key's DELETE at another revision (deleted, re-created, deleted)
        self.delete_redelivered = 0  # the same DELETE event twice
        self.last_delivered = 0  # highest revision delivered on this watch (a relist's gap starts after it)
        self.relists: list[RelistReport] = []
        self.in_window = 0
        self.foreign = self.decode_errors = 0
        self.last_event_ns = time.monotonic_ns()
        self.lock = threading.Lock()  # expect() (control thread) against event() (watch thread)

    def stop_at(self, stop_ns: int) -> None:
        """The run was interrupted at `stop_ns`: the measured window closes there."""
        self.timeline = self.timeline.cut(stop_ns)

    def expect(
        self, acked: dict[int, bytes], keys: set[str], deletes: Sequence[tuple[str, int]] = ()
    ) -> None:
        """What the writers had acknowledged: these puts (writer -> seq bits), and deletes/expiries of
        these keys. The watch is complete once it has seen every one of them: a count would not do,
        since the watcher also sees writes that etcd applied but whose acknowledgement was lost.
        `deletes`: (key, intended ns) of each acknowledged delete, for their latency."""
        expected = {w: SeqSet(bits) for w, bits in acked.items()}
        with self.lock:  # the watch thread records events meanwhile
            self.deletes = deletes
            self.expected_keys = keys
            self.expected_keys_seen = len(keys & self.deletes_seen.keys())
            seen = self.ledger.seen
            self.awaited = sum(
                (e.as_int() & ~(seen[w].as_int() if w in seen else 0)).bit_count()
                for w, e in expected.items()
            )
            self.expected = expected

    @property
    def complete(self) -> bool:
        return (
            self.expected is not None
            and self.awaited == 0
            and self.expected_keys_seen >= len(self.expected_keys)
        )

    def relist(self, item: Relist) -> None:
        self.relists.append(
            RelistReport(
                reason=item.reason,
                revision=item.revision,
                keys=item.keys,
                after_revision=self.last_delivered,
                duration_s=round(item.duration_s, 6),
                bytes=item.bytes,
            )
        )
        self.last_delivered = max(self.last_delivered, item.revision)
        self.last_event_ns = time.monotonic_ns()  # a relist is progress: the drain's idle clock restarts
        self.ledger.restart(item.revision)

    def event(self, item: WatchEvent, codec: Codec, base64_values: bool) -> None:
        with self.lock:
            # Delivered, decodable or not: a relist's gap starts after it.
            self.last_delivered = max(self.last_delivered, item.revision)
            self._event(item, codec, base64_values)

    def _event(self, item: WatchEvent, codec: Codec, base64_values: bool) -> None:
        try:
            prev = item.prev_value
            if prev and (self.prev_on_put or item.type == "DELETE"):
                codec.decode(base64.b64decode(prev) if base64_values else prev)
            if item.type == "PUT":
                stamp = codec.stamp(base64.b64decode(item.value) if base64_values else item.value)
        except Exception:
            self.decode_errors += 1
            return
        now = self.last_event_ns = time.monotonic_ns()
        if item.type == "DELETE":
            first = self.delete_revisions.get(item.key)
            if first is None:
                self.deletes_seen[item.key] = now
                self.delete_revisions[item.key] = item.revision
                self._count(now)
                self.expected_keys_seen += item.key in self.expected_keys
                return
            more = self.more_delete_revisions.setdefault(item.key, set())
            if item.revision == first or item.revision in more:
                self.delete_redelivered += 1
            else:
                more.add(item.revision)
                self.delete_retried += 1
            return
        if stamp is None:
            self.foreign += 1
            return
        if stamp == STAMP_PLACEHOLDER:  # a preloaded object: another shard still preloading
            self.other_shards += 1
            return
        writer, seq, intended = parse_stamp(stamp)
        if writer not in self.own_writers:
            self.other_shards += 1
            return
        if self.ledger.record(writer, seq, item.revision):
            self._count(now)
            expected = self.expected
            if expected is not None and writer in expected and seq in expected[writer]:
                self.awaited -= 1
            if self.timeline.in_window(intended):
                self.latency.record_us((now - intended) // 1000)

    def _count(self, now: int) -> None:
        self.per_s.add(now)
        self.in_window += self.timeline.in_window(now)

    def report(self) -> WatchReport:
        """The watch's books, once it ended. A DELETE event carries no stamp: its latency is taken
        here, from its first receive time and the intended time its writer reported (through the
        parent's Drain). A watch stopped by an interrupt before any Drain came knows no delete's
        intended time, so its histogram then holds only puts; its counters are unaffected."""
        for key, intended in self.deletes:
            received = self.deletes_seen.get(key)
            if received is not None and self.timeline.in_window(intended):
                self.latency.record_us((received - intended) // 1000)
        ledger = self.ledger
        return WatchReport(
            seen={w: bytes(s.bits) for w, s in ledger.seen.items()},
            events=ledger.events,
            duplicates_retried=ledger.duplicates_retried + self.delete_retried,
            duplicates_redelivered=ledger.duplicates_redelivered + self.delete_redelivered,
            out_of_order=ledger.out_of_order,
            deletes_seen=self.deletes_seen,
            received_in_window=self.in_window,
            relists=self.relists,
            foreign=self.foreign,
            other_shards=self.other_shards,
            decode_errors=self.decode_errors,
            latency=self.latency.summary(),
            events_per_s=self.per_s.counts,
        )


def _earliest(deadline: int | None, other: int) -> int:
    return other if deadline is None else min(deadline, other)


def run_watcher(plan: WatcherPlan, conn: Connection) -> None:
    report_to(conn, f"watcher {plan.stream}", lambda: _watch(plan, conn))


def _watch(plan: WatcherPlan, conn: Connection) -> StreamReport:
    cfg = plan.config
    backend = make_backend(cfg.backend, plan.endpoint, v2_watch=cfg.v2_watch)
    codec = get_codec(cfg.encoding)
    base64_values = not backend.binary_safe and cfg.encoding == "protobuf"

    conn.send(("ready", None))
    _, t0_ns = conn.recv()
    timeline = Timeline(t0_ns, cfg.warmup_s, cfg.duration_s)
    own = range(cfg.writer_id(0), cfg.writer_id(cfg.writers))
    books = [WatchBook(timeline, own, cfg.decodes_prev_on_put) for _ in range(plan.watches)]
    drain: dict[str, int] = {}

    def done() -> bool:
        return bool(drain) and all(b.complete for b in books)

    def control() -> None:
        # The parent sends ("drain", Drain) once the writers are done: the acknowledged puts to expect
        # (writer -> seq bits), the acknowledged deletes, the keys of those and of expiring keys, and
        # when the last expiry is due: an unseen one is waited for until then.
        # On an interrupt it first sends ("stop", stop_ns): the window closes there and the watch
        # ends within STOP_DRAIN_S, drained or not.
        until_ns = 0
        end_by: int | None = None
        while True:
            try:
                message = conn.recv() if conn.poll(CONTROL_POLL_S) else None
            except (EOFError, OSError):
                backend.cancel()  # the parent is gone: nobody will read the books
                return
            now = time.monotonic_ns()
            if message is not None and message[0] == "drain":
                d: Drain = message[1]
                until_ns = d.until_ns
                expected = set(d.keys)
                for b in books:
                    b.expect(d.acked, expected, d.deletes)
                drain.update(until=until_ns)
                end_by = _earliest(end_by, now + round(DRAIN_HARD_LIMIT_S * NS))
            elif message is not None and message[0] == "stop":
                for b in books:
                    b.stop_at(message[1])
                end_by = _earliest(end_by, now + round(STOP_DRAIN_S * NS))
            if end_by is not None and now > end_by:
                backend.cancel()
                return
            if drain:
                last = max(b.last_event_ns for b in books)
                idle = now - max(last, until_ns) > cfg.drain_s * NS
                if done() or idle:  # all expected seen: no later expiry is waited for
                    backend.cancel()
                    return

    threading.Thread(target=control, name="watcher-control", daemon=True).start()

    # The kind's directory, not the whole prefix: the apiserver's cacher watches (and relists) one
    # resource type, so a Node watcher never reads the stored Pods.
    watched = resource_prefix(cfg.prefix, cfg.kind)
    items: Iterator[tuple[int, WatchItem]]
    if plan.watches > 1:
        items = backend.watch_many(watched, plan.start_revision, plan.watches)
    else:
        items = ((0, item) for item in backend.watch(watched, plan.start_revision))
    for index, item in items:
        book = books[index]
        if isinstance(item, Relist):
            book.relist(item)
        else:
            book.event(item, codec, base64_values)
        if done():
            backend.cancel()
    backend.close()
    return StreamReport(
        stream=plan.stream,
        ended_ns=time.monotonic_ns(),
        # v2 stream only: the server dropped our stream (its 100-event buffer filled) and we reopened it.
        stream_reopens=backend.stream_reopens,
        reconnects=backend.reconnects,
        watches=[b.report() for b in books],
    )
