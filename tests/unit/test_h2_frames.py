"""Our lean HTTP/2 gRPC client against no etcd: request headers decoded as a server would, flow control,
settings, ping and the stream limit against a scripted peer."""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
from typing import cast

import hpack

from etcdbench.backends.transport.h2 import (
    ACK,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    SETTINGS,
    WINDOW_UPDATE,
    Connection,
    ConnectionLost,
    GrpcStatus,
    StreamCall,
    _literal,
    frame,
    grpc_message,
    request_headers,
)
from etcdbench.backends.v3 import PUT_PATH


def test_request_headers_decode_to_a_grpc_call() -> None:
    block = request_headers("127.0.0.1:2379", PUT_PATH, (("token", "abc" * 50),))
    # hpack annotates the result as (bytes, bytes) pairs; without raw=True it decodes them to str.
    headers = cast("list[tuple[str, str]]", hpack.Decoder().decode(block))
    assert headers == [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", PUT_PATH),
        (":authority", "127.0.0.1:2379"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("token", "abc" * 50),  # a value longer than 127 bytes: a multi-byte HPACK length
    ]


class ScriptedPeer:
    """The server end of one connection, driven frame by frame by a test."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        # (host, port): typed, so that `*address` fills exactly Connection's first two parameters
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.sock: socket.socket | None = None

    def accept(self) -> None:
        self.sock, _ = self.listener.accept()
        self.sock.settimeout(10)
        assert self._exactly(len(PREFACE)) == PREFACE

    def _exactly(self, n: int) -> bytes:
        assert self.sock is not None
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "client closed"
            data += chunk
        return data

    def read_frame(self) -> tuple[int, int, int, bytes]:
        word, flags, stream_id = FRAME.unpack(self._exactly(9))
        return word & 0xFF, flags, stream_id, self._exactly(word >> 8)

    def read_until(self, kind: int) -> tuple[int, int, int, bytes]:
        while True:
            got = self.read_frame()
            if got[0] == kind:
                return got

    def send(self, kind: int, flags: int, stream_id: int, payload: bytes = b"") -> None:
        assert self.sock is not None
        self.sock.sendall(frame(kind, flags, stream_id, payload))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.listener.close()


def test_flow_control_settings_and_ping_against_a_scripted_peer() -> None:
    peer = ScriptedPeer()
    conn = Connection(*peer.address, timeout_s=10)
    frames: queue.SimpleQueue[tuple[int, int, int, bytes] | BaseException] = queue.SimpleQueue()

    def read() -> None:
        try:
            for item in conn.frames():
                frames.put(item)
        except BaseException as exc:
            frames.put(exc)

    try:
        peer.accept()
        kind, _, _, payload = peer.read_frame()
        assert kind == SETTINGS and struct.unpack(">HIHIHI", payload)[:2] == (1, 0)  # table size 0
        threading.Thread(target=read, daemon=True).start()
        # The server allows 100 bytes per stream and 16 kB frames.
        peer.send(SETTINGS, 0, 0, struct.pack(">HIHI", 4, 100, 5, 16384))
        assert peer.read_until(SETTINGS)[1] == ACK
        peer.send(PING, 0, 0, b"12345678")
        assert peer.read_until(PING) == (PING, ACK, 0, b"12345678")

        message = bytes(range(250))
        stream = conn.open_stream(b"\x83\x86", message, end_stream=True)
        assert peer.read_until(HEADERS)[2] == stream
        assert peer.read_frame() == (DATA, 0, stream, message[:100])  # the stream's window, no more
        peer.send(WINDOW_UPDATE, 0, stream, struct.pack(">I", 150))
        assert peer.read_frame() == (DATA, END_STREAM, stream, message[100:])

        # A server's answer: headers, then trailers that end the stream, handed to the reader.
        peer.send(HEADERS, END_HEADERS, stream, hpack.Encoder().encode([(":status", "200")]))
        peer.send(GOAWAY, 0, 0, struct.pack(">II", stream, 0))
        peer.close()
        kinds = []
        while True:
            item = frames.get(timeout=10)
            if isinstance(item, BaseException):
                break
            kinds.append(item[0])
        assert kinds == [HEADERS] and isinstance(item, ConnectionLost)
        assert conn.closed is not None and "GOAWAY" in str(conn.closed)
    finally:
        conn.close()
        peer.close()


def test_streams_beyond_the_servers_limit_wait_in_order() -> None:
    peer = ScriptedPeer()
    conn = Connection(*peer.address, timeout_s=10)
    try:
        peer.accept()
        peer.read_until(SETTINGS)
        peer.send(SETTINGS, 0, 0, struct.pack(">HI", 3, 2))  # two concurrent streams, as Go's 250

        def read() -> None:
            with contextlib.suppress(ConnectionLost):  # how it ends when the test closes conn
                for _ in conn.frames():
                    pass

        threading.Thread(target=read, daemon=True).start()
        assert peer.read_until(SETTINGS)[1] == ACK
        ids = [conn.open_stream(b"\x83\x86", b"m%d" % i, end_stream=True) for i in range(5)]
        assert ids == [1, 3, 5, 7, 9]
        assert [peer.read_until(HEADERS)[2] for _ in range(2)] == [1, 3]
        conn.cancel_stream(7)  # still waiting: dropped, never sent (no RST_STREAM of an idle stream)
        conn.forget(1)  # the first is over: the next waiting one starts
        assert peer.read_until(HEADERS)[2] == 5
        conn.forget(3)
        assert peer.read_until(HEADERS)[2] == 9
        conn.forget(5)
        peer.send(PING, 0, 0, b"12345678")  # nothing else was sent before the ping's answer
        assert peer.read_frame()[0] == DATA
        assert peer.read_frame() == (PING, ACK, 0, b"12345678")
    finally:
        conn.close()
        peer.close()


def test_stream_messages_whole_split_and_across_reads_arrive_exactly() -> None:
    """gRPC messages several to a DATA frame, one spread over two frames, a frame split between two
    socket reads, an empty message: each is handed over whole, once, in order, and the stream's OK
    trailers end it."""
    peer = ScriptedPeer()
    call = StreamCall(peer.address, request_headers("x", "/etcdserverpb.Watch/Watch"))
    try:
        peer.accept()
        peer.read_until(HEADERS)
        messages = [b"a" * 10, b"b" * 300, b"c" * 5000, b"", b"d" * 20000, b"e" * 7]
        framed = [grpc_message(m) for m in messages]
        split = len(framed[2]) // 2
        head = b"\x20\x88"  # table size 0, then :status 200
        trailers = _literal(b"grpc-status", b"0")
        first = frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, head)
        first += frame(DATA, 0, 1, framed[0] + framed[1] + framed[2][:split])  # two whole, a third begun
        first += frame(DATA, 0, 1, framed[2][split:] + framed[3])  # the third ends, then an empty one
        big = framed[4]
        later = frame(DATA, 0, 1, big[:16000]) + frame(DATA, 0, 1, big[16000:] + framed[5])
        later += frame(HEADERS, END_HEADERS | END_STREAM, 1, trailers)
        got: queue.SimpleQueue[bytes | BaseException] = queue.SimpleQueue()

        def read() -> None:
            try:
                for message in call.messages(lambda view: b"<" + bytes(view) + b">"):
                    got.put(message)
            except BaseException as exc:
                got.put(exc)

        threading.Thread(target=read, daemon=True).start()
        assert peer.sock is not None
        peer.sock.sendall(first + later[:4])  # the reader sees the next frame's header cut short
        for m in messages[:4]:
            assert got.get(timeout=10) == b"<" + m + b">"
        peer.sock.sendall(later[4:20000])
        peer.sock.sendall(later[20000:])
        assert [got.get(timeout=10) for _ in messages[4:]] == [b"<" + m + b">" for m in messages[4:]]
        end = got.get(timeout=10)
        assert isinstance(end, GrpcStatus) and end.code == 0
    finally:
        call.cancel()
        peer.close()
