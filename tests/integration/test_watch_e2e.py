"""The whole pipeline on a real etcd: writers, watcher, accounting, verdict — exact counts, no timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etcdbench.bench.target import run_watch
from etcdbench.config.run import RunConfig
from etcdbench.etcd import LocalEtcd
from etcdbench.results.io import SCHEMA_VERSION, load

CASES = [
    ("v3", "protobuf", "poll", "pod"),
    ("v3", "json", "poll", "node"),
    ("v3", "protobuf", "poll", "event"),
    ("v2", "json", "poll", "pod"),
    ("v2", "json", "stream", "pod"),
    ("v2", "protobuf", "poll", "node"),
]


def small_run(etcd: LocalEtcd, prefix: str, **kw: Any) -> dict[str, Any]:
    config = RunConfig(rate=200, duration_s=1.0, warmup_s=0.5, objects=20, prefix=prefix, drain_s=3.0, **kw)
    results = run_watch(config, endpoints=[etcd.client_url], etcd_bin=None)
    assert results.complete
    (run,) = results.runs
    return run.to_dict()  # as the results file keeps it


@pytest.mark.parametrize(("backend", "encoding", "v2_watch", "kind"), CASES)
def test_every_write_is_received_exactly_once(
    etcd_server: LocalEtcd, fresh_prefix: str, backend: str, encoding: str, v2_watch: str, kind: str
) -> None:
    run = small_run(
        etcd_server, fresh_prefix, backend=backend, encoding=encoding, v2_watch=v2_watch, kind=kind
    )
    c = run["counters"]
    assert c["attempted"] == 300  # 200/s over 1.5 s
    assert c["written"] == 300 and c["errors"] == 0
    assert c["received"] == 300 and c["missed"] == 0
    assert c["duplicates"] == c["out_of_order"] == c["relists"] == 0
    assert c["decode_errors"] == c["foreign_events"] == 0
    assert run["latency_us"]["watch"]["count"] == 200  # writes intended in the measured window
    assert run["latency_us"]["put"]["count"] == 200
    assert run["object_bytes"] > 0
    assert sum(run["timeseries"]["events_received"]) == 300
    assert sum(run["timeseries"]["writes_acked"]) == 300


def test_writers_split_the_schedule_and_keys_are_cleaned_up(
    etcd_server: LocalEtcd, fresh_prefix: str
) -> None:
    run = small_run(etcd_server, fresh_prefix, writers=3)
    assert run["counters"]["written"] == run["counters"]["received"] == 300
    from etcdbench.backends.base import Endpoint
    from etcdbench.backends.v3 import V3Backend

    admin = V3Backend(Endpoint((etcd_server.client_url,)))
    assert admin.count_prefix(fresh_prefix) == 0  # an external etcd is left as found
    admin.close()


def test_cli_embedded_etcd_json_to_stdout(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "etcdbench",
            "watch",
            "--rate",
            "100",
            "--duration",
            "1",
            "--warmup",
            "0.5",
            "--objects",
            "10",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
    )
    assert proc.returncode in (0, 1), proc.stderr
    results = json.loads(proc.stdout)
    assert results["schema_version"] == SCHEMA_VERSION and results["complete"]
    env = results["environment"]["etcd"]
    assert env["embedded"] and "--enable-v2=true" in env["args"]
    (run,) = results["runs"]
    assert run["counters"]["written"] == run["counters"]["received"] == 150
    assert run["verdict"]["pass"] == (proc.returncode == 0)
    assert not (tmp_path / "results").exists()  # --json writes no file


def test_cli_writes_results_file_that_show_renders(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "etcdbench",
            "watch",
            "--backend",
            "v2",
            "--encoding",
            "json",
            "--rate",
            "100",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--objects",
            "10",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=180,
    )
    assert proc.returncode in (0, 1), proc.stderr
    results = load(out)
    assert results["runs"][0]["counters"]["received"] == 100
    assert "v2(poll)+json pod @100/s" in proc.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "etcdbench", "show", str(out)], capture_output=True, text=True
    )
    assert shown.returncode == 0 and "v2(poll)+json pod @100/s" in shown.stdout
