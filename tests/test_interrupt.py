"""Ctrl-C or SIGTERM mid-run: etcd and the child processes are stopped, the data dir removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["Ctrl-C to the process group", "SIGTERM to etcdbench"],
)
def test_signal_mid_run_leaves_nothing_behind(tmp_path: Path, sig: signal.Signals, group: bool) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "etcdbench", "watch", "--duration", "60", "--rate", "100", "--objects", "10"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job would have
    )
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    etcd: list[psutil.Process] = []
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline and not (etcd and len(workers) >= 2):
        time.sleep(0.2)
        children = parent.children(recursive=True)
        etcd = [c for c in children if c.name() == "etcd"]
        workers = [c for c in children if c.name() != "etcd"]
    assert etcd and len(workers) >= 2, "etcd, the watcher and a writer should be running"
    argv = etcd[0].cmdline()
    data_dir = Path(argv[argv.index("--data-dir") + 1]).parent  # etcdbench's temporary dir
    time.sleep(1.5)  # into the run itself

    if group:
        os.killpg(proc.pid, sig)  # what a terminal's Ctrl-C does
    else:
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    _, alive = psutil.wait_procs(etcd + workers, timeout=10)
    assert not alive
    assert not Path(data_dir).exists()
    assert not (tmp_path / "results").exists()  # no half-written results
