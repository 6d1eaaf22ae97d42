"""v3 watches: one bidirectional stream carrying any number of watches of a prefix, as the
kube-apiserver multiplexes its watchers, with `prev_kv` and `progress_notify` set as it opens them.

A compacted start revision is turned into a relist (a full read of the prefix, as Kubernetes does
after 410 Gone) and a new watch on the same stream; a broken stream is reopened, with backoff, on the
next endpoint, from each watch's next revision.
"""

from __future__ import annotations

import queue
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import cast

import grpc

from etcdbench._pb.etcd import kv_pb2, rpc_pb2, rpc_pb2_grpc
from etcdbench.backends.base import Relist, WatchEvent, WatchItem
from etcdbench.backends.transport.h2 import ConnectionLost, GrpcStatus, StreamCall
from etcdbench.backends.v3.admin import prefix_range_end
from etcdbench.backends.v3.connect import Connection
from etcdbench.errors import EtcdError

RECONNECT_BASE_S = 0.05  # a broken watch stream is reopened after this, doubling up to the max
RECONNECT_MAX_S = 1.0
WATCH_PATH = "/etcdserverpb.Watch/Watch"
# What a broken watch stream raises, on either client; the watch reopens from its next revision.
STREAM_BROKEN = (grpc.RpcError, ConnectionLost, GrpcStatus, OSError)


class _GrpcioWatch:
    """A watch stream on grpcio: requests through a queue, responses by iteration."""

    def __init__(self, stub: rpc_pb2_grpc.WatchStub) -> None:
        self._requests: queue.SimpleQueue[rpc_pb2.WatchRequest | None] = queue.SimpleQueue()
        self._call = stub.Watch(iter(self._requests.get, None))

    def send(self, request: rpc_pb2.WatchRequest) -> None:
        self._requests.put(request)

    def __iter__(self) -> Iterator[rpc_pb2.WatchResponse]:
        return iter(self._call)

    def cancel(self) -> None:
        self._requests.put(None)
        self._call.cancel()


class _NativeWatch:
    """A watch stream on our HTTP/2 client, on a connection of its own."""

    def __init__(self, address: tuple[str, int], headers: bytes, tls: ssl.SSLContext | None) -> None:
        self._call = StreamCall(address, headers, tls)

    def send(self, request: rpc_pb2.WatchRequest) -> None:
        self._call.send(request.SerializeToString())

    def __iter__(self) -> Iterator[rpc_pb2.WatchResponse]:
        # Parsed straight from the received frame: protobuf reads any buffer (and copies it).
        return self._call.messages(
            cast(Callable[[memoryview], rpc_pb2.WatchResponse], rpc_pb2.WatchResponse.FromString)
        )

    def cancel(self) -> None:
        self._call.cancel()


class Watches:
    """The watch streams of one backend, one at a time; `relist(key, end)` reads a compacted range."""

    def __init__(self, conn: Connection, relist: Callable[[bytes, bytes], Relist]) -> None:
        self._conn = conn
        self._relist = relist
        self._cancelled = threading.Event()
        self.reconnects = 0  # watch streams reopened after they broke
        self._call: _GrpcioWatch | _NativeWatch | None = None
        self._next_address = 0  # a broken watch reopens on the next endpoint

    def watch_many(self, prefix: str, start_revision: int, count: int) -> Iterator[tuple[int, WatchItem]]:
        """`count` watches of the same prefix multiplexed on ONE gRPC stream; items are tagged with the
        watch's index 0..count-1.

        A watch whose start revision was compacted is relisted (a full read, as Kubernetes does after
        410 Gone) and re-created on the same stream from the listing's revision + 1. A broken stream
        (etcd restarted, connection lost) is reopened, with backoff, from each watch's next revision:
        nothing is lost unless that revision was compacted meanwhile, which is then a relist.
        """
        key = prefix.encode()
        end = prefix_range_end(key)
        next_revision = [start_revision] * count
        backoff = RECONNECT_BASE_S
        while not self._cancelled.is_set():
            delivered = False
            try:
                for index, item in self._stream(key, end, next_revision):
                    delivered = True
                    next_revision[index] = item.revision + 1
                    yield index, item
            except STREAM_BROKEN:
                self._next_address += 1
            if self._cancelled.is_set():
                return
            self.reconnects += 1
            backoff = RECONNECT_BASE_S if delivered else min(backoff * 2, RECONNECT_MAX_S)
            self._cancelled.wait(backoff)

    def _stream(self, key: bytes, end: bytes, next_revision: list[int]) -> Iterator[tuple[int, WatchItem]]:
        """One stream carrying a watch per entry of `next_revision`, until it breaks or is cancelled."""
        pending: list[int] = []  # watch indexes whose create request awaits its `created` answer
        ids: dict[int, int] = {}  # server watch_id -> our index
        call: _GrpcioWatch | _NativeWatch
        conn = self._conn
        token = ""
        if conn.unary is not None:
            headers, token = conn.call_headers(WATCH_PATH)
            address = conn.addresses[self._next_address % len(conn.addresses)]
            call = _NativeWatch(address, headers, conn.ssl)
        else:
            call = _GrpcioWatch(conn.watch)

        def create(index: int, revision: int) -> None:
            pending.append(index)
            call.send(
                rpc_pb2.WatchRequest(
                    create_request=rpc_pb2.WatchCreateRequest(
                        key=key, range_end=end, start_revision=revision, prev_kv=True, progress_notify=True
                    )
                )
            )

        self._call = call
        if self._cancelled.is_set():
            call.cancel()
        for index, revision in enumerate(next_revision):
            create(index, revision)
        delete = kv_pb2.Event.DELETE
        try:
            for resp in call:
                if resp.created:
                    ids[resp.watch_id] = pending.pop(0)
                index = ids.get(resp.watch_id, -1)
                if resp.compact_revision:
                    # The server cancels this watch; Kubernetes would answer 410 Gone and relist.
                    del ids[resp.watch_id]
                    relist = self._relist(key, end)
                    yield index, relist
                    create(index, relist.revision + 1)
                    continue
                if resp.canceled:
                    raise EtcdError(f"etcd at {conn.target} cancelled a watch: {resp.cancel_reason}")
                for ev in resp.events:
                    kv = ev.kv
                    yield (
                        index,
                        WatchEvent(
                            "DELETE" if ev.type == delete else "PUT",
                            kv.key.decode(),
                            kv.mod_revision,
                            kv.value,
                            ev.prev_kv.value if ev.HasField("prev_kv") else None,
                        ),
                    )
        except GrpcStatus as exc:
            if token:  # only the native client sends it; grpcio's interceptor handles its own
                conn.token_failed(exc, token)
            raise
        finally:
            call.cancel()

    def cancel(self) -> None:
        self._cancelled.set()
        if self._call is not None:
            self._call.cancel()
