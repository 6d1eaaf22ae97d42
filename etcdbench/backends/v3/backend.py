"""The v3 load: puts, deletes and Txns, and the watches (etcdbench.backends.base.Backend).

The hot paths (puts, deletes, the watch stream) use our lean HTTP/2 client (backends/transport/h2.py),
over TCP on http:// endpoints and over TLS (ALPN h2, the endpoint's CA and client certificate) on
https:// ones; it costs a fraction of grpcio's CPU per call. ETCDBENCH_V3_CLIENT=grpcio sends
everything through grpcio stubs, to compare the two. Either way a writer keeps many puts in flight.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from etcdbench._pb.etcd import rpc_pb2
from etcdbench.backends.base import Endpoint, KeyGone, PutCallback, RevisionCallback, WatchItem
from etcdbench.backends.v3.admin import V3Admin
from etcdbench.backends.v3.connect import PUT_TIMEOUT_S
from etcdbench.backends.v3.watch import Watches
from etcdbench.errors import EtcdError

KEY_NOT_FOUND = "etcdserver: key not found"  # a put with ignore_lease of a key that is gone
PUT_PATH = "/etcdserverpb.KV/Put"
DELETE_PATH = "/etcdserverpb.KV/DeleteRange"
TXN_PATH = "/etcdserverpb.KV/Txn"
MAX_TXN_OPS = 128  # etcd's --max-txn-ops default: the most puts one put_many_async may carry


def _header_revision(message: Any, revision: RevisionCallback) -> Callable[[bytes], None]:
    """A reply handler that hands the response header's revision to `revision`."""

    def reply(data: bytes) -> None:
        revision(int(message.FromString(data).header.revision))

    return reply


def _finished(done: PutCallback, revision: RevisionCallback | None) -> Callable[[Any], None]:
    """A grpcio future's done callback: the revision (if asked for), then `done`."""

    def finished(f: Any) -> None:
        exc = f.exception()
        if exc is None and revision is not None:
            with contextlib.suppress(Exception):  # never at the cost of the callback
                revision(int(f.result().header.revision))
        done(exc)

    return finished


def _key_gone(done: PutCallback, key: str) -> PutCallback:
    """`done`, with etcd's "key not found" (a put with ignore_lease of a missing key) as KeyGone."""

    def gone(exc: BaseException | None) -> None:
        text = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
        if exc is not None and KEY_NOT_FOUND in (text or ""):
            exc = KeyGone(f"{key}: {KEY_NOT_FOUND}")
        done(exc)

    return gone


class V3Backend(V3Admin):
    """etcd's v3 API behind both protocols: the load (Backend) and, inherited, the Admin calls."""

    name = "v3"
    update_renews_ttl = False
    binary_safe = True
    max_txn_ops = MAX_TXN_OPS
    stream_reopens = 0  # a v3 stream that breaks is a reconnect; etcd never ends one in silence

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self._watches = Watches(self._conn, self.relist)

    @property
    def reconnects(self) -> int:
        return self._watches.reconnects

    def put_async(
        self,
        key: str,
        value: bytes,
        done: PutCallback,
        ttl_s: float = 0.0,
        keep_lease: bool = False,
        revision: RevisionCallback | None = None,
    ) -> None:
        if keep_lease:
            # The key keeps its lease, hence its expiry; a key that expired meanwhile is KeyGone.
            request = rpc_pb2.PutRequest(key=key.encode(), value=value, ignore_lease=True)
            done = _key_gone(done, key)
        else:
            try:
                # Granted synchronously: a paused or restarting etcd fails it like the put itself,
                # through `done` (the writer retries), never as an exception out of the send loop.
                lease = self._lease(ttl_s) if ttl_s > 0 else 0
            except EtcdError as exc:
                done(exc)
                return
            request = rpc_pb2.PutRequest(key=key.encode(), value=value, lease=lease)
        self._send(PUT_PATH, self._kv.Put, rpc_pb2.PutResponse, request, done, revision)

    def put_many_async(self, items: Sequence[tuple[str, bytes]], done: PutCallback) -> None:
        """Put every (key, value) in one Txn (atomic: all or none), without lease; `done` once."""
        if not 0 < len(items) <= MAX_TXN_OPS:
            raise ValueError(f"put_many_async takes 1 to {MAX_TXN_OPS} puts, not {len(items)}")
        request = rpc_pb2.TxnRequest(
            success=[
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k.encode(), value=v)) for k, v in items
            ]
        )
        self._send(TXN_PATH, self._kv.Txn, rpc_pb2.TxnResponse, request, done, None)

    def delete_async(self, key: str, done: PutCallback, revision: RevisionCallback | None = None) -> None:
        request = rpc_pb2.DeleteRangeRequest(key=key.encode())
        self._send(DELETE_PATH, self._kv.DeleteRange, rpc_pb2.DeleteRangeResponse, request, done, revision)

    def _send(
        self,
        path: str,
        stub_method: Any,
        response: Any,
        request: Any,
        done: PutCallback,
        revision: RevisionCallback | None,
    ) -> None:
        """One write on the client in use: our HTTP/2 client at `path`, or grpcio's `stub_method`;
        `response` is the message type whose header tells `revision` the revision made."""
        if self._conn.unary is not None:
            reply = None if revision is None else _header_revision(response, revision)
            self._conn.native_call(path, request.SerializeToString(), done, reply)
            return
        stub_method.future(request, timeout=PUT_TIMEOUT_S).add_done_callback(_finished(done, revision))

    def hold_sends(self) -> None:
        if self._conn.unary is not None:  # grpcio sends each call at once
            self._conn.unary.hold()

    def flush(self) -> None:
        if self._conn.unary is not None:
            self._conn.unary.flush()

    def watch(self, prefix: str, start_revision: int) -> Iterator[WatchItem]:
        return (item for _, item in self._watches.watch_many(prefix, start_revision, 1))

    def watch_many(self, prefix: str, start_revision: int, count: int) -> Iterator[tuple[int, WatchItem]]:
        return self._watches.watch_many(prefix, start_revision, count)

    def cancel(self) -> None:
        self._watches.cancel()

    def close(self) -> None:
        self.cancel()
        super().close()
