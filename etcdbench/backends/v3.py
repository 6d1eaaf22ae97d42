"""etcd v3 API over gRPC, with messages generated from proto/etcd.

The hot paths (puts, deletes, the watch stream) use our lean HTTP/2 client (backends/h2.py), over
TCP on http:// endpoints and over TLS (ALPN h2, the endpoint's CA and client certificate) on https://
ones; it costs a fraction of grpcio's CPU per call. Admin calls go through grpcio stubs
(ETCDBENCH_V3_CLIENT=grpcio sends everything that way, to compare the two). Either way a writer
keeps many puts in flight. The watch is one bidirectional stream with
`prev_kv` and `progress_notify` set, as the kube-apiserver opens it. A compacted start revision is
turned into a relist (a full read of the prefix, as Kubernetes does after 410 Gone) and a new watch.

https:// endpoints get a TLS channel (the endpoint's CA, and its client certificate if any). With a
user, every call carries etcd's auth token as "token" metadata (added by a channel interceptor); the
token comes from Auth/Authenticate on first use and again after etcd calls it invalid (etcd restarted,
or the token expired).
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import threading
import time
from collections import namedtuple
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from etcdbench._pb.etcd import kv_pb2, rpc_pb2, rpc_pb2_grpc
from etcdbench.backends import v3_client
from etcdbench.backends.base import (
    Endpoint,
    KeyGone,
    ListPage,
    PutCallback,
    Relist,
    RevisionCallback,
    WatchEvent,
    WatchItem,
)
from etcdbench.backends.credentials import parse_endpoint, tls_hint
from etcdbench.backends.transport.h2 import (
    ConnectionLost,
    GrpcStatus,
    StreamCall,
    UnaryClient,
    client_context,
    request_headers,
)
from etcdbench.errors import EtcdError

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # one page of a relist, or one huge object, fits
# A relist reads the prefix in pages of this many keys at one revision, as the kube-apiserver's
# paginated LIST does: a store of any size relists without hitting a message size limit.
RELIST_PAGE_KEYS = 500
KEY_NOT_FOUND = "etcdserver: key not found"  # a put with ignore_lease of a key that is gone
PUT_TIMEOUT_S = 10.0  # a put not acknowledged by then fails (and is retried by the writer)
DEFRAG_TIMEOUT_S = 120.0
ADMIN_TIMEOUT_S = 10.0
LEASE_REUSE_S = 1.0
RECONNECT_BASE_S = 0.05  # a broken watch stream is reopened after this, doubling up to the max
RECONNECT_MAX_S = 1.0
LIST_PAGE = 1000  # keys per Range page when listing a prefix: a production prefix may hold millions
DELETE_WINDOW = 64  # own-key deletes in flight after a run
PUT_PATH = "/etcdserverpb.KV/Put"
DELETE_PATH = "/etcdserverpb.KV/DeleteRange"
TXN_PATH = "/etcdserverpb.KV/Txn"
MAX_TXN_OPS = 128  # etcd's --max-txn-ops default: the most puts one put_many_async may carry
WATCH_PATH = "/etcdserverpb.Watch/Watch"
UNAUTHENTICATED = 16
# What a broken watch stream raises, on either client; the watch reopens from its next revision.
STREAM_BROKEN = (grpc.RpcError, ConnectionLost, GrpcStatus, OSError)


def addresses(endpoint: Endpoint) -> tuple[tuple[str, int], ...]:
    """(host, port) of each URL; UsageError for a URL that is not http(s)://HOST:PORT.

    https:// URLs are accepted when the endpoint's credentials carry the CA (see Endpoint.tls).
    """
    out = []
    for url in endpoint.urls:
        parts = urlsplit(parse_endpoint(url))  # the CLI's parser: v2 and v3 read a URL alike
        out.append((parts.hostname or "", parts.port or 0))
    endpoint.tls  # noqa: B018 (raises EtcdError when the schemes and the TLS files do not match)
    return tuple(out)


def grpc_target(endpoint: Endpoint) -> str:
    """'http://127.0.0.1:2379' -> '127.0.0.1:2379'; several IPv4 URLs -> one 'ipv4:' target."""
    hosts = [f"{host}:{port}" for host, port in addresses(endpoint)]
    return hosts[0] if len(hosts) == 1 else "ipv4:" + ",".join(hosts)


def _read_pem(flag: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise EtcdError(f"{flag}: cannot read {path}: {e.strerror or type(e).__name__}") from None


class _CallDetails(
    namedtuple(  # grpc wants an object with exactly these attributes
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    pass


class _TokenAuth:
    """etcd v3 auth: a token from Auth/Authenticate, asked on first use and again once it is invalid."""

    def __init__(self, channel: grpc.Channel, target: str, user: str, password: str) -> None:
        self._stub = rpc_pb2_grpc.AuthStub(channel)  # on the plain channel: no token needed to get one
        self._target = target
        self.user = user
        self._password = password
        self._token: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"_TokenAuth(user={self.user!r})"  # never the password

    def token(self) -> str:
        """The current token ("" when etcd has auth disabled).

        EtcdError when etcd refuses the user; grpc.RpcError when etcd cannot be reached (callers
        handle that as for any call: a watch reconnects, a put fails and is retried).
        """
        with self._lock:
            if self._token is None:
                request = rpc_pb2.AuthenticateRequest(name=self.user, password=self._password)
                try:
                    self._token = str(self._stub.Authenticate(request, timeout=ADMIN_TIMEOUT_S).token)
                except grpc.RpcError as exc:
                    details = exc.details() or ""
                    if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "not enabled" in details:
                        self._token = ""  # as etcd's Go client: a user for a cluster without auth is fine
                    elif "authentication failed" in details:
                        raise EtcdError(
                            f"etcd at {self._target} refused user {self.user}: "
                            "authentication failed (check the password)"
                        ) from None
                    else:
                        raise
            return self._token

    def invalidate(self, token: str) -> None:
        """etcd called `token` invalid: the next call authenticates again."""
        with self._lock:
            if self._token == token:
                self._token = None


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):  # type: ignore[misc]
    """Adds ("token", <token>) to the metadata of every unary call and of the watch stream."""

    def __init__(self, auth: _TokenAuth) -> None:
        self._auth = auth

    def _intercept(self, continuation: Callable[[Any, Any], Any], details: Any, request: Any) -> Any:
        token = self._auth.token()
        metadata = [*(details.metadata or ()), ("token", token)] if token else details.metadata
        call = continuation(
            _CallDetails(
                details.method,
                details.timeout,
                metadata,
                details.credentials,
                details.wait_for_ready,
                details.compression,
            ),
            request,
        )

        def expired(done: Any) -> None:
            if done.code() == grpc.StatusCode.UNAUTHENTICATED and "invalid auth token" in (
                done.details() or ""
            ):
                self._auth.invalidate(token)  # this call fails; the next one (or its retry) re-authenticates

        if token:
            call.add_done_callback(expired)
        return call

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return self._intercept(continuation, client_call_details, request)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return self._intercept(continuation, client_call_details, request_iterator)


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
        parse = rpc_pb2.WatchResponse.FromString
        return (parse(message) for message in self._call)

    def cancel(self) -> None:
        self._call.cancel()


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


def prefix_range_end(prefix: bytes) -> bytes:
    """The end of the range of keys that start with `prefix`: its last byte incremented."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else b"\0"


class V3Backend:
    name = "v3"
    update_renews_ttl = False
    binary_safe = True
    max_txn_ops = MAX_TXN_OPS

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._target = grpc_target(endpoint)
        self._channel = self._open_channel(endpoint)
        self._kv = rpc_pb2_grpc.KVStub(self._channel)
        self._watch = rpc_pb2_grpc.WatchStub(self._channel)
        self._maintenance = rpc_pb2_grpc.MaintenanceStub(self._channel)
        self._lease_stub = rpc_pb2_grpc.LeaseStub(self._channel)
        self._leases: dict[int, tuple[int, float]] = {}  # TTL -> (lease ID, granted at)
        self._cancelled = threading.Event()
        self.reconnects = 0  # watch streams reopened after they broke
        self._call: _GrpcioWatch | _NativeWatch | None = None
        self._addresses = addresses(endpoint)
        self._next_address = 0  # a broken watch reopens on the next endpoint
        self.client = v3_client(endpoint)
        self._ssl = self._native_tls(endpoint) if self.client == "native" and self._tls else None
        self._unary = (
            UnaryClient(self._addresses, PUT_TIMEOUT_S, self._ssl) if self.client == "native" else None
        )
        self._headers: dict[tuple[str, str], bytes] = {}

    def _open_channel(self, endpoint: Endpoint) -> grpc.Channel:
        """Plain or TLS per the URLs' scheme; with a user, wrapped to send the auth token."""
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        creds = endpoint.credentials
        self._tls = endpoint.tls
        self._client_cert = bool(creds and creds.cert)
        if self._tls and creds is not None:
            if len(endpoint.urls) > 1:  # an "ipv4:" target names no host: verify against the first URL
                options.append(("grpc.default_authority", urlsplit(endpoint.urls[0]).netloc))
            tls = grpc.ssl_channel_credentials(
                root_certificates=_read_pem("--cacert", creds.cacert),
                private_key=_read_pem("--key", creds.key),
                certificate_chain=_read_pem("--cert", creds.cert),
            )
            channel = grpc.secure_channel(self._target, tls, options=options)
        else:
            channel = grpc.insecure_channel(self._target, options=options)
        self._auth: _TokenAuth | None = None
        if creds is not None and creds.user is not None:
            self._auth = _TokenAuth(channel, self._target, creds.user, creds.password or "")
            channel = grpc.intercept_channel(channel, _TokenInterceptor(self._auth))
        return channel

    def _native_tls(self, endpoint: Endpoint) -> ssl.SSLContext:
        """The TLS context of our HTTP/2 client: the endpoint's CA, its client certificate if any."""
        creds = endpoint.credentials
        assert creds is not None  # endpoint.tls checked that https:// comes with a CA
        try:
            return client_context(creds.cacert, creds.cert, creds.key)
        except (OSError, ValueError) as e:
            text = " ".join(str(e).split()) or type(e).__name__
            raise EtcdError(
                f"cannot use the TLS files {creds.cacert}, {creds.cert}, {creds.key}: {text}"
            ) from None

    def _security_error(self, exc: grpc.RpcError) -> EtcdError | None:
        """A one-line error for a TLS handshake or authorization failure; None for anything else."""
        code, details = exc.code(), exc.details() or ""
        if self._tls and code == grpc.StatusCode.UNAVAILABLE:
            hint = tls_hint(details, client_cert=self._client_cert)
            if hint is not None:
                return EtcdError(f"TLS handshake with {self._target} failed: {hint}")
        if code == grpc.StatusCode.PERMISSION_DENIED:
            if self._auth is None:
                return EtcdError(f"etcd at {self._target} denied access: permission denied (pass --user)")
            return EtcdError(
                f"etcd at {self._target} denied user {self._auth.user}: permission denied (check its roles)"
            )
        if "user name is empty" in details:
            return EtcdError(f"etcd at {self._target} has authentication enabled: pass --user")
        return None

    def _error(self, what: str, exc: grpc.RpcError) -> EtcdError:
        security = self._security_error(exc)
        if security is not None:
            return security
        return EtcdError(f"etcd at {self._target}: {what} failed: {exc.code().name}: {exc.details()}")

    def check(self) -> None:
        """Fail early with one clear line when etcd is not there, is not an etcd, or refuses us."""
        try:
            if self._auth is not None:
                self._auth.token()  # a wrong password fails here, before any run starts
            self._maintenance.Status(rpc_pb2.StatusRequest(), timeout=ADMIN_TIMEOUT_S, wait_for_ready=False)
        except grpc.RpcError as exc:
            security = self._security_error(exc)
            if security is not None:
                raise security from None
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                if "Failed parsing HTTP/2" in (exc.details() or ""):  # an HTTP/1 server, not etcd
                    raise EtcdError(
                        f"{self._target} is not an etcd v3 endpoint: it does not speak gRPC"
                    ) from None
                raise EtcdError(f"cannot reach etcd v3 API at {self._target}: {exc.details()}") from None
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # gRPC, but not etcd's Maintenance service
                raise EtcdError(f"{self._target} is not an etcd v3 endpoint: {exc.details()}") from None
            raise self._error("Status", exc) from None

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
        if self._unary is not None:
            reply = None if revision is None else _header_revision(rpc_pb2.PutResponse, revision)
            self._native_call(PUT_PATH, request.SerializeToString(), done, reply)
            return
        fut = self._kv.Put.future(request, timeout=PUT_TIMEOUT_S)
        fut.add_done_callback(_finished(done, revision))

    def put_many_async(self, items: Sequence[tuple[str, bytes]], done: PutCallback) -> None:
        """Put every (key, value) in one Txn (atomic: all or none), without lease; `done` once."""
        if not 0 < len(items) <= MAX_TXN_OPS:
            raise ValueError(f"put_many_async takes 1 to {MAX_TXN_OPS} puts, not {len(items)}")
        request = rpc_pb2.TxnRequest(
            success=[
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k.encode(), value=v)) for k, v in items
            ]
        )
        if self._unary is not None:
            self._native_call(TXN_PATH, request.SerializeToString(), done)
            return
        fut = self._kv.Txn.future(request, timeout=PUT_TIMEOUT_S)
        fut.add_done_callback(_finished(done, None))

    def delete_async(self, key: str, done: PutCallback, revision: RevisionCallback | None = None) -> None:
        request = rpc_pb2.DeleteRangeRequest(key=key.encode())
        if self._unary is not None:
            reply = None if revision is None else _header_revision(rpc_pb2.DeleteRangeResponse, revision)
            self._native_call(DELETE_PATH, request.SerializeToString(), done, reply)
            return
        fut = self._kv.DeleteRange.future(request, timeout=PUT_TIMEOUT_S)
        fut.add_done_callback(_finished(done, revision))

    def hold_sends(self) -> None:
        if self._unary is not None:  # grpcio sends each call at once
            self._unary.hold()

    def flush(self) -> None:
        if self._unary is not None:
            self._unary.flush()

    def _call_headers(self, path: str) -> tuple[bytes, str]:
        """The header block for `path` with the current auth token (if any), and that token."""
        try:
            token = self._auth.token() if self._auth is not None else ""
        except grpc.RpcError as exc:
            raise ConnectionLost(f"cannot get an auth token: {exc.code().name}") from None
        block = self._headers.get((path, token))
        if block is None:
            metadata = (("token", token),) if token else ()
            authority = "{}:{}".format(*self._addresses[0])
            block = self._headers[(path, token)] = request_headers(
                authority, path, metadata, tls=self._ssl is not None
            )
        return block, token

    def _native_call(
        self, path: str, message: bytes, done: PutCallback, reply: Callable[[bytes], None] | None = None
    ) -> None:
        assert self._unary is not None
        try:
            headers, token = self._call_headers(path)
        except ConnectionLost as exc:
            done(exc)
            return
        if token:
            inner = done

            def done(exc: BaseException | None) -> None:
                self._token_failed(exc, token)
                inner(exc)

        self._unary.call(headers, message, done, reply)

    def _token_failed(self, exc: BaseException | None, token: str) -> None:
        """etcd called our token invalid (it restarted, or the token expired): get a new one."""
        invalid = isinstance(exc, GrpcStatus) and exc.code == UNAUTHENTICATED
        if invalid and "invalid auth token" in str(exc):
            assert self._auth is not None
            self._auth.invalidate(token)

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
            resp = self._lease_stub.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl), timeout=ADMIN_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise self._error("LeaseGrant", exc) from None
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
            try:
                page: rpc_pb2.RangeResponse = self._kv.Range(request, timeout=ADMIN_TIMEOUT_S)
            except grpc.RpcError as exc:
                raise self._error("Range", exc) from None
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
        try:
            resp: rpc_pb2.RangeResponse = self._kv.Range(request, timeout=ADMIN_TIMEOUT_S)
            return resp
        except grpc.RpcError as exc:
            raise self._error("Range", exc) from None

    def get_prefix(self, prefix: str) -> dict[str, bytes]:
        """Every key under `prefix` with its value (small prefixes only: one response)."""
        p = prefix.encode()
        request = rpc_pb2.RangeRequest(key=p, range_end=prefix_range_end(p))
        try:
            resp = self._kv.Range(request, timeout=ADMIN_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise self._error("Range", exc) from None
        return {kv.key.decode(): kv.value for kv in resp.kvs}

    def list_page(self, prefix: str, start: bytes, limit: int, revision: int = 0) -> ListPage:
        """One page of a paginated LIST, as the kube-apiserver reads one: a Range with `limit` from
        `start`, at `revision` (the first page's, for the later pages)."""
        p = prefix.encode()
        request = rpc_pb2.RangeRequest(
            key=start or p, range_end=prefix_range_end(p), limit=limit, revision=revision
        )
        try:
            page: rpc_pb2.RangeResponse = self._kv.Range(request, timeout=ADMIN_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise self._error("Range", exc) from None
        more = page.more and len(page.kvs) > 0
        return ListPage(
            len(page.kvs),
            page.ByteSize(),
            revision or int(page.header.revision),
            page.kvs[-1].key + b"\0" if more else None,
        )

    def get_value(self, key: str) -> int | None:
        """GET one key: bytes of the Range response, or None when the key does not exist."""
        try:
            resp: rpc_pb2.RangeResponse = self._kv.Range(
                rpc_pb2.RangeRequest(key=key.encode()), timeout=ADMIN_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            raise self._error("Range", exc) from None
        return int(resp.ByteSize()) if resp.kvs else None

    def count_prefix(self, prefix: str) -> int:
        p = prefix.encode()
        return int(self._range(p, prefix_range_end(p), count_only=True).count)

    def delete_prefix(self, prefix: str) -> int:
        p = prefix.encode()
        try:
            resp = self._kv.DeleteRange(
                rpc_pb2.DeleteRangeRequest(key=p, range_end=prefix_range_end(p)), timeout=ADMIN_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            raise self._error("DeleteRange", exc) from None
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
            try:
                resp = self._kv.Range(request, timeout=ADMIN_TIMEOUT_S)
            except grpc.RpcError as exc:
                raise self._error("Range", exc) from None
            revision = revision or int(resp.header.revision)
            for kv in resp.kvs:
                keys[kv.key.decode(errors="replace")] = int(kv.create_revision)
            if not resp.more or not resp.kvs:
                return revision, keys
            start = resp.kvs[-1].key + b"\0"

    def delete_own(self, keys: Collection[str], prefix: str, created_after: int) -> int:
        """Delete the keys of `keys` that exist under `prefix` and were created after revision
        `created_after`; never any other key. Returns how many were deleted."""
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
            raise (self._error("DeleteRange", exc) if isinstance(exc, grpc.RpcError) else EtcdError(str(exc)))
        return len(doomed)

    def put_leased(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Put `key` on a lease of `ttl_s` unless it exists; False (and nothing written) if it does.

        Asked first, then put: not atomic, which is enough for keys only etcdbench processes write.
        """
        if self._range(key.encode(), b"", count_only=True).count:
            return False
        request = rpc_pb2.PutRequest(key=key.encode(), value=value, lease=self._lease(ttl_s))
        try:
            self._kv.Put(request, timeout=ADMIN_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise self._error("Put", exc) from None
        return True

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete these keys, one by one (a handful: meeting keys)."""
        for key in keys:
            try:
                self._kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key.encode()), timeout=ADMIN_TIMEOUT_S)
            except grpc.RpcError as exc:
                raise self._error("DeleteRange", exc) from None

    def compact(self, revision: int) -> None:
        try:
            self._kv.Compact(
                rpc_pb2.CompactionRequest(revision=revision, physical=True), timeout=ADMIN_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            raise self._error("Compact", exc) from None

    def server_version(self) -> str:
        try:
            resp = self._maintenance.Status(rpc_pb2.StatusRequest(), timeout=ADMIN_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise self._error("Status", exc) from None
        return str(resp.version)

    def defragment(self) -> None:
        try:
            self._maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=DEFRAG_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise self._error("Defragment", exc) from None

    def db_size(self) -> int | None:
        try:
            resp = self._maintenance.Status(rpc_pb2.StatusRequest(), timeout=ADMIN_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise self._error("Status", exc) from None
        return int(resp.dbSize)

    def status(self) -> dict[str, int | str]:
        resp = self._maintenance.Status(rpc_pb2.StatusRequest(), timeout=ADMIN_TIMEOUT_S)
        return {
            "version": resp.version,
            "db_size": resp.dbSize,
            "leader": resp.leader,
            "member": resp.header.member_id,
        }

    def watch(self, prefix: str, start_revision: int) -> Iterator[WatchItem]:
        return (item for _, item in self.watch_many(prefix, start_revision, 1))

    def watch_many(self, prefix: str, start_revision: int, count: int) -> Iterator[tuple[int, WatchItem]]:
        """`count` watches of the same prefix multiplexed on ONE gRPC stream, as the kube-apiserver
        multiplexes its watchers; items are tagged with the watch's index 0..count-1.

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
                for index, item in self._watch_stream(key, end, next_revision):
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

    def _watch_stream(
        self, key: bytes, end: bytes, next_revision: list[int]
    ) -> Iterator[tuple[int, WatchItem]]:
        """One stream carrying a watch per entry of `next_revision`, until it breaks or is cancelled."""
        pending: list[int] = []  # watch indexes whose create request awaits its `created` answer
        ids: dict[int, int] = {}  # server watch_id -> our index
        call: _GrpcioWatch | _NativeWatch
        token = ""
        if self._unary is not None:
            headers, token = self._call_headers(WATCH_PATH)
            address = self._addresses[self._next_address % len(self._addresses)]
            call = _NativeWatch(address, headers, self._ssl)
        else:
            call = _GrpcioWatch(self._watch)

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
                    relist = self.relist(key, end)
                    yield index, relist
                    create(index, relist.revision + 1)
                    continue
                if resp.canceled:
                    raise EtcdError(f"etcd at {self._target} cancelled a watch: {resp.cancel_reason}")
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
                self._token_failed(exc, token)
            raise
        finally:
            call.cancel()

    def cancel(self) -> None:
        self._cancelled.set()
        if self._call is not None:
            self._call.cancel()

    def close(self) -> None:
        self.cancel()
        if self._unary is not None:
            self._unary.close()
        self._channel.close()
