"""A run's own-key cleanup (bench.target.OwnKeys) through the Admin protocol, on the fake etcd: the
fake implements the admin side as well as the load, so cleanup is checked without a real etcd."""

from __future__ import annotations

import threading

import pytest
from fake_pipeline import run_pipeline

from etcdbench.backends.fake import FakeEtcd, fake_admin, fake_backend
from etcdbench.bench.target import OwnKeys
from etcdbench.config.run import RunConfig
from etcdbench.errors import UsageError


def put(etcd: FakeEtcd, key: str) -> None:
    acked = threading.Event()
    fake_backend(etcd).put_async(key, b"someone's", lambda exc: acked.set())
    assert acked.wait(5)


def test_cleanup_deletes_exactly_the_runs_own_keys() -> None:
    etcd = FakeEtcd()
    admin = fake_admin(etcd)
    cfg = RunConfig(rate=2000.0, duration_s=0.02, warmup_s=0.0, drain_s=10.0, objects=8, encoding="json")
    theirs = cfg.prefix + "pods/someone/else"
    put(etcd, theirs)
    own = OwnKeys(cfg)
    with pytest.raises(UsageError, match="already holds 1 keys"):
        own.claim(admin, "the fake etcd", beside_others=False)
    own.claim(admin, "the fake etcd", beside_others=True)
    run_pipeline(cfg, etcd)
    written = admin.list_keys(cfg.prefix)[1].keys() - {theirs}
    assert written and written <= own.keys
    assert own.release(admin) == len(written)
    assert admin.get_prefix(cfg.prefix) == {theirs: b"someone's"}


def test_a_key_the_run_would_overwrite_is_refused() -> None:
    etcd = FakeEtcd()
    cfg = RunConfig(objects=8, encoding="json")
    own = OwnKeys(cfg)
    mine = sorted(own.keys)[0]
    put(etcd, mine)
    with pytest.raises(UsageError, match=f"e.g. {mine}"):
        own.claim(fake_admin(etcd), "the fake etcd", beside_others=True)
