"""Secure clusters: TLS files and etcd authentication as the backends take them, the --endpoints URLs,
and what a failed TLS handshake means.

The password is kept out of `repr()` (so out of logs, tracebacks and results files) and reaches the
writer and watcher processes only through the multiprocessing pipe, never through their argv. Where
it comes from (a file, the environment, a prompt; never a flag value) is the command line's business:
etcdbench.cli.credentials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
