"""One connection to etcd's v3 API: the grpcio channel (TLS, auth token) and, for the native client,
our HTTP/2 unary client; and the one place a failed gRPC call becomes an EtcdError.

https:// endpoints get a TLS channel (the endpoint's CA, and its client certificate if any). With a
user, every call carries etcd's auth token as "token" metadata (added by a channel interceptor, or to
the native client's header block); the token comes from Auth/Authenticate on first use and again after
etcd calls it invalid (etcd restarted, or the token expired).
"""

from __future__ import annotations

import contextlib
import os
import ssl
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from etcdbench._pb.etcd import rpc_pb2, rpc_pb2_grpc
from etcdbench.backends.base import Endpoint, PutCallback
from etcdbench.backends.credentials import parse_endpoint, tls_hint
from etcdbench.backends.transport.h2 import (
    ConnectionLost,
    GrpcStatus,
    UnaryClient,
    client_context,
    request_headers,
)
from etcdbench.errors import EtcdError

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # one page of a relist, or one huge object, fits
PUT_TIMEOUT_S = 10.0  # a put not acknowledged by then fails (and is retried by the writer)
ADMIN_TIMEOUT_S = 10.0
UNAUTHENTICATED = 16


def v3_client(endpoint: Endpoint) -> str:
    """The v3 client for `endpoint`: "native" (our HTTP/2 client on the hot paths, over TCP or TLS)
    or "grpcio" (ETCDBENCH_V3_CLIENT=grpcio, everywhere). Whether it spoke TLS is `endpoint.tls`.
    """
    value = os.environ.get("ETCDBENCH_V3_CLIENT", "native")
    if value not in ("native", "grpcio"):
        raise EtcdError(f"ETCDBENCH_V3_CLIENT: {value!r} is not one of native, grpcio")
    endpoint.tls  # noqa: B018 (raises EtcdError when the schemes and the TLS files do not match)
    return value


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


class RpcFailed(EtcdError):
    """A v3 call failed; `details` is what gRPC said, without the call and endpoint of the message."""

    def __init__(self, message: str, details: str) -> None:
        super().__init__(message)
        self.details = details


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


class TokenAuth:
    """etcd v3 auth: a token from Auth/Authenticate, asked on first use and again once it is invalid."""

    def __init__(self, channel: grpc.Channel, target: str, user: str, password: str) -> None:
        self._stub = rpc_pb2_grpc.AuthStub(channel)  # on the plain channel: no token needed to get one
        self._target = target
        self.user = user
        self._password = password
        self._token: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenAuth(user={self.user!r})"  # never the password

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

    def __init__(self, auth: TokenAuth) -> None:
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


class Connection:
    """The channel and stubs of one v3 client, its client choice (`client`: "native" or "grpcio"), and
    the native unary client when that is ours (`unary`, None on grpcio)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.target = grpc_target(endpoint)
        self.channel = self._open_channel(endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.watch = rpc_pb2_grpc.WatchStub(self.channel)
        self.maintenance = rpc_pb2_grpc.MaintenanceStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.addresses = addresses(endpoint)
        self.client = v3_client(endpoint)
        self.ssl = self._native_tls(endpoint) if self.client == "native" and self.tls else None
        self.unary = UnaryClient(self.addresses, PUT_TIMEOUT_S, self.ssl) if self.client == "native" else None
        self._headers: dict[tuple[str, str], bytes] = {}

    def _open_channel(self, endpoint: Endpoint) -> grpc.Channel:
        """Plain or TLS per the URLs' scheme; with a user, wrapped to send the auth token."""
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        creds = endpoint.credentials
        self.tls = endpoint.tls
        self._client_cert = bool(creds and creds.cert)
        if self.tls and creds is not None:
            if len(endpoint.urls) > 1:  # an "ipv4:" target names no host: verify against the first URL
                options.append(("grpc.default_authority", urlsplit(endpoint.urls[0]).netloc))
            tls = grpc.ssl_channel_credentials(
                root_certificates=_read_pem("--cacert", creds.cacert),
                private_key=_read_pem("--key", creds.key),
                certificate_chain=_read_pem("--cert", creds.cert),
            )
            channel = grpc.secure_channel(self.target, tls, options=options)
        else:
            channel = grpc.insecure_channel(self.target, options=options)
        self.auth: TokenAuth | None = None
        if creds is not None and creds.user is not None:
            self.auth = TokenAuth(channel, self.target, creds.user, creds.password or "")
            channel = grpc.intercept_channel(channel, _TokenInterceptor(self.auth))
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

    # -- errors ------------------------------------------------------------------------------------

    def _security_error(self, exc: grpc.RpcError) -> str | None:
        """A one-line message for a TLS handshake or authorization failure; None for anything else."""
        code, details = exc.code(), exc.details() or ""
        if self.tls and code == grpc.StatusCode.UNAVAILABLE:
            hint = tls_hint(details, client_cert=self._client_cert)
            if hint is not None:
                return f"TLS handshake with {self.target} failed: {hint}"
        if code == grpc.StatusCode.PERMISSION_DENIED:
            if self.auth is None:
                return f"etcd at {self.target} denied access: permission denied (pass --user)"
            return f"etcd at {self.target} denied user {self.auth.user}: permission denied (check its roles)"
        if "user name is empty" in details:
            return f"etcd at {self.target} has authentication enabled: pass --user"
        return None

    def error(self, what: str, exc: grpc.RpcError) -> RpcFailed:
        """The one-line error of the call `what` (e.g. "Range") that failed with `exc`."""
        details = exc.details() or ""
        message = self._security_error(exc)
        if message is None:
            message = f"etcd at {self.target}: {what} failed: {exc.code().name}: {exc.details()}"
        return RpcFailed(message, details)

    @contextlib.contextmanager
    def rpc(self, what: str) -> Iterator[None]:
        """Around one grpcio call `what`: a grpc.RpcError out of it is raised as `error(what, exc)`."""
        try:
            yield
        except grpc.RpcError as exc:
            raise self.error(what, exc) from None

    def check(self) -> None:
        """Fail early with one clear line when etcd is not there, is not an etcd, or refuses us."""
        try:
            if self.auth is not None:
                self.auth.token()  # a wrong password fails here, before any run starts
            self.maintenance.Status(rpc_pb2.StatusRequest(), timeout=ADMIN_TIMEOUT_S, wait_for_ready=False)
        except grpc.RpcError as exc:
            security = self._security_error(exc)
            if security is not None:
                raise EtcdError(security) from None
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                if "Failed parsing HTTP/2" in (exc.details() or ""):  # an HTTP/1 server, not etcd
                    raise EtcdError(
                        f"{self.target} is not an etcd v3 endpoint: it does not speak gRPC"
                    ) from None
                raise EtcdError(f"cannot reach etcd v3 API at {self.target}: {exc.details()}") from None
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # gRPC, but not etcd's Maintenance service
                raise EtcdError(f"{self.target} is not an etcd v3 endpoint: {exc.details()}") from None
            raise self.error("Status", exc) from None

    # -- the native client -------------------------------------------------------------------------

    def call_headers(self, path: str) -> tuple[bytes, str]:
        """The header block for `path` with the current auth token (if any), and that token."""
        try:
            token = self.auth.token() if self.auth is not None else ""
        except grpc.RpcError as exc:
            raise ConnectionLost(f"cannot get an auth token: {exc.code().name}") from None
        block = self._headers.get((path, token))
        if block is None:
            metadata = (("token", token),) if token else ()
            authority = "{}:{}".format(*self.addresses[0])
            block = self._headers[(path, token)] = request_headers(
                authority, path, metadata, tls=self.ssl is not None
            )
        return block, token

    def native_call(
        self, path: str, message: bytes, done: PutCallback, reply: Callable[[bytes], None] | None = None
    ) -> None:
        """Send one unary call on our HTTP/2 client; `done` gets its outcome, `reply` its answer."""
        assert self.unary is not None
        try:
            headers, token = self.call_headers(path)
        except ConnectionLost as exc:
            done(exc)
            return
        if token:
            inner = done

            def done(exc: BaseException | None) -> None:
                self.token_failed(exc, token)
                inner(exc)

        self.unary.call(headers, message, done, reply)

    def token_failed(self, exc: BaseException | None, token: str) -> None:
        """etcd called our token invalid (it restarted, or the token expired): get a new one."""
        invalid = isinstance(exc, GrpcStatus) and exc.code == UNAUTHENTICATED
        if invalid and "invalid auth token" in str(exc):
            assert self.auth is not None
            self.auth.invalidate(token)

    def close(self) -> None:
        if self.unary is not None:
            self.unary.close()
        self.channel.close()
