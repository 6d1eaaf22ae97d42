"""An in-memory etcd behind the Backend protocol, whose faults are scripted: the pipeline harness.

Tests run the real writer, watcher, accounting and results code against it, in threads, and compare
the books with what the store really did, which it records as ground truth:

- write faults, by request number (every put and delete the store receives, retries included):
  "ok"; "ack_lost" (applied, but the caller is told it failed); "fail" (not applied, failed);
  "late" (held, then applied and answered after the next request, or after LATE_S: etcd applies
  concurrent requests in any order);
- watch faults, by delivery number per watch: "dup" (the event delivered twice, same revision),
  "drop" (never delivered, without a relist: a watch defect), "swap" (delivered after the next one),
  "gap" (history lost: a Relist at the current revision, skipping everything up to it), "slow"
  (delivered after a short sleep);
- expiries: a key put with ttl_s expires ttl_s x `ttl_scale` seconds after it was put (updates
  with keep_lease keep it), as a DELETE event. Real TTLs are whole seconds; a scale of 0.01 lets a
  test's 1 s TTL expire in 10 ms.

`FakeBackend` is a client for the load (the Backend protocol), `FakeAdmin` one for the calls around
it (the Admin protocol); `fake_backend` and `fake_admin` make them typed as those protocols. It is a
test double: nothing in a real run selects it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from etcdbench.backends.base import (
    Admin,
    Backend,
    KeyGone,
    ListPage,
    PutCallback,
    Relist,
    RevisionCallback,
    ServerStatus,
    WatchEvent,
    WatchItem,
)
from etcdbench.errors import EtcdError

WRITE_FAULTS = ("ok", "ack_lost", "fail", "late")
LATE_S = 0.05  # a "late" write is applied after the next request, or after this long if none comes

Reply = Callable[[int, str], None]  # a request's answer: (revision made or 0, outcome)
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
    prev: bytes | None = None  # the key's value before it: what etcd sends with prev_kv (v2: prevNode)


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
        self.created: dict[str, int] = {}  # key -> the revision that created it (while it exists)
        self.changes: list[Change] = []
        self.answers: list[Answer] = []
        self.received = 0  # requests received (write faults are indexed by it); answers lag "late" ones
        self.held: list[tuple[str, str, bytes, float, bool, Reply]] = []  # "late" requests
        self.deliveries: dict[int, list[Delivery]] = {}
        self.dropped: dict[int, list[int]] = {}  # watch -> revisions never delivered ("drop")
        self._armed_at = 0 if self.armed else -1

    def arm(self) -> None:
        """Scripted write faults apply from the next request on."""
        with self.cond:
            self._armed_at = self.received

    # -- writes ----------------------------------------------------------------------------------------

    def _apply(self, type_: str, key: str, value: bytes, cause: str, prev: bytes | None = None) -> int:
        self.revision += 1
        if type_ == "DELETE":
            self.created.pop(key, None)
        else:
            self.created.setdefault(key, self.revision)
        self.changes.append(Change(self.revision, type_, key, value, cause, prev))
        self.cond.notify_all()
        return self.revision

    def expire_due(self) -> None:
        now = time.monotonic_ns()
        with self.cond:
            for key, (value, expiry) in sorted(self.store.items(), key=lambda kv: kv[1][1]):
                if expiry and expiry <= now:
                    del self.store[key]
                    self._apply("DELETE", key, b"", "expire", value)

    def write(self, op: str, key: str, value: bytes, ttl_s: float, keep_lease: bool, answer: Reply) -> None:
        """Apply one request as scripted, then `answer(revision made or 0, outcome)`; a "late" one is
        held and applied after the next request (or LATE_S)."""
        self.expire_due()
        with self.cond:
            n = self.received - self._armed_at
            self.received += 1
            fault = self.write_faults[n] if 0 <= n < len(self.write_faults) and self._armed_at >= 0 else "ok"
            if fault == "late":
                self.held.append((op, key, value, ttl_s, keep_lease, answer))
                threading.Timer(LATE_S, self._release_held).start()
                return
            answers = [(answer, self._request(op, key, value, ttl_s, keep_lease, fault))]
            answers += self._apply_held()
        for reply, (applied, outcome) in answers:
            reply(applied, outcome)

    def _release_held(self) -> None:
        with self.cond:
            answers = self._apply_held()
        for reply, (applied, outcome) in answers:
            reply(applied, outcome)

    def _apply_held(self) -> list[tuple[Reply, tuple[int, str]]]:
        held, self.held = self.held, []
        answers = []
        for op, key, value, ttl_s, keep_lease, reply in held:
            answers.append((reply, self._request(op, key, value, ttl_s, keep_lease, "ok")))
        return answers

    def _request(
        self, op: str, key: str, value: bytes, ttl_s: float, keep_lease: bool, fault: str
    ) -> tuple[int, str]:
        applied, outcome = 0, fault
        if fault != "fail":
            if op == "delete":
                if key in self.store:
                    prev, _ = self.store.pop(key)
                    applied = self._apply("DELETE", key, b"", "delete", prev)
                elif self.delete_missing == "v2":
                    outcome = "gone"
            elif keep_lease and key not in self.store:
                outcome = "gone"
            else:
                expiry = self.store[key][1] if keep_lease else 0
                if ttl_s > 0 and not keep_lease:
                    expiry = time.monotonic_ns() + round(ttl_s * self.ttl_scale * 1e9)
                old = self.store.get(key)
                self.store[key] = (value, expiry)
                applied = self._apply("PUT", key, value, "put", old[0] if old else None)
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
                        return WatchEvent(c.type, c.key, c.revision, c.value, c.prev)
                    first = c.revision + 1
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                self.cond.wait(_POLL_S)
        return None


class FakeBackend:
    """One client of a FakeEtcd; answers each write at once, from the calling thread (a "late" one
    from the thread of the request that releases it, or a timer's)."""

    name = "fake"
    binary_safe = True
    update_renews_ttl = False
    max_txn_ops = 1  # one put per request, as the writers' preload then sends them
    stream_reopens = 0

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
        def answer(applied: int, outcome: str) -> None:
            if outcome == "ok" and revision is not None:
                revision(applied)
            if outcome == "ok":
                done(None)
            elif outcome == "gone":
                done(KeyGone(f"{key}: key not found"))
            else:
                done(EtcdError(f"scripted {outcome} of {op} {key}"))

        self.etcd.write(op, key, value, ttl_s, keep_lease, answer)

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

    def put_many_async(self, items: Sequence[tuple[str, bytes]], done: PutCallback) -> None:
        if len(items) != 1:
            raise ValueError(f"put_many_async takes 1 to {self.max_txn_ops} puts, not {len(items)}")
        self.put_async(items[0][0], items[0][1], done)

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

    def list_page(self, prefix: str, start: bytes, limit: int, revision: int = 0) -> ListPage:
        """The whole prefix now, in one page (the fake has neither pages nor history)."""
        with self.etcd.cond:
            values = [v for k, (v, _) in self.etcd.store.items() if k.startswith(prefix)]
            return ListPage(len(values), sum(map(len, values)), self.etcd.revision, None)

    def get_value(self, key: str) -> int | None:
        with self.etcd.cond:
            stored = self.etcd.store.get(key)
        return None if stored is None else len(stored[0])

    def close(self) -> None:
        self.cancel()


_NO_HISTORY = 'the fake etcd keeps no history to {}: script a "gap" watch fault for a lost history'


class FakeAdmin:
    """The admin calls on a FakeEtcd: the store as it is now (the fake keeps no older revision)."""

    def __init__(self, etcd: FakeEtcd) -> None:
        self.etcd = etcd

    def check(self) -> None:
        pass

    def server_version(self) -> str:
        return "fake"

    def status(self) -> ServerStatus:
        return ServerStatus("fake", 0, 1, 1)

    def db_size(self) -> int | None:
        return None

    def current_revision(self) -> int:
        with self.etcd.cond:
            return self.etcd.revision

    def compact(self, revision: int) -> None:
        raise EtcdError(_NO_HISTORY.format("compact"))

    def defragment(self) -> None:
        raise EtcdError(_NO_HISTORY.format("defragment"))

    def _keys(self, prefix: str) -> list[str]:
        return [k for k in self.etcd.store if k.startswith(prefix)]

    def count_prefix(self, prefix: str) -> int:
        with self.etcd.cond:
            return len(self._keys(prefix))

    def get_prefix(self, prefix: str) -> dict[str, bytes]:
        with self.etcd.cond:
            return {k: self.etcd.store[k][0] for k in self._keys(prefix)}

    def list_keys(self, prefix: str, revision: int = 0) -> tuple[int, dict[str, int]]:
        """The keys now, whatever `revision` (the fake keeps no older one)."""
        with self.etcd.cond:
            return self.etcd.revision, {k: self.etcd.created[k] for k in self._keys(prefix)}

    def _delete(self, keys: Iterable[str]) -> int:
        deleted = 0
        with self.etcd.cond:
            for key in keys:
                if (entry := self.etcd.store.pop(key, None)) is not None:
                    self.etcd._apply("DELETE", key, b"", "delete", entry[0])
                    deleted += 1
        return deleted

    def delete_own(self, keys: Collection[str], prefix: str, created_after: int) -> int:
        _, existing = self.list_keys(prefix)
        return self._delete(k for k, created in existing.items() if created > created_after and k in keys)

    def delete_prefix(self, prefix: str) -> int:
        with self.etcd.cond:
            return self._delete(self._keys(prefix))

    def put_leased(self, key: str, value: bytes, ttl_s: float) -> bool:
        with self.etcd.cond:
            if key in self.etcd.store:
                return False
            expiry = time.monotonic_ns() + round(ttl_s * self.etcd.ttl_scale * 1e9)
            self.etcd.store[key] = (value, expiry)
            self.etcd._apply("PUT", key, value, "put")
            return True

    def delete_keys(self, keys: Iterable[str]) -> None:
        self._delete(keys)

    def close(self) -> None:
        pass


def fake_backend(etcd: FakeEtcd, watch_base: int = 0) -> Backend:
    """A FakeBackend, typed as the protocol it implements (mypy checks that it does)."""
    return FakeBackend(etcd, watch_base)


def fake_admin(etcd: FakeEtcd) -> Admin:
    """A FakeAdmin, typed as the protocol it implements (mypy checks that it does)."""
    return FakeAdmin(etcd)
