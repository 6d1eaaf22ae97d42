"""Our lean HTTP/2 gRPC client against a real etcd: calls, errors, timeouts, reconnects (against a
scripted peer: tests/unit/test_h2_frames.py)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from backend_puts import v3_values

from etcdbench._pb.etcd import rpc_pb2
from etcdbench.backends.base import Endpoint
from etcdbench.backends.transport.h2 import (
    ConnectionLost,
    GrpcStatus,
    StreamCall,
    UnaryClient,
    request_headers,
)
from etcdbench.backends.v3 import PUT_PATH, WATCH_PATH, V3Backend
from etcdbench.bench.target import run_watch
from etcdbench.config.run import RunConfig
from etcdbench.errors import EtcdError
from etcdbench.etcd import LocalEtcd


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

    def put_one(self, key: str, value: bytes) -> BaseException | None:
        """One put, and its outcome."""
        self.put(key, value)
        (outcome,) = self.results(1)
        return outcome


@contextlib.contextmanager
def calls_to(server: LocalEtcd, timeout_s: float) -> Iterator[Calls]:
    """Calls through a client of its own, closed after."""
    client = UnaryClient((address(server),), timeout_s=timeout_s)
    try:
        yield Calls(client, server)
    finally:
        client.close()


def test_many_puts_in_flight_each_answered_once(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    with calls_to(etcd_server, timeout_s=10) as calls:
        for i in range(500):
            calls.put(f"{fresh_prefix}{i}", b"v%d" % i)
        assert calls.results(500) == [None] * 500
        assert calls.outcomes.empty()
    assert v3_values(etcd_server.client_url, fresh_prefix) == {
        f"{fresh_prefix}{i}": b"v%d" % i for i in range(500)
    }


def test_values_larger_than_frames_and_windows(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    """1 MB values: split into many DATA frames and past the server's initial 64 kB windows."""
    values = {f"{fresh_prefix}{i}": bytes([i]) * 1_000_000 for i in range(4)}
    with calls_to(etcd_server, timeout_s=10) as calls:
        for key, value in values.items():
            calls.put(key, value)
        assert calls.results(4) == [None] * 4
    assert v3_values(etcd_server.client_url, fresh_prefix) == values


def test_a_grpc_error_status_names_code_and_message(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    with calls_to(etcd_server, timeout_s=10) as calls:
        calls.put(f"{fresh_prefix}k", b"v", lease=123456789)  # no such lease
        (outcome,) = calls.results(1)
    assert isinstance(outcome, GrpcStatus)
    assert outcome.code == 5 and str(outcome) == "NOT_FOUND: etcdserver: requested lease not found"


def test_a_paused_server_times_calls_out_then_serves_again(own_etcd: LocalEtcd) -> None:
    with calls_to(own_etcd, timeout_s=1.0) as calls:
        assert calls.put_one("/k", b"before") is None
        own_etcd.pause()
        try:
            outcome = calls.put_one("/k", b"during")
        finally:
            own_etcd.resume()
        assert isinstance(outcome, TimeoutError)
        assert calls.put_one("/k", b"after") is None


def test_a_restarted_server_fails_calls_in_flight_and_the_next_call_reconnects(own_etcd: LocalEtcd) -> None:
    with calls_to(own_etcd, timeout_s=10) as calls:
        assert calls.put_one("/k", b"before") is None
        own_etcd.kill()
        assert isinstance(calls.put_one("/k", b"while down"), ConnectionLost)
        own_etcd.restart()
        assert calls.put_one("/k", b"after") is None


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
    (run,) = results.runs
    c = run.to_dict()["counters"]  # as the results file keeps them
    assert results.complete and results.environment.v3_client == client
    assert c["attempted"] == c["written"] == 300 and c["errors"] == c["write_retries"] == 0
    assert c["received"] == 300 and c["missed"] == c["duplicates"] == c["out_of_order"] == 0
