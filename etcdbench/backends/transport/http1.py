"""A lean HTTP/1.1 client for etcd's v2 API: persistent connections, minimal parsing, no retries.

python-etcd over urllib3 spends most of a v2 request's CPU in generic machinery (header objects,
URL handling, retry bookkeeping), and its retries can send a timed-out PUT twice. This client does
only what the v2 API needs:

* one request at a time on a kept-alive TCP or TLS connection (`Connection`), the request line and
  body built by the caller, the fixed header lines built once per connection;
* a response is its status, its headers (names lower-cased) and a body delimited by
  Content-Length, chunked transfer coding, or the end of the connection;
* nothing is ever sent twice: any failure after a request was (even partly) sent is raised, and the
  connection is closed because its state is unknown. Only a connection that the server closed while
  it sat idle is replaced *before* sending, which repeats nothing;
* several endpoints: a connection goes to the first one that accepts it, in the given order.

`Pool` runs requests in parallel on a few connections, one thread each: Go's HTTP server answers
pipelined requests one after the other, so in-flight requests need connections of their own.

TLS (https:// endpoints) is an `ssl.SSLSocket`, which is safe for OpenSSL here because each
connection has one owner thread: a `Pool` thread, the watcher, or whoever holds the admin lock. The
one call allowed from another thread, `abort()`, shuts the socket down with the plain socket's
shutdown (a system call on the file descriptor) and never enters OpenSSL.

Errors are OSError subclasses: the socket's own (refused, reset, TimeoutError), ssl.SSLError for a
failed TLS handshake, `ConnectionClosed` and `ProtocolError`.
"""

from __future__ import annotations

import base64
import contextlib
import queue
import select
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

# Wait once more when a read times out? Called after each timeout while a response is awaited;
# None (or False) ends the wait with TimeoutError.
KeepWaiting = Callable[[], bool] | None

_RECV_SIZE = 64 * 1024
_MAX_HEAD = 64 * 1024  # a response head longer than this is not from etcd
# A connection idle for longer than this is checked for a close by the server before it is reused.
_STALE_AFTER_S = 0.5
FORM = b"application/x-www-form-urlencoded"


class ConnectionClosed(ConnectionError):
    """The server closed the connection before the response was complete."""


class ProtocolError(OSError):
    """The server's bytes are not an HTTP/1.x response."""


@dataclass(frozen=True)
class Server:
    host: str
    port: int

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated name keeps its last value
    body: bytes


# A Pool request's completion: (response, None) or (None, error), called on a pool thread.
Done = Callable[[Response | None, BaseException | None], None]


def basic_auth(user: str, password: str) -> bytes:
    """An Authorization header line (with its CRLF) for HTTP basic auth."""
    return b"Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()) + b"\r\n"


def form_value(value: bytes) -> bytes:
    """`value` as an application/x-www-form-urlencoded value, for etcd's Go form parser.

    Go's url.ParseQuery splits on '&' (and ';' before Go 1.17, an error after), decodes %XX and
    '+' and takes every other byte as it is. So escaping those four is exact, and costs four C-speed
    replaces instead of urllib.parse.quote's Python-level loop over each byte of a 6 kB object.
    """
    if b"%" in value:
        value = value.replace(b"%", b"%25")
    return value.replace(b"&", b"%26").replace(b"+", b"%2B").replace(b";", b"%3B")


class Connection:
    """One persistent HTTP/1.1 connection, opened on first use and reopened after any failure.

    Not thread-safe, except `abort()`, which may be called from another thread to wake a read.
    """

    def __init__(
        self,
        servers: Sequence[Server],
        *,
        tls: ssl.SSLContext | None = None,
        connect_timeout: float = 5.0,
        headers: bytes = b"",
    ) -> None:
        """`headers`: extra header lines sent with every request, each ending in CRLF."""
        if not servers:
            raise ValueError("no servers")
        self.servers = tuple(servers)
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.server = self.servers[0]  # the one connected to, or tried first next time
        self.connects = 0  # connections opened (1 for a connection kept alive throughout)
        self._extra = b"User-Agent: etcdbench\r\n" + headers
        self._fixed = b""  # Host and the extra lines, for the current server
        self._sock: socket.socket | None = None
        self._timeout: float | None = None
        self._buf = bytearray()
        self._rbuf = bytearray(_RECV_SIZE)
        self._rview = memoryview(self._rbuf)
        self._idle_since = 0.0
        self._aborted = False

    @property
    def connected(self) -> bool:
        return self._sock is not None

    # -- connecting --------------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        last: OSError | None = None
        start = self.servers.index(self.server)
        for i in range(len(self.servers)):
            server = self.servers[(start + i) % len(self.servers)]
            try:
                sock = socket.create_connection((server.host, server.port), timeout=self.connect_timeout)
            except OSError as e:
                last = e
                continue  # nothing was sent: trying the next endpoint repeats no request
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.tls is not None:
                    sock = self._handshake(sock, server)
            except BaseException:
                sock.close()
                raise
            self.server = server
            self._fixed = b"Host: " + server.authority.encode("idna") + b"\r\n" + self._extra
            self._sock, self._timeout = sock, self.connect_timeout
            self._buf.clear()
            self._aborted = False
            self.connects += 1
            return sock
        assert last is not None
        raise last

    def _handshake(self, sock: socket.socket, server: Server) -> socket.socket:
        assert self.tls is not None
        try:
            return self.tls.wrap_socket(sock, server_hostname=server.host)
        except ssl.SSLError:
            raise
        except OSError as e:
            # A server that refuses our certificate may just reset the connection: still a TLS failure.
            raise ssl.SSLError(f"TLS handshake failed: {e}") from e

    def _ready_socket(self) -> socket.socket:
        """The open socket, after replacing one the server closed while it was idle."""
        sock = self._sock
        if sock is not None and self._aborted:
            raise ConnectionClosed("the connection was aborted")
        # Readable while idle means closed (or stray bytes): either way, unusable. (A TLS server may
        # also have sent a late session ticket; reconnecting then is merely wasteful.)
        idle_s = time.monotonic() - self._idle_since
        if sock is not None and (
            self._buf or (idle_s > _STALE_AFTER_S and select.select([sock], [], [], 0)[0])
        ):
            self.close()
            sock = None
        return sock if sock is not None else self._connect()

    # -- requests ----------------------------------------------------------------------------------

    def send(self, method: bytes, target: bytes, body: bytes = b"", *, timeout: float) -> None:
        """Send one request; a failure closes the connection (part of it may have been sent)."""
        sock = self._ready_socket()
        if body:
            head = b"%s %s HTTP/1.1\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
                method,
                target,
                self._fixed,
                FORM,
                len(body),
            )
            data = head + body
        else:
            data = b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, self._fixed)
        try:
            self._set_timeout(sock, timeout)
            sock.sendall(data)
        except BaseException:
            self.close()
            raise

    def request(
        self,
        method: bytes,
        target: bytes,
        body: bytes = b"",
        *,
        timeout: float,
        keep_waiting: KeepWaiting = None,
    ) -> Response:
        """Send a request and read its whole response. Never repeats it: see the module docstring."""
        self.send(method, target, body, timeout=timeout)
        return self.read_response(timeout, keep_waiting, head=method == b"HEAD")

    def read_response(
        self, timeout: float, keep_waiting: KeepWaiting = None, *, head: bool = False
    ) -> Response:
        """The response to the request sent last. `timeout` bounds each wait for bytes."""
        try:
            status, headers = self._read_head(timeout, keep_waiting)
            if head or status in (204, 304):
                body = b""
                self._done(headers)
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                body = b"".join(self._chunks(keep_waiting))
                self._done(headers)
            else:
                body = self.read_body(headers, keep_waiting)
        except BaseException:
            self.close()
            raise
        return Response(status, headers, body)

    def _done(self, headers: dict[str, str]) -> None:
        """A response was read whole: keep the connection for the next request unless it says not to."""
        if "close" in headers.get("connection", "").lower():
            self.close()
        else:
            self._idle_since = time.monotonic()

    def open_stream(
        self, method: bytes, target: bytes, *, timeout: float, keep_waiting: KeepWaiting = None
    ) -> tuple[Response, Iterator[bytes]]:
        """Send a request and read the response head; the body comes as its HTTP chunks, each as
        soon as it has arrived whole (etcd's stream watch flushes one chunk per event).

        The response's `body` is empty. A non-chunked body is read whole and is the only chunk.
        Abandoning the iterator early leaves the connection unusable: close() it.
        """
        self.send(method, target, timeout=timeout)
        try:
            status, headers = self._read_head(timeout, keep_waiting)
        except BaseException:
            self.close()
            raise
        response = Response(status, headers, b"")
        if "chunked" not in headers.get("transfer-encoding", "").lower():
            return response, iter([self.read_body(headers, keep_waiting)])
        return response, self._stream_chunks(headers, keep_waiting)

    def read_body(self, headers: dict[str, str], keep_waiting: KeepWaiting = None) -> bytes:
        """The non-chunked body of a response whose head was read by open_stream()."""
        try:
            if "content-length" in headers:
                body = self._read_exact(_content_length(headers), keep_waiting)
                self._done(headers)
            else:
                body = self._read_to_eof(keep_waiting)  # the end of the body is the connection's
                self.close()
        except BaseException:
            self.close()
            raise
        return body

    def _stream_chunks(self, headers: dict[str, str], keep_waiting: KeepWaiting) -> Iterator[bytes]:
        try:
            yield from self._chunks(keep_waiting)
        except Exception:  # not GeneratorExit: by then the owner may have reconnected
            self.close()
            raise
        self._done(headers)

    def readable(self) -> bool:
        """From the owner, between reads: have new bytes (or the server's close) arrived?"""
        sock = self._sock
        if sock is None:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True  # decrypted bytes that select() cannot see
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True  # closed under us: the next read reports it

    def abort(self) -> None:
        """From any thread: make a blocked read or a later send fail at once. The owner closes."""
        self._aborted = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                # The plain socket's shutdown, also for TLS: SSLSocket.shutdown() would drop its TLS
                # state under the feet of the thread reading it.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._buf.clear()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- reading -----------------------------------------------------------------------------------

    def _set_timeout(self, sock: socket.socket, timeout: float) -> None:
        if timeout != self._timeout:  # settimeout() is a system call: skip it when nothing changes
            sock.settimeout(timeout)
            self._timeout = timeout

    def _fill(self, keep_waiting: KeepWaiting) -> None:
        """Append what the socket has (waiting for it) to the buffer."""
        sock = self._sock
        if sock is None:
            raise ConnectionClosed("connection closed")
        while True:
            try:
                n = sock.recv_into(self._rview)
            except TimeoutError:
                if keep_waiting is not None and not self._aborted and keep_waiting():
                    continue
                raise
            if not n:
                raise ConnectionClosed(
                    "the connection was closed" if self._aborted else "the server closed the connection"
                )
            self._buf += self._rview[:n]
            return

    def _read_head(self, timeout: float, keep_waiting: KeepWaiting) -> tuple[int, dict[str, str]]:
        sock = self._sock
        if sock is None:
            raise ConnectionClosed("connection closed")
        self._set_timeout(sock, timeout)
        buf = self._buf
        while True:
            scanned = 0
            while (end := buf.find(b"\r\n\r\n", scanned)) < 0:
                if len(buf) > _MAX_HEAD:
                    raise ProtocolError("the response head is too long: not an etcd server")
                scanned = max(0, len(buf) - 3)
                self._fill(keep_waiting)
            lines = bytes(buf[:end]).split(b"\r\n")
            del buf[: end + 4]
            version, _, rest = lines[0].partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                raise ProtocolError(f"not an HTTP/1.x response: {bytes(lines[0][:60])!r}")
            status = int(code)
            if not 100 <= status < 200:
                break  # interim 1xx responses have no body: the real one follows
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise ProtocolError(f"malformed response header line {bytes(line[:60])!r}")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        if version == b"HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
            headers["connection"] = "close"
        return status, headers

    def _line(self, keep_waiting: KeepWaiting) -> bytes:
        buf = self._buf
        scanned = 0
        while (end := buf.find(b"\r\n", scanned)) < 0:
            if len(buf) > _MAX_HEAD:
                raise ProtocolError("a chunk header line is too long")
            scanned = max(0, len(buf) - 1)
            self._fill(keep_waiting)
        line = bytes(buf[:end])
        del buf[: end + 2]
        return line

    def _read_exact(self, n: int, keep_waiting: KeepWaiting) -> bytes:
        buf = self._buf
        while len(buf) < n:
            self._fill(keep_waiting)
        if len(buf) == n:
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:n])
            del buf[:n]
        return data

    def _chunks(self, keep_waiting: KeepWaiting) -> Iterator[bytes]:
        """The data of each chunk of a chunked body, then its trailer is skipped."""
        while True:
            size_field = self._line(keep_waiting).partition(b";")[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_field[:20]!r}") from None
            if size == 0:
                while self._line(keep_waiting):  # trailer fields, up to an empty line
                    pass
                return
            data = self._read_exact(size + 2, keep_waiting)
            if data[-2:] != b"\r\n":
                raise ProtocolError("a chunk does not end with CRLF")
            yield data[:-2]

    def _read_to_eof(self, keep_waiting: KeepWaiting) -> bytes:
        with contextlib.suppress(ConnectionClosed):
            while True:
                self._fill(keep_waiting)
        data = bytes(self._buf)
        self._buf.clear()
        return data


def _content_length(headers: dict[str, str]) -> int:
    try:
        n = int(headers["content-length"])
    except ValueError:
        n = -1
    if n < 0:
        raise ProtocolError(f"bad Content-Length {headers['content-length'][:20]!r}")
    return n


_STOP = None


class Pool:
    """Requests run on up to `size` connections, one thread each; callbacks run on those threads.

    Threads (and their connections) are started as requests pile up, so a pool that serves one
    request at a time uses one connection. Each request is sent once: a failure goes to its callback.
    """

    def __init__(self, new_connection: Callable[[], Connection], size: int, *, name: str = "http1") -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self._new_connection = new_connection
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[tuple[bytes, bytes, bytes, float, Done] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0  # submitted and not yet completed
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, method: bytes, target: bytes, body: bytes, timeout: float, done: Done) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is closed")
            self._pending += 1
            if self._pending > len(self._threads) and len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        self._queue.put((method, target, body, timeout, done))

    def _serve(self) -> None:
        conn = self._new_connection()
        try:
            while (job := self._queue.get()) is not _STOP:
                method, target, body, timeout, done = job
                try:
                    response = conn.request(method, target, body, timeout=timeout)
                except Exception as e:
                    result: tuple[Response | None, BaseException | None] = (None, e)
                else:
                    result = (response, None)
                with self._lock:
                    self._pending -= 1
                try:
                    done(*result)
                except Exception:
                    traceback.print_exc()  # a caller's bug: report it, keep serving the others
        finally:
            conn.close()

    def close(self) -> None:
        """Finish every request submitted so far, then close the connections."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()
