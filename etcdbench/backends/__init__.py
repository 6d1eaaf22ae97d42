"""etcd API backends. Every v2/v3 difference lives in this package."""

from __future__ import annotations

import os

from etcdbench.backends.base import Backend, Endpoint, KeyAdmin
from etcdbench.errors import EtcdError

# gRPC's core writes each failed TLS handshake to stderr at INFO level, before our one-line error; ERROR
# is its documented default. It is read when grpc is imported, which only happens below this package
# (etcdbench.backends.v3), and is inherited by the spawned writers and watchers. A user's value wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def v3_client(endpoint: Endpoint) -> str:
    """The v3 client for `endpoint`: "native" (our HTTP/2 client on the hot paths, over TCP or TLS)
    or "grpcio" (ETCDBENCH_V3_CLIENT=grpcio, everywhere). Whether it spoke TLS is `endpoint.tls`.
    """
    value = os.environ.get("ETCDBENCH_V3_CLIENT", "native")
    if value not in ("native", "grpcio"):
        raise EtcdError(f"ETCDBENCH_V3_CLIENT: {value!r} is not one of native, grpcio")
    endpoint.tls  # noqa: B018 (raises EtcdError when the schemes and the TLS files do not match)
    return value


def make_backend(name: str, endpoint: Endpoint, *, v2_watch: str = "poll", max_inflight: int = 64) -> Backend:
    """Create a backend in the calling process (gRPC channels must not cross a fork or spawn)."""
    if name == "v3":
        from etcdbench.backends.v3 import V3Backend

        return V3Backend(endpoint)
    from etcdbench.backends.v2 import V2Backend

    return V2Backend(endpoint, watch_mode=v2_watch, max_inflight=max_inflight)


def make_key_admin(name: str, endpoint: Endpoint) -> KeyAdmin:
    """A connection that lists a prefix and deletes a run's own keys, in the API the run uses."""
    if name == "v3":
        from etcdbench.backends.v3 import V3Backend

        return V3Backend(endpoint)
    from etcdbench.backends.v2 import V2Backend

    return V2Backend(endpoint)
