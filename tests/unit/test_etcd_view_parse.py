"""etcd's own view from fixed text and run dicts: the /metrics parser, counter increases across restarts,
members combined, and where etcd's counts and the books disagree."""

from __future__ import annotations

from typing import Any

from etcdbench.metrics.etcd_view import EtcdMetricsSampler, disagreements, increase, parse_metrics, summarize
from etcdbench.results.model import EtcdView

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
    a_values: list[dict[str, float]] = [
        {"mvcc_puts": 100, "watch_events_sent": 0},
        {"mvcc_puts": 150, "watch_events_sent": 50},
    ]
    b_values: list[dict[str, float]] = [
        {"mvcc_puts": 90, "watch_events_sent": 5},
        {"mvcc_puts": 140, "watch_events_sent": 5},
    ]
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
    assert disagreements(_view(view), **_run(writes=5, received=5)) == []


def _view(view: dict[str, Any]) -> EtcdView:
    """A sampler's view (or one written here) as a run keeps it: without its series."""
    full = {"members": 1, "restarted": 0, "errors": [], "increase": {}, "max": {}, "last": {}, **view}
    return EtcdView.from_dict({k: v for k, v in full.items() if k != "series"})


def _run(writes: int, received: int, missed: int = 0, backend: str = "v3") -> dict[str, Any]:
    """What `disagreements` reads of a run."""
    return {"backend": backend, "acked_puts": writes, "received": received, "missed": missed}


def test_disagreements_name_fewer_applied_fewer_sent_and_slow_watchers() -> None:
    view = {"scraped": 1, "increase": {"mvcc_puts": 90, "watch_events_sent": 80}, "max": {"slow_watchers": 2}}
    lines = disagreements(_view(view), **_run(writes=100, received=100))
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
    assert disagreements(_view(agree), **_run(writes=100, received=100)) == []
