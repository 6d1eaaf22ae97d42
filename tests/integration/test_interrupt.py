"""Ctrl-C or SIGTERM mid-run: etcd and the child processes are stopped, the data dir removed, and what
was measured until then is written, marked incomplete, with exact books; before anything was measured
nothing is written; a process that does not report in time is killed and named; a second Ctrl-C
gives up waiting. All against the embedded etcd, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from etcdbench.backends.base import Endpoint
from etcdbench.backends.v3 import V3Backend
from etcdbench.errors import EXIT_INTERRUPTED
from etcdbench.results.io import SCHEMA_VERSION, load
from etcdbench.workload.runner import STOP_WAIT_S

RATE, DURATION, OBJECTS = 100, 60, 10  # a run far longer than the test: it ends only by the signal
STARTUP_S = 90.0  # generous: the machine may be busy; nothing is asserted about time


@dataclass
class Run:
    proc: subprocess.Popen[str]
    etcd: psutil.Process
    client_url: str
    data_dir: Path

    def processes(self) -> list[psutil.Process]:
        return [self.etcd, *self.workers()]

    def workers(self) -> list[psutil.Process]:
        """The writer and watcher processes (multiprocessing's spawned children)."""
        found = []
        for c in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if "spawn_main" in " ".join(c.cmdline()):
                    found.append(c)
            except psutil.Error:
                pass
        return found

    def revision(self) -> int:
        admin = V3Backend(Endpoint((self.client_url,)))
        try:
            return admin.current_revision()
        finally:
            admin.close()

    def wait_for(self, what: str, ready: Any) -> None:
        deadline = time.monotonic() + STARTUP_S
        while not ready():
            assert self.proc.poll() is None, f"etcdbench exited before {what}: {self.proc.communicate()}"
            assert time.monotonic() < deadline, f"no {what} within {STARTUP_S:g} s"
            time.sleep(0.1)

    def signal(self, sig: signal.Signals, group: bool) -> None:
        if group:
            os.killpg(self.proc.pid, sig)  # what a terminal's Ctrl-C does
        else:
            os.kill(self.proc.pid, sig)


def _running_etcd(parent: psutil.Process) -> tuple[psutil.Process | None, list[str]]:
    """etcdbench's etcd and its command line; an etcd that already exited (a start retried on other
    ports after a port clash) is skipped."""
    for child in parent.children(recursive=True):
        try:
            if child.name() == "etcd":
                return child, child.cmdline()
        except psutil.Error:
            continue
    return None, []


def start(tmp_path: Path, *extra: str) -> Run:
    proc = subprocess.Popen(
        [sys.executable, "-m", "etcdbench", "watch", "--duration", str(DURATION), "--warmup", "0",
         "--rate", str(RATE), "--objects", str(OBJECTS), *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job would have
    )  # fmt: skip
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + STARTUP_S
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "etcd did not start"
        etcd, argv = _running_etcd(parent)
        if "--listen-client-urls" in argv:  # exec'd: its command line is etcd's
            break
        time.sleep(0.1)
    assert etcd is not None
    return Run(
        proc,
        etcd,
        argv[argv.index("--listen-client-urls") + 1],
        Path(argv[argv.index("--data-dir") + 1]).parent,  # etcdbench's temporary dir
    )


def writing(run: Run) -> bool:
    """t0 has passed: the writers have put a few hundred milliseconds' worth beyond the preload."""
    try:
        return len(run.workers()) == 2 and run.revision() > 1 + OBJECTS + RATE // 2
    except Exception:
        return False


def finish(run: Run) -> tuple[str, str]:
    out, err = run.proc.communicate(timeout=120)
    assert run.proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    return out, err


def assert_nothing_left(run: Run, processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert not alive
    assert not run.data_dir.exists()


def assert_books_exact(r: dict[str, Any]) -> None:
    c = r["counters"]
    assert c["attempted"] == RATE * DURATION
    assert c["writes"] + c["errors"] + c["unsent"] == c["attempted"]
    assert c["writes"] == r["operations"]["update"] > 0 and c["errors"] == 0
    assert c["unsent"] > 0  # the schedule was cut short
    assert c["written"] == c["received"] + c["missed"]
    assert sum(r["timeseries"]["writes_acked"]) == c["writes"]


@pytest.mark.parametrize(
    ("sig", "group", "to_stdout"),
    [(signal.SIGINT, True, False), (signal.SIGTERM, False, True)],
    ids=["Ctrl-C to the process group, results file", "SIGTERM to etcdbench, --json"],
)
def test_signal_mid_run_writes_the_partial_run(
    tmp_path: Path, sig: signal.Signals, group: bool, to_stdout: bool
) -> None:
    out_path = tmp_path / "r.json"
    run = start(tmp_path, *(["--json"] if to_stdout else ["--output", str(out_path)]))
    run.wait_for("writes", lambda: writing(run))
    processes = run.processes()
    run.signal(sig, group)
    out, err = finish(run)
    assert_nothing_left(run, processes)

    if to_stdout:
        results = json.loads(out)
        assert not out_path.exists()
    else:
        results = load(out_path)
        assert f"interrupted: partial results written to {out_path} (complete: false)" in err
        assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left
    assert f"interrupted by {sig.name}: etcd and child processes stopped" in err
    assert results["format"] == "etcdbench-results" and results["schema_version"] == SCHEMA_VERSION
    assert results["complete"] is False
    (r,) = results["runs"]
    m = re.fullmatch(rf"interrupted by {sig.name} after (\d+\.\d) s of {DURATION} s", r["incomplete"])
    assert m, r["incomplete"]
    assert abs(r["duration_s"] - float(m.group(1))) <= 0.05 + 1e-9  # the same cut, rounded for the reason
    assert 0 < r["duration_s"] < DURATION
    assert r["config"]["duration_s"] == DURATION
    assert "missing" not in r
    assert r["verdict"]["pass"] is False
    assert r["verdict"]["reasons"][0] == f"incomplete: {r['incomplete']}"
    assert_books_exact(r)
    c = r["counters"]
    assert c["missed"] == 0  # a healthy etcd: the watcher received every acknowledged write
    assert sum(r["timeseries"]["events_received"]) == c["received"]
    # No warm-up: every write sent was intended inside the window, so each has a put and watch latency.
    assert r["latency_us"]["put"]["count"] == r["latency_us"]["watch"]["count"] == c["writes"]
    assert set(r["timeseries"]["rss_bytes"]) >= {"parent", "watcher", "writers", "etcd"}


def test_ctrl_c_during_start_up_writes_nothing(tmp_path: Path) -> None:
    run = start(tmp_path, "--preload", "pod=200000")
    # The writer is storing the preload; the watcher does not exist yet.
    run.wait_for("the preload", lambda: len(run.workers()) == 1 and run.revision() > 100)
    processes = run.processes()
    run.signal(signal.SIGINT, group=True)
    _, err = finish(run)
    assert_nothing_left(run, processes)
    assert "interrupted before anything was measured; no results written" in err
    assert not (tmp_path / "results").exists()


def test_a_process_that_does_not_report_is_killed_and_named(tmp_path: Path) -> None:
    out_path = tmp_path / "r.json"
    run = start(tmp_path, "--output", str(out_path))
    run.wait_for("writes", lambda: writing(run))
    processes = run.processes()
    watcher = max(run.workers(), key=lambda p: p.pid)  # started after the writer
    watcher.suspend()  # SIGSTOP: it cannot answer the stop
    run.signal(signal.SIGINT, group=True)
    finish(run)
    assert_nothing_left(run, processes)
    (r,) = load(out_path)["runs"]
    assert r["missing"] == ["watcher 0"]
    assert r["incomplete"].endswith(
        f"; watcher 0 did not report within {STOP_WAIT_S:g} s and was killed: what it measured is missing"
    )
    assert_books_exact(r)  # the writer's books are whole
    c = r["counters"]
    assert c["written"] == c["received"] == 0  # no watch reported: nothing to count against
    assert r["latency_us"]["watch"]["count"] == 0 and r["latency_us"]["put"]["count"] == c["writes"]


def test_a_second_ctrl_c_gives_up_the_partial_run_and_still_cleans_up(tmp_path: Path) -> None:
    run = start(tmp_path)
    run.wait_for("writes", lambda: writing(run))
    processes = run.processes()
    max(run.workers(), key=lambda p: p.pid).suspend()  # the stop now waits STOP_WAIT_S for the watcher
    run.signal(signal.SIGINT, group=True)
    time.sleep(1.0)
    assert run.proc.poll() is None  # still waiting for the watcher's books
    run.signal(signal.SIGINT, group=True)
    _, err = finish(run)
    assert_nothing_left(run, processes)
    assert "interrupted again while stopping: the run in progress was given up; no results written" in err
    assert not (tmp_path / "results").exists()
