"""The security flags and the Credentials they ask for: the command line's half of
etcdbench.backends.credentials.

The password never comes from a flag value (it would sit in shell history and in the process
table): it is read from `--password-file`, from $ETCDBENCH_PASSWORD, or from a prompt when stdin is
a terminal. Every file a flag names is checked here, so that a bad one is named before anything runs.
"""

from __future__ import annotations

import argparse
import getpass
import os
import ssl
import sys
from pathlib import Path
from typing import Any

from etcdbench.backends.credentials import PASSWORD_ENV, Credentials, parse_endpoints
from etcdbench.errors import UsageError


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
