"""The v3 backend against a real etcd: exact events, prev values, deletes, compaction → relist."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from etcdbench.backends.base import Endpoint, Relist, WatchEvent, WatchItem
from etcdbench.backends.v3 import V3Backend
from etcdbench.etcd import LocalEtcd


@pytest.fixture
def v3(etcd_server: LocalEtcd) -> Iterator[V3Backend]:
    backend = V3Backend(Endpoint((etcd_server.client_url,)))
    yield backend
    backend.close()


def put_sync(backend: V3Backend, key: str, value: bytes) -> None:
    done = threading.Event()
    errors: list[BaseException] = []

    def cb(exc: BaseException | None) -> None:
        if exc:
            errors.append(exc)
        done.set()

    backend.put_async(key, value, cb)
    assert done.wait(10)
    assert not errors


def take(items: Iterator[WatchItem], n: int) -> list[WatchItem]:
    return [next(items) for _ in range(n)]


def test_watch_delivers_every_put_in_order_with_prev_values(v3: V3Backend, fresh_prefix: str) -> None:
    start = v3.current_revision() + 1
    for i in range(50):
        put_sync(v3, f"{fresh_prefix}k{i % 5}", f"v{i}".encode())
    events = take(v3.watch(fresh_prefix, start), 50)
    assert all(isinstance(e, WatchEvent) and e.type == "PUT" for e in events)
    got = [e for e in events if isinstance(e, WatchEvent)]
    assert [e.value for e in got] == [f"v{i}".encode() for i in range(50)]
    assert [e.revision for e in got] == list(range(start, start + 50))
    assert [e.prev_value for e in got[:5]] == [None] * 5
    assert [e.prev_value for e in got[5:]] == [f"v{i}".encode() for i in range(45)]
    assert v3.count_prefix(fresh_prefix) == 5


def test_deletes_arrive_as_delete_events(v3: V3Backend, fresh_prefix: str) -> None:
    start = v3.current_revision() + 1
    put_sync(v3, fresh_prefix + "a", b"1")
    put_sync(v3, fresh_prefix + "b", b"2")
    assert v3.delete_prefix(fresh_prefix) == 2
    events = [e for e in take(v3.watch(fresh_prefix, start), 4) if isinstance(e, WatchEvent)]
    assert [e.type for e in events] == ["PUT", "PUT", "DELETE", "DELETE"]
    assert v3.count_prefix(fresh_prefix) == 0


def test_compacted_start_revision_becomes_a_counted_relist(v3: V3Backend, fresh_prefix: str) -> None:
    start = v3.current_revision() + 1
    for i in range(10):
        put_sync(v3, f"{fresh_prefix}k{i}", b"x")
    v3.compact(v3.current_revision())
    items = v3.watch(fresh_prefix, start)
    relist = next(items)
    assert isinstance(relist, Relist)
    assert relist.reason == "v3-compacted"
    assert relist.keys == 10
    put_sync(v3, fresh_prefix + "after", b"y")
    event = next(items)
    assert isinstance(event, WatchEvent) and event.key == fresh_prefix + "after"
    assert event.revision == relist.revision + 1


def test_cancel_ends_a_blocked_watch(v3: V3Backend, fresh_prefix: str) -> None:
    items = v3.watch(fresh_prefix, v3.current_revision() + 1)
    timer = threading.Timer(0.3, v3.cancel)
    timer.start()
    assert list(items) == []
    timer.join()
