"""Secure clusters: TLS with client certificates, etcd v3 and v2 authentication, and no leaked password
(the Credentials object and the flags alone: tests/unit/test_credentials.py).

The certificates are conftest's `pki`, made with the `openssl` command (tests/tls_pki.py).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import urllib3
from cli_console import start_etcdbench
from paths import ROOT
from tls_pki import PASSWORD, Pki, client_creds, client_flags, server_tls

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint
from etcdbench.backends.credentials import PASSWORD_ENV, Credentials
from etcdbench.bench.target import run_watch
from etcdbench.config.run import RunConfig
from etcdbench.errors import EtcdError
from etcdbench.etcd import find_etcd_binary
from etcdbench.etcd.local import LocalEtcd
from etcdbench.results.model import ResultsFile


@pytest.fixture(scope="module")
def auth_etcd(pki: Pki) -> Iterator[LocalEtcd]:
    """etcd with client-certificate TLS, v3 auth enabled (root) and v2 auth enabled (root, same password)."""
    with LocalEtcd(find_etcd_binary(), tls=server_tls(pki)) as server:
        etcdctl = str(Path(server.binary).parent / "etcdctl")
        if not os.access(etcdctl, os.X_OK):
            pytest.skip(f"no etcdctl next to {server.binary}")
        base = [etcdctl, "--endpoints", server.client_url, *client_flags(pki)]
        env = {"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "")}
        # `user add NAME` with --interactive=false reads the password from stdin: not on a command line.
        for args, stdin in (
            (["user", "add", "root", "--interactive=false"], PASSWORD + "\n"),
            (["auth", "enable"], ""),
        ):
            proc = subprocess.run(
                base + args, input=stdin, capture_output=True, text=True, env=env, timeout=30
            )
            assert proc.returncode == 0, proc.stderr
        http = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED", ca_certs=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key
        )
        user = json.dumps({"user": "root", "password": PASSWORD})
        for method, path, body in (("PUT", "/v2/auth/users/root", user), ("PUT", "/v2/auth/enable", None)):
            resp = http.request(method, server.client_url + path, body=body)
            assert resp.status in (200, 201), resp.data
        yield server


def small_config(prefix: str, backend: str = "v3", rate: float = 100) -> RunConfig:
    return RunConfig(backend=backend, rate=rate, duration_s=1.0, warmup_s=0.0, objects=20, prefix=prefix)


def assert_every_write_received(results: ResultsFile, writes: int = 100) -> None:
    assert results.complete
    (run,) = results.runs
    c = run.counters
    assert c.written == writes and c.errors == 0
    assert c.written == c.received and c.missed == 0


# -- TLS against a real etcd ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["v3", "v2"])
def test_watch_over_client_certificate_tls(
    tls_etcd: LocalEtcd, pki: Pki, fresh_prefix: str, backend: str
) -> None:
    assert tls_etcd.client_url.startswith("https://127.0.0.1:")
    results = run_watch(
        small_config(fresh_prefix, backend),
        endpoints=[tls_etcd.client_url],
        etcd_bin=None,
        credentials=client_creds(pki),
    )
    assert_every_write_received(results)


@pytest.mark.parametrize("backend", ["v3", "v2"])
def test_tls_mistakes_give_a_clear_error(tls_etcd: LocalEtcd, pki: Pki, backend: str) -> None:
    url = tls_etcd.client_url
    target = url.split("//")[1] if backend == "v3" else url
    cases = [
        (Credentials(pki.other_ca, pki.client_cert, pki.client_key), "certificate verify failed"),
        (Credentials(pki.ca, pki.rogue_cert, pki.rogue_key), "the server rejected the client certificate"),
        (Credentials(pki.ca), "the server requires a client certificate"),
    ]
    flags = ["(check --cacert)", "(check --cert/--key)", "(pass --cert and --key)"]
    for (creds, hint), flag in zip(cases, flags, strict=True):
        backend_ = make_backend(backend, Endpoint((url,), creds))
        try:
            with pytest.raises(EtcdError) as info:
                backend_.check()
        finally:
            backend_.close()
        assert str(info.value) == f"TLS handshake with {target} failed: {hint} {flag}"


def test_a_run_with_the_wrong_ca_fails_with_the_clear_error(
    tls_etcd: LocalEtcd, pki: Pki, fresh_prefix: str
) -> None:
    with pytest.raises(
        EtcdError, match=r"^TLS handshake with .* failed: certificate verify failed \(check --cacert\)$"
    ):
        run_watch(
            small_config(fresh_prefix),
            endpoints=[tls_etcd.client_url],
            etcd_bin=None,
            credentials=Credentials(pki.other_ca, pki.client_cert, pki.client_key),
        )


# -- etcd authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["v3", "v2"])
def test_auth_right_password_runs_and_wrong_password_is_refused(
    auth_etcd: LocalEtcd, pki: Pki, fresh_prefix: str, backend: str
) -> None:
    url = auth_etcd.client_url
    # etcd checks a v2 user's bcrypt password hash on every request (~60 ms of etcd CPU here), so the
    # v2 run is kept small; v3 pays it once, for the token.
    rate = 100 if backend == "v3" else 10
    results = run_watch(
        small_config(fresh_prefix, backend, rate),
        endpoints=[url],
        etcd_bin=None,
        credentials=client_creds(pki, "root", PASSWORD),
    )
    assert_every_write_received(results, rate)
    assert PASSWORD not in json.dumps(results.to_dict())  # the document a file would hold

    target = url.split("//")[1] if backend == "v3" else url
    with pytest.raises(EtcdError) as info:
        run_watch(
            small_config(fresh_prefix, backend),
            endpoints=[url],
            etcd_bin=None,
            credentials=client_creds(pki, "root", "not-" + PASSWORD),
        )
    assert (
        str(info.value) == f"etcd at {target} refused user root: authentication failed (check the password)"
    )
    assert PASSWORD not in str(info.value)


def test_v3_auth_without_a_user_is_denied(auth_etcd: LocalEtcd, pki: Pki, fresh_prefix: str) -> None:
    with pytest.raises(EtcdError, match=r"denied access: permission denied \(pass --user\)"):
        run_watch(
            small_config(fresh_prefix),
            endpoints=[auth_etcd.client_url],
            etcd_bin=None,
            credentials=client_creds(pki),
        )


def test_v3_token_is_renewed_when_etcd_calls_it_invalid(
    auth_etcd: LocalEtcd, pki: Pki, fresh_prefix: str
) -> None:
    from etcdbench.backends.v3 import V3Backend

    backend = V3Backend(Endpoint((auth_etcd.client_url,), client_creds(pki, "root", PASSWORD)))
    try:
        backend.check()
        assert backend._conn.auth is not None
        backend._conn.auth._token = "bogus"  # as after an etcd restart: the server no longer knows the token
        with pytest.raises(EtcdError, match="invalid auth token"):
            backend.count_prefix(fresh_prefix)
        assert backend.count_prefix(fresh_prefix) == 0  # authenticated again
    finally:
        backend.close()


# -- the command line: nothing secret in argv, output or errors -------------------------------------


def _cli(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `etcdbench watch ...` and collect the command lines of it and all its children meanwhile."""
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    env["PYTHONPATH"] = str(ROOT)
    proc = start_etcdbench("watch", *argv, cwd=tmp_path, env=env)
    seen: set[str] = set()
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for p in [parent, *parent.children(recursive=True)]:
                seen.add(" ".join(p.cmdline()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), seen


def test_cli_reads_the_password_from_a_file_and_never_shows_it(
    auth_etcd: LocalEtcd, pki: Pki, tmp_path: Path
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    common = [
        "--endpoints",
        auth_etcd.client_url,
        *client_flags(pki),
        "--user",
        "root",
        "--duration",
        "1",
        "--rate",
        "50",
        "--warmup",
        "0",
        "--prefix",
        f"/etcdbench-test/cli-{secrets.token_hex(4)}/",
    ]
    proc, cmdlines = _cli(tmp_path, *common, "--password-file", str(password_file), "--json")
    assert proc.returncode in (0, 1), proc.stderr  # PASS or FAIL: the verdict depends on this host's load
    counters = json.loads(proc.stdout)["runs"][0]["counters"]
    assert counters["written"] == counters["received"] == 50
    assert len(cmdlines) > 2  # the CLI and its spawned writer and watcher were seen
    for text in (proc.stdout, proc.stderr, *cmdlines):
        assert PASSWORD not in text

    # A wrong CA: one line on stderr (gRPC's own handshake log is kept quiet), exit code 3.
    wrong_ca = [*common[:3], pki.other_ca, *common[4:]]
    proc, _ = _cli(tmp_path, *wrong_ca, "--password-file", str(password_file), "--json")
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [
        f"error: TLS handshake with {auth_etcd.client_url.split('//')[1]} failed: "
        "certificate verify failed (check --cacert)"
    ]

    password_file.write_text("wrong-" + PASSWORD)
    proc, cmdlines = _cli(tmp_path, *common, "--password-file", str(password_file), "--json")
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [
        f"error: etcd at {auth_etcd.client_url.split('//')[1]} refused user root: "
        "authentication failed (check the password)"
    ]
    for text in (proc.stdout, proc.stderr, *cmdlines):
        assert PASSWORD not in text
