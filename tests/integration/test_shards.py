"""Cooperating shards on one machine against one etcd: one schedule, disjoint keys, exact books."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdbench.etcd import find_etcd_binary
from etcdbench.etcd.cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(find_etcd_binary(), size=3) as c:
        yield c


def test_two_shards_share_one_schedule_and_keep_exact_books(cluster: LocalCluster, tmp_path: Path) -> None:
    prefix = "/etcdbench-test/shards/"
    urls = ",".join(cluster.client_urls)
    run_id = f"test-{tmp_path.name}"  # new for every run
    common = [
        *("--endpoints", urls, "--prefix", prefix, "--rate", "200", "--duration", "1", "--run-id", run_id),
        *("--warmup", "0.5", "--objects", "20", "--workload", "mix", "--mix", "update=3,create=1,delete=1"),
    ]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "etcdbench",
                "watch",
                *common,
                "--shard",
                f"{i}/2",
                "--output",
                f"s{i}.json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err  # a shard that measured exits 0, PASS or FAIL: the verdict is merge's
    shard_files = [tmp_path / f"s{i}.json" for i in range(2)]
    docs = [json.loads(f.read_text()) for f in shard_files]
    assert all(len(d["environment"]["etcd"]["members"]) == 3 for d in docs)
    runs = [d["runs"][0] for d in docs]
    for run in runs:
        c = run["counters"]
        assert c["attempted"] == 150  # half of 200/s over 1.5 s
        assert c["written"] == c["received"] == c["writes"] == 150
        assert c["missed"] == c["foreign_events"] == 0
        # The other shard's 150 events, seen and left to its books, and maybe the 10 objects it seeded
        # (those fall after this shard's start revision only if it seeded later).
        assert 150 <= c["other_shard_events"] <= 160
    from etcdbench.backends.base import Endpoint
    from etcdbench.backends.v3 import V3Backend

    admin = V3Backend(Endpoint(tuple(cluster.client_urls)))
    assert admin.count_prefix(prefix) == 0  # each shard removed its own keys once both were done
    assert admin.count_prefix("/etcdbench/barrier/") == 0
    admin.close()

    merged = tmp_path / "merged.json"
    proc = subprocess.run(
        [sys.executable, "-m", "etcdbench", "merge", *map(str, shard_files), "-o", str(merged)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    (whole,) = json.loads(merged.read_text())["runs"]
    assert whole["verdict"]["pass"] == (proc.returncode == 0)
    assert whole["counters"]["written"] == whole["counters"]["received"] == 300
    assert whole["counters"]["missed"] == 0
    assert whole["latency_us"]["watch"]["count"] == sum(r["latency_us"]["watch"]["count"] for r in runs)
