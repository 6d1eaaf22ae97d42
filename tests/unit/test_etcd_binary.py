"""How the etcd binary is found and checked, and a start that fails, with fake binaries: no etcd runs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from etcdbench.errors import EtcdError, UsageError
from etcdbench.etcd import LocalEtcd, etcd_version, find_etcd_binary
from etcdbench.etcd.local import _version_tuple


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
