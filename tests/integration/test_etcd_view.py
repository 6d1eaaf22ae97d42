"""etcd's own view: exact counts from a real etcd that only this test writes to (the parser and the
arithmetic: tests/unit/test_etcd_view_parse.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from backend_puts import put_all

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint
from etcdbench.bench.target import run_watch
from etcdbench.config.run import RunConfig
from etcdbench.etcd import LocalEtcd
from etcdbench.metrics.etcd_view import EtcdMetricsSampler
from etcdbench.results.verdict import verdict


def _put_all(backend_name: str, url: str, keys: list[str]) -> None:
    backend = make_backend(backend_name, Endpoint((url,)))
    try:
        put_all(backend, [(key, b"value") for key in keys], ordered=False)
    finally:
        backend.close()


def test_real_etcd_counts_exactly_the_puts_of_each_api(own_etcd: LocalEtcd) -> None:
    sampler = EtcdMetricsSampler([own_etcd.client_url], interval_s=0.2)
    sampler.start()
    _put_all("v3", own_etcd.client_url, [f"/view/v3/{i}" for i in range(37)])
    _put_all("v2", own_etcd.client_url, [f"/view/v2/{i}" for i in range(11)])
    sampler.stop()
    view = sampler.view()
    assert view["scraped"] == 1 and view["errors"] == []
    assert view["increase"]["mvcc_puts"] == 37
    assert view["increase"]["v2_puts"] == 11
    assert view["last"]["db_bytes"] > 0
    assert sum(v for _, v in view["series"]["mvcc_puts"]) == 37


@pytest.mark.parametrize(("backend", "encoding"), [("v3", "protobuf"), ("v2", "json")])
def test_etcds_own_count_matches_the_books_of_a_run(backend: str, encoding: str) -> None:
    """On an embedded etcd only the run writes: etcd's count of puts applied (and, on v3, of watch
    events sent) is an independent tally of what the books say was written and received."""
    config = RunConfig(
        backend=backend, encoding=encoding, rate=200, duration_s=1.0, warmup_s=0.5, objects=20, drain_s=3.0
    )
    (run,) = run_watch(config, endpoints=None, etcd_bin=None).runs
    view, c = run.etcd, run.counters
    assert view is not None
    assert view.scraped == 1 and view.restarted == 0
    assert c.written == 300 and c.received == 300
    applied = view.increase["mvcc_puts" if backend == "v3" else "v2_puts"]
    assert applied == run.operations.update == 300
    if backend == "v3":
        assert view.increase["watch_events_sent"] == c.received
    assert not [w for w in run.verdict.warnings if w.startswith("etcd disagrees")]

    # etcd applying one put fewer than we counted is named in the verdict's warnings.
    name = "mvcc_puts" if backend == "v3" else "v2_puts"
    run = replace(run, etcd=replace(view, increase={**view.increase, name: 299}))
    warnings = verdict(run, config).warnings
    expected = f"etcd disagrees: etcd applied 299 puts ({name}) but etcdbench counted 300 acknowledged"
    assert expected in warnings
