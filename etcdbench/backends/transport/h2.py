"""A lean HTTP/2 client for etcd's hot gRPC calls: puts and deletes in flight, and the watch stream.

Why not grpcio for these: its Python layer costs ~100 µs of CPU per unary call and ~90 µs per
streamed message on a 2-core machine (benchmarks/RESULTS.md), as much as etcd spends serving them, so
a benchmark built on it measures its own client. These paths need little of gRPC: a fixed header
block, length-prefixed protobuf messages in DATA frames, a status in the trailers. Everything else
(admin calls, the auth handshake) stays on grpcio.

Scope, deliberately small: HTTP/2 with prior knowledge on http:// (what a gRPC server there speaks),
or over TLS with ALPN "h2" on https://; our header blocks as literals that never touch the server's
dynamic table, and SETTINGS_HEADER_TABLE_SIZE 0 so the server's blocks are self-contained and can be
cached by their bytes. Receive windows are opened wide once (and topped up), so flow control only
ever limits what we send.

TLS, and why it is safe for OpenSSL: an OpenSSL SSL object must never be used by two threads at once,
and a connection here is written by many threads (every writer thread sends its puts) while one
reader thread reads it. So TLS is not an `ssl.SSLSocket` (whose send and recv would enter the same
SSL object from two threads) but an `ssl.SSLObject` between two `ssl.MemoryBIO`s (`TlsChannel`):
every call on the SSLObject and its BIOs is made under one lock, held only for the memory-to-memory
encryption or decryption, and all socket I/O happens outside it. Ciphertext is taken out of the
outgoing BIO only under the connection's send lock and sent before that lock is released, so TLS
records reach the socket in the order OpenSSL made them, whichever thread made them.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TypeVar, cast
from urllib.parse import unquote

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_ENABLE_PUSH, SETTINGS_MAX_CONCURRENT_STREAMS = 1, 2, 3
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = 4, 5
CANCEL = 0x8  # RST_STREAM error code
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535
# Our receive windows start at MAX_WINDOW; once this much has been consumed it is given back.
WINDOW_TOP_UP = 2**30
CONNECT_TIMEOUT_S = 5.0
READ_SIZE = 262144  # bytes asked of the socket per read
TLS_READ = 16384  # plaintext asked of OpenSSL per read: a TLS record holds at most 16 KiB
IDLE_CHECK_S = 0.25
FRAME = struct.Struct(">I B I")  # 24-bit length in the top of the first word: see _frames
GRPC_PREFIX = struct.Struct(">BI")
_SIZE_UPDATES = {bytes([b]) for b in range(0x20, 0x40)}  # first bytes of an HPACK table size update
STATUS_NAMES = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    16: "UNAUTHENTICATED",
}


class ConnectionLost(Exception):
    """The connection failed or the server closed it: every call on it failed with this."""


class GrpcStatus(Exception):
    """A call ended with a non-OK gRPC status (or a stream was reset)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{STATUS_NAMES.get(code, code)}: {message}")
        self.code = code
        self.message = message


Done = Callable[[BaseException | None], None]
T = TypeVar("T")


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name: int | bytes, value: bytes) -> bytes:
    """A header as a literal without indexing: no state shared with the server's decoder."""
    # The name is an index into the static table, or a literal.
    head = _hpack_int(name, 4, 0) if isinstance(name, int) else b"\x00" + _hpack_int(len(name), 7, 0) + name
    return head + _hpack_int(len(value), 7, 0) + value


def request_headers(
    authority: str, path: str, metadata: tuple[tuple[str, str], ...] = (), *, tls: bool = False
) -> bytes:
    """The header block of a gRPC call, encoded once and sent with every call to `path`."""
    # :method POST, :scheme http or https (static table 3, and 6 or 7)
    block = b"\x83\x87" if tls else b"\x83\x86"
    block += _literal(4, path.encode()) + _literal(1, authority.encode())  # :path, :authority
    block += _literal(31, b"application/grpc") + _literal(b"te", b"trailers")
    for name, value in metadata:
        block += _literal(name.encode(), value.encode())
    return block


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return FRAME.pack(len(payload) << 8 | kind, flags, stream_id) + payload


def grpc_message(message: bytes) -> bytes:
    return GRPC_PREFIX.pack(0, len(message)) + message


def client_context(cacert: str | None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A TLS client context for etcd: verifies the server against `cacert` (and its name or IP),
    presents `cert`/`key` if given, offers only HTTP/2 by ALPN. OSError or ValueError for bad files.

    One context serves every connection of a client: OpenSSL allows SSL objects to be made from one
    context by several threads, as long as the context is not changed meanwhile (it never is).
    """
    ctx = ssl.create_default_context(cafile=cacert)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # HTTP/2 forbids older versions (RFC 9113 9.2)
    if cert:
        ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _stream_limit(data: bytes, default: int) -> int:
    """SETTINGS_MAX_CONCURRENT_STREAMS from the server's first frame in `data` (its SETTINGS), so that
    the calls made before the reader has run already respect it; `default` if it is not there."""
    if len(data) < 9:
        return default
    word, flags, _ = FRAME.unpack_from(data)
    length, kind = word >> 8, word & 0xFF
    if kind != SETTINGS or flags & ACK or len(data) < 9 + length:
        return default
    for i in range(9, 9 + length - 5, 6):
        key, value = struct.unpack_from(">HI", data, i)
        if key == SETTINGS_MAX_CONCURRENT_STREAMS:
            default = value
    return default


class TlsChannel:
    """TLS on a plain socket through an `ssl.SSLObject` and two `ssl.MemoryBIO`s (see the module
    docstring): OpenSSL is only entered under `_lock`, and only for memory-to-memory work.

    `encrypt` is called only under the owning connection's send lock, which also covers sending its
    result; `recv` is called by the one reading thread. The handshake is done in the constructor,
    before any other thread knows the channel; ssl.SSLError if it fails or ALPN did not choose h2.
    """

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self._lock = threading.Lock()
        self._eof = False
        self.want_flush = False  # recv() left records (a TLS 1.3 KeyUpdate answer) to be sent
        self._raw = bytearray(65536)  # recv()'s: ciphertext from the socket
        self._plain = bytearray(TLS_READ)  # recv()'s: plaintext from OpenSSL
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if self._outgoing.pending:
                    sock.sendall(self._outgoing.read())
                data = sock.recv(65536)
                if not data:
                    raise ssl.SSLEOFError(
                        "the server closed the connection during the TLS handshake"
                    ) from None
                self._incoming.write(data)
        if self._outgoing.pending:
            sock.sendall(self._outgoing.read())
        if self._obj.selected_alpn_protocol() != "h2":
            raise ssl.SSLError("the server did not choose HTTP/2 (ALPN h2) for TLS")

    @property
    def alpn(self) -> str | None:
        with self._lock:
            return self._obj.selected_alpn_protocol()

    def encrypt(self, data: bytes) -> bytes:
        """The ciphertext of `data`, with any records OpenSSL had queued before it (send lock held)."""
        with self._lock:
            if data:
                self._obj.write(data)
            self.want_flush = False
            return self._outgoing.read()

    def recv(self, size: int) -> bytes:
        """Up to about `size` bytes of plaintext, waiting for the socket (b"" at the end of the
        connection). Raises what the socket raises (TimeoutError included) and ssl.SSLError.

        Only the reading thread calls it, so its two buffers are its own: received bytes and
        plaintext land in them without a fresh allocation per call (a 256 kB bytes object per
        recv cost more than the decryption, in page faults).
        """
        if len(self._raw) < size:
            self._raw = bytearray(size)
        raw = memoryview(self._raw)
        plain = memoryview(self._plain)
        out = bytearray()
        while True:
            if self._eof:
                return b""
            n = self._sock.recv_into(raw[:size])  # outside the lock: OpenSSL is not involved
            with self._lock:
                if n:
                    self._incoming.write(raw[:n])
                else:
                    self._incoming.write_eof()
                while True:
                    try:
                        # With a buffer, read() returns a count (typeshed says bytes).
                        k = cast(int, self._obj.read(TLS_READ, self._plain))
                    except ssl.SSLWantReadError:
                        break
                    except ssl.SSLZeroReturnError:  # the server's close_notify
                        self._eof = True
                        break
                    except ssl.SSLEOFError:  # the socket ended without close_notify
                        self._eof = True
                        break
                    out += plain[:k]
                    if not self._incoming.pending and not self._obj.pending():
                        break
                if self._outgoing.pending:
                    self.want_flush = True
            if out or self._eof or not n:
                return bytes(out)


class Connection:
    """One HTTP/2 connection, over TCP or TLS: frame I/O, settings, pings and flow control.

    Sending is thread-safe. Reading is done by one thread at a time through `frames()`, which
    answers the connection-level frames itself and yields the rest.

    With `tls`, the constructor also waits for the server's first frame: a server that refuses our
    client certificate (which TLS 1.3 tells only after the handshake) fails here, with ssl.SSLError.
    """

    def __init__(self, host: str, port: int, timeout_s: float, tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls: TlsChannel | None = None
        self._early = b""  # plaintext read by the constructor, before frames() ran
        if tls is not None:
            try:
                self.tls = TlsChannel(self.sock, tls, host)
            except BaseException:
                self.sock.close()
                raise
        self._lock = threading.Lock()
        self._send_window = DEFAULT_WINDOW  # the server's connection window for our DATA
        self._initial_window = DEFAULT_WINDOW  # the server's window for each new stream
        self._stream_windows: dict[int, int] = {}
        self._max_frame = 16384
        self._queue: deque[tuple[int, memoryview, bool]] = deque()  # DATA waiting for window
        self._held: list[bytes] = []  # frames of held streams (open_stream's `hold`)
        self._next_stream = 1
        self._active: set[int] = set()  # streams started and not yet forgotten
        # Streams waiting for a slot under the server's limit, in the order they were opened.
        self._deferred: dict[int, tuple[bytes, bytes | None, bool]] = {}
        self._max_streams = MAX_WINDOW  # until the server's SETTINGS say otherwise
        self._received = 0  # DATA bytes taken from our connection window since the last top-up
        self._stream_received: dict[int, int] = {}
        self.closed: BaseException | None = None
        self._decoder = hpack.Decoder()
        self._decoder.max_allowed_table_size = 0
        self._block_cache: dict[bytes, list[tuple[bytes, bytes]]] = {}
        settings = struct.pack(
            ">HIHIHI",
            SETTINGS_HEADER_TABLE_SIZE,
            0,
            SETTINGS_ENABLE_PUSH,
            0,
            SETTINGS_INITIAL_WINDOW_SIZE,
            MAX_WINDOW,
        )
        preface = (
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - DEFAULT_WINDOW))
        )
        if self.tls is None:
            self.sock.sendall(preface)
            return
        try:
            self.sock.sendall(self.tls.encrypt(preface))
            self._early = self.tls.recv(65536)  # the server's SETTINGS, or its refusal of us
            if not self._early:
                raise ssl.SSLEOFError("the server closed the connection after the TLS handshake")
            self._max_streams = _stream_limit(self._early, self._max_streams)
        except BaseException:
            self.sock.close()
            raise

    # -- sending -------------------------------------------------------------------------------

    def open_stream(self, headers: bytes, message: bytes | None, end_stream: bool, hold: bool = False) -> int:
        """Start a stream: HEADERS, then `message` (gRPC-framed by the caller) as DATA if given.

        With `hold`, a stream that fits the windows is kept back until the next send or flush().
        A stream beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS (Go's net/http server, which
        serves etcd's gRPC over TLS, allows 250) waits, in order, until an earlier one is forgotten.
        """
        with self._lock:
            if self.closed is not None:
                raise ConnectionLost(str(self.closed))
            stream_id = self._next_stream
            self._next_stream += 2
            if self._deferred or len(self._active) >= self._max_streams:
                self._deferred[stream_id] = (headers, message, end_stream)
            else:
                self._start(stream_id, headers, message, end_stream, hold)
            return stream_id

    def _start(
        self, stream_id: int, headers: bytes, message: bytes | None, end_stream: bool, hold: bool
    ) -> None:
        """Send a stream's HEADERS and first DATA (lock held)."""
        self._active.add(stream_id)
        self._stream_windows[stream_id] = self._initial_window
        flags = END_HEADERS | (END_STREAM if end_stream and message is None else 0)
        out = [frame(HEADERS, flags, stream_id, headers)]
        size = 0 if message is None else len(message)
        windows = min(self._send_window, self._initial_window, self._max_frame)
        if message is not None and size and not self._queue and size <= windows:
            # The usual case, a put: both frames in one send, no queueing.
            self._send_window -= size
            self._stream_windows[stream_id] -= size
            out.append(frame(DATA, END_STREAM if end_stream else 0, stream_id, message))
            if hold:
                self._held += out
            else:
                self._sendall(b"".join(out))
        elif message is not None:
            self._queue.append((stream_id, memoryview(message), end_stream))
            self._send_queued(out)
        else:
            self._sendall(b"".join(out))

    def _start_deferred(self) -> None:
        """Start waiting streams, oldest first, as far as the server's stream limit allows (lock held)."""
        while self._deferred and len(self._active) < self._max_streams and self.closed is None:
            stream_id = next(iter(self._deferred))
            headers, message, end_stream = self._deferred.pop(stream_id)
            self._start(stream_id, headers, message, end_stream, False)

    def cancel_stream(self, stream_id: int) -> None:
        """Reset a stream (RST_STREAM CANCEL); one still waiting for a slot is merely dropped."""
        with self._lock:
            if self._deferred.pop(stream_id, None) is None and self.closed is None:
                self._sendall(frame(RST_STREAM, 0, stream_id, struct.pack(">I", CANCEL)))

    def flush(self) -> None:
        """Send the held streams (a failure ends the connection, and its reader fails the calls)."""
        with self._lock:
            if (self._held or (self.tls is not None and self.tls.want_flush)) and self.closed is None:
                with contextlib.suppress(ConnectionLost):
                    self._sendall(b"")

    def send_data(self, stream_id: int, message: bytes, end_stream: bool = False) -> None:
        with self._lock:
            if self.closed is not None:
                raise ConnectionLost(str(self.closed))
            self._queue.append((stream_id, memoryview(message), end_stream))
            self._send_queued([])

    def send_frame(self, kind: int, flags: int, stream_id: int, payload: bytes = b"") -> None:
        with self._lock:
            if self.closed is None:
                self._sendall(frame(kind, flags, stream_id, payload))

    def forget(self, stream_id: int) -> None:
        """The stream is over: drop its flow-control state, and start a waiting stream in its slot."""
        with self._lock:
            self._stream_windows.pop(stream_id, None)
            self._stream_received.pop(stream_id, None)
            self._deferred.pop(stream_id, None)
            if stream_id in self._active:
                self._active.discard(stream_id)
                if self._deferred and self.closed is None:
                    with contextlib.suppress(ConnectionLost):  # the reader ends the connection
                        self._start_deferred()

    def _send_queued(self, out: list[bytes]) -> None:
        """Send queued DATA in order as far as the windows allow (lock held)."""
        while self._queue and self._send_window > 0:
            stream_id, data, end = self._queue[0]
            window = self._stream_windows.get(stream_id)
            if window is None:  # the stream was reset meanwhile
                self._queue.popleft()
                continue
            n = min(len(data), self._send_window, window, self._max_frame)
            if n == 0 and data:
                break  # this stream waits for its own window: keep order, wait for an update
            last = n == len(data)
            out.append(frame(DATA, END_STREAM if last and end else 0, stream_id, bytes(data[:n])))
            self._send_window -= n
            self._stream_windows[stream_id] = window - n
            if last:
                self._queue.popleft()
            else:
                self._queue[0] = (stream_id, data[n:], end)
        if out:
            self._sendall(b"".join(out))

    def _sendall(self, data: bytes) -> None:
        if self._held:  # held streams first: a new stream's id must exceed every earlier one's
            data = b"".join(self._held) + data
            self._held.clear()
        try:
            if self.tls is not None:  # encrypted and sent under the send lock: records stay in order
                data = self.tls.encrypt(data)
            if data:
                self.sock.sendall(data)
        except OSError as exc:
            # A partly sent frame leaves the connection unusable: wake its reader to end it.
            self.closed = self.closed or exc
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            raise ConnectionLost(f"send failed: {exc}") from None

    # -- receiving -----------------------------------------------------------------------------

    def decode_headers(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """Decode a header block; blocks are cached once the server's dynamic table is off.

        With our SETTINGS_HEADER_TABLE_SIZE of 0 the server's encoder emits a table size update and
        then never indexes, so a block's meaning depends on its bytes alone.
        """
        hit = self._block_cache.get(block)
        if hit is not None:
            return hit
        headers: list[tuple[bytes, bytes]] = self._decoder.decode(block, raw=True)  # type: ignore[assignment]
        table = self._decoder.header_table
        stateless = table.maxsize == 0 and not table.dynamic_entries and block[:1] not in _SIZE_UPDATES
        if stateless and len(self._block_cache) < 256:
            self._block_cache[block] = headers
        return headers

    def frames(self, on_idle: Callable[[], None] | None = None) -> Iterator[tuple[int, int, int, bytes]]:
        """Yield (type, flags, stream_id, payload) of HEADERS (CONTINUATIONs joined), DATA and
        RST_STREAM frames until the connection ends (then ConnectionLost).

        With `on_idle`, the socket's timeout wakes the reader to call it (for deadlines).
        """
        early, self._early = self._early, b""
        buf = bytearray()
        pending_headers: tuple[int, int, bytearray] | None = None
        tls = self.tls
        recv: Callable[[int], bytes | memoryview]
        if tls is None:  # into one buffer: a fresh 256 kB bytes object per recv costs page faults
            raw = memoryview(bytearray(READ_SIZE))
            recv_into = self.sock.recv_into

            def recv(size: int) -> memoryview:
                return raw[: recv_into(raw[:size])]

        else:
            recv = tls.recv
        chunk: bytes | memoryview
        while True:
            try:
                if early:  # what the constructor read: the server's first frames
                    chunk, early = early, b""
                else:
                    chunk = recv(READ_SIZE)
            except TimeoutError:
                if on_idle is None or self.closed is not None:
                    raise ConnectionLost(str(self.closed or "no data from the server")) from None
                on_idle()
                continue
            except OSError as exc:  # ssl.SSLError included
                self.closed = self.closed or exc
                raise ConnectionLost(str(exc)) from None
            if tls is not None and tls.want_flush:
                self.flush()  # records OpenSSL made while reading: sent under the send lock
            if not chunk:
                self.closed = self.closed or ConnectionLost("connection closed by the server")
                raise ConnectionLost(str(self.closed))
            # Frames are read from a view: of the chunk itself when nothing was left over (the usual
            # case, no copy), else of `buf` with the chunk appended. Each payload is copied once, out
            # of the view, into a bytes object of its own.
            if buf:
                buf += chunk
                view = memoryview(buf)
            else:
                view = memoryview(chunk)
            size = len(view)
            pos = 0
            while size - pos >= 9:
                word, flags, stream_id = FRAME.unpack_from(view, pos)
                length, kind = word >> 8, word & 0xFF
                end = pos + 9 + length
                if end > size:
                    break
                payload = bytes(view[pos + 9 : end])
                pos = end
                stream_id &= MAX_WINDOW
                if kind == DATA:
                    self._account(stream_id, length)
                    if flags & PADDED:
                        payload = payload[1 : len(payload) - payload[0]]
                    yield kind, flags, stream_id, payload
                elif kind == HEADERS:
                    if flags & PADDED:
                        payload = payload[1 : len(payload) - payload[0]]
                    if flags & PRIORITY:
                        payload = payload[5:]
                    if flags & END_HEADERS:
                        yield kind, flags, stream_id, payload
                    else:
                        pending_headers = (stream_id, flags, bytearray(payload))
                elif kind == CONTINUATION and pending_headers is not None:
                    pending_headers[2].extend(payload)
                    if flags & END_HEADERS:
                        sid, first_flags, block = pending_headers
                        pending_headers = None
                        yield HEADERS, first_flags | END_HEADERS, sid, bytes(block)
                elif kind == RST_STREAM:
                    yield kind, flags, stream_id, payload
                else:
                    self._control(kind, flags, stream_id, payload)
            if buf:
                view.release()  # a bytearray with a view on it cannot be resized
                del buf[:pos]
            elif pos < size:  # a partial frame: kept, since the chunk's buffer is reused
                buf = bytearray(view[pos:])

    def _account(self, stream_id: int, length: int) -> None:
        """Give back receive window once a large share of it has been used."""
        self._received += length
        if self._received >= WINDOW_TOP_UP:
            self.send_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._received))
            self._received = 0
        if stream_id in self._stream_windows:
            got = self._stream_received.get(stream_id, 0) + length
            if got >= WINDOW_TOP_UP:
                self.send_frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", got))
                got = 0
            self._stream_received[stream_id] = got

    def _control(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            with self._lock:
                for i in range(0, len(payload) - 5, 6):
                    key, value = struct.unpack_from(">HI", payload, i)
                    if key == SETTINGS_INITIAL_WINDOW_SIZE:
                        delta = value - self._initial_window
                        self._initial_window = value
                        for sid in self._stream_windows:
                            self._stream_windows[sid] += delta
                    elif key == SETTINGS_MAX_FRAME_SIZE:
                        self._max_frame = value
                    elif key == SETTINGS_MAX_CONCURRENT_STREAMS:
                        self._max_streams = value
                if self.closed is None:
                    self._sendall(frame(SETTINGS, ACK, 0))
                    self._send_queued([])
                    self._start_deferred()
        elif kind == PING and not flags & ACK:
            self.send_frame(PING, ACK, 0, payload)
        elif kind == WINDOW_UPDATE:
            (increment,) = struct.unpack(">I", payload)
            with self._lock:
                if stream_id == 0:
                    self._send_window += increment & MAX_WINDOW
                elif stream_id in self._stream_windows:
                    self._stream_windows[stream_id] += increment & MAX_WINDOW
                if self.closed is None:
                    self._send_queued([])
        elif kind == GOAWAY:
            code = struct.unpack_from(">I", payload, 4)[0]
            # The server finishes what it has begun and takes nothing new: later calls reconnect.
            self.closed = self.closed or ConnectionLost(f"server sent GOAWAY (code {code})")

    def close(self) -> None:
        with self._lock:
            self.closed = self.closed or ConnectionLost("closed")
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def call_status(headers: list[tuple[bytes, bytes]]) -> GrpcStatus | None:
    """None for an OK call; the failure named by a final header block otherwise."""
    status = message = b""
    for name, value in headers:
        if name == b"grpc-status":
            status = value
        elif name == b"grpc-message":
            message = value
        elif name == b":status" and value != b"200":
            return GrpcStatus(14, f"HTTP status {value.decode()}")
    if status == b"0":
        return None
    return GrpcStatus(int(status) if status.isdigit() else 2, unquote(message.decode()))


def reset_status(payload: bytes) -> GrpcStatus:
    """What a call fails with when the server resets its stream (RST_STREAM's error code)."""
    (code,) = struct.unpack(">I", payload)
    return GrpcStatus(14, f"stream reset by the server (code {code})")


class UnaryClient:
    """Unary calls in flight on one connection, answered by a reader thread that runs callbacks.

    A call that gets no answer within `timeout_s` fails with TimeoutError (and its stream is reset),
    so a paused server fails calls instead of holding them. A lost connection fails every call on
    it with ConnectionLost; the next call opens a new connection, to the next address when there are
    several (a cluster's members).
    """

    def __init__(
        self, addresses: tuple[tuple[str, int], ...], timeout_s: float, tls: ssl.SSLContext | None = None
    ) -> None:
        """`tls`: connect over TLS with this context (see client_context), else over TCP."""
        self._addresses = addresses
        self._tls = tls
        self._next = 0  # after a failure, connect to the next address (another cluster member)
        self._timeout_ns = round(timeout_s * 1e9)
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._calls: dict[int, tuple[Done, int, Connection]] = {}  # stream -> (callback, deadline)
        # Calls that want their answer: stream -> (callback with the response message, DATA so far).
        self._replies: dict[int, tuple[Callable[[bytes], None], bytearray]] = {}
        self._closing = False
        self._holder: int | None = None  # the thread whose calls wait for flush()

    def hold(self) -> None:
        """From now on the calling thread's calls are held until flush(): a late writer then sends
        all it owes in one system call, as Go's client coalesces writes. Other threads' calls (retries)
        are sent at once, and take the held ones along."""
        self._holder = threading.get_ident()

    def flush(self) -> None:
        with self._lock:
            conn = self._conn
        if conn is not None:
            conn.flush()

    def call(
        self, headers: bytes, message: bytes, done: Done, reply: Callable[[bytes], None] | None = None
    ) -> None:
        """Send one request; `done(None)` or `done(exception)` is called from the reader thread,
        after `reply`, if given, got the response message of a call that succeeded."""
        try:
            with self._lock:
                conn = self._connection()
                deadline = time.monotonic_ns() + self._timeout_ns
                # Registered under the lock, before the reader can see the answer.
                hold = self._holder == threading.get_ident()
                stream_id = conn.open_stream(headers, grpc_message(message), end_stream=True, hold=hold)
                self._calls[stream_id] = (done, deadline, conn)
                if reply is not None:
                    self._replies[stream_id] = (reply, bytearray())
        except (OSError, ConnectionLost) as exc:
            done(exc if isinstance(exc, ConnectionLost) else ConnectionLost(f"connect failed: {exc}"))

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed is not None or conn._next_stream > MAX_WINDOW - 2:
            if self._closing:
                raise ConnectionLost("client closed")
            if conn is not None:
                self._next += 1
            address = self._addresses[self._next % len(self._addresses)]
            try:
                conn = Connection(*address, timeout_s=CONNECT_TIMEOUT_S, tls=self._tls)
            except OSError:
                self._next += 1
                raise
            self._conn = conn
            conn.sock.settimeout(IDLE_CHECK_S)  # the reader wakes this often to expire late calls
            threading.Thread(target=self._read, args=(conn,), daemon=True, name="etcdbench-h2").start()
        return conn

    def _finish(self, conn: Connection, stream_id: int, result: BaseException | None) -> None:
        with self._lock:
            entry = self._calls.pop(stream_id, None)
            answer = self._replies.pop(stream_id, None)
        conn.forget(stream_id)
        if entry is not None:
            if answer is not None and result is None and len(answer[1]) >= GRPC_PREFIX.size:
                # An answer we cannot read costs its revision, never the callback.
                with contextlib.suppress(Exception):
                    answer[0](bytes(answer[1][GRPC_PREFIX.size :]))
            entry[0](result)

    def _expire(self, conn: Connection) -> None:
        now = time.monotonic_ns()
        with self._lock:
            late = [sid for sid, (_, deadline, c) in self._calls.items() if c is conn and deadline <= now]
        for sid in late:
            conn.cancel_stream(sid)
            self._finish(conn, sid, TimeoutError(f"no answer within {self._timeout_ns / 1e9:g} s"))

    def _read(self, conn: Connection) -> None:
        error: BaseException
        try:
            checked = time.monotonic_ns()
            for kind, flags, stream_id, payload in conn.frames(on_idle=lambda: self._expire(conn)):
                if kind == HEADERS:
                    headers = conn.decode_headers(payload)  # every block: the decoder keeps state
                    if flags & END_STREAM:
                        self._finish(conn, stream_id, call_status(headers))
                elif kind == RST_STREAM:
                    self._finish(conn, stream_id, reset_status(payload))
                elif kind == DATA and (answer := self._replies.get(stream_id)) is not None:
                    answer[1].extend(payload)
                now = time.monotonic_ns()
                if now - checked > IDLE_CHECK_S * 1e9:  # a busy connection never idles: check anyway
                    checked = now
                    self._expire(conn)
            raise AssertionError("unreachable")  # frames() only ends by raising
        except ConnectionLost as exc:
            error = exc
        except Exception as exc:  # a protocol error: fail the calls rather than the process
            error = ConnectionLost(f"{type(exc).__name__}: {exc}")
            conn.closed = conn.closed or error
        with self._lock:
            mine = [sid for sid, (_, _, c) in self._calls.items() if c is conn]
        for sid in mine:
            self._finish(conn, sid, error)
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class StreamCall:
    """One bidirectional gRPC stream on a connection of its own, read by the caller's thread."""

    def __init__(self, address: tuple[str, int], headers: bytes, tls: ssl.SSLContext | None = None) -> None:
        self._conn = Connection(*address, timeout_s=CONNECT_TIMEOUT_S, tls=tls)
        self._conn.sock.settimeout(None)  # a quiet watch is normal; cancel() wakes the reader
        self._stream = self._conn.open_stream(headers, None, end_stream=False)

    def send(self, message: bytes) -> None:
        self._conn.send_data(self._stream, grpc_message(message))

    def __iter__(self) -> Iterator[bytes]:
        """Each message the server sends; ends with GrpcStatus or ConnectionLost, never quietly."""
        return self.messages(bytes)

    def messages(self, parse: Callable[[memoryview], T]) -> Iterator[T]:
        """`parse(view)` of each message the server sends, as __iter__. The view is valid only during
        the call: `parse` copies what it keeps (protobuf's FromString does).

        A message that came whole in one DATA frame (the usual case) is parsed straight from that
        frame's payload, with no copy of its own; one split across frames is joined first.
        """
        buf = bytearray()
        unpack = GRPC_PREFIX.unpack_from
        for kind, flags, stream_id, payload in self._conn.frames():
            if stream_id != self._stream:
                continue
            if kind == DATA:
                if not buf:
                    with memoryview(payload) as view:
                        end, pos = len(payload), 0
                        while end - pos >= 5:
                            _, size = unpack(payload, pos)
                            if end < pos + 5 + size:
                                break
                            item = parse(view[pos + 5 : pos + 5 + size])
                            pos += 5 + size
                            yield item
                    if pos == end:
                        continue
                    payload = payload[pos:]  # a message that goes on in the next frame
                buf += payload
                while len(buf) >= 5:
                    _, size = unpack(buf)
                    if len(buf) < 5 + size:
                        break
                    with memoryview(buf) as view:
                        item = parse(view[5 : 5 + size])
                    del buf[: 5 + size]
                    yield item
            elif kind == HEADERS:
                headers = self._conn.decode_headers(payload)
                if flags & END_STREAM:
                    raise call_status(headers) or GrpcStatus(0, "stream ended")
            elif kind == RST_STREAM:
                raise reset_status(payload)
        raise ConnectionLost("connection ended")

    def cancel(self) -> None:
        """Callable from any thread: the reader's iteration ends with ConnectionLost."""
        self._conn.close()
