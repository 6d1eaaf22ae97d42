"""Secure clusters: TLS with client certificates, etcd v3 and v2 authentication, and no leaked password.

The certificates are made here with the `openssl` command (a CA, a second "other" CA, a server
certificate for 127.0.0.1, a client certificate and a rogue client certificate from the other CA).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import urllib3
from paths import ROOT

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint
from etcdbench.backends.credentials import PASSWORD_ENV, Credentials, credentials_from_args, tls_hint
from etcdbench.bench.target import run_watch
from etcdbench.cli.app import build_parser
from etcdbench.config.run import RunConfig
from etcdbench.errors import EtcdError, UsageError
from etcdbench.etcd import find_etcd_binary
from etcdbench.etcd.local import LocalEtcd, TlsFiles

# Distinctive, so that finding it anywhere (results, messages, argv) is never a coincidence.
PASSWORD = "pw-" + secrets.token_hex(12)


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: str
    other_ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    rogue_cert: str  # a client certificate signed by the other CA
    rogue_key: str


def _openssl(cwd: Path, *args: str) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"openssl {' '.join(args)}: {proc.stderr}"


def make_pki(d: Path) -> Pki:
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other"):
        _openssl(
            d,
            "req",
            "-x509",
            *new_key,
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            "-days",
            "2",
            "-subj",
            f"/CN=etcdbench test {ca} CA",
        )
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    # The client's CN is no etcd user: with --client-cert-auth etcd would otherwise log it in by its CN.
    for name, ca, ext in (
        ("server", "ca", "server"),
        ("client", "ca", "client"),
        ("rogue", "other", "client"),
    ):
        _openssl(
            d,
            "req",
            *new_key,
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN=etcdbench-{name}",
        )
        _openssl(
            d,
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            f"{ca}.crt",
            "-CAkey",
            f"{ca}.key",
            "-set_serial",
            str(secrets.randbits(63)),
            "-days",
            "2",
            "-out",
            f"{name}.crt",
            "-extfile",
            f"{ext}.ext",
        )
    return Pki(
        d,
        *(
            str(d / f)
            for f in (
                "ca.crt",
                "other.crt",
                "server.crt",
                "server.key",
                "client.crt",
                "client.key",
                "rogue.crt",
                "rogue.key",
            )
        ),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test certificates")
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls_files(pki: Pki) -> TlsFiles:
    return TlsFiles(
        pki.server_cert, pki.server_key, pki.ca, client_cert=pki.client_cert, client_key=pki.client_key
    )


def client_creds(pki: Pki, user: str | None = None, password: str | None = None) -> Credentials:
    return Credentials(pki.ca, pki.client_cert, pki.client_key, user, password)


@pytest.fixture(scope="module")
def tls_etcd(pki: Pki) -> Iterator[LocalEtcd]:
    """etcd with TLS on its client URL and --client-cert-auth; no etcd auth."""
    with LocalEtcd(find_etcd_binary(), tls=_tls_files(pki)) as server:
        yield server


@pytest.fixture(scope="module")
def auth_etcd(pki: Pki) -> Iterator[LocalEtcd]:
    """etcd with client-certificate TLS, v3 auth enabled (root) and v2 auth enabled (root, same password)."""
    with LocalEtcd(find_etcd_binary(), tls=_tls_files(pki)) as server:
        etcdctl = str(Path(server.binary).parent / "etcdctl")
        if not os.access(etcdctl, os.X_OK):
            pytest.skip(f"no etcdctl next to {server.binary}")
        base = [
            etcdctl,
            "--endpoints",
            server.client_url,
            "--cacert",
            pki.ca,
            "--cert",
            pki.client_cert,
            "--key",
            pki.client_key,
        ]
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


def assert_every_write_received(results: dict[str, Any], writes: int = 100) -> None:
    assert results["complete"]
    (run,) = results["runs"]
    c = run["counters"]
    assert c["written"] == writes and c["errors"] == 0
    assert c["written"] == c["received"] and c["missed"] == 0


# -- the Credentials object and the flags -----------------------------------------------------------


def test_credentials_never_show_the_password_and_pickle_whole() -> None:
    creds = Credentials("/ca.pem", "/c.pem", "/k.pem", "root", PASSWORD)
    endpoint = Endpoint(("https://127.0.0.1:2379",), creds)
    for text in (repr(creds), str(creds), repr(endpoint), str(endpoint)):
        assert PASSWORD not in text
    assert "root" in repr(creds)
    # Spawned writers and watchers get the endpoint through the multiprocessing pipe (a pickle).
    assert pickle.loads(pickle.dumps(endpoint)) == endpoint
    assert pickle.loads(pickle.dumps(endpoint)).credentials.password == PASSWORD  # type: ignore[union-attr]
    assert Endpoint(("http://x:1",)).credentials is None


def test_endpoint_schemes_must_match_the_tls_files() -> None:
    assert Endpoint(("https://h:1",), Credentials(cacert="/ca")).tls
    assert not Endpoint(("http://h:1",), Credentials(user="u", password="p")).tls
    with pytest.raises(EtcdError, match="--cacert"):
        Endpoint(("https://h:1",)).tls  # noqa: B018
    with pytest.raises(EtcdError, match="https://"):
        Endpoint(("http://h:1",), Credentials(cacert="/ca")).tls  # noqa: B018
    with pytest.raises(EtcdError, match="mix"):
        Endpoint(("https://h:1", "http://h:2"), Credentials(cacert="/ca")).tls  # noqa: B018


def test_tls_hints_name_the_flag() -> None:
    grpc_ca = "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED"
    assert tls_hint(grpc_ca, client_cert=True) == "certificate verify failed (check --cacert)"
    bad = "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate"
    assert "check --cert/--key" in (tls_hint(bad, client_cert=True) or "")
    assert "pass --cert and --key" in (tls_hint(bad, client_cert=False) or "")
    assert tls_hint("Failed to connect to remote host: Connection refused", client_cert=True) is None


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["watch", *argv])


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


def test_credentials_need_endpoints() -> None:
    with pytest.raises(UsageError, match="need --endpoints"):
        run_watch(RunConfig(), endpoints=None, etcd_bin=None, credentials=Credentials(user="u", password="p"))


def test_there_is_no_password_flag() -> None:
    # Not even as an abbreviation of --password-file, which would then echo the "file name".
    for argv in (["--password", PASSWORD], [f"--password={PASSWORD}"], ["--passw", PASSWORD]):
        with pytest.raises(UsageError, match="--password") as info:
            parse("--endpoints", "http://127.0.0.1:2379", "--user", "root", *argv)
        assert PASSWORD not in str(info.value)


@pytest.mark.usefixtures("no_terminal")
def test_flag_errors_are_one_line_and_name_the_flag(tmp_path: Path, pki: Pki) -> None:
    url = "https://127.0.0.1:2379"
    cases: list[tuple[list[str], str]] = [
        (
            ["--endpoints", url, "--cacert", str(tmp_path / "missing.pem")],
            "--cacert: .*missing.pem does not exist",
        ),
        (["--endpoints", url, "--cacert", pki.ca, "--cert", pki.client_cert], "--cert needs --key"),
        (["--endpoints", url, "--cacert", pki.ca, "--key", pki.client_key], "--key needs --cert"),
        (
            ["--endpoints", url, "--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.rogue_key],
            "--key: .* is not the key of --cert",
        ),
        (["--endpoints", url, "--cacert", pki.server_key], "--cacert: .* no usable CA certificate"),
        (["--endpoints", url], "https:// needs --cacert"),
        (["--endpoints", "http://127.0.0.1:2379", "--cacert", pki.ca], "--cacert needs https://"),
        (["--cacert", pki.ca], "--cacert needs --endpoints"),
        (["--endpoints", url, "--cacert", pki.ca, "--user", "root"], "--user root: no password"),
        (["--endpoints", url, "--cacert", pki.ca, "--password-file", pki.ca], "--password-file needs --user"),
        (
            [
                "--endpoints",
                url,
                "--cacert",
                pki.ca,
                "--user",
                "root",
                "--password-file",
                str(tmp_path / "nope"),
            ],
            "--password-file: .*nope does not exist",
        ),
    ]
    for argv, message in cases:
        with pytest.raises(UsageError, match=message) as info:
            credentials_from_args(parse(*argv))
        assert "\n" not in str(info.value)
    # etcdctl's "--user name:password" is refused without repeating what was typed.
    with pytest.raises(UsageError, match="name only") as info:
        credentials_from_args(parse("--endpoints", url, "--cacert", pki.ca, "--user", f"root:{PASSWORD}"))
    assert PASSWORD not in str(info.value)


@pytest.mark.usefixtures("no_terminal")
def test_password_sources(tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["--endpoints", "https://127.0.0.1:2379", "--cacert", pki.ca, "--user", "root"]
    assert credentials_from_args(parse("--endpoints", "http://127.0.0.1:2379")) is None
    path = tmp_path / "pw"
    path.write_text(PASSWORD + "\n")
    creds = credentials_from_args(parse(*base, "--password-file", str(path)))
    assert creds == Credentials(pki.ca, None, None, "root", PASSWORD)
    path.write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        credentials_from_args(parse(*base, "--password-file", str(path)))

    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    creds = credentials_from_args(parse(*base))
    assert creds is not None and creds.password == "from-env"
    monkeypatch.delenv(PASSWORD_ENV)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts: list[str] = []
    monkeypatch.setattr(sys, "stdin", Tty())
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or "typed")
    creds = credentials_from_args(parse(*base))
    assert creds is not None and creds.password == "typed"
    assert prompts == ["etcd password for root: "]


# -- TLS against a real etcd ------------------------------------------------------------------------


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
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
    assert PASSWORD not in json.dumps(results)

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


@pytest.mark.integration
def test_v3_auth_without_a_user_is_denied(auth_etcd: LocalEtcd, pki: Pki, fresh_prefix: str) -> None:
    with pytest.raises(EtcdError, match=r"denied access: permission denied \(pass --user\)"):
        run_watch(
            small_config(fresh_prefix),
            endpoints=[auth_etcd.client_url],
            etcd_bin=None,
            credentials=client_creds(pki),
        )


@pytest.mark.integration
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
    proc = subprocess.Popen(
        [sys.executable, "-m", "etcdbench", "watch", *argv],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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


@pytest.mark.integration
def test_cli_reads_the_password_from_a_file_and_never_shows_it(
    auth_etcd: LocalEtcd, pki: Pki, tmp_path: Path
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    common = [
        "--endpoints",
        auth_etcd.client_url,
        "--cacert",
        pki.ca,
        "--cert",
        pki.client_cert,
        "--key",
        pki.client_key,
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
