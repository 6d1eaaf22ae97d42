"""The etcd v2 API backend: what Kubernetes <= 1.5 used.

Writes and reads go through python-etcd. The watcher has two modes:

* "poll" (default) does exactly what Kubernetes 1.5's Go v2 client did: one long-poll request per
  event (`wait=true&recursive=true&waitIndex=N`, then N = modifiedIndex + 1).
* "stream" uses the server's `stream=true` wait, which the Go client never used. etcd 3.5 answers it
  with a chunked body carrying one JSON event per line. Caveat verified on etcd 3.5.1: if the
  waitIndex is still in the history, the server sends that *one* historical event and never registers
  the watcher, so the response then stays silent. The stream watcher therefore reopens after any event
  with modifiedIndex <= the response's X-Etcd-Index (catching up costs one request per event, like
  polling) and only streams once it is live.

The v2 store keeps 1,000 events of history; a watcher that falls further behind gets errorCode 401
and must relist (recursive GET) and resume at X-Etcd-Index + 1: that is a `Relist` item.

v2 keys form a directory tree, so a prefix is a directory ("/registry/pods/"), not a byte prefix.

https:// endpoints are verified against the endpoint's CA and present its client certificate, if any;
a user and password go as HTTP basic auth, which is what etcd's v2 auth (/v2/auth, separate from v3
auth) checks.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit

import etcd
import urllib3
from urllib3.exceptions import HTTPError, ReadTimeoutError

from etcdbench.backends.base import Endpoint, PutCallback, Relist, WatchEvent, WatchItem
from etcdbench.errors import EtcdError
from etcdbench.security import tls_hint

_PUT_ACTIONS = frozenset({"set", "create", "update", "compareAndSwap"})
_DELETE_ACTIONS = frozenset({"delete", "expire", "compareAndDelete"})
# A watch request times out after this long without events so that cancel() is noticed.
_WATCH_WAKEUP_S = 1.0
# After a failed watch connection, wait this long before asking again (etcd may be restarting).
_RECONNECT_PAUSE_S = 0.2
# A recursive GET (relist, count) returns every key under the prefix: allow it far longer than a put.
_LIST_TIMEOUT_S = 60.0


def _event(doc: dict[str, Any]) -> WatchEvent:
    """A v2 watch response ({"action", "node", "prevNode"?}) as a WatchEvent."""
    action, node, prev = doc["action"], doc["node"], doc.get("prevNode")
    if action in _PUT_ACTIONS:
        kind, value = "PUT", str(node.get("value", "")).encode()
    elif action in _DELETE_ACTIONS:
        kind, value = "DELETE", b""
    else:
        raise EtcdError(f"unexpected v2 watch action {action!r} on {node.get('key')}")
    prev_value = str(prev["value"]).encode() if prev and "value" in prev else None
    return WatchEvent(kind, str(node["key"]), int(node["modifiedIndex"]), value, prev_value)


def _count_leaves(node: dict[str, Any]) -> int:
    if not node.get("dir"):
        return 1
    return sum(_count_leaves(child) for child in node.get("nodes", ()))


def _v2_missing(exc: BaseException) -> bool:
    """True when a 404 came from the HTTP router, not the v2 store (v2 is not enabled).

    The store's "key not found" is JSON with an errorCode. The router's plain-text "404 page not
    found" has none, and python-etcd then raises a bare EtcdException (or EtcdKeyNotFound) whose
    payload only carries that text.
    """
    payload = getattr(exc, "payload", None)
    if not isinstance(exc, etcd.EtcdException) or not isinstance(payload, dict) or "errorCode" in payload:
        return False
    return payload.get("status") == 404 or "404 page not found" in str(payload.get("cause", ""))


def _is_etcd_version(body: bytes) -> bool:
    """etcd answers GET /version with {"etcdserver": "3.5.1", "etcdcluster": "3.5.0"}."""
    try:
        return "etcdserver" in json.loads(body)
    except (ValueError, TypeError):
        return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class V2Backend:
    """Backend over the etcd v2 HTTP API (values are strings: binary encodings must be base64)."""

    name = "v2"
    binary_safe = False

    def __init__(
        self, endpoint: Endpoint, *, watch_mode: str = "poll", timeout: float = 5.0, max_inflight: int = 16
    ) -> None:
        if watch_mode not in ("poll", "stream"):
            raise ValueError(f"watch_mode must be 'poll' or 'stream', not {watch_mode!r}")
        if not endpoint.urls:
            raise ValueError("endpoint has no URLs")
        self.url = endpoint.urls[0].rstrip("/")
        self.watch_mode = watch_mode
        self.timeout = timeout
        self.stream_ends = 0  # times the server ended a live stream (it drops watchers that fall behind)
        self.reconnects = 0  # watch requests repeated after the connection failed
        self._hosts = []
        for u in endpoint.urls:
            parts = urlsplit(u)
            self._hosts.append((parts.hostname or "127.0.0.1", parts.port or 2379))
        self._protocol = urlsplit(self.url).scheme or "http"
        self._tls = endpoint.tls  # raises EtcdError when the URLs and the TLS files do not match
        creds = endpoint.credentials
        self._user = creds.user if creds is not None else None
        self._client_cert = bool(creds and creds.cert)
        # python-etcd's Client(...) and our PoolManager take the same TLS files under different names.
        self._client_kwargs: dict[str, Any] = {}
        http_kwargs: dict[str, Any] = {}
        if creds is not None and self._tls:
            self._client_kwargs.update(
                ca_cert=creds.cacert, cert=(creds.cert, creds.key) if creds.cert else None
            )
            http_kwargs.update(
                cert_reqs="CERT_REQUIRED", ca_certs=creds.cacert, cert_file=creds.cert, key_file=creds.key
            )
        if creds is not None and creds.user is not None:
            self._client_kwargs.update(username=creds.user, password=creds.password)
            http_kwargs["headers"] = urllib3.make_headers(basic_auth=f"{creds.user}:{creds.password or ''}")
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        # Each pool thread keeps its own client (own keep-alive connection), so puts run in parallel.
        self._pool = ThreadPoolExecutor(max_workers=max_inflight, thread_name_prefix="etcdbench-v2-put")
        self._http = urllib3.PoolManager(maxsize=4, **http_kwargs)  # check(), /version, the stream watch
        self._cancel = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None

    # -- clients and errors ------------------------------------------------------------------------

    def _new_client(self) -> Any:
        host: Any = self._hosts[0][0] if len(self._hosts) == 1 else tuple(self._hosts)
        client = etcd.Client(
            host=host,
            port=self._hosts[0][1],
            protocol=self._protocol,
            read_timeout=self.timeout,
            allow_reconnect=len(self._hosts) > 1,
            per_host_pool_size=1,
            **self._client_kwargs,
        )
        with self._lock:
            self._clients.append(client)
        return client

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._new_client()
        return client

    def _v2_error(self) -> EtcdError:
        return EtcdError(f"etcd at {self.url} does not serve the v2 API: start it with --enable-v2=true")

    def _auth_error(self) -> EtcdError:
        if self._user is None:
            return EtcdError(f"etcd at {self.url} has v2 authentication enabled: pass --user")
        return EtcdError(
            f"etcd at {self.url} refused user {self._user}: authentication failed (check the password)"
        )

    def _security_error(self, exc: BaseException) -> EtcdError | None:
        """A one-line error for a failed TLS handshake or a refused user; None for anything else."""
        if isinstance(exc, etcd.EtcdInsufficientPermissions):
            return self._auth_error()
        text = _one_line(exc)
        if self._tls and "SSLError" in f"{type(exc).__name__} {text}":
            hint = tls_hint(text, client_cert=self._client_cert)
            if hint is not None:
                return EtcdError(f"TLS handshake with {self.url} failed: {hint}")
        return None

    def _error(self, exc: BaseException) -> EtcdError:
        if _v2_missing(exc):
            return self._v2_error()
        security = self._security_error(exc)
        if security is not None:
            return security
        if isinstance(exc, (etcd.EtcdConnectionFailed, HTTPError, OSError)):
            return EtcdError(f"cannot reach etcd at {self.url}: {_one_line(exc)}")
        return EtcdError(f"etcd v2 request to {self.url} failed: {_one_line(exc)}")

    def _keys_path(self, key: str) -> str:
        return "/v2/keys" + (key if key.startswith("/") else "/" + key)

    # -- Backend -----------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise EtcdError unless etcd is reachable and serves the v2 API."""
        timeout = urllib3.Timeout(total=self.timeout)
        try:
            version = self._http.request("GET", self.url + "/version", timeout=timeout, retries=False)
            status = self._http.request("GET", self.url + "/v2/keys/", timeout=timeout, retries=False).status
        except HTTPError as e:
            raise self._error(e) from None
        if version.status != 401 and not _is_etcd_version(version.data):
            raise EtcdError(f"{self.url} is not an etcd server: GET /version did not answer etcd's version")
        if status == 404:
            raise self._v2_error()
        if status == 401:
            raise self._auth_error()
        if status != 200:
            raise EtcdError(f"etcd at {self.url} answered HTTP {status} to GET /v2/keys/")

    def put_async(self, key: str, value: bytes, done: PutCallback, ttl_s: float = 0.0) -> None:
        self._pool.submit(
            self._call_client, done, "write", key, value.decode("utf-8"), ttl=round(ttl_s) or None
        )

    def delete_async(self, key: str, done: PutCallback) -> None:
        self._pool.submit(self._call_client, done, "delete", key)

    def _call_client(self, done: PutCallback, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            getattr(self._client(), method)(*args, **kwargs)
        except Exception as e:
            done(self._error(e) if _v2_missing(e) else e)
            return
        done(None)

    def _get(self, client: Any, key: str, **params: str) -> tuple[int, dict[str, Any] | None]:
        """GET a key: (X-Etcd-Index, body), or (index, None) when the key does not exist."""
        try:
            resp = client.api_execute(
                self._keys_path(key), "GET", params=params, timeout=max(self.timeout, _LIST_TIMEOUT_S)
            )
        except etcd.EtcdKeyNotFound as e:
            if _v2_missing(e):
                raise self._v2_error() from None
            return int(e.payload["index"]), None
        except etcd.EtcdException as e:
            raise self._error(e) from e
        return int(resp.headers["X-Etcd-Index"]), json.loads(resp.data)

    def current_revision(self) -> int:
        return self._get(self._client(), "/")[0]

    def count_prefix(self, prefix: str) -> int:
        body = self._get(self._client(), prefix, recursive="true")[1]
        return 0 if body is None else _count_leaves(body["node"])

    def delete_prefix(self, prefix: str) -> int:
        # v2 answers a recursive delete with the directory node only, so count first (a writer
        # racing with the delete makes the count approximate; callers delete between runs).
        count = self.count_prefix(prefix)
        if count:
            try:
                self._client().delete(prefix, recursive=True)
            except etcd.EtcdKeyNotFound as e:
                if _v2_missing(e):
                    raise self._v2_error() from None
                return 0
            except etcd.EtcdException as e:
                raise self._error(e) from e
        return count

    def db_size(self) -> int | None:
        return None  # the v2 store lives in memory; its snapshot size is not exposed by the API

    def server_version(self) -> str:
        try:
            resp = self._http.request("GET", self.url + "/version", timeout=self.timeout, retries=False)
            return str(json.loads(resp.data)["etcdserver"])
        except (HTTPError, ValueError, KeyError) as e:
            raise self._error(e) from e

    def _relist(self, client: Any, prefix: str) -> Relist:
        index, body = self._get(client, prefix, recursive="true")
        return Relist(
            reason="v2-401", revision=index, keys=0 if body is None else _count_leaves(body["node"])
        )

    # -- watch -------------------------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int) -> Iterator[WatchItem]:
        # Not a generator itself: the flag is cleared now, so a cancel() that comes before the
        # first next() still stops the watch.
        self._cancel.clear()
        start = max(start_revision, 1)  # v2 indexes start at 1; waitIndex=0 would mean "from now"
        if self.watch_mode == "stream":
            return self._watch_stream(prefix, start)
        return self._watch_poll(prefix, start)

    def _watch_poll(self, prefix: str, index: int) -> Iterator[WatchItem]:
        client = self._new_client()
        path = self._keys_path(prefix)
        while not self._cancel.is_set():
            params = {"wait": "true", "recursive": "true", "waitIndex": str(index)}
            try:
                resp = client.api_execute(path, "GET", params=params, timeout=_WATCH_WAKEUP_S)
            except etcd.EtcdWatchTimedOut:
                continue  # no event within a second: look at the cancel flag, then wait again
            except etcd.EtcdConnectionFailed:
                self._reconnect_pause()  # etcd down or restarting: ask again from the same index
                continue
            except etcd.EtcdEventIndexCleared:
                relist = self._relist(client, prefix)
                yield relist
                index = relist.revision + 1
                continue
            except etcd.EtcdException as e:
                raise self._error(e) from e
            event = _event(json.loads(resp.data))
            yield event
            index = event.revision + 1

    def _watch_stream(self, prefix: str, index: int) -> Iterator[WatchItem]:
        client = self._new_client()  # for relists
        url = self.url + quote(self._keys_path(prefix))
        timeout = urllib3.Timeout(connect=self.timeout, read=_WATCH_WAKEUP_S)
        while not self._cancel.is_set():
            params = {"wait": "true", "recursive": "true", "stream": "true", "waitIndex": str(index)}
            try:
                resp = self._http.request(
                    "GET", url, fields=params, preload_content=False, retries=False, timeout=timeout
                )
            except ReadTimeoutError:
                continue
            except HTTPError:
                self._reconnect_pause()  # etcd down or restarting: reopen from the same index
                continue
            self._response = resp
            try:
                if resp.status != 200:
                    body = resp.data
                    if resp.status == 400 and json.loads(body).get("errorCode") == 401:
                        relist = self._relist(client, prefix)
                        yield relist
                        index = relist.revision + 1
                        continue
                    if resp.status == 404 and b"errorCode" not in body:
                        raise self._v2_error()
                    raise EtcdError(f"v2 stream watch on {self.url} answered HTTP {resp.status}: {body!r}")
                # The watcher's start index: an event at or below it came from the history and is the
                # only one this response will ever carry (see the module docstring).
                live_from = int(resp.headers.get("X-Etcd-Index", "0"))
                for line in _lines(resp):
                    event = _event(json.loads(line))
                    yield event
                    index = event.revision + 1
                    if event.revision <= live_from:
                        break
                else:
                    # The server ended the stream: it drops a watcher whose 100-event buffer fills.
                    # Reopen from the next index; a 401 then tells whether history was lost.
                    self.stream_ends += 1
            except ReadTimeoutError:
                pass  # idle for a second: check the cancel flag, then reopen from `index`
            except (HTTPError, OSError):
                if not self._cancel.is_set():
                    self._reconnect_pause()
            finally:
                self._response = None
                resp.close()
                resp.release_conn()

    def _reconnect_pause(self) -> None:
        self.reconnects += 1
        self._cancel.wait(_RECONNECT_PAUSE_S)

    def cancel(self) -> None:
        self._cancel.set()
        resp = self._response
        if resp is not None:
            # Wake a stream read at once (urllib3 >= 2.3); otherwise the read timeout does it.
            with contextlib.suppress(Exception):
                resp.shutdown()  # type: ignore[attr-defined, unused-ignore]

    def close(self) -> None:
        self.cancel()
        self._pool.shutdown(wait=True)
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.http.clear()
        self._http.clear()


def _lines(resp: urllib3.BaseHTTPResponse) -> Iterable[bytes]:
    """The newline-delimited JSON events of a stream, each as soon as its chunk arrives."""
    # read_chunked yields every HTTP chunk as it comes (etcd flushes one per event); stream() is a
    # fallback for a non-chunked body and reads byte by byte so that no event waits for a buffer.
    chunks: Iterable[bytes] = resp.read_chunked() if resp.chunked else resp.stream(1)
    buf = b""
    for chunk in chunks:
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line
