"""etcd API backends. Every v2/v3 difference lives in this package: the rest of etcdbench gets a
`Backend` or an `Admin` (backends.base) from the factories below and never learns which API it is.

The implementations are imported inside the factories: grpc is imported only by a process that makes
a v3 connection, and no module of this package imports the package back.
"""

from __future__ import annotations

import os
from typing import Any

from etcdbench.backends.base import Admin, Backend, Endpoint

# gRPC's core writes each failed TLS handshake to stderr at INFO level, before our one-line error; ERROR
# is its documented default. It is read when grpc is imported, which only happens below this package
# (etcdbench.backends.v3), and is inherited by the spawned writers and watchers. A user's value wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def make_backend(name: str, endpoint: Endpoint, *, v2_watch: str = "poll", max_inflight: int = 64) -> Backend:
    """Create a backend in the calling process (gRPC channels must not cross a fork or spawn)."""
    if name == "v3":
        from etcdbench.backends.v3 import V3Backend

        return V3Backend(endpoint)
    from etcdbench.backends.v2 import V2Backend

    return V2Backend(endpoint, watch_mode=v2_watch, max_inflight=max_inflight)


def make_admin(name: str, endpoint: Endpoint) -> Admin:
    """The admin calls in the API a run uses (`name`): its keys are that API's keys (cleanup, counts,
    the revision a run starts from)."""
    if name == "v3":
        from etcdbench.backends.v3 import V3Admin

        return V3Admin(endpoint)
    from etcdbench.backends.v2 import V2Backend

    return V2Backend(endpoint)


def make_server_admin(endpoint: Endpoint) -> Admin:
    """The admin calls in etcd's own API (v3), whatever API a run measures: member status,
    compaction and defragmentation of the store, and leased keys (the shards' meeting)."""
    from etcdbench.backends.v3 import V3Admin

    return V3Admin(endpoint)


def client_environment(endpoint: Endpoint) -> dict[str, Any]:
    """How the clients of a run on `endpoint` talk to etcd, for the results' environment: which v3
    client carries the hot paths (v3 runs), and whether every client speaks TLS."""
    from etcdbench.backends.v3 import v3_client

    return {"v3_client": v3_client(endpoint), "tls": endpoint.tls}
