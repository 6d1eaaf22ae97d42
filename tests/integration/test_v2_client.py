"""V2Backend's own HTTP/1.1 client against a real etcd: puts sent once, exact values, kept-alive."""

from __future__ import annotations

import threading
import time

import pytest
from backend_puts import put_all
from test_v2_backend import collect  # the same watch-with-a-deadline helper

from etcdbench.backends import v2
from etcdbench.backends.base import Endpoint, WatchEvent
from etcdbench.backends.transport import http1
from etcdbench.backends.v2 import V2Backend
from etcdbench.errors import EtcdError
from etcdbench.etcd import LocalEtcd, find_etcd_binary


def put_and_wait(b: V2Backend, key: str, value: bytes, ttl_s: float = 0.0) -> BaseException | None:
    result: list[BaseException | None] = []
    finished = threading.Event()

    def done(exc: BaseException | None) -> None:
        result.append(exc)
        finished.set()

    b.put_async(key, value, done, ttl_s)
    assert finished.wait(30)
    return result[0]


def test_a_put_that_times_out_is_sent_once() -> None:
    """etcd paused (SIGSTOP) past the put's timeout: the put fails, and nothing sends it again."""
    with LocalEtcd(find_etcd_binary(), enable_v2=True) as server:
        b = V2Backend(Endpoint((server.client_url,)), timeout=1.0)
        try:
            assert put_and_wait(b, "/once/warm", b"up") is None  # a kept-alive connection exists
            rev0 = b.current_revision()
            server.pause()
            try:
                t0 = time.monotonic()
                exc = put_and_wait(b, "/once/k", b"v")
                waited = time.monotonic() - t0
                time.sleep(1.5)  # a retrying client would send it again in this time
            finally:
                server.resume()
            assert isinstance(exc, EtcdError)
            assert str(exc) == f"cannot reach etcd at {server.client_url}: timed out"
            assert 0.9 < waited < 5
            time.sleep(0.5)
            # etcd read the one request once it ran again: at most one write, never two.
            assert b.current_revision() - rev0 <= 1
            history = collect(b, b.watch("/once/", rev0 + 1), 1, timeout=3)
            assert len([e for e in history if isinstance(e, WatchEvent) and e.key == "/once/k"]) <= 1
            assert put_and_wait(b, "/once/after", b"ok") is None  # and the backend works on
        finally:
            b.close()


@pytest.mark.parametrize("mode", ["poll", "stream"])
def test_values_with_form_and_json_special_characters_arrive_exactly(
    etcd_server: LocalEtcd, fresh_prefix: str, mode: str
) -> None:
    values = [
        b"a&b=c;d+e%f g%2B",
        b'{"k": "v\\"q\\\\", "html": "<a&b>", "ctl": "\\u0001"}',
        "ünïcödé € \u2028 😀".encode(),
        b"line\nbreak\ttab\\back",
        b"",
        b"x" * 100_000,
    ]
    b = V2Backend(Endpoint((etcd_server.client_url,)), watch_mode=mode)
    try:
        rev0 = b.current_revision()
        for i, v in enumerate(values):
            assert put_and_wait(b, f"{fresh_prefix}k{i}", v) is None
        got = collect(b, b.watch(fresh_prefix, rev0 + 1), len(values))
        assert [e.value for e in got if isinstance(e, WatchEvent)] == values
    finally:
        b.close()


def test_ttl_put_expires_as_a_delete(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    b = V2Backend(Endpoint((etcd_server.client_url,)))
    try:
        rev0 = b.current_revision()
        assert put_and_wait(b, f"{fresh_prefix}short", b"lived", ttl_s=1.0) is None
        put, expired = collect(b, b.watch(fresh_prefix, rev0 + 1), 2, timeout=15)
        assert isinstance(put, WatchEvent) and isinstance(expired, WatchEvent)
        assert (put.type, expired.type, expired.key, expired.prev_value) == (
            "PUT",
            "DELETE",
            f"{fresh_prefix}short",
            b"lived",
        )
    finally:
        b.close()


def test_puts_and_the_poll_watch_keep_their_connections(
    etcd_server: LocalEtcd, fresh_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[http1.Server] = []
    real_connect = http1.Connection._connect

    def counting_connect(self: http1.Connection) -> object:
        opened.append(self.server)
        return real_connect(self)

    monkeypatch.setattr(http1.Connection, "_connect", counting_connect)
    b = V2Backend(Endpoint((etcd_server.client_url,)), max_inflight=64)
    try:
        rev0 = b.current_revision()  # the admin connection
        put_all(b, [(f"{fresh_prefix}k{i % 50}", b"v%d" % i) for i in range(600)], ordered=False)
        # The admin connection and at most one per pool thread.
        assert len(opened) <= 1 + v2._WRITE_CONNECTIONS
        before_watch = len(opened)
        events = collect(b, b.watch(fresh_prefix, rev0 + 1), 600)
        assert len(events) == 600 and all(isinstance(e, WatchEvent) for e in events)
        assert len(opened) == before_watch + 1  # 600 long polls, one connection
    finally:
        b.close()


def test_puts_to_etcd_without_v2_report_it() -> None:
    with LocalEtcd(find_etcd_binary(), enable_v2=False) as server:
        b = V2Backend(Endpoint((server.client_url,)))
        try:
            exc = put_and_wait(b, "/k", b"v")
            assert isinstance(exc, EtcdError) and "--enable-v2=true" in str(exc)
        finally:
            b.close()


def test_report_cpu_per_write_and_per_event(
    etcd_server: LocalEtcd, fresh_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rough figures for the lead, never asserted: CPU per put (64 in flight) and per polled event."""
    import resource

    from etcdbench.encoding.codec import get_codec
    from etcdbench.encoding.objects import build_object

    def cpu_s() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    value = get_codec("json").encode(build_object("pod", 1))  # a 6 kB Pod, JSON-escaped once more by v2
    b = V2Backend(Endpoint((etcd_server.client_url,)), max_inflight=64)
    try:
        n = 3000
        slots = threading.Semaphore(64)
        finished = threading.Semaphore(0)

        def done(exc: BaseException | None) -> None:
            assert exc is None
            slots.release()
            finished.release()

        c0, t0 = cpu_s(), time.perf_counter()
        for i in range(n):
            slots.acquire()
            b.put_async(f"{fresh_prefix}p{i % 500}", value, done)
        for _ in range(n):
            assert finished.acquire(timeout=60)
        put_cpu, put_s = cpu_s() - c0, time.perf_counter() - t0

        start = b.current_revision() - 989  # the history v2 keeps
        it = b.watch(fresh_prefix, start)
        c0, t0 = time.thread_time(), time.perf_counter()
        events = collect(b, it, 990)
        watch_cpu, watch_s = time.thread_time() - c0, time.perf_counter() - t0
        assert len(events) == 990
        with capsys.disabled():
            print(
                f"\n[v2 client] {n} puts of {len(value):,} B: {n / put_s:,.0f}/s, "
                f"{put_cpu / n * 1e6:.0f} µs CPU each; poll watch (history): {990 / watch_s:,.0f} events/s, "
                f"{watch_cpu / 990 * 1e6:.0f} µs CPU each (receive + JSON; no object decoding)"
            )
    finally:
        b.close()
