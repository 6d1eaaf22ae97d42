"""An in-memory etcd behind the Backend protocol, whose faults are scripted: the pipeline harness.

Tests run the real writer, watcher, accounting and results code against it, in threads, and compare
the books with what the store really did, which it records as ground truth:

- write faults, by request number (every put and delete the store receives, retries included):
  "ok"; "ack_lost" (applied, but the caller is told it failed); "fail" (not applied, failed);
- watch faults, by delivery number per watch: "dup" (the event delivered twice, same revision),
  "drop" (never delivered, without a relist: a watch defect), "swap" (delivered after the next one),
  "gap" (history lost: a Relist at the current revision, skipping everything up to it), "slow"
  (delivered after a short sleep);
- expiries: a key put with ttl_s expires ttl_s x `ttl_scale` seconds after it was put (updates
  with keep_lease keep it), as a DELETE event. Real TTLs are whole seconds; a scale of 0.01 lets a
  test's 1 s TTL expire in 10 ms.

It is a test double: nothing in a real run selects it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from etcdbench.backends.base import KeyGone, PutCallback, Relist, RevisionCallback, WatchEvent, WatchItem
from etcdbench.errors import EtcdError

WRITE_FAULTS = ("ok", "ack_lost", "fail")
WATCH_FAULTS = ("ok", "dup", "drop", "swap", "gap", "slow")
_POLL_S = 0.002  # how often a waiting watch looks for new events, expiries and its cancel flag
_SLOW_S = 0.003
_SWAP_WAIT_S = 0.02  # a "swap" waits this long for the next event; none came: delivered alone


@dataclass(frozen=True)
class Change:
    """One change the store applied: ground truth."""

    revision: int
    type: str  # "PUT" or "DELETE"
    key: str
    value: bytes
    cause: str  # "put", "delete" or "expire"


@dataclass
class Answer:
    """What the store answered one write request: ground truth of acknowledgements."""

    op: str  # "put" or "delete"
    key: str
    value: bytes
    applied: int  # the revision it made, 0 if none
    outcome: str  # "ok", "ack_lost", "fail", "gone" (KeyGone)
    ttl_s: float = 0.0
    keep_lease: bool = False


@dataclass
class Delivery:
    """What one watch was given: an event (`item` a WatchEvent) or a relist, with the revisions the
    relist skipped."""

    item: WatchItem
    skipped: tuple[int, ...] = ()


@dataclass
class FakeEtcd:
    """The store, shared by every FakeBackend of a test (writers' and watchers' alike)."""

    write_faults: Sequence[str] = ()
    watch_faults: Mapping[int, Mapping[int, str]] = field(default_factory=dict)
    delete_missing: str = "v3"  # "v3": a delete of a missing key succeeds with no event; "v2": KeyGone
    armed: bool = False  # write faults count from arm() on (the harness arms after the preload)
    ttl_scale: float = 1.0  # real seconds per TTL second

    def __post_init__(self) -> None:
        self.cond = threading.Condition()
        self.revision = 0
        self.store: dict[str, tuple[bytes, int]] = {}  # key -> (value, expiry ns or 0)
        self.changes: list[Change] = []
        self.answers: list[Answer] = []
        self.deliveries: dict[int, list[Delivery]] = {}
        self.dropped: dict[int, list[int]] = {}  # watch -> revisions never delivered ("drop")
        self._armed_at = 0 if self.armed else -1

    def arm(self) -> None:
        """Scripted write faults apply from the next request on."""
        with self.cond:
            self._armed_at = len(self.answers)

    # -- writes ----------------------------------------------------------------------------------------

    def _apply(self, type_: str, key: str, value: bytes, cause: str) -> int:
        self.revision += 1
        self.changes.append(Change(self.revision, type_, key, value, cause))
        self.cond.notify_all()
        return self.revision

    def expire_due(self) -> None:
        now = time.monotonic_ns()
        with self.cond:
            for key, (_, expiry) in sorted(self.store.items(), key=lambda kv: kv[1][1]):
                if expiry and expiry <= now:
                    del self.store[key]
                    self._apply("DELETE", key, b"", "expire")

    def write(self, op: str, key: str, value: bytes, ttl_s: float, keep_lease: bool) -> tuple[int, str]:
        """Apply one request as scripted: (revision made or 0, outcome)."""
        self.expire_due()
        with self.cond:
            n = len(self.answers) - self._armed_at
            fault = self.write_faults[n] if 0 <= n < len(self.write_faults) and self._armed_at >= 0 else "ok"
            applied, outcome = 0, fault
            if fault != "fail":
                if op == "delete":
                    if key in self.store:
                        del self.store[key]
                        applied = self._apply("DELETE", key, b"", "delete")
                    elif self.delete_missing == "v2":
                        outcome = "gone"
                elif keep_lease and key not in self.store:
                    outcome = "gone"
                else:
                    expiry = self.store[key][1] if keep_lease else 0
                    if ttl_s > 0 and not keep_lease:
                        expiry = time.monotonic_ns() + round(ttl_s * self.ttl_scale * 1e9)
                    self.store[key] = (value, expiry)
                    applied = self._apply("PUT", key, value, "put")
            self.answers.append(Answer(op, key, value, applied, outcome, ttl_s, keep_lease))
            return applied, outcome

    # -- watches ---------------------------------------------------------------------------------------

    def watch(
        self, index: int, prefix: str, start_revision: int, cancelled: threading.Event
    ) -> Iterator[WatchItem]:
        faults = self.watch_faults.get(index, {})
        log = self.deliveries.setdefault(index, [])
        dropped = self.dropped.setdefault(index, [])
        next_rev = max(start_revision, 1)
        k = 0  # deliveries so far (the fault script's index)
        held: WatchEvent | None = None  # a "swap" event, delivered after the next one

        def deliver(item: WatchItem, skipped: tuple[int, ...] = ()) -> WatchItem:
            log.append(Delivery(item, skipped))
            return item

        while not cancelled.is_set():
            event = self._next(prefix, next_rev, cancelled, _SWAP_WAIT_S if held else None)
            if event is None:
                if held is not None:  # nothing followed the swapped event: it goes alone
                    yield deliver(held)
                    held = None
                continue
            next_rev = event.revision + 1
            fault = faults.get(k, "ok")
            k += 1
            if fault == "drop":
                dropped.append(event.revision)
                continue
            if fault == "gap":
                with self.cond:
                    revision = self.revision
                    skipped = [event.revision, *(c.revision for c in self._since(prefix, next_rev, revision))]
                    keys = sum(name.startswith(prefix) for name in self.store)
                if held is not None:  # lost with the rest of the history
                    skipped.insert(0, held.revision)
                    held = None
                yield deliver(Relist("fake-gap", revision, keys), tuple(skipped))
                next_rev = revision + 1
                continue
            if fault == "slow":
                time.sleep(_SLOW_S)
            if fault == "swap" and held is None:
                held = event
                continue
            yield deliver(event)
            if fault == "dup":
                yield deliver(event)
            if held is not None:
                yield deliver(held)
                held = None

    def _since(self, prefix: str, first: int, last: int) -> list[Change]:
        return [c for c in self.changes[first - 1 : last] if c.key.startswith(prefix)]

    def _next(
        self, prefix: str, first: int, cancelled: threading.Event, timeout_s: float | None
    ) -> WatchEvent | None:
        """The first change under `prefix` from revision `first` on, waiting for it; None when
        cancelled or after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not cancelled.is_set():
            self.expire_due()
            with self.cond:
                for c in self.changes[first - 1 :]:
                    if c.key.startswith(prefix):
                        return WatchEvent(c.type, c.key, c.revision, c.value, None)
                    first = c.revision + 1
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                self.cond.wait(_POLL_S)
        return None


class FakeBackend:
    """One client of a FakeEtcd; answers each write at once, from the calling thread."""

    name = "fake"
    binary_safe = True
    update_renews_ttl = False

    def __init__(self, etcd: FakeEtcd, watch_base: int = 0) -> None:
        self.etcd = etcd
        self.watch_base = watch_base  # this client's watches are watch_base + 0, 1, ... in the scripts
        self.reconnects = 0
        self._cancelled = threading.Event()

    def check(self) -> None:
        pass

    def _write(
        self,
        op: str,
        key: str,
        value: bytes,
        done: PutCallback,
        ttl_s: float,
        keep_lease: bool,
        revision: RevisionCallback | None,
    ) -> None:
        applied, outcome = self.etcd.write(op, key, value, ttl_s, keep_lease)
        if outcome == "ok" and revision is not None:
            revision(applied)
        if outcome == "ok":
            done(None)
        elif outcome == "gone":
            done(KeyGone(f"{key}: key not found"))
        else:
            done(EtcdError(f"scripted {outcome} of {op} {key}"))

    def put_async(
        self,
        key: str,
        value: bytes,
        done: PutCallback,
        ttl_s: float = 0.0,
        keep_lease: bool = False,
        revision: RevisionCallback | None = None,
    ) -> None:
        self._write("put", key, value, done, ttl_s, keep_lease, revision)

    def delete_async(self, key: str, done: PutCallback, revision: RevisionCallback | None = None) -> None:
        self._write("delete", key, b"", done, 0.0, False, revision)

    def hold_sends(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def current_revision(self) -> int:
        with self.etcd.cond:
            return self.etcd.revision

    def watch(self, prefix: str, start_revision: int) -> Iterator[WatchItem]:
        return self.etcd.watch(self.watch_base, prefix, start_revision, self._cancelled)

    def watch_many(self, prefix: str, start_revision: int, count: int) -> Iterator[tuple[int, WatchItem]]:
        """`count` watches, each with its own fault script, their items interleaved in revision order
        of delivery attempts (each watch is driven on a thread of its own)."""
        out: list[tuple[int, WatchItem] | None] = []
        cond = threading.Condition()
        live = [count]

        def pump(index: int) -> None:
            try:
                for item in self.etcd.watch(self.watch_base + index, prefix, start_revision, self._cancelled):
                    with cond:
                        out.append((index, item))
                        cond.notify()
            finally:
                with cond:
                    live[0] -= 1
                    cond.notify()

        for i in range(count):
            threading.Thread(target=pump, args=(i,), daemon=True, name=f"fake-watch-{i}").start()
        while True:
            with cond:
                while not out and live[0]:
                    cond.wait(_POLL_S)
                if not out and not live[0]:
                    return
                batch, out[:] = list(out), []
            for entry in batch:
                assert entry is not None
                yield entry

    def cancel(self) -> None:
        self._cancelled.set()

    def count_prefix(self, prefix: str) -> int:
        with self.etcd.cond:
            return sum(k.startswith(prefix) for k in self.etcd.store)

    def delete_prefix(self, prefix: str) -> int:
        with self.etcd.cond:
            keys = [k for k in self.etcd.store if k.startswith(prefix)]
            for k in keys:
                del self.etcd.store[k]
            return len(keys)

    def db_size(self) -> int | None:
        return None

    def server_version(self) -> str:
        return "fake"

    def close(self) -> None:
        self.cancel()
