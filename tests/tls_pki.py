"""Certificates made with the `openssl` command, apart from etcdbench's own code (etcd.certs): a CA, a
second "other" CA, a server certificate for 127.0.0.1, a client certificate and a rogue client
certificate from the other CA. conftest's `pki` and `tls_etcd` fixtures are made of them."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from etcdbench.backends.credentials import Credentials
from etcdbench.etcd.local import TlsFiles

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


class ServerPki(Protocol):
    """What an etcd with client-certificate TLS needs: this module's Pki or etcd.certs'."""

    @property
    def ca(self) -> str: ...
    @property
    def server_cert(self) -> str: ...
    @property
    def server_key(self) -> str: ...
    @property
    def client_cert(self) -> str: ...
    @property
    def client_key(self) -> str: ...


def server_tls(pki: ServerPki) -> TlsFiles:
    """etcd's TLS on its client URL, with --client-cert-auth."""
    return TlsFiles(
        pki.server_cert, pki.server_key, pki.ca, client_cert=pki.client_cert, client_key=pki.client_key
    )


def client_creds(pki: ServerPki, user: str | None = None, password: str | None = None) -> Credentials:
    return Credentials(pki.ca, pki.client_cert, pki.client_key, user, password)


def client_flags(pki: ServerPki) -> list[str]:
    """The client certificate's flags, named alike by etcdctl and etcdbench."""
    return ["--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key]
