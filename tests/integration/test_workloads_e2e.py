"""Workloads on a real etcd: deletes, expiries, several watchers and preload, with exact books."""

from __future__ import annotations

from typing import Any

import pytest

from etcdbench.bench.target import run_watch
from etcdbench.config.run import RunConfig
from etcdbench.etcd import LocalEtcd


def run(etcd: LocalEtcd, prefix: str, **kw: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "rate": 200,
        "duration_s": 1.0,
        "warmup_s": 0.5,
        "objects": 10,
        "drain_s": 3.0,
    }
    settings.update(kw)
    results = run_watch(RunConfig(prefix=prefix, **settings), endpoints=[etcd.client_url], etcd_bin=None)
    (r,) = results.runs
    return r.to_dict()  # as the results file keeps it


def assert_all_received(r: dict[str, Any], written: int) -> None:
    c = r["counters"]
    assert c["written"] == written
    assert c["received"] == written and c["missed"] == 0
    assert c["duplicates"] == c["out_of_order"] == c["foreign_events"] == c["decode_errors"] == 0


@pytest.mark.parametrize("backend", ["v3", "v2"])
def test_churn_deletes_are_events_accounted_like_updates(
    etcd_server: LocalEtcd, fresh_prefix: str, backend: str
) -> None:
    r = run(etcd_server, fresh_prefix, backend=backend, encoding="json", workload="churn", churn_updates=1)
    assert r["operations"] == {"create": 100, "update": 100, "delete": 100}  # 10 lanes x 10 lifecycles
    assert r["counters"]["writes"] == 300
    assert_all_received(r, 300)
    assert r["latency_us"]["watch"]["count"] == 200  # deletes have a latency too


def test_mix_has_exact_operation_counts(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    r = run(etcd_server, fresh_prefix, backend="v2", workload="mix", mix="update=2,create=1,delete=1")
    assert r["operations"] == {"create": 75, "update": 150, "delete": 75}
    assert_all_received(r, 300)


def expiring_events(etcd: LocalEtcd, prefix: str, backend: str, mix: str, **kw: Any) -> dict[str, Any]:
    """A mix of Events that expire 2 s after they are written, at 100 writes/s for the default duration."""
    return run(
        etcd,
        prefix,
        backend=backend,
        kind="event",
        workload="mix",
        mix=mix,
        ttl_s=2.0,
        rate=100,
        warmup_s=0.0,
        **kw,
    )


@pytest.mark.parametrize("backend", ["v3", "v2"])
def test_expiries_are_received_events(etcd_server: LocalEtcd, fresh_prefix: str, backend: str) -> None:
    r = expiring_events(etcd_server, fresh_prefix, backend, "create=1")
    assert r["operations"] == {"create": 100, "update": 0, "delete": 0}
    c = r["counters"]
    assert c["expiries_received"] == 100 and c["expiries_pending"] == 0 and c["missed_expiries"] == 0
    assert_all_received(r, 200)  # 100 creates + their 100 expiries


@pytest.mark.parametrize("backend", ["v3", "v2"])
def test_updates_of_expiring_keys_keep_their_expiry(
    etcd_server: LocalEtcd, fresh_prefix: str, backend: str
) -> None:
    # An update sent without the key's lease (v3) or ttl (v2) made it permanent: its expiry never came
    # and the run reported false missed expiries.
    r = expiring_events(etcd_server, fresh_prefix, backend, "update=3,create=1", encoding="json")
    assert r["operations"]["create"] == 25 and r["operations"]["update"] == 75
    c = r["counters"]
    assert c["expiries_received"] == 25 and c["missed_expiries"] == 0 and c["expiries_pending"] == 0
    assert c["foreign_events"] == 0 and c["duplicates"] == 0
    assert c["written"] == c["writes"] + 25  # every create, update and expiry


def test_several_watchers_on_shared_and_separate_streams(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    r = run(etcd_server, fresh_prefix, watchers=3, watchers_per_stream=2)
    assert r["watchers"] == 3
    assert [w["stream"] for w in r["watches"]] == [0, 0, 1]
    for w in r["watches"]:
        assert w["counters"]["written"] == w["counters"]["received"] == 300
        assert w["latency_us"]["watch"]["count"] == 200
    c = r["counters"]
    assert c["written"] == 300  # the writes, once: not once per watch
    assert c["received"] == 900 and c["missed"] == 0  # totals over the watches: each got every write
    assert r["latency_us"]["watch"]["count"] == 600


def test_v2_watchers_each_get_every_event(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    r = run(etcd_server, fresh_prefix, backend="v2", watchers=2)
    assert [w["counters"]["received"] for w in r["watches"]] == [300, 300]


def test_preload_stores_the_standing_state_first(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    r = run(etcd_server, fresh_prefix, preload={"node": 50, "pod": 100}, writers=2)
    assert r["preload"]["keys"] == 150  # the 10 updated pods are among the 100 preloaded
    assert r["preload"]["db_size_bytes"] > 0
    assert_all_received(r, 300)  # the preload is not watched: the watch starts after it
    sizes = r["object_sizes"]
    assert sizes["json"]["count"] == sizes["protobuf"]["count"] == sizes["stored"]["count"] == 300
    assert sizes["protobuf"]["p50"] < sizes["json"]["p50"]
