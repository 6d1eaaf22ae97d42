"""The pipeline harness: the real writer, watcher, accounting and results code on a scripted FakeEtcd.

`run_pipeline` runs writers and watchers as threads (the same entry points the runner spawns as
processes, over the same pipes), closes the books with `build_run`, and returns the run together with
`truth(...)`: what the fake store really did, computed from its own records (answers to writes,
changes applied, items delivered to each watch), never from the books.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import Pipe
from typing import Any, NamedTuple, TypeVar
from unittest import mock

from hdrh.histogram import HdrHistogram

from etcdbench.backends.base import Endpoint, Relist, WatchEvent
from etcdbench.backends.fake import FakeEtcd, fake_backend
from etcdbench.config.run import RunConfig
from etcdbench.results.model import Preload, Run
from etcdbench.workload import books, runner, watcher, writer
from etcdbench.workload.books import build_run
from etcdbench.workload.reports import StreamReport, WriterReport
from etcdbench.workload.timeline import Timeline

STAMP = re.compile(rb"(\d{4}):(\d{12}):\d{20}")
LEAD_NS = 5_000_000  # t0 this far after every thread is ready
WATCH_IDS = 100  # fake watch ids per stream: watch j of stream s is s * WATCH_IDS + j


def watch_ids(config: RunConfig) -> list[int]:
    """The fake's watch ids in the order of the run's watches (run.watches)."""
    return [s * WATCH_IDS + j for s, n in enumerate(runner._streams(config)) for j in range(n)]


def stamp_of(value: bytes) -> tuple[int, int] | None:
    m = STAMP.search(value)
    return None if m is None else (int(m.group(1)), int(m.group(2)))


class Piped(NamedTuple):
    """A pipeline's run, and the revision its watches started from."""

    run: Run
    start_revision: int


R = TypeVar("R")
MakeBackend = Callable[[int], Any]  # watch id base (0 for writers) -> a backend


@contextmanager
def pipeline_backends(make_backend: MakeBackend) -> Iterator[None]:
    """Every backend the writers and watchers make comes from `make_backend`; retries and the expiry
    grace are shortened so that a case takes milliseconds (the logic is the same). hdrh's mean walks
    every sub-bucket in Python (~0.1 s a histogram); it is no part of the books, so it is skipped."""

    def make(*args: Any, **kwargs: Any) -> Any:
        # Watcher thread "watcher-S" holds stream S: its watches are S * WATCH_IDS + 0, 1, ...
        name = threading.current_thread().name
        return make_backend(int(name.split("-")[1]) * WATCH_IDS if name.startswith("watcher-") else 0)

    with (
        mock.patch.object(writer, "make_backend", make),
        mock.patch.object(watcher, "make_backend", make),
        mock.patch.object(writer, "RETRY_BASE_S", 0.001),
        mock.patch.object(writer, "RETRY_MAX_S", 0.004),
        mock.patch.object(books, "EXPIRY_GRACE_S", 0.0),  # one home: the runner reads it there too
        mock.patch.object(HdrHistogram, "get_mean_value", lambda self: 0.0),
    ):
        yield


def run_pipeline(
    config: RunConfig,
    etcd: FakeEtcd | None = None,
    *,
    make_backend: MakeBackend | None = None,
    current_revision: Callable[[], int] | None = None,
) -> Piped:
    """One run in threads, on the fake `etcd` or on the backends `make_backend` makes (then
    `current_revision` tells the store's revision); the run's results as build_run makes them."""
    if etcd is not None:
        fake = etcd
        make_backend = make_backend or (lambda base: fake_backend(fake, base))
        current_revision = current_revision or (lambda: fake.revision)
    assert make_backend is not None and current_revision is not None
    endpoint = Endpoint(("http://127.0.0.1:1",))  # unused: the backends come from make_backend
    with pipeline_backends(make_backend):
        writer_conns = []
        for w in range(config.writers):
            parent, child = Pipe()
            plan = writer.WriterPlan(config.writer_id(w), config, endpoint)
            threading.Thread(target=writer.run_writer, args=(plan, child), daemon=True).start()
            writer_conns.append(parent)
        for conn in writer_conns:
            assert conn.recv()[0] == "ready"
        if etcd is not None:
            etcd.arm()  # the preload is done: scripted faults start with the run's writes
        start_revision = current_revision() + 1
        watcher_conns = []
        for i, n in enumerate(runner._streams(config)):
            parent, child = Pipe()
            plan_w = watcher.WatcherPlan(config, endpoint, start_revision, i, n)
            threading.Thread(
                target=watcher.run_watcher, args=(plan_w, child), daemon=True, name=f"watcher-{i}"
            ).start()
            watcher_conns.append(parent)
        for conn in watcher_conns:
            assert conn.recv()[0] == "ready"
        t0 = time.monotonic_ns() + LEAD_NS
        for conn in writer_conns + watcher_conns:
            conn.send(("start", t0))
        writer_results = [_done(conn, WriterReport) for conn in writer_conns]
        message = runner.drain_message(writer_results, wait_for_expiries=True)
        for conn in watcher_conns:
            conn.send(("drain", message))
        watcher_results = [_done(conn, StreamReport) for conn in watcher_conns]
        run = build_run(
            config,
            writer_results,
            watcher_results,
            timeline=Timeline(t0, config.warmup_s, config.duration_s),
            preload=Preload(keys=0, seconds=0.0, db_size_bytes=None),
            cpu={"watcher": None, "writers": None, "host": None},
            cpu_timeseries={},
            drain_s=0.0,
        )
        return Piped(run, start_revision)


def _done(conn: Any, report_type: type[R]) -> R:
    tag, payload = conn.recv()
    assert tag == "done", payload
    assert isinstance(payload, report_type)
    return payload


@dataclass
class Truth:
    """One watch's books as the store saw them happen."""

    written: int = 0
    received: int = 0
    missed_relist: int = 0
    missed_undelivered: int = 0
    missed_expiries: int = 0
    expiries_received: int = 0
    duplicates_retried: int = 0
    duplicates_redelivered: int = 0
    out_of_order: int = 0
    relists: int = 0
    unacknowledged_seen: int = 0
    distinct_events: int = 0  # writes and deleted keys delivered at least once (the per-second series)

    def counters(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if k != "distinct_events"}


def truth(etcd: FakeEtcd, watch: int) -> Truth:
    """What watch `watch` should have booked, from the fake's records alone."""
    t = Truth()
    answers = etcd.answers[etcd._armed_at :]  # the run's writes; the preload has no stamps to count
    # Acknowledged puts, by stamp, with the revision of the answer that acknowledged them.
    acked: dict[tuple[int, int], int] = {}
    created_with_ttl: set[str] = set()
    deleted: dict[str, int] = {}  # acknowledged deletes: key -> revision (0: the key was gone)
    for a in answers:
        if a.op == "put" and a.outcome == "ok":
            stamp = stamp_of(a.value)
            assert stamp is not None
            acked.setdefault(stamp, a.applied)
            if a.ttl_s > 0 and not a.keep_lease:
                created_with_ttl.add(a.key)
        elif a.op == "delete" and a.outcome in ("ok", "gone"):
            deleted.setdefault(a.key, a.applied)
    expiring = created_with_ttl - deleted.keys()
    t.written = len(acked) + len(deleted) + len(expiring)

    deliveries = etcd.deliveries.get(watch, [])
    gaps: list[tuple[int, int]] = []  # (highest revision delivered before, relist revision]
    seen_at: dict[tuple[int, int], set[int]] = {}  # stamp -> revisions delivered
    deleted_at: dict[str, set[int]] = {}
    last = 0  # the highest stamped put revision since the stream (re)started: out-of-order reference
    delivered = 0  # the highest revision delivered (or relisted to) so far
    for d in deliveries:
        item = d.item
        if isinstance(item, Relist):
            t.relists += 1
            gaps.append((delivered, item.revision))
            last = delivered = max(delivered, item.revision)
            continue
        assert isinstance(item, WatchEvent)
        delivered = max(delivered, item.revision)
        if item.type == "DELETE":
            revisions = deleted_at.setdefault(item.key, set())
            if item.revision in revisions:
                t.duplicates_redelivered += 1
            elif revisions:
                t.duplicates_retried += 1
            revisions.add(item.revision)
            continue
        stamp = stamp_of(item.value)
        assert stamp is not None
        if item.revision <= last:
            t.out_of_order += 1
        last = max(last, item.revision)
        revisions = seen_at.setdefault(stamp, set())
        if item.revision in revisions:
            t.duplicates_redelivered += 1
        elif revisions:
            t.duplicates_retried += 1
        revisions.add(item.revision)
    t.unacknowledged_seen = len(seen_at.keys() - acked.keys())
    t.distinct_events = len(seen_at) + len(deleted_at)
    relisted = t.relists > 0

    def lost(revision: int) -> None:
        if any(a < revision <= b for a, b in gaps) if revision else relisted:
            t.missed_relist += 1
        else:
            t.missed_undelivered += 1

    for stamp, revision in acked.items():
        if stamp in seen_at:
            t.received += 1
        else:
            lost(revision)
    for key, revision in deleted.items():
        if key in deleted_at:
            t.received += 1
        else:
            lost(revision)
    for key in expiring:
        if key in deleted_at:
            t.received += 1
            t.expiries_received += 1
        else:
            t.missed_expiries += 1
    return t
