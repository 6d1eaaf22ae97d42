"""etcdbench.backends.transport.http1 against a tiny scripted HTTP server: framing, keep-alive, no retries."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from etcdbench.backends.transport import http1
from etcdbench.backends.transport.http1 import (
    Connection,
    ConnectionClosed,
    Pool,
    ProtocolError,
    Server,
    form_value,
)

# One request as the server saw it: (connection number, request line, headers, body).
Seen = tuple[int, bytes, dict[bytes, bytes], bytes]


class ScriptedServer:
    """Accepts connections; `answer(n, request_line, body)` gives the bytes to reply (None: no reply,
    b"": close the connection). Every request received is recorded in `seen`."""

    def __init__(self, answer: Callable[[int, bytes, bytes], bytes | None]) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.server = Server("127.0.0.1", self.listener.getsockname()[1])
        self.seen: list[Seen] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
                self.socks.append(sock)
            threading.Thread(target=self._serve, args=(sock, n), daemon=True).start()

    def _serve(self, sock: socket.socket, n: int) -> None:
        buf = b""
        with sock:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                line, *fields = head.split(b"\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(b":") for f in fields)}
                length = int(headers.get(b"content-length", b"0"))
                while len(buf) < length:
                    buf += sock.recv(65536)
                body, buf = buf[:length], buf[length:]
                with self.lock:
                    self.seen.append((n, line, headers, body))
                reply = self.answer(n, line, body)
                if reply is None:
                    self.stop.wait()  # never answer
                    return
                if not reply:
                    return  # close without answering
                sock.sendall(reply)
                if reply.startswith(b"HTTP/1.0") or b"Connection: close" in reply:
                    return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        with self.lock:
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[int, bytes, bytes], bytes | None]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(answer: Callable[[int, bytes, bytes], bytes | None]) -> ScriptedServer:
        servers.append(ScriptedServer(answer))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Etcd-Index: 7\r\n%s\r\n%s" % (len(body), extra, body)


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    out = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
    for c in chunks:
        out += b"%x;ext=1\r\n%s\r\n" % (len(c), c)
    return out + b"0\r\n" + trailer + b"\r\n"


def test_content_length_response_and_the_request_sent(serve: Any) -> None:
    srv = serve(lambda n, line, body: ok(b'{"a": 1}'))
    conn = Connection([srv.server], headers=b"Authorization: Basic eDp5\r\n")
    resp = conn.request(b"PUT", b"/v2/keys/k", b"value=v", timeout=5)
    assert (resp.status, resp.body, resp.headers["x-etcd-index"]) == (200, b'{"a": 1}', "7")
    [(_, line, headers, body)] = srv.seen
    assert line == b"PUT /v2/keys/k HTTP/1.1"
    assert headers[b"host"] == f"127.0.0.1:{srv.server.port}".encode()
    assert headers[b"authorization"] == b"Basic eDp5"
    assert headers[b"content-type"] == b"application/x-www-form-urlencoded"
    assert body == b"value=v"
    conn.close()


def test_chunked_response_with_extensions_and_trailer(serve: Any) -> None:
    parts = [b'{"action":', b'"set"}\n', b"x" * 70_000]
    srv = serve(lambda n, line, body: chunked(*parts, trailer=b"X-Trailer: 1\r\n"))
    conn = Connection([srv.server])
    for _ in range(3):  # and the connection stays usable: the trailer was consumed
        resp = conn.request(b"GET", b"/", timeout=5)
        assert (resp.status, resp.body) == (201, b"".join(parts))
    assert conn.connects == 1 and srv.connections == 1
    conn.close()


def test_a_response_split_in_tiny_pieces(serve: Any) -> None:
    whole = chunked(b"abc", b"defgh") + ok(b"xyz")

    def answer(n: int, line: bytes, body: bytes) -> bytes | None:
        return None  # replies are written by hand below

    srv = serve(answer)
    conn = Connection([srv.server])
    conn.send(b"GET", b"/", timeout=5)
    deadline = time.monotonic() + 5
    while not srv.socks and time.monotonic() < deadline:
        time.sleep(0.01)

    def trickle() -> None:
        for i in range(len(whole)):
            srv.socks[0].sendall(whole[i : i + 1])
            time.sleep(0.0005)

    threading.Thread(target=trickle, daemon=True).start()
    assert conn.read_response(5).body == b"abcdefgh"
    assert conn.read_response(5).body == b"xyz"  # a second response behind the first, same buffer
    conn.close()


def test_keep_alive_reuses_one_connection(serve: Any) -> None:
    srv = serve(lambda n, line, body: ok(line))
    conn = Connection([srv.server])
    bodies = [conn.request(b"GET", b"/%d" % i, timeout=5).body for i in range(50)]
    assert bodies == [b"GET /%d HTTP/1.1" % i for i in range(50)]
    assert conn.connects == 1 and srv.connections == 1
    assert {n for n, *_ in srv.seen} == {1}
    conn.close()


def test_connection_close_and_read_to_eof(serve: Any) -> None:
    replies = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n\r\n404 page not found\n",
        ok(b"third"),
    ]

    def answer(n: int, line: bytes, body: bytes) -> bytes:
        return replies[len(srv.seen) - 1]  # the request just recorded picks the reply

    srv = serve(answer)
    conn = Connection([srv.server])
    assert conn.request(b"GET", b"/", timeout=5).body == b"hi"
    assert not conn.connected
    resp = conn.request(b"GET", b"/", timeout=5)
    assert (resp.status, resp.body) == (404, b"404 page not found\n")
    assert conn.request(b"GET", b"/", timeout=5).body == b"third"
    assert conn.connects == srv.connections == 3
    conn.close()


def test_a_timed_out_request_is_never_sent_again(serve: Any) -> None:
    srv = serve(lambda n, line, body: None if n == 1 else ok(b"late"))
    conn = Connection([srv.server])
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        conn.request(b"PUT", b"/v2/keys/k", b"value=1", timeout=0.3)
    assert time.monotonic() - t0 < 3
    assert not conn.connected  # its state is unknown: closed, never reused
    assert [(n, line) for n, line, *_ in srv.seen] == [(1, b"PUT /v2/keys/k HTTP/1.1")]
    # The next request goes out on a new connection; the first is not repeated.
    assert conn.request(b"PUT", b"/v2/keys/other", b"value=2", timeout=5).body == b"late"
    assert [(n, line) for n, line, *_ in srv.seen] == [
        (1, b"PUT /v2/keys/k HTTP/1.1"),
        (2, b"PUT /v2/keys/other HTTP/1.1"),
    ]
    conn.close()


def test_keep_waiting_extends_a_wait_until_it_says_stop(serve: Any) -> None:
    srv = serve(lambda n, line, body: None)
    conn = Connection([srv.server])
    calls: list[float] = []

    def keep_waiting() -> bool:
        calls.append(time.monotonic())
        return len(calls) < 3

    with pytest.raises(TimeoutError):
        conn.request(b"GET", b"/wait", timeout=0.1, keep_waiting=keep_waiting)
    assert len(calls) == 3
    assert len(srv.seen) == 1
    conn.close()


def test_abort_wakes_a_blocked_read_at_once(serve: Any) -> None:
    srv = serve(lambda n, line, body: None)
    conn = Connection([srv.server])
    threading.Timer(0.2, conn.abort).start()
    t0 = time.monotonic()
    with pytest.raises(OSError):
        conn.request(b"GET", b"/wait", timeout=30, keep_waiting=lambda: True)
    assert time.monotonic() - t0 < 2
    assert len(srv.seen) == 1


def test_a_connection_closed_before_the_answer_is_an_error_not_a_retry(serve: Any) -> None:
    srv = serve(lambda n, line, body: b"")  # reads the request, then closes
    conn = Connection([srv.server])
    with pytest.raises(ConnectionClosed, match="closed the connection"):
        conn.request(b"PUT", b"/v2/keys/k", b"value=1", timeout=5)
    assert len(srv.seen) == 1 and srv.connections == 1
    assert not conn.connected


def test_an_idle_connection_closed_by_the_server_is_replaced_before_sending(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server answers, then closes the kept-alive connection while it is idle.
    srv = serve(lambda n, line, body: ok(b"one", b"X-Close: soon\r\n"))
    conn = Connection([srv.server])
    assert conn.request(b"GET", b"/", timeout=5).body == b"one"
    with srv.lock:
        first = srv.socks[0]
    first.shutdown(socket.SHUT_RDWR)  # the server closes it
    time.sleep(0.1)
    monkeypatch.setattr(http1, "_STALE_AFTER_S", 0.0)
    assert conn.request(b"GET", b"/", timeout=5).body == b"one"  # no error: nothing had been sent
    assert conn.connects == srv.connections == 2
    assert len(srv.seen) == 2


def test_garbage_is_a_protocol_error(serve: Any) -> None:
    srv = serve(lambda n, line, body: b"SSH-2.0-OpenSSH_9.0\r\n\r\n")
    conn = Connection([srv.server])
    with pytest.raises(ProtocolError, match=r"not an HTTP/1\.x response"):
        conn.request(b"GET", b"/", timeout=5)
    srv2 = serve(lambda n, line, body: b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
    with pytest.raises(ProtocolError, match="Content-Length"):
        Connection([srv2.server]).request(b"GET", b"/", timeout=5)


def test_refused_endpoint_falls_through_to_the_next(serve: Any) -> None:
    srv = serve(lambda n, line, body: ok(b"here"))
    closed = socket.create_server(("127.0.0.1", 0))
    dead = Server("127.0.0.1", closed.getsockname()[1])
    closed.close()
    conn = Connection([dead, srv.server])
    assert conn.request(b"GET", b"/", timeout=5).body == b"here"
    assert conn.server == srv.server
    with pytest.raises(ConnectionRefusedError):
        Connection([dead]).request(b"GET", b"/", timeout=5)


def test_pool_runs_requests_in_parallel_each_sent_once(serve: Any) -> None:
    def slow(n: int, line: bytes, body: bytes) -> bytes:
        time.sleep(0.05)
        return ok(body)

    srv = serve(slow)
    pool = Pool(lambda: Connection([srv.server]), 8)
    results: dict[bytes, bytes] = {}
    lock = threading.Lock()
    finished = threading.Semaphore(0)

    def done_for(tag: bytes) -> http1.Done:
        def done(resp: http1.Response | None, exc: BaseException | None) -> None:
            assert exc is None and resp is not None
            with lock:
                results[tag] = resp.body
            finished.release()

        return done

    t0 = time.monotonic()
    for i in range(64):
        pool.submit(b"PUT", b"/k", b"v%d" % i, 5, done_for(b"v%d" % i))
    for _ in range(64):
        assert finished.acquire(timeout=10)
    elapsed = time.monotonic() - t0
    assert results == {b"v%d" % i: b"v%d" % i for i in range(64)}
    assert len(srv.seen) == 64  # each exactly once
    assert 1 < srv.connections <= 8
    assert elapsed < 64 * 0.05 / 2  # several at a time
    pool.close()


def test_pool_reports_a_failure_to_the_callback_only(serve: Any) -> None:
    srv = serve(lambda n, line, body: b"")
    pool = Pool(lambda: Connection([srv.server]), 2)
    errors: list[BaseException | None] = []
    finished = threading.Event()

    def done(resp: http1.Response | None, exc: BaseException | None) -> None:
        errors.append(exc)
        finished.set()

    pool.submit(b"PUT", b"/k", b"v", 5, done)
    assert finished.wait(10)
    pool.close()
    assert len(errors) == 1 and isinstance(errors[0], ConnectionClosed)
    assert len(srv.seen) == 1


@pytest.mark.parametrize(
    "value",
    [b"plain", b"a&b=c;d+e%f g", b'{"json": "x&y", "n": 1}', b"%%2B&&", "ünï €".encode(), b"", b"+/="],
)
def test_form_value_escapes_only_what_the_form_parser_would_misread(value: bytes) -> None:
    from urllib.parse import parse_qsl

    body = b"value=" + form_value(value) + b"&ttl=3"
    # Python's parser reads forms like Go's: '&' splits, %XX and '+' are decoded, the rest is kept.
    assert parse_qsl(body.decode(), keep_blank_values=True, separator="&") == [
        ("value", value.decode()),
        ("ttl", "3"),
    ]
    assert b";" not in form_value(value)


def test_stream_yields_each_chunk_as_it_arrives(serve: Any) -> None:
    srv = serve(lambda n, line, body: None)  # replies are written by hand below
    more = threading.Event()

    def server_side() -> None:
        deadline = time.monotonic() + 5
        while not srv.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        sock = srv.socks[0]
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Etcd-Index: 9\r\n\r\n5\r\nfirst\r\n"
        )
        more.wait(5)
        sock.sendall(b"6\r\nsecond\r\n0\r\n\r\n")

    threading.Thread(target=server_side, daemon=True).start()
    conn = Connection([srv.server])
    resp, chunks = conn.open_stream(b"GET", b"/v2/keys/p?wait=true&stream=true", timeout=5)
    assert (resp.status, resp.headers["x-etcd-index"]) == (200, "9")
    assert next(chunks) == b"first"  # while the server holds back the rest
    more.set()
    assert list(chunks) == [b"second"]
    assert conn.connected  # the stream ended cleanly: the connection is kept
    conn.close()


def test_readable_tells_whether_a_silent_stream_got_more(serve: Any) -> None:
    # The head and a first chunk; the rest is written by hand below.
    srv = serve(lambda n, line, body: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
    conn = Connection([srv.server])
    assert not conn.readable()  # not connected yet
    _, chunks = conn.open_stream(b"GET", b"/v2/keys/p?wait=true&stream=true", timeout=5)
    sock = srv.socks[0]
    assert next(chunks) == b"first"
    assert not conn.readable()  # silent
    sock.sendall(b"6\r\nsecond\r\n")
    deadline = time.monotonic() + 5
    while not conn.readable():
        assert time.monotonic() < deadline, "the second chunk never showed as readable"
        time.sleep(0.01)
    assert next(chunks) == b"second"
    assert not conn.readable()
    sock.shutdown(socket.SHUT_WR)  # the server's close is readable too: the next read reports it
    deadline = time.monotonic() + 5
    while not conn.readable():
        assert time.monotonic() < deadline, "the close never showed as readable"
        time.sleep(0.01)
    with pytest.raises(ConnectionClosed):
        next(chunks)
    assert not conn.connected
