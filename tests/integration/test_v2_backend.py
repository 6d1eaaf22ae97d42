"""V2Backend against a real local etcd 3.5 (v2 enabled): writes, both watch modes, 401 relists."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from backend_puts import put_all

from etcdbench.backends.base import Endpoint, Relist, WatchEvent, WatchItem
from etcdbench.backends.v2 import V2Backend
from etcdbench.errors import EtcdError
from etcdbench.etcd import LocalEtcd, find_etcd_binary

MODES = ["poll", "stream"]


@pytest.fixture(params=MODES)
def backend(request: pytest.FixtureRequest, etcd_server: LocalEtcd) -> Iterator[V2Backend]:
    b = V2Backend(Endpoint((etcd_server.client_url,)), watch_mode=request.param)
    yield b
    b.close()


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
    assert backend.stream_reopens == 0


def test_admin_reads_and_deletes_keys_and_refuses_what_v2_lacks(
    etcd_server: LocalEtcd, fresh_prefix: str
) -> None:
    b = V2Backend(Endpoint((etcd_server.client_url,)))
    try:
        put_all(b, [(f"{fresh_prefix}a", "1"), (f"{fresh_prefix}sub/b", "2")])
        assert b.get_prefix(fresh_prefix) == {f"{fresh_prefix}a": b"1", f"{fresh_prefix}sub/b": b"2"}
        b.delete_keys([f"{fresh_prefix}a", f"{fresh_prefix}gone"])  # a missing key is no failure
        assert b.get_prefix(fresh_prefix) == {f"{fresh_prefix}sub/b": b"2"}
        assert b.get_prefix(f"{fresh_prefix}nothing/") == {}
        with pytest.raises(EtcdError, match=r"^etcd's v2 API has no compaction"):
            b.compact(b.current_revision())
        with pytest.raises(EtcdError, match="cannot carry 2 watches on one stream"):
            b.watch_many(fresh_prefix, 1, 2)
    finally:
        b.close()


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


def store_watchers(server: LocalEtcd) -> int:
    """The v2 watchers etcd has registered (its etcd_debugging_store_watchers gauge)."""
    with urllib.request.urlopen(server.client_url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("etcd_debugging_store_watchers "):
                return int(float(line.split()[1]))
    raise AssertionError("etcd has no etcd_debugging_store_watchers gauge")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def revisions(b: V2Backend, prefix: str) -> dict[str, int]:
    """Each key right under `prefix` and the index that wrote it."""
    body = b._get(None, prefix, "recursive=true")[1]
    assert body is not None
    return {node["key"]: node["modifiedIndex"] for node in body["node"]["nodes"]}


@pytest.mark.parametrize("mode", MODES)
def test_a_watcher_left_far_behind_accounts_every_write_and_keeps_receiving(mode: str) -> None:
    """The watcher stops reading while etcd's buffers fill and 1,100 more events pass its history.

    etcd drops a stream watcher whose 100-event channel fills, but never ends its response: after the
    events already buffered, the stream stays silent. The watcher must notice, reopen (401: relist),
    and then receive what is written after. Every write is an event or lies in the relist's gap.
    """
    with LocalEtcd(find_etcd_binary(), enable_v2=True) as server:  # its own etcd: exact counts
        b = V2Backend(Endpoint((server.client_url,)), watch_mode=mode)
        # A stalled watch is cancelled: the asserts then fail, the test never hangs.
        first_guard, guard = threading.Timer(20, b.cancel), threading.Timer(20, b.cancel)
        try:
            prefix = "/overflow/"
            it = b.watch(prefix, b.current_revision() + 1)

            def first_write() -> None:
                # Written once the watcher is registered: the stream is live, not replaying history.
                wait_until(lambda: store_watchers(server) == 1, "etcd registered the watcher")
                put_all(b, [(f"{prefix}first", "0")])

            writer = threading.Thread(target=first_write)
            writer.start()
            first_guard.start()
            first = next(it, None)
            first_guard.cancel()
            writer.join()
            assert isinstance(first, WatchEvent), "the first event never came"
            items: list[WatchItem] = [first]
            # Nothing reads the watch connection now. 64 kB events fill the TCP buffers, then the
            # watcher's channel: etcd drops a stream watcher then (a poll watcher goes after 1 event).
            big = 0
            while store_watchers(server):
                assert big < 1000, "etcd never dropped the watcher"
                put_all(b, [(f"{prefix}big{big + i}", "x" * 65536) for i in range(10)], ordered=False)
                big += 10
            # Past the 1,000 events of history: reopening from the first missed index gets a 401.
            put_all(b, [(f"{prefix}small{i}", "y") for i in range(1100)], ordered=False)
            final = [(f"{prefix}final{i}", f"z{i}") for i in range(5)]
            guard.start()
            for item in it:
                items.append(item)
                if isinstance(item, Relist):
                    put_all(b, final)  # written after the relist: each must arrive as an event
                elif item.key == final[-1][0]:
                    break
            written = revisions(b, prefix)
        finally:
            first_guard.cancel()
            guard.cancel()
            b.close()
    assert len(written) == 1 + big + 1100 + 5, "the watch stalled: the final writes never came"
    relists = [i for i, item in enumerate(items) if isinstance(item, Relist)]
    assert len(relists) == 1, [type(item).__name__ for item in items[-3:]]
    before, relist, after = items[: relists[0]], items[relists[0]], items[relists[0] + 1 :]
    assert isinstance(relist, Relist) and relist.reason == "v2-401"
    assert relist.keys == 1 + big + 1100
    received = {item.key: item.revision for item in before if isinstance(item, WatchEvent)}
    assert len(received) == len(before)  # each write at most once
    last_received = max(received.values())
    # Before the relist: every write up to the last event received, at its own revision...
    assert received == {k: rev for k, rev in written.items() if rev <= last_received}
    # ...and the rest, up to the relist's revision, is what the relist stands for.
    missed = {k for k, rev in written.items() if last_received < rev <= relist.revision}
    assert len(received) + len(missed) == len(written) - len(final)
    assert missed  # the watcher really fell behind
    if mode == "stream":
        assert big > 100 and len(received) > 100  # etcd dropped it when its 100-event channel overflowed
    # After the overflow the watcher keeps receiving: exactly the writes made after the relist.
    assert [(e.key, e.revision) for e in after if isinstance(e, WatchEvent)] == [
        (k, written[k]) for k, _ in final
    ]
    assert len(after) == len(final)
    assert b.stream_reopens == (1 if mode == "stream" else 0)  # etcd dropped the stream once
    assert b.reconnects == 0


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
    with LocalEtcd(find_etcd_binary(), enable_v2=False) as server:
        b = V2Backend(Endpoint((server.client_url,)))
        try:
            with pytest.raises(EtcdError, match="--enable-v2=true"):
                b.check()
            with pytest.raises(EtcdError, match="--enable-v2=true"):
                b.current_revision()
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
                f"({events / live_s:.0f}/s), {relists} relists, stream ends {b.stream_reopens}"
            )
    finally:
        b.close()
