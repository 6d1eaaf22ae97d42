"""The v3 calls around the load (etcdbench.backends.base.Admin), and the reads of the background
load and of a relist: Range in pages at one revision, leases, compaction, Maintenance Status. They go
through grpcio stubs whichever client carries the hot paths, except the background load's reads
(Reader: list_page, get_value), which take our HTTP/2 client when it carries the writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable

import grpc

from etcdbench._pb.etcd import rpc_pb2
from etcdbench.backends.base import Endpoint, ListPage, Relist, ServerStatus
from etcdbench.backends.v3.connect import ADMIN_TIMEOUT_S, Connection
from etcdbench.errors import EtcdError

# A relist reads the prefix in pages of this many keys at one revision, as the kube-apiserver's
# paginated LIST does: a store of any size relists without hitting a message size limit.
RELIST_PAGE_KEYS = 500
DEFRAG_TIMEOUT_S = 120.0
LEASE_REUSE_S = 1.0
LIST_PAGE = 1000  # keys per Range page when listing a prefix: a production prefix may hold millions
DELETE_WINDOW = 64  # own-key deletes in flight after a run
RANGE_PATH = "/etcdserverpb.KV/Range"


def prefix_range_end(prefix: bytes) -> bytes:
    """The end of the range of keys that start with `prefix`: its last byte incremented."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else b"\0"


class V3Admin:
    """etcd's v3 API behind the Admin protocol (and the reads of Reader)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._conn = Connection(endpoint)
        self._kv = self._conn.kv
        self.client = self._conn.client  # "native" or "grpcio": who carries the hot paths
        self._leases: dict[int, tuple[int, float]] = {}  # TTL -> (lease ID, granted at)

    def check(self) -> None:
        self._conn.check()

    def _lease(self, ttl_s: float) -> int:
        """A lease of `ttl_s`, shared by the puts of the same second.

        The kube-apiserver shares one lease among the Events of a whole minute; a second keeps each
        key's expiry within a second of its intended one.
        """
        ttl = max(1, round(ttl_s))
        now = time.monotonic()
        cached = self._leases.get(ttl)
        if cached is not None and now - cached[1] < LEASE_REUSE_S:
            return cached[0]
        try:
            with self._conn.rpc("LeaseGrant"):
                resp = self._conn.lease.LeaseGrant(
                    rpc_pb2.LeaseGrantRequest(TTL=ttl), timeout=ADMIN_TIMEOUT_S
                )
        except ValueError as exc:  # grpcio on a closed channel (the backend was closed meanwhile)
            raise EtcdError(f"LeaseGrant: {exc}") from None
        self._leases[ttl] = (int(resp.ID), now)
        return int(resp.ID)

    def relist(self, key: bytes, end: bytes) -> Relist:
        """Read every key of [key, end) in pages at one revision; the Relist says how long it took
        and how many bytes came back."""
        started = time.monotonic()
        keys = size = revision = 0
        start = key
        while True:
            request = rpc_pb2.RangeRequest(
                key=start, range_end=end, limit=RELIST_PAGE_KEYS, revision=revision
            )
            with self._conn.rpc("Range"):
                page: rpc_pb2.RangeResponse = self._kv.Range(request, timeout=ADMIN_TIMEOUT_S)
            revision = revision or int(page.header.revision)  # later pages read the first page's revision
            keys += len(page.kvs)
            size += page.ByteSize()
            if not page.more or not page.kvs:
                break
            start = page.kvs[-1].key + b"\0"
        return Relist("v3-compacted", revision, keys, time.monotonic() - started, size)

    def current_revision(self) -> int:
        return int(self._range(b"\0", b"\0", count_only=True).header.revision)

    def _range(self, key: bytes, range_end: bytes, count_only: bool = False) -> rpc_pb2.RangeResponse:
        request = rpc_pb2.RangeRequest(key=key, range_end=range_end, count_only=count_only)
        with self._conn.rpc("Range"):
            resp: rpc_pb2.RangeResponse = self._kv.Range(request, timeout=ADMIN_TIMEOUT_S)
        return resp

    def get_prefix(self, prefix: str) -> dict[str, bytes]:
        p = prefix.encode()
        with self._conn.rpc("Range"):
            resp = self._kv.Range(
                rpc_pb2.RangeRequest(key=p, range_end=prefix_range_end(p)), timeout=ADMIN_TIMEOUT_S
            )
        return {kv.key.decode(): kv.value for kv in resp.kvs}

    def list_page(self, prefix: str, start: bytes, limit: int, revision: int = 0) -> ListPage:
        """One page of a paginated LIST, as the kube-apiserver reads one: a Range with `limit` from
        `start`, at `revision` (the first page's, for the later pages)."""
        p = prefix.encode()
        request = rpc_pb2.RangeRequest(
            key=start or p, range_end=prefix_range_end(p), limit=limit, revision=revision
        )
        page = self._read(request)
        more = page.more and len(page.kvs) > 0
        return ListPage(
            len(page.kvs),
            page.ByteSize(),
            revision or int(page.header.revision),
            page.kvs[-1].key + b"\0" if more else None,
        )

    def get_value(self, key: str) -> int | None:
        """GET one key: bytes of the Range response, or None when the key does not exist."""
        resp = self._read(rpc_pb2.RangeRequest(key=key.encode()))
        return int(resp.ByteSize()) if resp.kvs else None

    def _read(self, request: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        """One Range of the background load (Reader), on the client that carries the hot paths: our
        HTTP/2 client when it does (grpcio's per-call cost would set the pace of those reads)."""
        if self._conn.unary is None:
            with self._conn.rpc("Range"):
                resp: rpc_pb2.RangeResponse = self._kv.Range(request, timeout=ADMIN_TIMEOUT_S)
            return resp
        answered = threading.Event()
        replies: list[bytes] = []
        failures: list[BaseException] = []

        def done(exc: BaseException | None) -> None:  # after the reply, from the reader thread
            if exc is not None:
                failures.append(exc)
            answered.set()

        self._conn.native_call(RANGE_PATH, request.SerializeToString(), done, replies.append)
        if not answered.wait(ADMIN_TIMEOUT_S + 5):  # the client's own deadline answers first
            raise EtcdError(f"Range: no answer in {ADMIN_TIMEOUT_S + 5:g} s")
        if failures:
            raise EtcdError(f"Range: {failures[0]}")
        return rpc_pb2.RangeResponse.FromString(replies[0])

    def count_prefix(self, prefix: str) -> int:
        p = prefix.encode()
        return int(self._range(p, prefix_range_end(p), count_only=True).count)

    def delete_prefix(self, prefix: str) -> int:
        p = prefix.encode()
        with self._conn.rpc("DeleteRange"):
            resp = self._kv.DeleteRange(
                rpc_pb2.DeleteRangeRequest(key=p, range_end=prefix_range_end(p)), timeout=ADMIN_TIMEOUT_S
            )
        return int(resp.deleted)

    def list_keys(self, prefix: str, revision: int = 0) -> tuple[int, dict[str, int]]:
        """(revision read, {key: create revision}) of every key under `prefix`, keys only and in
        pages, all pages at one revision: `revision`, or the first page's when 0."""
        p = prefix.encode()
        start, end = p, prefix_range_end(p)
        keys: dict[str, int] = {}
        while True:
            request = rpc_pb2.RangeRequest(
                key=start, range_end=end, limit=LIST_PAGE, revision=revision, keys_only=True
            )
            with self._conn.rpc("Range"):
                resp = self._kv.Range(request, timeout=ADMIN_TIMEOUT_S)
            revision = revision or int(resp.header.revision)
            for kv in resp.kvs:
                keys[kv.key.decode(errors="replace")] = int(kv.create_revision)
            if not resp.more or not resp.kvs:
                return revision, keys
            start = resp.kvs[-1].key + b"\0"

    def delete_own(self, keys: Collection[str], prefix: str, created_after: int) -> int:
        _, existing = self.list_keys(prefix)
        doomed = [k for k, created in existing.items() if created > created_after and k in keys]
        window = threading.BoundedSemaphore(DELETE_WINDOW)
        failures: list[BaseException] = []

        def done(fut: grpc.Future) -> None:
            exc = fut.exception()
            if exc is not None:
                failures.append(exc)
            window.release()

        for key in doomed:
            window.acquire()
            request = rpc_pb2.DeleteRangeRequest(key=key.encode())
            self._kv.DeleteRange.future(request, timeout=ADMIN_TIMEOUT_S).add_done_callback(done)
        for _ in range(DELETE_WINDOW):  # wait for the last ones
            window.acquire()
        if failures:
            exc = failures[0]
            raise (
                self._conn.error("DeleteRange", exc)
                if isinstance(exc, grpc.RpcError)
                else EtcdError(str(exc))
            )
        return len(doomed)

    def put_leased(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Asked first, then put: not atomic, which is enough for keys only etcdbench processes write."""
        if self._range(key.encode(), b"", count_only=True).count:
            return False
        request = rpc_pb2.PutRequest(key=key.encode(), value=value, lease=self._lease(ttl_s))
        with self._conn.rpc("Put"):
            self._kv.Put(request, timeout=ADMIN_TIMEOUT_S)
        return True

    def delete_keys(self, keys: Iterable[str]) -> None:
        for key in keys:
            with self._conn.rpc("DeleteRange"):
                self._kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key.encode()), timeout=ADMIN_TIMEOUT_S)

    def compact(self, revision: int) -> None:
        with self._conn.rpc("Compact"):
            self._kv.Compact(
                rpc_pb2.CompactionRequest(revision=revision, physical=True), timeout=ADMIN_TIMEOUT_S
            )

    def defragment(self) -> None:
        with self._conn.rpc("Defragment"):
            self._conn.maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=DEFRAG_TIMEOUT_S)

    def _status(self) -> rpc_pb2.StatusResponse:
        with self._conn.rpc("Status"):
            resp: rpc_pb2.StatusResponse = self._conn.maintenance.Status(
                rpc_pb2.StatusRequest(), timeout=ADMIN_TIMEOUT_S
            )
        return resp

    def status(self) -> ServerStatus:
        resp = self._status()
        return ServerStatus(str(resp.version), int(resp.dbSize), int(resp.leader), int(resp.header.member_id))

    def server_version(self) -> str:
        return str(self._status().version)

    def db_size(self) -> int | None:
        return int(self._status().dbSize)

    def close(self) -> None:
        self._conn.close()
