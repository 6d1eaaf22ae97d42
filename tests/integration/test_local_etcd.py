"""LocalEtcd against the real etcd binary, and how the binary is found."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etcdbench.errors import EtcdError, UsageError
from etcdbench.etcd import LocalEtcd, etcd_version, find_etcd_binary
from etcdbench.etcd.local import _version_tuple


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); stop() reaps, so "alive" here means really running.
    return True


@pytest.mark.integration
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


def test_stop_is_safe_before_start() -> None:
    LocalEtcd("/nonexistent/etcd").stop()


def test_missing_etcd_bin_names_the_flag(tmp_path: Path) -> None:
    missing = tmp_path / "etcd"
    with pytest.raises(UsageError, match=r"^--etcd-bin: .* does not exist$"):
        find_etcd_binary(str(missing))


def test_non_executable_etcd_bin_names_the_flag(tmp_path: Path) -> None:
    plain = tmp_path / "etcd"
    plain.write_text("not a program")
    plain.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with pytest.raises(UsageError, match=r"^--etcd-bin: .* is not executable$"):
        find_etcd_binary(str(plain))


def test_etcd_bin_that_is_not_etcd_names_the_flag(tmp_path: Path) -> None:
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    with pytest.raises(UsageError, match=r"^--etcd-bin: .* is not etcd"):
        find_etcd_binary(str(fake))


def test_etcd_bin_env_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETCD_BIN", str(tmp_path / "nope"))
    with pytest.raises(UsageError, match=r"^ETCD_BIN: "):
        find_etcd_binary()


def test_no_binary_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETCD_BIN", raising=False)
    monkeypatch.setattr("etcdbench.etcd.local._distro_binary", lambda: None)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(EtcdError, match="no etcd binary found"):
        find_etcd_binary()


def test_etcd_version_parses(tmp_path: Path) -> None:
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\necho 'etcd Version: 3.4.23'\necho 'Git SHA: Not provided'\n")
    fake.chmod(0o755)
    assert etcd_version(str(fake)) == "3.4.23"
    assert _version_tuple("3.6.0-rc.1") == (3, 6)


@pytest.mark.integration
def test_real_binary_version() -> None:
    assert etcd_version(find_etcd_binary()).startswith("3.")


def test_failed_start_reports_the_log(tmp_path: Path) -> None:
    fake = tmp_path / "etcd"
    fake.write_text(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'etcd Version: 3.5.1'; exit 0; fi\n"
        "echo 'first line'\necho 'fatal: cannot start'\nexit 1\n"
    )
    fake.chmod(0o755)
    server = LocalEtcd(str(fake))
    with pytest.raises(EtcdError, match=r"exited with code 1.*fatal: cannot start"):
        server.start(timeout=5)
    assert not os.path.exists(server.data_dir)


def _running(pid: int) -> bool:
    """True while pid exists and is not a zombie (a reaper may be slow to collect it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.integration
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
        assert _running(etcd_pid)
        parent.kill()  # SIGKILL: no atexit, no __exit__; only the kernel's parent-death signal is left
        parent.wait()
        deadline = time.monotonic() + 10
        while _running(etcd_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(etcd_pid)
    finally:
        parent.kill()
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)  # SIGKILL leaves it: nothing could remove it
