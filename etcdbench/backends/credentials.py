"""Secure clusters: TLS files and etcd authentication, from the command line to the backends.

The password never comes from a flag value (it would sit in shell history and in the process
table): it is read from `--password-file`, from $ETCDBENCH_PASSWORD, or from a prompt when stdin is
a terminal. It is kept out of `repr()` (so out of logs, tracebacks and results files) and reaches
the writer and watcher processes only through the multiprocessing pipe, never through their argv.
"""

from __future__ import annotations

import argparse
import getpass
import os
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from etcdbench.errors import EtcdError, UsageError

PASSWORD_ENV = "ETCDBENCH_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    """How to reach a secure etcd: PEM file paths for TLS, and a user and password for etcd auth.

    `cacert` verifies the server; `cert` and `key` are the client certificate for
    `--client-cert-auth` servers. The password is left out of repr() and str(). The object pickles
    (as every frozen dataclass does) so that it crosses into spawned writer and watcher processes.
    """

    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        """True when any TLS file is given (the endpoints must then be https://)."""
        return any((self.cacert, self.cert, self.key))


ENDPOINTS_HINT = "scheme://HOST:PORT, e.g. http://127.0.0.1:2379 (or HOST:PORT, as etcdctl takes)"


def parse_endpoint(text: str, *, tls: bool = False) -> str:
    """One --endpoints entry as the URL every backend gets: 'http(s)://HOST:PORT'.

    `HOST:PORT` without a scheme is taken as etcdctl takes it: http://, or https:// when TLS files
    are given. A port is required on every URL, so that v2 and v3 reach the same server (etcd has no
    well-known port that an http:// URL would imply). A user or password in the URL is refused
    without echoing the URL: a secret there would reach shell history, logs and the results file.
    Raises UsageError, one line naming --endpoints.
    """
    text = text.strip()
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
    else:
        scheme, rest = ("https" if tls else "http"), text
    netloc, _, tail = rest.partition("/")
    if "@" in netloc:
        raise UsageError(
            "--endpoints: a user or password in a URL is refused (the URL is not echoed): "
            "use --user NAME with --password-file PATH or $" + PASSWORD_ENV
        )
    shown = f"{scheme}://{rest}"
    if scheme not in ("http", "https"):
        raise UsageError(f"--endpoints: {text!r} is not an http:// or https:// URL: {ENDPOINTS_HINT}")
    if tail or any(c in netloc for c in "?#"):
        raise UsageError(f"--endpoints: {shown!r} has a path or query: give {ENDPOINTS_HINT}")
    host, port = _host_port(netloc)
    if not host:
        raise UsageError(f"--endpoints: {shown!r} has no host: {ENDPOINTS_HINT}")
    if not host.isascii() or not host.isprintable() or any(c in host for c in " \\"):
        raise UsageError(f"--endpoints: {shown!r}: {host!r} is not a host name or IP address")
    if port is None:
        raise UsageError(
            f"--endpoints: {shown!r} has no port: give it, e.g. {scheme}://{netloc}:2379 (etcd's usual one)"
        )
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        raise UsageError(f"--endpoints: {shown!r}: port {port!r} is not a number from 1 to 65535")
    return f"{scheme}://{netloc}"


def _host_port(netloc: str) -> tuple[str, str | None]:
    """'h:1' -> ('h', '1'); '[::1]:1' -> ('[::1]', '1'); 'h' -> ('h', None)."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            return "", None
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            return "", None
        return host, rest[1:]
    host, sep, port = netloc.rpartition(":")
    if not sep:
        return netloc, None
    if ":" in host:  # a bare IPv6 address: its port cannot be told apart
        return "", None
    return host, port


def parse_endpoints(text: str, *, tls: bool = False) -> list[str]:
    """--endpoints 'URL[,URL...]' -> normalised URLs (see parse_endpoint); UsageError for a bad one."""
    urls = [parse_endpoint(u, tls=tls) for u in text.split(",") if u.strip()]
    if not urls:
        raise UsageError("--endpoints: no URL given")
    return urls


def endpoint_tls(urls: tuple[str, ...], credentials: Credentials | None) -> bool:
    """Whether `urls` are https://, checked against the TLS files; EtcdError for a mismatch."""
    schemes = {urlsplit(u).scheme if "://" in u else "http" for u in urls}
    if "https" not in schemes:
        if credentials is not None and credentials.tls:
            raise EtcdError("--cacert/--cert/--key need https:// --endpoints")
        return False
    if len(schemes) > 1:
        raise EtcdError("--endpoints: do not mix https:// with http:// URLs")
    if credentials is None or not credentials.cacert:
        raise EtcdError("--endpoints: https:// needs --cacert (the CA that signed etcd's server certificate)")
    return True


def tls_hint(message: str, *, client_cert: bool) -> str | None:
    """What went wrong in a TLS handshake described by `message` (a gRPC detail or an ssl error),
    with the flag to check; None when the message does not look like a TLS failure.

    `client_cert`: whether we presented a client certificate.
    """
    text = message.lower()
    if "hostname mismatch" in text or "peer name" in text or "doesn't match" in text:
        return "the server certificate does not name this host (check --endpoints)"
    if "certificate_verify_failed" in text or "certificate verify failed" in text:
        return "certificate verify failed (check --cacert)"
    if "key_values_mismatch" in text or "key values mismatch" in text or "security handshaker" in text:
        return "the client certificate and key do not match (check --cert/--key)"
    rejected = (
        "certificate required",
        "certificate_required",
        "bad certificate",
        "bad_certificate",
        "unknown ca",
        "unknown_ca",
        "certificate unknown",
        "certificate_unknown",
    )
    if any(s in text for s in rejected):
        if not client_cert:
            return "the server requires a client certificate (pass --cert and --key)"
        return "the server rejected the client certificate (check --cert/--key)"
    if "ssl" in text or "tls" in text or "handshake" in text:
        return "the server closed the connection during the handshake (check --cert/--key)"
    return None


class _NoPasswordFlag(argparse.Action):
    """`--password` is refused outright: argparse would otherwise take it for `--password-file`."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None
    ) -> None:
        raise UsageError(
            f"--password: there is no such flag (a password there would sit in shell history): "
            f"use --password-file PATH, ${PASSWORD_ENV} or the prompt"
        )


def add_security_flags(parser: argparse.ArgumentParser) -> None:
    """--tls, --cacert, --cert, --key, --user and --password-file (deliberately no --password)."""
    g = parser.add_argument_group(
        "secure clusters",
        f"the password comes from --password-file, ${PASSWORD_ENV}, or a prompt when stdin is a terminal",
    )
    g.add_argument(
        "--tls",
        action="store_true",
        help="embedded etcd: serve only TLS with client-certificate auth (peers too), with a CA and "
        "certificates made at start and removed afterwards",
    )
    g.add_argument("--cacert", metavar="PATH", help="CA certificate (PEM) that signed etcd's certificate")
    g.add_argument("--cert", metavar="PATH", help="client certificate (PEM), for --client-cert-auth servers")
    g.add_argument("--key", metavar="PATH", help="client certificate's private key (PEM)")
    g.add_argument("--user", metavar="NAME", help="etcd user name (auth enabled)")
    g.add_argument("--password-file", metavar="PATH", help="file holding the --user password (one line)")
    g.add_argument("--password", nargs="?", action=_NoPasswordFlag, help=argparse.SUPPRESS)


def _read_text(flag: str, path: str) -> str:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{flag}: {path} does not exist")
    if not p.is_file():
        raise UsageError(f"{flag}: {path} is not a file")
    try:
        return p.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UsageError(f"{flag}: cannot read {path}: {e.strerror or type(e).__name__}") from None


def _pem(flag: str, path: str | None) -> str | None:
    if path is None:
        return None
    if "-----BEGIN " not in _read_text(flag, path):
        raise UsageError(f"{flag}: {path} is not a PEM file")
    return path


def _check_tls_files(cacert: str | None, cert: str | None, key: str | None) -> None:
    """Load the files as a TLS client would, so that a bad file is named now, not as a failed handshake."""
    if cacert is not None:
        try:
            ssl.create_default_context(cafile=cacert)
        except (ssl.SSLError, ValueError):
            raise UsageError(f"--cacert: {cacert} holds no usable CA certificate") from None
    if cert is not None and key is not None:
        try:  # the password callback refuses encrypted keys (gRPC cannot use them) instead of prompting
            ssl.create_default_context().load_cert_chain(cert, key, password=lambda: b"")
        except ssl.SSLError as e:
            if "KEY_VALUES_MISMATCH" in str(e):
                raise UsageError(f"--key: {key} is not the key of --cert {cert}") from None
            raise UsageError(
                f"--cert/--key: cannot use {cert} with {key} (an encrypted key is not supported): "
                f"{e.reason or type(e).__name__}"
            ) from None


def _password(args: argparse.Namespace, user: str) -> str:
    path: str | None = getattr(args, "password_file", None)
    if path is not None:
        # One line; a trailing newline (as `echo pw > file` writes) is not part of the password.
        password = _read_text("--password-file", path).rstrip("\r\n")
        if not password:
            raise UsageError(f"--password-file: {path} is empty")
        return password
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            password = getpass.getpass(f"etcd password for {user}: ")
        except EOFError:
            password = ""
        if not password:
            raise UsageError(f"--user {user}: no password entered")
        return password
    raise UsageError(
        f"--user {user}: no password: use --password-file PATH or ${PASSWORD_ENV} "
        "(stdin is not a terminal to prompt on)"
    )


def credentials_from_args(args: argparse.Namespace) -> Credentials | None:
    """The Credentials the security flags ask for, or None when none is given (and none is needed).

    Raises UsageError (one line naming the flag) for a missing or unusable file, half a client
    certificate, a user without a password source, or TLS flags that do not match --endpoints.
    Files are checked before the password is asked for.
    """
    cacert: str | None = getattr(args, "cacert", None)
    cert: str | None = getattr(args, "cert", None)
    key: str | None = getattr(args, "key", None)
    user: str | None = getattr(args, "user", None)
    password_file: str | None = getattr(args, "password_file", None)
    endpoints: str | None = getattr(args, "endpoints", None)
    urls = parse_endpoints(endpoints, tls=any((cacert, cert, key))) if endpoints is not None else []
    https = [u for u in urls if u.startswith("https://")]
    if https and len(https) != len(urls):
        raise UsageError("--endpoints: do not mix https:// with http:// URLs")
    if https and cacert is None:
        raise UsageError(
            "--endpoints: https:// needs --cacert (the CA that signed etcd's server certificate)"
        )
    if not any((cacert, cert, key, user, password_file)):
        return None

    if password_file is not None and user is None:
        raise UsageError("--password-file needs --user")
    if cert is not None and key is None:
        raise UsageError("--cert needs --key (the client certificate's private key)")
    if key is not None and cert is None:
        raise UsageError("--key needs --cert (the client certificate)")
    if user is not None and ":" in user:
        # etcdctl takes "name:password" here; never accept (or echo) a password given as a flag value.
        raise UsageError(
            "--user: give the name only; the password comes from --password-file, "
            f"${PASSWORD_ENV} or a prompt"
        )
    if user == "":
        raise UsageError("--user: empty user name")
    given = [f for f, v in (("--cacert", cacert), ("--cert", cert), ("--key", key), ("--user", user)) if v]
    if not urls:
        raise UsageError(f"{given[0]} needs --endpoints: the embedded etcd runs without TLS or auth")
    if not https and (cacert or cert):
        raise UsageError(f"{'--cacert' if cacert else '--cert'} needs https:// --endpoints")

    cacert, cert, key = _pem("--cacert", cacert), _pem("--cert", cert), _pem("--key", key)
    _check_tls_files(cacert, cert, key)
    password = _password(args, user) if user is not None else None
    return Credentials(cacert=cacert, cert=cert, key=key, user=user, password=password)
