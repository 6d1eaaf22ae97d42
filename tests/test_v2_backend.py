"""V2Backend against a real local etcd 3.5 (v2 enabled): writes, both watch modes, 401 relists."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from etcdbench.backends.base import Endpoint, Relist, WatchEvent, WatchItem
from etcdbench.backends.v2 import V2Backend
from etcdbench.errors import EtcdError
from etcdbench.etcd import LocalEtcd
from etcdbench.etcd.local import _free_port

pytestmark = pytest.mark.integration
MODES = ["poll", "stream"]


@pytest.fixture(params=MODES)
def backend(request: pytest.FixtureRequest, etcd_server: LocalEtcd) -> Iterator[V2Backend]:
    b = V2Backend(Endpoint((etcd_server.client_url,)), watch_mode=request.param)
    yield b
    b.close()


def put_all(b: V2Backend, items: list[tuple[str, str]], *, ordered: bool = True) -> None:
    """Write items and wait for every acknowledgement; ordered=True waits for each before the next."""
    errors: list[BaseException] = []
    done = threading.Semaphore(0)

    def on_done(exc: BaseException | None) -> None:
        if exc is not None:
            errors.append(exc)
        done.release()

    for key, value in items:
        b.put_async(key, value.encode(), on_done)
        if ordered:
            assert done.acquire(timeout=10)
    if not ordered:
        for _ in items:
            assert done.acquire(timeout=60)
    assert not errors, errors[:3]


def collect(b: V2Backend, it: Iterator[WatchItem], n: int, timeout: float = 30.0) -> list[WatchItem]:
    """The next n watch items; a timer cancels the watch so a missing event fails instead of hanging."""
    timer = threading.Timer(timeout, b.cancel)
    timer.start()
    try:
        items: list[WatchItem] = []
        for item in it:
            items.append(item)
            if len(items) == n:
                break
        return items
    finally:
        timer.cancel()


def test_server_version(backend: V2Backend, etcd_server: LocalEtcd) -> None:
    backend.check()
    assert backend.server_version() == etcd_server.version


def test_history_in_order_with_prev_values(backend: V2Backend, fresh_prefix: str) -> None:
    rev0 = backend.current_revision()
    writes = [(f"{fresh_prefix}k{i % 3}", f"v{i}") for i in range(9)]
    put_all(backend, writes)
    assert backend.current_revision() == rev0 + 9
    assert backend.count_prefix(fresh_prefix) == 3

    events = collect(backend, backend.watch(fresh_prefix, rev0 + 1), 9)
    assert all(isinstance(e, WatchEvent) for e in events)
    assert [(e.type, e.key, e.value) for e in events if isinstance(e, WatchEvent)] == [
        ("PUT", k, v.encode()) for k, v in writes
    ]
    assert [e.revision for e in events] == list(range(rev0 + 1, rev0 + 10))
    prev = [e.prev_value for e in events if isinstance(e, WatchEvent)]
    assert prev == [None, None, None, b"v0", b"v1", b"v2", b"v3", b"v4", b"v5"]


def test_live_events_and_deletes(backend: V2Backend, fresh_prefix: str) -> None:
    rev0 = backend.current_revision()
    it = backend.watch(fresh_prefix, rev0 + 1)
    got: list[WatchItem] = []
    reader = threading.Thread(target=lambda: got.extend(collect(backend, it, 6)))
    reader.start()
    time.sleep(0.3)  # let the watcher register, so the stream mode really streams live events
    put_all(backend, [(f"{fresh_prefix}a", "1"), (f"{fresh_prefix}b", "2"), (f"{fresh_prefix}a", "3")])
    assert backend.delete_prefix(f"{fresh_prefix}a") == 1  # a single key
    put_all(backend, [(f"{fresh_prefix}sub/c", "4")])
    assert backend.delete_prefix(fresh_prefix) == 2  # the directory: one event for the whole tree
    reader.join(30)
    assert [(type(e).__name__, getattr(e, "type", ""), getattr(e, "key", "")) for e in got] == [
        ("WatchEvent", "PUT", f"{fresh_prefix}a"),
        ("WatchEvent", "PUT", f"{fresh_prefix}b"),
        ("WatchEvent", "PUT", f"{fresh_prefix}a"),
        ("WatchEvent", "DELETE", f"{fresh_prefix}a"),
        ("WatchEvent", "PUT", f"{fresh_prefix}sub/c"),
        ("WatchEvent", "DELETE", fresh_prefix.rstrip("/")),
    ]
    delete_a = got[3]
    assert isinstance(delete_a, WatchEvent)
    assert (delete_a.value, delete_a.prev_value) == (b"", b"3")
    assert backend.count_prefix(fresh_prefix) == 0
    assert backend.delete_prefix(fresh_prefix) == 0
    assert backend.stream_ends == 0


def test_history_cleared_gives_relist_then_exact_events(backend: V2Backend, fresh_prefix: str) -> None:
    rev0 = backend.current_revision()
    put_all(backend, [(f"{fresh_prefix}k{i}", "x") for i in range(1100)], ordered=False)
    it = backend.watch(fresh_prefix, rev0 + 1)  # 1,100 events back: beyond the 1,000 kept
    [relist] = collect(backend, it, 1)
    assert isinstance(relist, Relist)
    assert relist.reason == "v2-401"
    assert relist.revision >= rev0 + 1100
    assert relist.keys == 1100

    later = [(f"{fresh_prefix}after{i}", f"y{i}") for i in range(5)]
    put_all(backend, later)
    events = collect(backend, it, 5)
    assert [(e.key, e.value) for e in events if isinstance(e, WatchEvent)] == [
        (k, v.encode()) for k, v in later
    ]
    assert [e.revision for e in events] == list(range(relist.revision + 1, relist.revision + 6))


def test_cancel_ends_the_iterator(backend: V2Backend, fresh_prefix: str) -> None:
    items: list[WatchItem] = []
    ended = threading.Event()

    def run() -> None:
        items.extend(backend.watch(fresh_prefix, backend.current_revision() + 1))
        ended.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(0.5)
    backend.cancel()
    assert ended.wait(15), "watch did not end after cancel()"
    assert items == []


def test_server_without_v2_is_reported() -> None:
    from etcdbench.etcd import find_etcd_binary

    with LocalEtcd(find_etcd_binary(), enable_v2=False) as server:
        b = V2Backend(Endpoint((server.client_url,)))
        try:
            with pytest.raises(EtcdError, match="--enable-v2=true"):
                b.check()
            with pytest.raises(EtcdError, match="--enable-v2=true"):
                b.current_revision()
        finally:
            b.close()


def test_unreachable_server_is_reported() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    b = V2Backend(Endpoint((url,)), timeout=2)
    try:
        with pytest.raises(EtcdError, match=f"^cannot reach etcd at {url}: "):
            b.check()
    finally:
        b.close()


@pytest.mark.parametrize("mode", MODES)
def test_report_watch_throughput(
    mode: str, etcd_server: LocalEtcd, fresh_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rough figure for the lead, never asserted: events/s from history and while writing."""
    b = V2Backend(Endpoint((etcd_server.client_url,)), watch_mode=mode)
    try:
        put_all(b, [(f"{fresh_prefix}h{i}", "x" * 100) for i in range(3000)], ordered=False)
        # v2 keeps only the last 1,000 events, so the history drain can cover at most those.
        start = b.current_revision() - 990
        t0 = time.perf_counter()
        drained = collect(b, b.watch(fresh_prefix, start), 991)
        history_rate = len(drained) / (time.perf_counter() - t0)

        # Live: the watcher runs while 3,000 puts are written as fast as 16 threads can.
        it = b.watch(fresh_prefix, b.current_revision() + 1)
        got: list[tuple[float, WatchItem]] = []
        t = threading.Thread(target=lambda: got.extend((time.perf_counter(), item) for item in it))
        t.start()
        t0 = time.perf_counter()
        put_all(b, [(f"{fresh_prefix}l{i}", "x" * 100) for i in range(3000)], ordered=False)
        write_s = time.perf_counter() - t0
        final = b.current_revision()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (got and got[-1][1].revision >= final):
            time.sleep(0.05)
        b.cancel()
        t.join(30)
        events = sum(isinstance(item, WatchEvent) for _, item in got)
        relists = sum(isinstance(item, Relist) for _, item in got)
        live_s = got[-1][0] - t0 if got else float("nan")
        with capsys.disabled():
            print(
                f"\n[v2 {mode}] history drain {history_rate:.0f} events/s ({len(drained)} events); "
                f"live: 3000 writes at {3000 / write_s:.0f}/s, watcher got {events} events "
                f"({events / live_s:.0f}/s), {relists} relists, stream ends {b.stream_ends}"
            )
    finally:
        b.close()
