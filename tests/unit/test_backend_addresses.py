"""The backends without an etcd: v3 prefix range ends, the gRPC target of a list of URLs, and an
unreachable endpoint as one clear error on v3 and v2."""

from __future__ import annotations

import pytest

from etcdbench.backends.base import Endpoint
from etcdbench.backends.v2 import V2Backend
from etcdbench.backends.v3 import V3Backend, grpc_target, prefix_range_end
from etcdbench.errors import EtcdError, UsageError
from etcdbench.etcd.local import _free_port


def test_prefix_range_end() -> None:
    assert prefix_range_end(b"/registry/") == b"/registry0"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff") == b"\0"


def test_grpc_target_from_urls() -> None:
    assert grpc_target(Endpoint(("http://127.0.0.1:2379",))) == "127.0.0.1:2379"
    assert (
        grpc_target(Endpoint(("http://127.0.0.1:1", "http://127.0.0.2:2"))) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    )
    with pytest.raises(UsageError, match=r"--endpoints: .* has no port"):  # bad input, not etcd
        grpc_target(Endpoint(("https://x",)))


def test_unreachable_endpoint_is_one_clear_error() -> None:
    backend = V3Backend(Endpoint(("http://127.0.0.1:9",)))
    with pytest.raises(EtcdError, match=r"cannot reach etcd v3 API at 127\.0\.0\.1:9"):
        backend.check()
    backend.close()


def test_unreachable_server_is_reported() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    b = V2Backend(Endpoint((url,)), timeout=2)
    try:
        with pytest.raises(EtcdError, match=f"^cannot reach etcd at {url}: "):
            b.check()
    finally:
        b.close()
