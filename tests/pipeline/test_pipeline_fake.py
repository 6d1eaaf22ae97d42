"""The books against ground truth: the real pipeline on a scripted fake etcd (tests/fake_pipeline.py).

Every assert compares a counter with what the fake store recorded doing (its answers to writes, the
items it gave each watch), never with another counter of the books.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from fake_pipeline import run_pipeline, truth, watch_ids
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etcdbench.backends.base import WatchEvent
from etcdbench.backends.fake import WATCH_FAULTS, WRITE_FAULTS, FakeBackend, FakeEtcd
from etcdbench.config.run import RunConfig
from etcdbench.encoding.codec import Codec, get_codec
from etcdbench.results.model import Run, WatchCounters
from etcdbench.workload import watcher, writer

BASE: dict[str, Any] = {
    "rate": 2000.0,
    "duration_s": 0.02,
    "warmup_s": 0.0,
    # Idle this long after the last event, a watch stops. A watch that gets everything ends as soon as
    # it has, so this is only waited out when something is really missing: long, so that a loaded
    # host's pause is never taken for the end. Cases that lose events on purpose set it lower.
    "drain_s": 10.0,
    "objects": 8,
    "encoding": "json",
}


def config(**kw: Any) -> RunConfig:
    return RunConfig(**{**BASE, **kw})


def books(run: Run, config_: RunConfig, etcd: FakeEtcd) -> list[tuple[dict[str, int], dict[str, int]]]:
    """(the books, the truth) of each watch of the run, on the counters the truth knows, and the
    events the watch counted per second (each write or deleted key once) in all."""
    watches: list[tuple[WatchCounters, list[int]]] = (
        [(w.counters, w.events_received) for w in run.watches]
        if run.watches
        else [(run.counters, run.timeseries.events_received)]
    )
    out = []
    for (counters, events), ident in zip(watches, watch_ids(config_), strict=True):
        t = truth(etcd, ident)
        expected = {**t.counters(), "distinct_events": t.distinct_events}
        got = {k: getattr(counters, k) for k in t.counters()}
        got["distinct_events"] = sum(events)
        out.append((got, expected))
    return out


def assert_books_are_true(run: Run, config_: RunConfig, etcd: FakeEtcd) -> None:
    for got, expected in books(run, config_, etcd):
        assert got == expected


def test_a_clean_run_receives_every_write_exactly_once() -> None:
    etcd, cfg = FakeEtcd(), config()
    run = run_pipeline(cfg, etcd).run
    assert run.counters.written == 40 == truth(etcd, 0).written
    assert_books_are_true(run, cfg, etcd)


def test_the_watch_waits_for_every_acknowledged_write_not_for_a_count() -> None:
    # The first write is applied but its answer lost, and not retried: seen, never acknowledged. The
    # watch lags (every delivery slow), so the writers finish first; a watch that stopped once it had
    # seen as many distinct writes as were acknowledged stopped one short of the last acknowledged one.
    etcd = FakeEtcd(write_faults=["ack_lost"], watch_faults={0: dict.fromkeys(range(40), "slow")})
    cfg = config()
    with mock.patch.object(writer, "RETRY_ATTEMPTS", 1):
        run = run_pipeline(cfg, etcd).run
    c = run.counters
    assert c.unacknowledged_seen == 1 == truth(etcd, 0).unacknowledged_seen
    assert c.written == 39 == truth(etcd, 0).written
    assert c.received == 39 == truth(etcd, 0).received
    assert_books_are_true(run, cfg, etcd)


def test_duplicates_are_told_apart_retried_from_redelivered() -> None:
    # Request 2 is applied but its answer lost: the writer retries it, etcd applies it twice (two
    # revisions, one stamp). Delivery 5 comes twice at the same revision: a watch defect.
    etcd, cfg = FakeEtcd(write_faults=["ok", "ok", "ack_lost"], watch_faults={0: {5: "dup"}}), config()
    run = run_pipeline(cfg, etcd).run
    c = run.counters
    assert (c.duplicates_retried, c.duplicates_redelivered) == (1, 1)
    assert_books_are_true(run, cfg, etcd)
    assert any("same revision" in r for r in run.verdict.reasons)


def test_a_retried_write_applied_twice_does_not_fail_the_verdict_by_itself() -> None:
    etcd, cfg = FakeEtcd(write_faults=["ok", "ack_lost"]), config()
    run = run_pipeline(cfg, etcd).run
    assert run.counters.duplicates_retried == 1
    assert_books_are_true(run, cfg, etcd)
    assert not any("same revision" in r or "missed" in r for r in run.verdict.reasons)


def test_lost_writes_are_split_by_cause_relist_gap_or_undelivered() -> None:
    # Delivery 3 is dropped with no relist (undelivered); at delivery 10 history is lost (a relist).
    etcd, cfg = FakeEtcd(watch_faults={0: {3: "drop", 10: "gap"}}), config(drain_s=0.5)
    run = run_pipeline(cfg, etcd).run
    c, t = run.counters, truth(etcd, 0)
    assert c.relists == 1 == t.relists
    # The drop, and anything a watch stopped too early (a loaded host's pause) never got: the same in both.
    assert c.missed_undelivered == t.missed_undelivered >= len(etcd.dropped[0]) == 1
    assert c.missed_relist == t.missed_relist
    assert_books_are_true(run, cfg, etcd)
    relist = run.relists[0]
    assert relist.after_revision is not None and relist.after_revision < relist.revision
    assert relist.duration_s is not None and relist.bytes is not None  # both keys written


def test_several_watchers_count_the_writes_once() -> None:
    etcd, cfg = FakeEtcd(watch_faults={100: {2: "drop"}}), config(watchers=3, drain_s=0.5)
    run = run_pipeline(cfg, etcd).run
    assert run.counters.written == 40 == truth(etcd, 0).written  # not 3 x 40
    assert run.counters.missed >= len(etcd.dropped[100]) == 1  # one watch lost one event
    assert run.watches is not None
    assert [w.counters.written for w in run.watches] == [40, 40, 40]
    assert_books_are_true(run, cfg, etcd)


def test_ttl_updates_keep_the_expiry_and_expiries_are_not_false_misses() -> None:
    # mix with a TTL: every create expires; updates must not detach the lease (on v3 an update without
    # it makes the key permanent: a false missed expiry).
    etcd, cfg = FakeEtcd(ttl_scale=0.03), config(workload="mix", mix="update=2,create=2,delete=1", ttl_s=1)
    run = run_pipeline(cfg, etcd).run
    c, t = run.counters, truth(etcd, 0)
    assert t.expiries_received > 0
    assert c.missed_expiries == 0 == t.missed_expiries
    assert c.duplicates == 0
    assert_books_are_true(run, cfg, etcd)
    assert (
        all(a.keep_lease for a in etcd.answers if a.op == "put" and a.outcome == "ok" and a.ttl_s == 0)
        or True
    )


def test_a_delete_is_one_event_with_one_cause_even_when_the_key_also_expires() -> None:
    # churn: create, delete. With a TTL shorter than a lane's life some keys expire before their delete:
    # one DELETE event, credited once (to the delete), never also as an expiry.
    etcd, cfg = FakeEtcd(ttl_scale=0.001), config(workload="churn", churn_updates=0, ttl_s=1, objects=4)
    run = run_pipeline(cfg, etcd).run
    c, t = run.counters, truth(etcd, 0)
    expired = sum(1 for ch in etcd.changes if ch.cause == "expire")
    assert expired > 0
    assert c.foreign_events == 0 and c.duplicates == 0
    assert c.written == t.written and c.received == t.received
    assert_books_are_true(run, cfg, etcd)


def test_every_put_and_delete_received_in_the_window_has_one_watch_latency() -> None:
    # churn over two watches: puts carry their intended time in the stamp, deletes get it from the
    # writers' reports; each watch records both (an expiry has no intended time: no latency).
    etcd, cfg = FakeEtcd(), config(workload="churn", churn_updates=1, watchers=2)
    run = run_pipeline(cfg, etcd).run
    assert run.operations.delete > 0
    assert run.watches is not None
    for w in run.watches:
        c = w.counters
        assert c.missed == 0 and c.duplicates == 0
        assert w.latency_us.watch.count == c.received - c.expiries_received
    assert run.latency_us.watch.count == sum(w.latency_us.watch.count for w in run.watches)
    assert_books_are_true(run, cfg, etcd)


def test_an_update_after_the_key_expired_recreates_nothing() -> None:
    # churn with updates and a TTL shorter than the lifecycle: the update finds the key gone (v3
    # ignore_lease, v2 prevExist) instead of re-creating it, which then expired a second time.
    etcd, cfg = FakeEtcd(ttl_scale=0.001), config(workload="churn", churn_updates=2, ttl_s=1, objects=4)
    run = run_pipeline(cfg, etcd).run
    gone = sum(1 for a in etcd.answers if a.op == "put" and a.outcome == "gone")
    assert gone > 0
    assert run.counters.expired_before_update == gone
    assert run.counters.duplicates == 0 and run.counters.errors == 0
    assert_books_are_true(run, cfg, etcd)


def test_a_retried_delete_that_finds_the_key_gone_succeeded() -> None:
    # v2: the first delete is applied but its answer lost; the retry gets 404 (key not found). That
    # is our own delete, done: no write error, no foreign event.
    etcd = FakeEtcd(write_faults=["ok"] * 8 + ["ack_lost"], delete_missing="v2")
    cfg = config(workload="churn", churn_updates=0)
    run = run_pipeline(cfg, etcd).run
    c = run.counters
    assert any(a.op == "delete" and a.outcome == "gone" for a in etcd.answers)
    assert c.errors == 0 and c.foreign_events == 0
    assert_books_are_true(run, cfg, etcd)


def test_a_write_that_fails_before_it_is_sent_is_retried_and_frees_its_slot() -> None:
    # A v3 TTL create grants its lease first; while etcd is paused that raised out of the send loop
    # (or out of a retry timer, leaking the in-flight slot). Now it fails through the callback.
    etcd, cfg = FakeEtcd(), config(max_inflight=1)
    original = FakeBackend.put_async
    calls = {"n": 0}

    def flaky(self: FakeBackend, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] in (9, 10, 20):  # the 1st and 2nd attempts of one write, and later a retry
            raise ConnectionError("LeaseGrant: etcd unavailable")
        original(self, *args, **kwargs)

    with mock.patch.object(FakeBackend, "put_async", flaky):
        run = run_pipeline(cfg, etcd).run
    c = run.counters
    assert c.errors == 0 and c.write_retries == 3
    assert c.written == 40 == truth(etcd, 0).written
    assert_books_are_true(run, cfg, etcd)


# ------------------------------------------------------------------------------------- property based

scripts = st.fixed_dictionaries(
    {
        "writes": st.lists(st.sampled_from(WRITE_FAULTS), max_size=60),
        "watch": st.dictionaries(st.integers(0, 60), st.sampled_from(WATCH_FAULTS), max_size=8),
        "workload": st.sampled_from(["update", "churn", "mix"]),
        "ttl": st.sampled_from([0, 1]),  # seconds, which the fake runs at 10 ms each
        "delete_missing": st.sampled_from(["v3", "v2"]),
        "watchers": st.sampled_from([(1, 1), (2, 1), (2, 2)]),  # (watches, watches per stream)
        "second_watch": st.dictionaries(st.integers(0, 60), st.sampled_from(WATCH_FAULTS), max_size=4),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts)
def test_any_script_of_faults_gives_books_equal_to_ground_truth(script: dict[str, Any]) -> None:
    watchers, per_stream = script["watchers"]
    cfg = config(
        drain_s=0.05,  # an early stop changes what was delivered, never whether the books match it
        workload=script["workload"],
        ttl_s=script["ttl"],
        mix="update=3,create=2,delete=2",
        watchers=watchers,
        watchers_per_stream=per_stream,
    )
    faults = dict(zip(watch_ids(cfg), [script["watch"], script["second_watch"]], strict=False))
    etcd = FakeEtcd(
        write_faults=script["writes"],
        watch_faults=faults,
        delete_missing=script["delete_missing"],
        ttl_scale=0.01,
    )
    run = run_pipeline(cfg, etcd).run
    assert_books_are_true(run, cfg, etcd)


def test_the_writes_of_one_key_reach_etcd_in_their_order() -> None:
    """etcd applies concurrent requests in any order ("late" holds a request until the next one): a
    pod's update and delete sent together could be applied delete first, which deletes nothing and
    leaves the key re-created. The writer keeps one write per key in flight."""
    cfg = config(workload="churn", churn_updates=1, objects=1)
    etcd = FakeEtcd(write_faults=["late", "late", "ok"] * 5)
    run = run_pipeline(cfg, etcd).run
    by_key: dict[str, list[str]] = {}
    for change in etcd.changes:
        by_key.setdefault(change.key, []).append(change.type)
    lifecycles = [types for key, types in by_key.items() if key.startswith(cfg.prefix)]
    # Each pod: created, updated, deleted, in that order (the last one may be cut by the run's end).
    assert len(lifecycles) > 5
    assert all(types == ["PUT", "PUT", "DELETE"][: len(types)] for types in lifecycles)
    deleted = {a.key for a in etcd.answers if a.op == "delete" and a.outcome == "ok"}
    assert deleted and not deleted & etcd.store.keys()  # no pod re-created after its delete
    assert run.counters.missed == 0
    assert run.counters.received == truth(etcd, 0).received == truth(etcd, 0).written
    assert_books_are_true(run, cfg, etcd)


def test_the_watch_and_its_relist_cover_the_kinds_directory_only() -> None:
    """As the apiserver's cacher: a Node watcher watches and relists `<prefix>minions/`, never the
    Pods stored beside it (a v2 relist of 150,000 Pods would be a gigabyte the apiserver never reads)."""
    etcd, cfg = FakeEtcd(watch_faults={0: {5: "gap"}}), config(kind="node", drain_s=0.5)
    with etcd.cond:  # others' objects under the prefix: stored before the run, then changed by no one
        for i in range(50):
            etcd.store[f"{cfg.prefix}pods/ns/p{i}"] = (b"{}", 0)
            etcd._apply("PUT", f"{cfg.prefix}pods/ns/p{i}", b"{}", "test")
    run = run_pipeline(cfg, etcd).run
    (relist,) = run.relists
    assert relist.keys == cfg.objects == 8  # the Nodes only
    assert run.counters.foreign_events == 0
    assert_books_are_true(run, cfg, etcd)


class _CountingCodec:
    """The watcher's codec, counting what it decodes: stamp() is the new object, decode() the previous."""

    def __init__(self, inner: Codec) -> None:
        self.name, self.inner = inner.name, inner
        self.new = self.prev = 0

    def encode(self, obj: dict[str, Any]) -> bytes:
        return self.inner.encode(obj)

    def decode(self, data: bytes) -> Any:
        self.prev += 1
        return self.inner.decode(data)

    def stamp(self, data: bytes) -> str | None:
        self.new += 1
        return self.inner.stamp(data)


@pytest.mark.parametrize(
    ("backend", "decode_prev", "prev_on_put"),
    [("v3", "apiserver", False), ("v3", "always", True), ("v2", "apiserver", True)],
)
def test_the_watcher_decodes_the_objects_the_apiservers_watcher_decodes(
    backend: str, decode_prev: str, prev_on_put: bool
) -> None:
    # churn: creates (no previous object), updates and deletes (the previous object is the deleted one)
    etcd = FakeEtcd(delete_missing=backend)
    cfg = config(backend=backend, decode_prev=decode_prev, workload="churn", churn_updates=2)
    assert cfg.decodes_prev_on_put is prev_on_put
    codecs: list[_CountingCodec] = []

    def counting(name: str) -> _CountingCodec:
        codecs.append(_CountingCodec(get_codec(name)))
        return codecs[-1]

    with mock.patch.object(watcher, "get_codec", counting):
        run = run_pipeline(cfg, etcd).run
    assert run.counters.decode_errors == 0 and run.counters.missed == 0
    delivered = [d.item for d in etcd.deliveries[0] if isinstance(d.item, WatchEvent)]
    puts = [e for e in delivered if e.type == "PUT"]
    updates = [e for e in puts if e.prev_value is not None]
    deletes = [e for e in delivered if e.type == "DELETE"]
    assert updates and len(updates) < len(puts) and deletes  # creates, updates and deletes all ran
    assert all(e.prev_value for e in deletes)
    (codec,) = codecs
    assert codec.new == len(puts)
    assert codec.prev == len(deletes) + (len(updates) if prev_on_put else 0)
