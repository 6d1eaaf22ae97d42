"""The books against ground truth: the real pipeline on a scripted fake etcd (tests/fake_pipeline.py)."""

from __future__ import annotations

import time

import pytest

from etcdbench.backends.fake import FakeEtcd
from etcdbench.scenario import RunConfig
from fake_pipeline import run_pipeline, truth

BASE = {"rate": 2000.0, "duration_s": 0.02, "warmup_s": 0.0, "drain_s": 0.05, "objects": 8, "encoding": "json"}


def config(**kw: object) -> RunConfig:
    return RunConfig(**{**BASE, **kw})  # type: ignore[arg-type]


def test_a_clean_run_receives_every_write_once() -> None:
    etcd = FakeEtcd()
    run = run_pipeline(config(), etcd)
    c = run["counters"]
    assert c["written"] == 40 and c["received"] == 40 and c["missed"] == 0
    assert truth(etcd, 0).counters() == {k: c[k] for k in truth(etcd, 0).counters()}
