"""The apiserver's other traffic on the same etcd: background load beside the measured writes.

A kube-apiserver in a density or load test does not only write the measured objects and watch them:
it also LISTs resources in pages, GETs single objects, writes other resources (Events, with a TTL) and
holds one watch per resource type (its cacher). This process does the same beside the measured
writers and watcher, each stream on an open-loop schedule of its own (op i intended at t0 + i / rate),
so a user sees what the measured watcher competed with:

- LISTs of the measured kind's resource dir under the run's prefix (the preload: the standing state),
  v3 as a Range with `--bg-list-page` keys per page, each page continuing from the last key + "\\0" at
  the first page's revision (the apiserver's pagination); v2 as one recursive GET (no pages);
- GETs of single objects of the measured kind (the preloaded and seeded ones, round-robin);
- Event creates with `--bg-event-ttl`, each a new key, under `background_prefix(config)`: a sibling of
  the run's prefix, outside the measured watch, so the measured books stay exact (the apiserver's pod
  watch does not see Events either);
- `--bg-watches` watches of other resource types under the same sibling prefix, the first on the
  Events' dir (it receives every background Event), the others on idle types.

Reads only read. The Event keys are determined by the config (`background_keys`), so a run on a shared
etcd checks them for collisions before it starts and deletes exactly them afterwards, like the
writers' keys. Latency counts from each op's intended time; waiting past it is schedule slip; ops that
were due before the stop but never started are `unsent`. Either beyond the writers' client-bound
threshold means the background load fell behind its schedule, and the run is flagged client-bound.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from etcdbench.backends import make_backend
from etcdbench.backends.base import Backend, Endpoint, Reader, Relist
from etcdbench.config.run import RunConfig
from etcdbench.encoding.codec import get_codec
from etcdbench.encoding.objects import build_object, object_key, resource_prefix
from etcdbench.errors import EtcdError
from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.results.model import Background, BackgroundStream, BackgroundWatches, Summary
from etcdbench.results.verdict import merged
from etcdbench.workload.reports import BackgroundReport, report_to
from etcdbench.workload.timeline import NS, Timeline

READERS = 4  # LISTs (and GETs) in flight at most, each reader on a connection of its own
EVENTS_INFLIGHT = 64  # Event puts in flight at most
EVENT_TEMPLATES = 16  # distinct Event objects encoded; key i carries template i % 16
SLIP_FELL_BEHIND_US = 100_000  # as the writers' client-bound threshold (results.verdict)
# After the stop, ops in flight get this long to be answered, and the Events' watch to receive them
# (within the parent's 5 s after an interrupt); a watch that receives nothing for WATCH_IDLE_S is done.
STOP_WAIT_S = 3.0
WATCH_IDLE_S = 1.0
STOP_POLL_S = 0.05
# The other resource types whose watches the apiserver's cacher holds; watch i covers the i-th
# (cycling), the first being the Events the background writes.
OTHER_RESOURCES = (
    "events",
    "configmaps",
    "secrets",
    "services",
    "services/endpoints",
    "serviceaccounts",
    "replicasets",
    "deployments",
    "namespaces",
    "leases",
)


def background_prefix(config: RunConfig) -> str:
    """Where the background's own keys go: a sibling of the run's prefix, outside its watch
    ("/registry/" -> "/registry-background/")."""
    return config.prefix.rstrip("/") + "-background/"


def background_keys(config: RunConfig, shards: Iterable[int] | None = None) -> set[str]:
    """Every key the background of these shards (default: this one) writes: its Events, event
    index `local * shards + shard`, so shards never share one."""
    prefix = background_prefix(config)
    keys: set[str] = set()
    for shard in [config.shard] if shards is None else shards:
        keys.update(
            prefix + object_key("event", local * config.shards + shard)
            for local in range(config.background_events)
        )
    return keys


@dataclass(frozen=True)
class BackgroundPlan:
    config: RunConfig
    endpoint: Endpoint
    start_revision: int  # the background watches start here, as the measured watch does


class _Stream:
    """One kind of op on an open-loop schedule: intended times, counters and latencies."""

    def __init__(self, name: str, rate: float, timeline: Timeline) -> None:
        self.name = name
        self.rate = rate
        self.timeline = timeline
        run_s = timeline.warmup_s + timeline.duration_s
        self.total = round(rate * run_s)
        self.lock = threading.Lock()
        self.next = 0  # the next op index to take
        self.sent = 0  # ops started (taken ops a stop cut short before they started are not)
        self.done = self.errors = self.not_found = 0
        self.keys = self.pages = self.bytes = 0
        self.error_sample = ""
        self.latency = LatencyRecorder()
        self.slip = LatencyRecorder()
        self.unsent = 0

    def intended(self, i: int) -> int:
        return self.timeline.t0_ns + round(i * NS / self.rate)

    def take(self) -> int | None:
        """The next op's index, or None when the schedule is done."""
        with self.lock:
            if self.next >= self.total:
                return None
            self.next += 1
            return self.next - 1

    def started(self, intended: int) -> None:
        with self.lock:
            self.sent += 1
            if self.timeline.in_window(intended):
                self.slip.record_us((time.monotonic_ns() - intended) // 1000)

    def finished(self, intended: int, exc: BaseException | None, *, keys: int = 0, size: int = 0) -> None:
        now = time.monotonic_ns()
        with self.lock:
            if exc is not None:
                self.errors += 1
                self.error_sample = self.error_sample or f"{type(exc).__name__}: {exc}"
                return
            self.done += 1
            self.keys += keys
            self.bytes += size
            if self.timeline.in_window(intended):
                self.latency.record_us((now - intended) // 1000)

    def close(self, stop_ns: int) -> None:
        """Ops due before `stop_ns` that never started are unsent."""
        due = 0 if self.rate <= 0 else min(self.total, -(-(stop_ns - self.timeline.t0_ns) * self.rate // NS))
        with self.lock:
            self.unsent = max(0, int(due) - self.sent)
            self.next = self.total  # nothing more starts

    def result(self, **only_this_stream: Any) -> BackgroundStream:
        """The stream's block of the results file; `only_this_stream`: its own keys (a LIST's pages...)."""
        return BackgroundStream(
            rate=self.rate,
            done=self.done,
            errors=self.errors,
            unsent=self.unsent,
            bytes=self.bytes,
            latency_us=Summary.from_dict(self.latency.summary()),
            slip_us=Summary.from_dict(self.slip.summary()),
            error_sample=self.error_sample or None,
            **only_this_stream,
        )


def _sleep_until(t_ns: int, stop: threading.Event) -> bool:
    """Wait for `t_ns`; False if stopped first."""
    delay = t_ns - time.monotonic_ns()
    if delay > 0:
        return not stop.wait(delay / NS)
    return not stop.is_set()


def _reader_loop(
    stream: _Stream, reader: Reader, op: Callable[[Reader, int], tuple[int, int]], stop: threading.Event
) -> None:
    while (i := stream.take()) is not None:
        intended = stream.intended(i)
        if not _sleep_until(intended, stop):
            return
        stream.started(intended)
        try:
            keys, size = op(reader, i)
        except (EtcdError, OSError) as exc:
            stream.finished(intended, exc)
        else:
            stream.finished(intended, None, keys=keys, size=size)


class _Watch:
    """One watch of another resource type, counting what it receives until cancelled."""

    def __init__(self, backend: Backend, prefix: str, start_revision: int) -> None:
        self.backend = backend
        self.prefix = prefix
        self.events = self.bytes = self.relists = 0
        self.error = ""
        self.thread = threading.Thread(target=self._run, args=(start_revision,), daemon=True)
        self.thread.start()

    def _run(self, start_revision: int) -> None:
        try:
            for item in self.backend.watch(self.prefix, start_revision):
                if isinstance(item, Relist):
                    self.relists += 1
                else:
                    self.events += 1
                    self.bytes += len(item.value) + len(item.prev_value or b"")
        except Exception as exc:  # counted, not raised: the measured run goes on
            self.error = f"{type(exc).__name__}: {exc}"


def run_background(plan: BackgroundPlan, conn: Connection) -> None:
    """Process entry point: connect, report ready, wait for t0, run the schedules until the parent
    says stop (or they end), send the counts."""
    report_to(conn, "background", lambda: _background(plan, conn))


def _background(plan: BackgroundPlan, conn: Connection) -> BackgroundReport:
    cfg = plan.config
    backends: list[Backend] = []

    def connect() -> Backend:
        backend = make_backend(
            cfg.backend, plan.endpoint, v2_watch=cfg.v2_watch, max_inflight=EVENTS_INFLIGHT
        )
        backends.append(backend)
        return backend

    prefix = background_prefix(cfg)
    list_prefix = resource_prefix(cfg.prefix, cfg.kind)
    # GETs read the objects that exist before the run: the preload of the kind, and the seeded ones.
    stored = max(cfg.preload.get(cfg.kind, 0), cfg.objects if cfg.workload != "churn" else 0, 1)
    lists_readers = [connect() for _ in range(READERS)] if cfg.bg_list_rate else []
    gets_readers = [connect() for _ in range(READERS)] if cfg.bg_get_rate else []
    events_backend = connect() if cfg.bg_event_rate else None
    codec = get_codec(cfg.encoding)
    base64_values = (
        events_backend is not None and not events_backend.binary_safe and cfg.encoding == "protobuf"
    )
    templates = [codec.encode(build_object("event", i, cfg.size_profile)) for i in range(EVENT_TEMPLATES)]
    if base64_values:
        templates = [base64.b64encode(t) for t in templates]
    watches = [
        _Watch(connect(), prefix + OTHER_RESOURCES[j % len(OTHER_RESOURCES)] + "/", plan.start_revision)
        for j in range(cfg.bg_watches)
    ]

    conn.send(("ready", None))
    _, t0_ns = conn.recv()
    timeline = Timeline(t0_ns, cfg.warmup_s, cfg.duration_s)
    stop = threading.Event()
    lists = _Stream("lists", cfg.bg_list_rate, timeline)
    gets = _Stream("gets", cfg.bg_get_rate, timeline)
    events = _Stream("events", cfg.bg_event_rate, timeline)

    def one_list(reader: Reader, _: int) -> tuple[int, int]:
        start, revision, keys, size = b"", 0, 0, 0
        while True:
            page = reader.list_page(list_prefix, start, cfg.bg_list_page, revision)
            with lists.lock:
                lists.pages += 1
            keys += page.keys
            size += page.size
            revision = page.revision
            if page.next_key is None:
                return keys, size
            start = page.next_key

    def one_get(reader: Reader, i: int) -> tuple[int, int]:
        size = reader.get_value(cfg.prefix + object_key(cfg.kind, i % stored))
        if size is None:
            with gets.lock:
                gets.not_found += 1
            return 0, 0
        return 1, size

    slots = threading.BoundedSemaphore(EVENTS_INFLIGHT)

    def write_events(backend: Backend) -> None:
        while (i := events.take()) is not None:
            intended = events.intended(i)
            if not _sleep_until(intended, stop):
                return
            while not slots.acquire(timeout=STOP_POLL_S):
                if stop.is_set():
                    return
            events.started(intended)
            value = templates[i % EVENT_TEMPLATES]
            key = prefix + object_key("event", i * cfg.shards + cfg.shard)

            def done(exc: BaseException | None, intended: int = intended, size: int = len(value)) -> None:
                events.finished(intended, exc, keys=1, size=size)
                slots.release()

            try:
                backend.put_async(key, value, done, cfg.bg_event_ttl_s)
            except Exception as exc:
                done(exc)

    threads = [
        threading.Thread(target=_reader_loop, args=(lists, r, one_list, stop), daemon=True)
        for r in lists_readers
    ]
    threads += [
        threading.Thread(target=_reader_loop, args=(gets, r, one_get, stop), daemon=True)
        for r in gets_readers
    ]
    if events_backend is not None:
        threads.append(threading.Thread(target=write_events, args=(events_backend,), daemon=True))
    for t in threads:
        t.start()

    # Until the parent says stop (the writers ended, or the run was interrupted) or the schedules end.
    end_ns = timeline.t0_ns + round((cfg.warmup_s + cfg.duration_s) * NS)
    stop_ns = end_ns
    while time.monotonic_ns() < end_ns:
        try:
            if conn.poll(STOP_POLL_S):
                conn.recv()  # ("stop", at_ns)
                stop_ns = min(time.monotonic_ns(), end_ns)
                break
        except (EOFError, OSError):  # the parent is gone: stop
            stop_ns = min(time.monotonic_ns(), end_ns)
            break
    stop.set()
    deadline = time.monotonic() + STOP_WAIT_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for s in (lists, gets, events):
        s.close(stop_ns)
    inflight = 0  # Event puts still unanswered after STOP_WAIT_S
    for _ in range(EVENTS_INFLIGHT):
        if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            inflight += 1
    # The Events' watch gets until the deadline to receive the Events acknowledged (so its count can be
    # held against theirs); the idle types' watches have nothing to wait for.
    seen, idle_since = -1, time.monotonic()
    while watches and watches[0].events < events.done and time.monotonic() < deadline:
        if watches[0].events != seen:
            seen, idle_since = watches[0].events, time.monotonic()
        elif time.monotonic() - idle_since > WATCH_IDLE_S:
            break  # it lost them (a v2 watch relisted): counted as received, not waited for
        time.sleep(STOP_POLL_S)
    for w in watches:
        w.backend.cancel()
    for w in watches:
        w.thread.join(max(0.1, deadline - time.monotonic()))
    for b in backends:
        b.close()
    return BackgroundReport(
        lists=lists.result(
            keys=lists.keys, pages=lists.pages, page_limit=cfg.bg_list_page, prefix=list_prefix
        ),
        gets=gets.result(not_found=gets.not_found),
        events=events.result(inflight_at_stop=inflight, ttl_s=cfg.bg_event_ttl_s, prefix=prefix + "events/"),
        watches=BackgroundWatches(
            count=len(watches),
            events_received=sum(w.events for w in watches),
            bytes=sum(w.bytes for w in watches),
            relists=sum(w.relists for w in watches),
            errors=[w.error for w in watches if w.error],
        ),
        stopped_after_s=round((stop_ns - t0_ns) / NS, 3),
    )


def summarize(report: BackgroundReport) -> Background:
    """The `background` block of a run from the process's report: slip of all streams merged, and
    whether the load fell behind its schedule (slip p99 over the writers' threshold, or ops unsent)."""
    active = report.active()
    slip = merged([s.slip_us for s in active])
    unsent = sum(s.unsent for s in active)
    behind = []
    if slip.p99 is not None and slip.p99 > SLIP_FELL_BEHIND_US:
        behind.append(f"slip p99 {slip.p99 / 1000:.0f} ms")
    if unsent:
        behind.append(f"{unsent} ops never sent")
    return Background(
        lists=report.lists,
        gets=report.gets,
        events=report.events,
        watches=report.watches,
        stopped_after_s=report.stopped_after_s,
        slip_us=slip,
        fell_behind=bool(behind),
        fell_behind_because=behind,
    )
