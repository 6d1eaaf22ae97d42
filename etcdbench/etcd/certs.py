"""A private CA and the certificates of a TLS control plane, made at start and removed afterwards.

What kubeadm sets up for etcd, in small: one CA; a server certificate for each member (valid for
127.0.0.1 as an IP subjectAltName and for localhost), also used on the peer URLs, so it carries
both the serverAuth and clientAuth usages; and a client certificate (clientAuth) for etcdbench's
writers, watchers and probes. etcd then runs with --client-cert-auth (and --peer-client-cert-auth):
only holders of a certificate from this CA get in.

Made with the `cryptography` package (no shell-out to openssl). Keys are ECDSA P-256, as kubeadm's
defaults are today, valid for a day; they are written with mode 0600 into a 0700 directory of their
own, which `TemporaryPki` removes on every way out. No key ever reaches a log, an argv or a results
file: etcd gets the file paths.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from etcdbench.errors import EtcdError
from etcdbench.interrupt import shielded

PKI_DIR_PREFIX = "etcdbench-pki-"
VALIDITY = datetime.timedelta(days=1)
CLOCK_SKEW = datetime.timedelta(minutes=5)  # valid from a little before now, as kubeadm does
SERVER_IPS = ("127.0.0.1",)
SERVER_NAMES = ("localhost",)


@dataclass(frozen=True)
class Pki:
    """Paths of PEM files: the CA, the server (and peer) pair, and the client pair."""

    dir: str
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcdbench"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _leaf(
    common_name: str,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usages: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    builder = (
        _builder(_name(common_name), ca.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """ECDSA keys only sign: TLS handshakes, and for the CA, certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _write(path: Path, data: bytes, mode: int) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return str(path)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate(directory: str | Path) -> Pki:
    """Write a CA, a server pair and a client pair into `directory` (which must exist, and should be
    private to this user). EtcdError when the files cannot be written."""
    d = Path(directory)
    ca_key = _key()
    ca_name = _name("etcdbench etcd-ca")
    ca = (
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
    sans += [x509.DNSName(name) for name in SERVER_NAMES]
    server, server_key = _leaf(
        "etcdbench-etcd-server",
        ca,
        ca_key,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],  # also its peer certificate
        sans,
    )
    # The client's CN names no etcd user: with --client-cert-auth and auth enabled, etcd would log a
    # client in by its certificate's CN.
    client, client_key = _leaf("etcdbench-client", ca, ca_key, [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    try:
        return Pki(
            str(d),
            _write(d / "ca.crt", _pem(ca), 0o644),
            _write(d / "server.crt", _pem(server), 0o644),
            _write(d / "server.key", _key_pem(server_key), 0o600),
            _write(d / "client.crt", _pem(client), 0o644),
            _write(d / "client.key", _key_pem(client_key), 0o600),
        )
    except OSError as e:
        raise EtcdError(f"cannot write the TLS certificates into {d}: {e.strerror or e}") from None


class TemporaryPki:
    """A `Pki` in a fresh private temporary directory, removed on exit (end, error, Ctrl-C)."""

    def __init__(self) -> None:
        self.pki: Pki | None = None
        self._dir: str | None = None

    def __enter__(self) -> Pki:
        try:
            self._dir = tempfile.mkdtemp(prefix=PKI_DIR_PREFIX)  # mode 0700
        except OSError as e:
            raise EtcdError(f"cannot make a directory for the TLS certificates: {e.strerror or e}") from None
        try:
            self.pki = generate(self._dir)
        except BaseException:
            self.remove()
            raise
        return self.pki

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove the directory and every file in it; idempotent."""
        with shielded():
            directory, self._dir = self._dir, None
            if directory is not None:
                with contextlib.suppress(OSError):
                    shutil.rmtree(directory)
