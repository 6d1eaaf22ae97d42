"""TLS without an etcd: the certificates etcdbench makes are a control plane's, a temporary PKI goes on
error, and --tls is for the embedded etcd only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_console import run_cli
from cryptography import x509

from etcdbench.bench.target import Target
from etcdbench.errors import UsageError
from etcdbench.etcd import certs
from etcdbench.etcd.certs import TemporaryPki


def test_certificates_are_a_control_planes(tmp_path: Path) -> None:
    made = certs.generate(tmp_path)
    server = x509.load_pem_x509_certificate(Path(made.server_cert).read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u._name for u in usages} == {"serverAuth", "clientAuth"}  # also the peer certificate
    ca = x509.load_pem_x509_certificate(Path(made.ca).read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for key in (made.server_key, made.client_key):
        assert os.stat(key).st_mode & 0o077 == 0  # keys are the owner's alone


def test_temporary_pki_is_removed_on_error() -> None:
    with pytest.raises(RuntimeError), TemporaryPki() as made:
        assert Path(made.client_key).exists()
        raise RuntimeError("boom")
    assert not Path(made.dir).exists()


def test_tls_is_for_the_embedded_etcd() -> None:
    with pytest.raises(UsageError, match=r"^--tls: .*https://"):
        Target(endpoints=["https://127.0.0.1:2379"], tls=True)
    for command in ("watch", "capacity"):  # every command that starts an etcd has the flag
        code, _, err = run_cli(command, "--tls", "--endpoints", "http://127.0.0.1:2379")
        assert code == 2 and err.startswith("error: --tls: starts the embedded etcd with TLS")
