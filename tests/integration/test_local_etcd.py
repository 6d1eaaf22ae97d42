"""LocalEtcd against the real etcd binary: start and stop, its version, and its death with its parent
(how the binary is found: tests/unit/test_etcd_binary.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from processes import running

from etcdbench.etcd import LocalEtcd, etcd_version, find_etcd_binary


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); stop() reaps, so "alive" here means really running.
    return True


def test_start_stop_removes_data_dir_and_process() -> None:
    server = LocalEtcd(find_etcd_binary())
    with server:
        assert server.client_url.startswith("http://127.0.0.1:")
        assert os.path.isdir(server.data_dir)
        assert _pid_alive(server.pid)
        assert "--enable-v2=true" in server.args
        assert server.version == etcd_version(server.args[0])
    assert not os.path.exists(server.data_dir)
    assert not _pid_alive(server.pid)
    server.stop()  # idempotent


def test_real_binary_version() -> None:
    assert etcd_version(find_etcd_binary()).startswith("3.")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_etcd_dies_with_a_sigkilled_parent() -> None:
    script = (
        "import time\n"
        "from etcdbench.etcd import LocalEtcd, find_etcd_binary\n"
        "e = LocalEtcd(find_etcd_binary()); e.start()\n"
        "print(e.pid, e.data_dir, flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    data_dir = ""
    try:
        assert parent.stdout is not None
        pid_text, data_dir = parent.stdout.readline().split()
        etcd_pid = int(pid_text)
        assert running(etcd_pid)
        parent.kill()  # SIGKILL: no atexit, no __exit__; only the kernel's parent-death signal is left
        parent.wait()
        deadline = time.monotonic() + 10
        while running(etcd_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not running(etcd_pid)
    finally:
        parent.kill()
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)  # SIGKILL leaves it: nothing could remove it
