"""Our lean HTTP/2 gRPC client against a real etcd: calls, errors, flow control, timeouts, reconnects."""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
from urllib.parse import urlsplit

import hpack
import pytest

from etcdbench._pb.etcd import rpc_pb2
from etcdbench.backends.base import Endpoint
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
    UnaryClient,
    frame,
    request_headers,
)
from etcdbench.backends.v3 import PUT_PATH, WATCH_PATH, V3Backend
from etcdbench.bench.target import run_watch
from etcdbench.config.run import RunConfig
from etcdbench.errors import EtcdError
from etcdbench.etcd import LocalEtcd

pytestmark = pytest.mark.integration


def address(server: LocalEtcd) -> tuple[str, int]:
    parts = urlsplit(server.client_url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def authority(server: LocalEtcd) -> str:
    return "{}:{}".format(*address(server))


class Calls:
    """Runs unary calls and collects each one's outcome."""

    def __init__(self, client: UnaryClient, server: LocalEtcd) -> None:
        self.client = client
        self.headers = request_headers(authority(server), PUT_PATH)
        self.outcomes: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()

    def put(self, key: str, value: bytes, lease: int = 0) -> None:
        request = rpc_pb2.PutRequest(key=key.encode(), value=value, lease=lease)
        self.client.call(self.headers, request.SerializeToString(), self.outcomes.put)

    def results(self, n: int) -> list[BaseException | None]:
        return [self.outcomes.get(timeout=30) for _ in range(n)]


def test_request_headers_decode_to_a_grpc_call() -> None:
    block = request_headers("127.0.0.1:2379", PUT_PATH, (("token", "abc" * 50),))
    assert hpack.Decoder().decode(block) == [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", PUT_PATH),
        (":authority", "127.0.0.1:2379"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("token", "abc" * 50),  # a value longer than 127 bytes: a multi-byte HPACK length
    ]


def test_many_puts_in_flight_each_answered_once(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    client = UnaryClient((address(etcd_server),), timeout_s=10)
    calls = Calls(client, etcd_server)
    try:
        for i in range(500):
            calls.put(f"{fresh_prefix}{i}", b"v%d" % i)
        assert calls.results(500) == [None] * 500
        assert calls.outcomes.empty()
    finally:
        client.close()
    backend = V3Backend(Endpoint((etcd_server.client_url,)))
    try:
        stored = backend.get_prefix(fresh_prefix)
    finally:
        backend.close()
    assert stored == {f"{fresh_prefix}{i}": b"v%d" % i for i in range(500)}


def test_values_larger_than_frames_and_windows(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    """1 MB values: split into many DATA frames and past the server's initial 64 kB windows."""
    client = UnaryClient((address(etcd_server),), timeout_s=10)
    calls = Calls(client, etcd_server)
    values = {f"{fresh_prefix}{i}": bytes([i]) * 1_000_000 for i in range(4)}
    try:
        for key, value in values.items():
            calls.put(key, value)
        assert calls.results(4) == [None] * 4
    finally:
        client.close()
    backend = V3Backend(Endpoint((etcd_server.client_url,)))
    try:
        assert backend.get_prefix(fresh_prefix) == values
    finally:
        backend.close()


def test_a_grpc_error_status_names_code_and_message(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    client = UnaryClient((address(etcd_server),), timeout_s=10)
    calls = Calls(client, etcd_server)
    try:
        calls.put(f"{fresh_prefix}k", b"v", lease=123456789)  # no such lease
        (outcome,) = calls.results(1)
    finally:
        client.close()
    assert isinstance(outcome, GrpcStatus)
    assert outcome.code == 5 and str(outcome) == "NOT_FOUND: etcdserver: requested lease not found"


def test_a_paused_server_times_calls_out_then_serves_again(own_etcd: LocalEtcd) -> None:
    client = UnaryClient((address(own_etcd),), timeout_s=1.0)
    calls = Calls(client, own_etcd)
    try:
        calls.put("/k", b"before")
        assert calls.results(1) == [None]
        own_etcd.pause()
        try:
            calls.put("/k", b"during")
            (outcome,) = calls.results(1)
        finally:
            own_etcd.resume()
        assert isinstance(outcome, TimeoutError)
        calls.put("/k", b"after")
        assert calls.results(1) == [None]
    finally:
        client.close()


def test_a_restarted_server_fails_calls_in_flight_and_the_next_call_reconnects(own_etcd: LocalEtcd) -> None:
    client = UnaryClient((address(own_etcd),), timeout_s=10)
    calls = Calls(client, own_etcd)
    try:
        calls.put("/k", b"before")
        assert calls.results(1) == [None]
        own_etcd.kill()
        calls.put("/k", b"while down")
        (outcome,) = calls.results(1)
        assert isinstance(outcome, ConnectionLost)
        own_etcd.restart()
        calls.put("/k", b"after")
        assert calls.results(1) == [None]
    finally:
        client.close()


def test_a_call_to_a_second_address_when_the_first_is_down(etcd_server: LocalEtcd) -> None:
    dead = ("127.0.0.1", 1)  # nothing listens on port 1
    client = UnaryClient((dead, address(etcd_server)), timeout_s=10)
    calls = Calls(client, etcd_server)
    try:
        calls.put("/etcdbench-test/h2-second-address", b"v")
        calls.put("/etcdbench-test/h2-second-address", b"v")
        first, second = calls.results(2)
    finally:
        client.close()
    assert isinstance(first, ConnectionLost) and second is None


def test_watch_stream_carries_large_events_and_ends_on_cancel(
    etcd_server: LocalEtcd, fresh_prefix: str
) -> None:
    key = fresh_prefix.encode()
    call = StreamCall(address(etcd_server), request_headers(authority(etcd_server), WATCH_PATH))
    create = rpc_pb2.WatchCreateRequest(key=key, range_end=key[:-1] + b"0", prev_kv=True)
    call.send(rpc_pb2.WatchRequest(create_request=create).SerializeToString())
    messages = iter(call)
    assert rpc_pb2.WatchResponse.FromString(next(messages)).created

    client = UnaryClient((address(etcd_server),), timeout_s=10)
    calls = Calls(client, etcd_server)
    values = [bytes([i]) * 300_000 for i in range(5)]  # each event spans many frames
    try:
        for value in values:
            calls.put(f"{fresh_prefix}big", value)
            assert calls.results(1) == [None]
    finally:
        client.close()
    seen: list[tuple[bytes, bytes]] = []
    while len(seen) < len(values):
        resp = rpc_pb2.WatchResponse.FromString(next(messages))
        seen += [(ev.kv.value, ev.prev_kv.value) for ev in resp.events]
    assert seen == list(zip(values, [b"", *values[:-1]], strict=True))

    ended: list[BaseException] = []

    def read_on() -> None:
        try:
            next(messages)
        except ConnectionLost as exc:
            ended.append(exc)

    reader = threading.Thread(target=read_on)
    reader.start()
    call.cancel()
    reader.join(10)
    assert not reader.is_alive() and len(ended) == 1


class ScriptedPeer:
    """The server end of one connection, driven frame by frame by a test."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
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


def test_v3_client_choice(etcd_server: LocalEtcd, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = Endpoint((etcd_server.client_url,))
    for value, expected in (("", "native"), ("native", "native"), ("grpcio", "grpcio")):
        if value:
            monkeypatch.setenv("ETCDBENCH_V3_CLIENT", value)
        backend = V3Backend(endpoint)
        backend.close()
        assert backend.client == expected
    monkeypatch.setenv("ETCDBENCH_V3_CLIENT", "go")
    with pytest.raises(EtcdError, match=r"^ETCDBENCH_V3_CLIENT: 'go' is not one of native, grpcio$"):
        V3Backend(endpoint)


@pytest.mark.parametrize("client", ["native", "grpcio"])
def test_both_v3_clients_run_the_whole_pipeline_exactly(
    etcd_server: LocalEtcd, fresh_prefix: str, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    monkeypatch.setenv("ETCDBENCH_V3_CLIENT", client)  # inherited by the spawned writers and watcher
    config = RunConfig(
        rate=200, duration_s=1.0, warmup_s=0.5, objects=20, prefix=fresh_prefix, workload="mix", drain_s=3.0
    )
    results = run_watch(config, endpoints=[etcd_server.client_url], etcd_bin=None)
    (run,) = results["runs"]
    c = run["counters"]
    assert results["complete"] and results["environment"]["v3_client"] == client
    assert c["attempted"] == c["written"] == 300 and c["errors"] == c["write_retries"] == 0
    assert c["received"] == 300 and c["missed"] == c["duplicates"] == c["out_of_order"] == 0
