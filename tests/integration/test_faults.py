"""Faults injected into real runs: the books stay exact through pauses, restarts, compaction and a
dead etcd (bad --fault values, refused up front: tests/unit/test_fault_specs.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etcdbench.bench.target import run_watch
from etcdbench.config.run import RunConfig


def faulty_run(backend: str, fault: str, cluster_size: int = 1, **kw: Any) -> dict[str, Any]:
    config = RunConfig(
        backend=backend,
        rate=100,
        duration_s=3.0,
        warmup_s=0.0,
        objects=10,
        drain_s=4.0,
        faults=(fault,),
        **kw,
    )
    results = run_watch(config, endpoints=None, etcd_bin=None, cluster_size=cluster_size)
    (run,) = results.runs
    assert results.complete, (run.incomplete, run.faults)
    return run.to_dict()  # as the results file keeps it


def assert_books_exact(run: dict[str, Any]) -> None:
    c = run["counters"]
    assert c["written"] == c["received"] + c["missed"]
    assert c["missed"] == c["missed_relist"] + c["missed_undelivered"] + c["missed_expiries"]
    assert c["writes"] + c["errors"] + c["unsent"] == c["attempted"]
    (record,) = run["faults"]
    assert "error" not in record, record


@pytest.mark.parametrize(
    ("fault", "backend"),
    [
        *((f, b) for f in ("pause@1:1.5", "restart@1:1") for b in ("v3", "v2")),
        ("compact@1.5", "v3"),  # compact and defrag act on the v3 store: a v2 run refuses them
        ("defrag@1.5", "v3"),
    ],
)
def test_nothing_is_lost_or_unaccounted_through_a_fault(backend: str, fault: str) -> None:
    run = faulty_run(backend, fault)
    assert_books_exact(run)
    c = run["counters"]
    assert c["attempted"] == 300
    if not fault.startswith("restart"):  # a restart can outlast the retries on a loaded host: then the
        assert c["errors"] == c["unsent"] == 0  # writes it cost are in the books above, not lost
    assert c["missed"] == 0  # the watch resumed where it was
    if fault.startswith("restart"):
        assert c["watch_reconnects"] >= 1


def test_a_dead_etcd_ends_the_run_incomplete_with_exit_3(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "etcdbench", "watch", "--rate", "50", "--duration", "2", "--warmup", "0",
         "--objects", "5", "--fault", "kill@0.5", "--drain", "1", "--output", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "could not be reached after the run" in proc.stderr
    results = json.loads(out.read_text())
    assert results["complete"] is False
    (run,) = results["runs"]
    c = run["counters"]
    assert c["writes"] + c["errors"] + c["unsent"] == c["attempted"] == 100
    assert c["errors"] + c["unsent"] > 0
    assert c["written"] == c["received"] + c["missed"]


def test_killing_the_leader_of_a_3_member_cluster_loses_nothing() -> None:
    """Writers retry through the election; the v3 watch fails over to another member (the client's
    `ipv4:` target lists them all) and resumes from its next revision."""
    run = faulty_run("v3", "kill-leader@1:1", cluster_size=3)
    assert_books_exact(run)
    c = run["counters"]
    assert c["attempted"] == 300  # errors/unsent: an election on a loaded host may outlast the retries,
    assert c["missed"] == 0  # and assert_books_exact counts what it cost
    assert isinstance(run["faults"][0]["member"], int)
