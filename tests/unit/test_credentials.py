"""Credentials and the security flags, with no etcd: the password never shown, schemes that match the TLS
files, one-line flag errors that name the flag, and where the password comes from."""

from __future__ import annotations

import argparse
import io
import pickle
import sys
from pathlib import Path

import pytest
from tls_pki import PASSWORD, Pki

from etcdbench.backends.base import Endpoint
from etcdbench.backends.credentials import PASSWORD_ENV, Credentials, tls_hint
from etcdbench.bench.target import run_watch
from etcdbench.cli.app import build_parser
from etcdbench.cli.credentials import credentials_from_args
from etcdbench.config.run import RunConfig
from etcdbench.errors import EtcdError, UsageError


def test_credentials_never_show_the_password_and_pickle_whole() -> None:
    creds = Credentials("/ca.pem", "/c.pem", "/k.pem", "root", PASSWORD)
    endpoint = Endpoint(("https://127.0.0.1:2379",), creds)
    for text in (repr(creds), str(creds), repr(endpoint), str(endpoint)):
        assert PASSWORD not in text
    assert "root" in repr(creds)
    # Spawned writers and watchers get the endpoint through the multiprocessing pipe (a pickle).
    unpickled: Endpoint = pickle.loads(pickle.dumps(endpoint))
    assert unpickled == endpoint
    assert unpickled.credentials is not None and unpickled.credentials.password == PASSWORD
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

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        return "typed"

    monkeypatch.setattr(sys, "stdin", Tty())
    monkeypatch.setattr("getpass.getpass", getpass)
    creds = credentials_from_args(parse(*base))
    assert creds is not None and creds.password == "typed"
    assert prompts == ["etcd password for root: "]
