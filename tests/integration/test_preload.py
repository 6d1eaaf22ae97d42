"""The preload (the standing state): the same keys and values as one put of each built object, faster.

Values are made from per-class templates (workload/preload.py) and stored in Txn batches on v3, with
several PUTs in flight on v2. These tests hold both against the slow, obvious way: build each object,
encode it, put it. Counts and bytes only; speed is measured in benchmarks/, never asserted here. The
values alone, with no etcd: tests/unit/test_preload_values.py.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from backend_puts import v3_values

from etcdbench.backends.base import Endpoint, PutCallback
from etcdbench.backends.v2 import V2Backend
from etcdbench.backends.v3 import MAX_TXN_OPS, V3Backend
from etcdbench.config.run import RunConfig
from etcdbench.encoding.codec import get_codec
from etcdbench.encoding.objects import build_object, object_key
from etcdbench.etcd import LocalEtcd
from etcdbench.workload.ops import written_keys
from etcdbench.workload.writer import ValueTemplates, WriterPlan, _preload, _Window


def _config(backend: str, encoding: str, prefix: str, writers: int = 2) -> RunConfig:
    # More pods than one Txn holds, so that a writer sends several batches and a last partial one.
    return RunConfig(
        backend=backend,
        encoding=encoding,
        kind="node",
        objects=20,
        writers=writers,
        rate=100,
        duration_s=1,
        prefix=prefix,
        preload={"pod": 2 * MAX_TXN_OPS + 37, "event": 15, "node": 5},
    )


def _expected(config: RunConfig, base64_values: bool) -> dict[str, bytes]:
    """What the preload stored before batching and templates: each object built, encoded, put."""
    codec = get_codec(config.encoding)
    counts = dict(config.preload)
    counts[config.kind] = max(counts.get(config.kind, 0), config.objects)
    out = {}
    for kind, n in counts.items():
        for index in range(n):
            value = codec.encode(build_object(kind, index))
            out[config.prefix + object_key(kind, index)] = base64.b64encode(value) if base64_values else value
    return out


def _run_preload(
    config: RunConfig, endpoint: Endpoint, wrap: Callable[[Any], Any] = lambda b: b
) -> tuple[int, list[int]]:
    stored = 0
    reports: list[int] = []
    for w in range(config.writers):
        backend: Any = V3Backend(endpoint) if config.backend == "v3" else V2Backend(endpoint)
        try:
            templates = ValueTemplates(
                config, base64_values=not backend.binary_safe and config.encoding == "protobuf"
            )
            plan = WriterPlan(w, config, endpoint)
            stored += _preload(plan, wrap(backend), templates, _Window(config.max_inflight), reports.append)
        finally:
            backend.close()
    return stored, reports


def _v2_values(server: LocalEtcd, prefix: str) -> dict[str, bytes]:
    with urllib.request.urlopen(f"{server.client_url}/v2/keys{prefix}?recursive=true", timeout=10) as resp:
        doc = json.load(resp)
    out: dict[str, bytes] = {}

    def walk(node: dict[str, Any]) -> None:
        if node.get("dir"):
            for child in node.get("nodes", []):
                walk(child)
        else:
            out[node["key"]] = node["value"].encode()

    walk(doc["node"])
    return out


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
@pytest.mark.parametrize("backend", ["v3", "v2"])
def test_preload_stores_exactly_the_built_objects(
    etcd_server: LocalEtcd, fresh_prefix: str, backend: str, encoding: str
) -> None:
    """v2 values are text: protobuf ones are stored base64-encoded."""
    config = _config(backend, encoding, fresh_prefix)
    stored, _ = _run_preload(config, Endpoint((etcd_server.client_url,)))
    expected = _expected(config, base64_values=backend == "v2" and encoding == "protobuf")
    got = (
        v3_values(etcd_server.client_url, fresh_prefix)
        if backend == "v3"
        else _v2_values(etcd_server, fresh_prefix)
    )
    assert stored == len(expected) == len(got)
    assert got == expected
    if backend == "v3":
        assert set(got) == written_keys(config, range(config.writers))  # the keys a cleanup computes


class _FailingBatches:
    """A v3 backend whose third Txn fails (as a dead or refusing etcd would answer)."""

    def __init__(self, inner: V3Backend) -> None:
        self.inner = inner
        self.batches = 0
        self.max_txn_ops = inner.max_txn_ops
        self.binary_safe = inner.binary_safe

    def put_many_async(self, items: Sequence[tuple[str, bytes]], done: PutCallback) -> None:
        self.batches += 1
        if self.batches == 3:
            threading.Timer(0.05, done, (ConnectionError("etcd went away"),)).start()
            return
        self.inner.put_many_async(items, done)


class _FailingPuts:
    """A v2 backend whose 50th PUT fails."""

    max_txn_ops = 1  # no batches: one PUT per key

    def __init__(self, inner: V2Backend) -> None:
        self.inner = inner
        self.puts = 0

    def put_async(self, key: str, value: bytes, done: PutCallback, *args: Any, **kwargs: Any) -> None:
        self.puts += 1
        if self.puts == 50:
            done(ConnectionError("etcd went away"))
            return
        self.inner.put_async(key, value, done)


@pytest.mark.parametrize("backend", ["v3", "v2"])
def test_a_failure_mid_preload_is_reported_as_a_failure(
    etcd_server: LocalEtcd, fresh_prefix: str, backend: str
) -> None:
    config = _config(backend, "json", fresh_prefix, writers=1)
    wrap = _FailingBatches if backend == "v3" else _FailingPuts
    with pytest.raises(RuntimeError, match=r"preload: 1 puts failed, e.g. etcd went away"):
        _run_preload(config, Endpoint((etcd_server.client_url,)), wrap)


def test_put_many_refuses_more_than_etcd_takes_in_one_txn(etcd_server: LocalEtcd) -> None:
    backend = V3Backend(Endpoint((etcd_server.client_url,)))
    try:
        with pytest.raises(ValueError, match="put_many_async takes 1 to 128 puts"):
            backend.put_many_async([("k", b"v")] * (MAX_TXN_OPS + 1), lambda exc: None)
    finally:
        backend.close()
