"""Shards without an etcd: the --shard syntax, and how shards split the writers and their key slots."""

from __future__ import annotations

import pytest

from etcdbench.config.run import RunConfig, parse_shard
from etcdbench.errors import UsageError


def test_shard_syntax() -> None:
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "1", "a/b", "-1/2", "1/0"):
        with pytest.raises(UsageError, match=r"^--shard: "):
            parse_shard(bad)


def test_shards_split_writers_and_slots() -> None:
    config = RunConfig(writers=2, shard=1, shards=3, rate=60, duration_s=1, warmup_s=0)
    assert config.total_writers == 6
    assert [config.writer_id(w) for w in range(2)] == [2, 3]
