"""Shared fixtures: one real local etcd (v2 enabled) for the whole session, and fresh key prefixes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from etcdbench.etcd import LocalEtcd, find_etcd_binary


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[LocalEtcd]:
    with LocalEtcd(find_etcd_binary(), enable_v2=True) as server:
        yield server


@pytest.fixture
def fresh_prefix() -> str:
    return f"/etcdbench-test/{uuid.uuid4().hex}/"
