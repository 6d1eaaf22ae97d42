"""The books on a real etcd: relists really forced, checked against an independent observer; and the
backend behaviours the books rely on (revisions of acknowledged writes, 404 on a retried delete,
updates that keep a key's expiry, paginated relists, lease failures through the callback).

The lag that forces a relist is made deterministic, never timed: the watcher's watch is only opened
once the writers are far enough ahead (v2: more than the 1,000 events of history; v3: after a
compaction past the watch's start revision). The observer is a plain watch opened before the run,
never held back; `missed` must equal what it saw inside the relists' gaps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fake_pipeline import run_pipeline

from etcdbench.backends import make_backend
from etcdbench.backends.base import Backend, Endpoint, KeyGone, Relist
from etcdbench.backends.v2 import V2Backend
from etcdbench.backends.v3 import V3Backend, prefix_range_end
from etcdbench.backends.v3 import admin as v3_admin
from etcdbench.config.run import RunConfig
from etcdbench.errors import EtcdError
from etcdbench.etcd import LocalEtcd


class HeldWatch:
    """A backend whose watch opens only once the store is `ahead` revisions past its start revision
    (and, for v3, compacted up to there): the watcher is then behind by a known margin."""

    def __init__(self, backend: Any, admin: Any, ahead: int, compact: bool) -> None:
        self._backend, self._admin, self._ahead, self._compact = backend, admin, ahead, compact

    def watch(self, prefix: str, start_revision: int) -> Iterator[Any]:
        deadline = time.monotonic() + 60
        while self._admin.current_revision() < start_revision + self._ahead:
            assert time.monotonic() < deadline, "the writers never got far enough ahead"
            time.sleep(0.005)
        if self._compact:
            self._admin.compact(self._admin.current_revision())
        return self._backend.watch(prefix, start_revision)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


class Observer:
    """A plain watch of `prefix` from `start` that collects (revision, type) until stopped."""

    def __init__(self, backend: Backend, prefix: str, start: int) -> None:
        self.backend = backend
        self.events: list[tuple[int, str]] = []
        self.relists = 0
        items = backend.watch(prefix, start)
        self.thread = threading.Thread(target=self._run, args=(items,), daemon=True)
        self.thread.start()

    def _run(self, items: Iterator[Any]) -> None:
        for item in items:
            if isinstance(item, Relist):
                self.relists += 1
            else:
                self.events.append((item.revision, item.type))

    def stop_after(self, revision: int) -> list[tuple[int, str]]:
        deadline = time.monotonic() + 30
        while not self.events or self.events[-1][0] < revision:
            assert time.monotonic() < deadline, "the observer fell behind"
            time.sleep(0.01)
        self.backend.cancel()
        self.thread.join(10)
        assert self.relists == 0, "the observer itself lost history: it cannot tell what was missed"
        return self.events


def forced_relist_run(server: LocalEtcd, backend: str, prefix: str, ahead: int, rate: float) -> None:
    endpoint = Endpoint((server.client_url,))
    admin = make_backend(backend, endpoint)
    compacting = V3Backend(endpoint) if backend == "v3" else admin
    cfg = RunConfig(
        backend=backend,
        encoding="json",
        rate=rate,
        duration_s=(ahead + 300) / rate,
        warmup_s=0.0,
        drain_s=2.0,
        objects=50,
        prefix=prefix,
    )
    observer = Observer(make_backend(backend, endpoint), prefix, admin.current_revision() + 1)

    def make(base: int) -> Any:
        b = make_backend(backend, endpoint, max_inflight=cfg.max_inflight)
        if threading.current_thread().name.startswith("watcher-"):
            return HeldWatch(b, compacting, ahead, compact=backend == "v3")
        return b

    run, start_revision = run_pipeline(cfg, make_backend=make, current_revision=admin.current_revision)
    c = run.counters
    last = admin.current_revision()
    seen = [(rev, kind) for rev, kind in observer.stop_after(last) if rev >= start_revision]
    admin.close()
    if compacting is not admin:
        compacting.close()

    assert c.errors == 0 and c.write_retries == 0, "a retried write would be two events for one write"
    assert c.relists >= 1
    gaps = [(r.after_revision or 0, r.revision) for r in run.relists]
    assert all(r.after_revision is not None for r in run.relists)
    in_gaps = sum(1 for rev, _ in seen if any(a < rev <= b for a, b in gaps))
    assert in_gaps > 0
    assert c.missed == in_gaps
    assert c.missed_relist == in_gaps and c.missed_undelivered == 0
    assert c.received == len(seen) - in_gaps
    assert c.written == len(seen)
    assert all((r.duration_s or 0) > 0 and (r.bytes or 0) > 0 for r in run.relists)


def test_v2_a_watcher_behind_by_more_than_the_history_relists_and_misses_exactly_the_gap(
    etcd_server: LocalEtcd, fresh_prefix: str
) -> None:
    forced_relist_run(etcd_server, "v2", fresh_prefix, ahead=1100, rate=800.0)


def test_v3_a_compaction_ahead_of_a_lagging_watch_relists_and_misses_exactly_the_gap(
    etcd_server: LocalEtcd, fresh_prefix: str
) -> None:
    forced_relist_run(etcd_server, "v3", fresh_prefix, ahead=200, rate=800.0)


# -------------------------------------------------------------------------- what the books rely on


def call(start: Any) -> tuple[BaseException | None, int]:
    """Run `start(done, revision)` and wait: (the failure or None, the revision reported)."""
    finished = threading.Event()
    out: dict[str, Any] = {"exc": None, "rev": 0}

    def done(exc: BaseException | None) -> None:
        out["exc"] = exc
        finished.set()

    def revision(rev: int) -> None:
        out["rev"] = rev

    start(done, revision)
    assert finished.wait(15)
    return out["exc"], out["rev"]


@pytest.fixture(params=["v2", "v3-native", "v3-grpcio"])
def backend(
    request: pytest.FixtureRequest, etcd_server: LocalEtcd, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    if request.param == "v3-grpcio":
        monkeypatch.setenv("ETCDBENCH_V3_CLIENT", "grpcio")
    b = make_backend(request.param[:2], Endpoint((etcd_server.client_url,)))
    yield b
    b.close()


def test_an_acknowledged_write_reports_the_revision_the_watch_shows(backend: Any, fresh_prefix: str) -> None:
    start = backend.current_revision() + 1
    exc, put_rev = call(lambda d, r: backend.put_async(fresh_prefix + "a", b"x", d, revision=r))
    assert exc is None
    exc, del_rev = call(lambda d, r: backend.delete_async(fresh_prefix + "a", d, revision=r))
    assert exc is None
    items = backend.watch(fresh_prefix, start)
    events = [next(items), next(items)]
    backend.cancel()
    assert [(e.type, e.revision) for e in events] == [("PUT", put_rev), ("DELETE", del_rev)]


def test_a_delete_of_a_key_already_gone_is_keygone_on_v2(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    # What a retried delete meets when its first attempt was applied but the answer was lost.
    b = V2Backend(Endpoint((etcd_server.client_url,)))
    try:
        assert call(lambda d, r: b.put_async(fresh_prefix + "k", b"x", d))[0] is None
        assert call(lambda d, r: b.delete_async(fresh_prefix + "k", d))[0] is None
        exc, _ = call(lambda d, r: b.delete_async(fresh_prefix + "k", d))
        assert isinstance(exc, KeyGone)
    finally:
        b.close()


def test_an_update_keeps_the_expiry_of_an_expiring_key(backend: Any, fresh_prefix: str) -> None:
    key = fresh_prefix + "ttl"
    assert call(lambda d, r: backend.put_async(key, b"v1", d, 60.0))[0] is None
    assert call(lambda d, r: backend.put_async(key, b"v2", d, 60.0, keep_lease=True))[0] is None
    if isinstance(backend, V3Backend):
        [kv] = backend._range(key.encode(), b"").kvs
        assert kv.value == b"v2" and kv.lease != 0  # still on its lease: it will expire
    else:
        body = backend._get(None, key)[1]
        assert body["node"]["value"] == "v2" and 0 < body["node"]["ttl"] <= 60


def test_an_update_of_a_key_that_expired_is_keygone_and_recreates_nothing(
    backend: Any, fresh_prefix: str
) -> None:
    key = fresh_prefix + "gone"
    exc, _ = call(lambda d, r: backend.put_async(key, b"v", d, 60.0, keep_lease=True))
    assert isinstance(exc, KeyGone)
    assert backend.count_prefix(fresh_prefix) == 0


def test_a_lease_grant_that_fails_reaches_the_callback_instead_of_raising() -> None:
    b = V3Backend(Endpoint(("http://127.0.0.1:1",)))  # nothing listens there
    try:
        exc, _ = call(lambda d, r: b.put_async("/k", b"v", d, 5.0))
        assert isinstance(exc, EtcdError) and "LeaseGrant" in str(exc)
    finally:
        b.close()


def test_a_v3_relist_reads_the_prefix_in_pages_at_one_revision(
    etcd_server: LocalEtcd, fresh_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = V3Backend(Endpoint((etcd_server.client_url,)))
    try:
        for i in range(7):
            assert call(lambda d, r, i=i: b.put_async(f"{fresh_prefix}{i}", b"x" * 100, d))[0] is None
        pages: list[Any] = []
        real_range = b._kv.Range

        def spy(request: Any, **kwargs: Any) -> Any:
            pages.append(request)
            return real_range(request, **kwargs)

        monkeypatch.setattr(v3_admin, "RELIST_PAGE_KEYS", 3)
        monkeypatch.setattr(b._kv, "Range", spy)
        key = fresh_prefix.encode()
        relist = b.relist(key, prefix_range_end(key))
        assert relist.keys == 7 and relist.bytes > 700 and relist.duration_s > 0
        assert len(pages) == 3 and all(p.limit == 3 for p in pages)
        assert {p.revision for p in pages[1:]} == {relist.revision}
    finally:
        b.close()
