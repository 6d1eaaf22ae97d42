"""etcd's own view: the /metrics parser, counter increases across restarts, and exact counts from a
real etcd that only this test writes to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint
from etcdbench.bench.target import run_watch
from etcdbench.config.run import RunConfig
from etcdbench.etcd import LocalEtcd, find_etcd_binary
from etcdbench.metrics.etcd_view import EtcdMetricsSampler, disagreements, increase, parse_metrics, summarize
from etcdbench.results.verdict import verdict

EXPOSITION = """\
# HELP etcd_mvcc_put_total Total number of puts seen by this member.
# TYPE etcd_mvcc_put_total counter
etcd_mvcc_put_total 120
# HELP etcd_debugging_store_writes_total Total number of writes to the store by action.
# TYPE etcd_debugging_store_writes_total counter
etcd_debugging_store_writes_total{action="create"} 4
etcd_debugging_store_writes_total{action="delete"} 2
etcd_debugging_store_writes_total{action="set"} 7
etcd_debugging_store_writes_total{action="compareAndDelete"} 1
# HELP etcd_debugging_mvcc_slow_watcher_total Total number of unsynced slow watchers.
# TYPE etcd_debugging_mvcc_slow_watcher_total gauge
etcd_debugging_mvcc_slow_watcher_total 3
# HELP etcd_server_has_leader Whether or not a leader exists.
# TYPE etcd_server_has_leader gauge
etcd_server_has_leader 1
# HELP grpc_server_msg_sent_total Total number of gRPC stream messages sent by the server.
# TYPE grpc_server_msg_sent_total counter
grpc_server_msg_sent_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch"} 9
"""


def test_parse_reads_our_quantities_and_splits_v2_writes_by_action() -> None:
    assert parse_metrics(EXPOSITION) == {
        "mvcc_puts": 120.0,
        "v2_puts": 11.0,  # create + set
        "v2_deletes": 3.0,  # delete + compareAndDelete
        "slow_watchers": 3.0,
    }


def test_parse_ignores_what_is_not_etcd_metrics() -> None:
    assert parse_metrics("<html>not metrics</html>\n") == {}


def test_increase_counts_from_zero_after_a_restart() -> None:
    assert increase([10, 15, 40]) == 30
    # The member restarted between 40 and 5: its counter began again at 0 and reached 5.
    assert increase([10, 40, 5, 12]) == 30 + 5 + 7
    assert increase([7]) == 0


def test_members_combine_by_what_each_one_does() -> None:
    a_values = [{"mvcc_puts": 100, "watch_events_sent": 0}, {"mvcc_puts": 150, "watch_events_sent": 50}]
    b_values = [{"mvcc_puts": 90, "watch_events_sent": 5}, {"mvcc_puts": 140, "watch_events_sent": 5}]
    a = ([0.0, 1.0], a_values)
    b = ([0.1, 1.1], b_values)
    view = summarize([a, b], [], t0=0.0, interval_s=1.0)
    assert view["increase"]["mvcc_puts"] == 50  # every member applies every put: not 100
    assert view["increase"]["watch_events_sent"] == 50  # only the member serving the watch sends
    assert view["series"]["mvcc_puts"] == [[1.0, 50.0]]


def test_an_unreachable_member_is_an_error_not_a_failure() -> None:
    sampler = EtcdMetricsSampler(["http://127.0.0.1:9"], interval_s=0.05)
    sampler.start()
    sampler.stop()
    view = sampler.view()
    assert view["scraped"] == 0
    assert view["errors"] and "127.0.0.1:9" in view["errors"][0]
    assert disagreements(view, _run(writes=5, received=5)) == []


def _run(writes: int, received: int, missed: int = 0, backend: str = "v3") -> dict[str, Any]:
    return {
        "backend": backend,
        "operations": {"create": 0, "update": writes, "delete": 0},
        "counters": {"received": received, "missed": missed},
    }


def test_disagreements_name_fewer_applied_fewer_sent_and_slow_watchers() -> None:
    view = {"scraped": 1, "increase": {"mvcc_puts": 90, "watch_events_sent": 80}, "max": {"slow_watchers": 2}}
    lines = disagreements(view, _run(writes=100, received=100))
    assert lines == [
        "etcd applied 90 puts (mvcc_puts) but etcdbench counted 100 acknowledged",
        "etcd sent 80 watch events but etcdbench's watchers received 100",
        "etcd reported up to 2 slow (unsynced) watchers while etcdbench's missed nothing",
    ]
    agree = {
        "scraped": 1,
        "increase": {"mvcc_puts": 130, "watch_events_sent": 100},
        "max": {"slow_watchers": 0},
    }
    assert disagreements(agree, _run(writes=100, received=100)) == []


@pytest.fixture
def own_etcd() -> Iterator[LocalEtcd]:
    with LocalEtcd(find_etcd_binary(), enable_v2=True) as server:
        yield server


def _put_all(backend_name: str, url: str, keys: list[str]) -> None:
    backend = make_backend(backend_name, Endpoint((url,)))
    done = threading.Semaphore(0)
    failures: list[BaseException] = []

    def acked(exc: BaseException | None) -> None:
        if exc is not None:
            failures.append(exc)
        done.release()

    try:
        for key in keys:
            backend.put_async(key, b"value", acked)
        backend.flush()
        for _ in keys:
            done.acquire()
    finally:
        backend.close()
    assert not failures


@pytest.mark.integration
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


@pytest.mark.integration
@pytest.mark.parametrize(("backend", "encoding"), [("v3", "protobuf"), ("v2", "json")])
def test_etcds_own_count_matches_the_books_of_a_run(backend: str, encoding: str) -> None:
    """On an embedded etcd only the run writes: etcd's count of puts applied (and, on v3, of watch
    events sent) is an independent tally of what the books say was written and received."""
    config = RunConfig(
        backend=backend, encoding=encoding, rate=200, duration_s=1.0, warmup_s=0.5, objects=20, drain_s=3.0
    )
    (run,) = run_watch(config, endpoints=None, etcd_bin=None)["runs"]
    view, c = run["etcd"], run["counters"]
    assert view["scraped"] == 1 and view["restarted"] == 0
    assert c["written"] == 300 and c["received"] == 300
    applied = view["increase"]["mvcc_puts" if backend == "v3" else "v2_puts"]
    assert applied == run["operations"]["update"] == 300
    if backend == "v3":
        assert view["increase"]["watch_events_sent"] == c["received"]
    assert not [w for w in run["verdict"]["warnings"] if w.startswith("etcd disagrees")]

    # etcd applying one put fewer than we counted is named in the verdict's warnings.
    name = "mvcc_puts" if backend == "v3" else "v2_puts"
    run["etcd"] = dict(view, increase=dict(view["increase"], **{name: 299}))
    warnings = verdict(run, config)["warnings"]
    expected = f"etcd disagrees: etcd applied 299 puts ({name}) but etcdbench counted 300 acknowledged"
    assert expected in warnings
