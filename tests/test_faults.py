"""Faults injected into real runs: the books stay exact through pauses, restarts, compaction and a
dead etcd; bad --fault values are refused up front."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from etcdbench.errors import UsageError
from etcdbench.faults import Fault, parse_fault
from etcdbench.scenario import RunConfig
from etcdbench.session import run_watch


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("pause@2:1.5", Fault("pause", 2.0, 1.5)),
        ("restart@1s:2s", Fault("restart", 1.0, 2.0)),
        ("kill@3", Fault("kill", 3.0)),
        ("compact@0.5", Fault("compact", 0.5)),
        ("defrag@1", Fault("defrag", 1.0)),
    ],
)
def test_fault_syntax(text: str, fault: Fault) -> None:
    assert parse_fault(text) == fault
    assert parse_fault(str(fault)) == fault


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("explode@1", "is not KIND@SECONDS"),
        ("pause", "is not KIND@SECONDS"),
        ("pause@x:1", "is not KIND@SECONDS"),
        ("pause@1", "needs a duration"),
        ("compact@1:2", "takes no duration"),
    ],
)
def test_malformed_faults_are_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=f"^--fault: .*{message}"):
        parse_fault(text)


def test_a_fault_after_the_writes_end_is_refused() -> None:
    with pytest.raises(UsageError, match="starts after the writes end"):
        RunConfig(duration_s=2, warmup_s=0, faults=("pause@5:1",))


def faulty_run(backend: str, fault: str, **kw: Any) -> dict[str, Any]:
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
    results = run_watch(config, endpoints=None, etcd_bin=None)
    (run,) = results["runs"]
    assert results["complete"]
    return run


def assert_books_exact(run: dict[str, Any]) -> None:
    c = run["counters"]
    assert c["written"] == c["received"] + c["missed"]
    assert c["missed"] == c["missed_relist"] + c["missed_undelivered"] + c["missed_expiries"]
    assert c["writes"] + c["errors"] + c["unsent"] == c["attempted"]
    (record,) = run["faults"]
    assert "error" not in record, record


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["v3", "v2"])
@pytest.mark.parametrize("fault", ["pause@1:1.5", "restart@1:1", "compact@1.5", "defrag@1.5"])
def test_nothing_is_lost_or_unaccounted_through_a_fault(backend: str, fault: str) -> None:
    run = faulty_run(backend, fault)
    assert_books_exact(run)
    c = run["counters"]
    assert c["attempted"] == 300
    assert c["errors"] == c["unsent"] == 0  # retries carried every write through
    assert c["missed"] == 0  # the watch resumed where it was
    if fault.startswith("restart"):
        assert c["watch_reconnects"] >= 1


@pytest.mark.integration
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


def test_signal_faults_need_the_embedded_etcd() -> None:
    with pytest.raises(UsageError, match="needs the embedded etcd"):
        run_watch(RunConfig(faults=("pause@1:1",)), endpoints=["http://127.0.0.1:9"], etcd_bin=None)
