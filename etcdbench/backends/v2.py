"""The etcd v2 API backend: what Kubernetes <= 1.5 used.

Every request goes through our own HTTP/1.1 client (etcdbench.backends.transport.http1): kept-alive
connections and no automatic retries, so that a put is sent exactly once per put_async() (the writer
retries, and counts it) and a watch event costs little CPU beyond decoding its JSON. Puts and deletes
run on a small pool of connections, one thread each; the watcher owns one connection.

The watcher has two modes:

* "poll" (default) does exactly what Kubernetes 1.5's Go v2 client did: one long-poll request per
  event (`wait=true&recursive=true&waitIndex=N`, then N = modifiedIndex + 1), all on one connection.
* "stream" uses the server's `stream=true` wait, which the Go client never used. etcd 3.5 answers it
  with a chunked body carrying one JSON event per line. Caveat verified on etcd 3.5.1: if the
  waitIndex is still in the history, the server sends that *one* historical event and never registers
  the watcher, so the response then stays silent. The stream watcher therefore reopens after any event
  with modifiedIndex <= the response's X-Etcd-Index (catching up costs one request per event, like
  polling) and only streams once it is live.
  Second caveat, also etcd 3.5.1: when a live watcher's 100-event channel is full, etcd removes the
  watcher but never ends its response (nothing closes the channel), so after the events already
  queued the stream is silent for good. After each silent second the watcher therefore asks the
  store's index on a second connection; if the store moved past what the stream covered, it reopens
  from the next index (`stream_reopens`), and a 401 then tells that history was lost. (Writes outside
  the prefix move the index too: the reopen is then merely wasted, never wrong.)

The v2 store keeps 1,000 events of history; a watcher that falls further behind gets errorCode 401
and must relist (recursive GET) and resume at X-Etcd-Index + 1: that is a `Relist` item.

v2 keys form a directory tree, so a prefix is a directory ("/registry/pods/"), not a byte prefix.

https:// endpoints are verified against the endpoint's CA and present its client certificate, if any;
a user and password go as HTTP basic auth, which is what etcd's v2 auth (/v2/auth, separate from v3
auth) checks. With several endpoints, a connection goes to the first one that accepts it.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from etcdbench.backends.base import (
    Endpoint,
    KeyGone,
    ListPage,
    PutCallback,
    Relist,
    RevisionCallback,
    ServerStatus,
    WatchEvent,
    WatchItem,
)
from etcdbench.backends.credentials import parse_endpoint, tls_hint
from etcdbench.backends.transport.http1 import (
    Connection,
    Done,
    Pool,
    Response,
    Server,
    basic_auth,
    form_value,
)
from etcdbench.errors import EtcdError

_PUT_ACTIONS = frozenset({"set", "create", "update", "compareAndSwap"})
_DELETE_ACTIONS = frozenset({"delete", "expire", "compareAndDelete"})
# While a watch waits for an event, it looks at the cancel flag this often (cancel() also wakes it).
_WATCH_WAKEUP_S = 1.0
# After a failed watch connection, wait this long before asking again (etcd may be restarting).
_RECONNECT_PAUSE_S = 0.2
# A recursive GET (relist, count) returns every key under the prefix: allow it far longer than a put.
_LIST_TIMEOUT_S = 60.0
# Connections (and threads) for puts and deletes, at most. etcd commits concurrent writes together, but
# its HTTP server answers a connection's requests one at a time (pipelining gains nothing), so these
# are what lets a writer go past 1 / put latency. On 2 cores 32 wrote the most per second (~3,400/s,
# against ~3,000/s for 16 and for 64, whose extra threads add GIL contention).
_WRITE_CONNECTIONS = 32
# v2 error codes (etcd server/etcdserver/api/v2error).
_ECODE_KEY_NOT_FOUND = 100
_ECODE_TEST_FAILED = 101  # a compareAndDelete whose prevIndex no longer matches
_DELETE_WINDOW = 32  # own-key deletes in flight after a run (one per pool connection)
_ECODE_UNAUTHORIZED = 110
_ECODE_EVENT_INDEX_CLEARED = 401


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


def _modified_index(body: bytes) -> int:
    """The written node's modifiedIndex from a write's answer ({"action", "node": {...}, "prevNode"?}),
    found without parsing the values; 0 if absent. The node comes first, so its index is the first."""
    at = body.find(b'"modifiedIndex":')
    if at < 0:
        return 0
    digits = body[at + 16 : at + 40].split(b",", 1)[0].split(b"}", 1)[0]
    try:
        return int(digits)
    except ValueError:
        return 0


def _count_leaves(node: dict[str, Any]) -> int:
    if not node.get("dir"):
        return 1
    return sum(_count_leaves(child) for child in node.get("nodes", ()))


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`node` and every node below it, parents first."""
    yield node
    for child in node.get("nodes", ()):
        yield from _walk(child)


def _error_doc(resp: Response) -> dict[str, Any]:
    """The v2 store's JSON error ({"errorCode", "message", "cause", "index"}), or {} for anything else.

    A 404 without an errorCode comes from etcd's HTTP router, not the v2 store: v2 is not enabled.
    """
    try:
        doc = json.loads(resp.body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) and "errorCode" in doc else {}


def _is_etcd_version(body: bytes) -> bool:
    """etcd answers GET /version with {"etcdserver": "3.5.1", "etcdcluster": "3.5.0"}."""
    try:
        return "etcdserver" in json.loads(body)
    except (ValueError, TypeError):
        return False


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _tls_context(cacert: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=cacert)
        if cert:
            ctx.load_cert_chain(cert, key)
    except (OSError, ValueError) as e:
        raise EtcdError(f"cannot use the TLS files {cacert}, {cert}, {key}: {_one_line(e)}") from None
    return ctx


class V2Backend:
    """Backend over the etcd v2 HTTP API (values are strings: binary encodings must be base64)."""

    name = "v2"
    update_renews_ttl = True
    binary_safe = False
    max_txn_ops = 1  # v2 has no transactions: every put is a request of its own

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
        self.stream_reopens = 0  # live streams reopened because etcd dropped (or ended) them
        self.reconnects = 0  # watch requests repeated after the connection failed
        self._servers = []
        for u in endpoint.urls:
            # The CLI's parser, so that v2 and v3 read a URL alike (no default port on either).
            parts = urlsplit(parse_endpoint(u))
            self._servers.append(Server(parts.hostname or "", parts.port or 0))
        self._tls = endpoint.tls  # raises EtcdError when the URLs and the TLS files do not match
        creds = endpoint.credentials
        self._user = creds.user if creds is not None else None
        self._client_cert = bool(creds and creds.cert)
        self._ssl: ssl.SSLContext | None = None
        if creds is not None and self._tls:
            self._ssl = _tls_context(creds.cacert, creds.cert, creds.key)
        self._headers = b""
        if creds is not None and creds.user is not None:
            self._headers = basic_auth(creds.user, creds.password or "")
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._watch_conns: set[Connection] = set()  # aborted by cancel()
        self._admin = self._connection()  # check(), counts, current_revision(): under _admin_lock
        self._admin_lock = threading.Lock()
        self._pool = Pool(
            self._connection, max(1, min(max_inflight, _WRITE_CONNECTIONS)), name="etcdbench-v2-put"
        )

    def _connection(self) -> Connection:
        return Connection(self._servers, tls=self._ssl, connect_timeout=self.timeout, headers=self._headers)

    # -- errors ------------------------------------------------------------------------------------

    def _v2_error(self) -> EtcdError:
        return EtcdError(f"etcd at {self.url} does not serve the v2 API: start it with --enable-v2=true")

    def _auth_error(self) -> EtcdError:
        if self._user is None:
            return EtcdError(f"etcd at {self.url} has v2 authentication enabled: pass --user")
        return EtcdError(
            f"etcd at {self.url} refused user {self._user}: authentication failed (check the password)"
        )

    def _error(self, exc: BaseException) -> EtcdError:
        """A one-line EtcdError for a failed request (transport or TLS)."""
        if isinstance(exc, EtcdError):
            return exc
        text = _one_line(exc)
        if self._tls and isinstance(exc, ssl.SSLError):
            hint = tls_hint(text, client_cert=self._client_cert)
            if hint is not None:
                return EtcdError(f"TLS handshake with {self.url} failed: {hint}")
        if isinstance(exc, OSError):
            return EtcdError(f"cannot reach etcd at {self.url}: {text}")
        return EtcdError(f"etcd v2 request to {self.url} failed: {text}")

    def _status_error(self, resp: Response) -> EtcdError:
        """The EtcdError for a response that is not a success."""
        doc = _error_doc(resp)
        if resp.status == 401 or doc.get("errorCode") == _ECODE_UNAUTHORIZED:
            return self._auth_error()
        if resp.status == 404 and not doc:
            return self._v2_error()
        if doc:
            cause = f" ({doc['cause']})" if doc.get("cause") else ""
            detail = f"{doc.get('message', '')}{cause} [errorCode {doc['errorCode']}]"
        else:
            detail = " ".join(resp.body[:200].decode("utf-8", "replace").split())
        return EtcdError(f"etcd v2 request to {self.url} failed: HTTP {resp.status}: {detail}")

    # -- requests ----------------------------------------------------------------------------------

    def _target(self, key: str, query: str = "") -> bytes:
        path = "/v2/keys" + (key if key.startswith("/") else "/" + key)
        return (quote(path) + ("?" + query if query else "")).encode()

    def _admin_request(self, method: bytes, target: bytes, timeout: float) -> Response:
        with self._admin_lock:
            try:
                return self._admin.request(method, target, timeout=timeout)
            except OSError as e:
                raise self._error(e) from None

    def _get(self, conn: Connection | None, key: str, query: str = "") -> tuple[int, dict[str, Any] | None]:
        """GET a key: (X-Etcd-Index, body), or (index, None) when the key does not exist.

        On the admin connection when `conn` is None (transport errors are then EtcdError), else on
        `conn` (transport errors stay OSError, for the watch loop to reconnect).
        """
        target = self._target(key, query)
        timeout = max(self.timeout, _LIST_TIMEOUT_S)
        if conn is None:
            resp = self._admin_request(b"GET", target, timeout)
        else:
            resp = conn.request(b"GET", target, timeout=timeout)
        if resp.status == 200:
            return int(resp.headers["x-etcd-index"]), json.loads(resp.body)
        doc = _error_doc(resp)
        if resp.status == 404 and doc.get("errorCode") == _ECODE_KEY_NOT_FOUND:
            return int(doc["index"]), None
        raise self._status_error(resp)

    # -- Backend -----------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise EtcdError unless etcd is reachable and serves the v2 API."""
        version = self._admin_request(b"GET", b"/version", self.timeout)
        status = self._admin_request(b"GET", b"/v2/keys/", self.timeout).status
        if version.status != 401 and not _is_etcd_version(version.body):
            raise EtcdError(f"{self.url} is not an etcd server: GET /version did not answer etcd's version")
        if status == 404:
            raise self._v2_error()
        if status == 401:
            raise self._auth_error()
        if status != 200:
            raise EtcdError(f"etcd at {self.url} answered HTTP {status} to GET /v2/keys/")

    def put_async(
        self,
        key: str,
        value: bytes,
        done: PutCallback,
        ttl_s: float = 0.0,
        keep_lease: bool = False,
        revision: RevisionCallback | None = None,
    ) -> None:
        body = b"value=" + form_value(value)
        ttl = round(ttl_s)
        if ttl > 0:
            # Without a ttl a v2 PUT makes the key permanent: an update of an expiring key sends the
            # ttl again (renewing it, as Kubernetes' v2 storage did), and only if the key still exists.
            body += b"&ttl=%d" % ttl
        if keep_lease:
            body += b"&prevExist=true"
        self._pool.submit(b"PUT", self._target(key), body, self.timeout, self._finisher(done, key, revision))

    def put_many_async(self, items: Sequence[tuple[str, bytes]], done: PutCallback) -> None:
        """One put (max_txn_ops is 1: v2 has no batches)."""
        if len(items) != 1:
            raise ValueError(f"put_many_async takes 1 to {self.max_txn_ops} puts, not {len(items)}")
        self.put_async(items[0][0], items[0][1], done)

    def hold_sends(self) -> None:
        pass  # each request has a connection of its own: nothing to coalesce

    def flush(self) -> None:
        pass

    def delete_async(self, key: str, done: PutCallback, revision: RevisionCallback | None = None) -> None:
        self._pool.submit(
            b"DELETE", self._target(key), b"", self.timeout, self._finisher(done, key, revision)
        )

    def _finisher(self, done: PutCallback, key: str, revision: RevisionCallback | None = None) -> Done:
        def finish(resp: Response | None, exc: BaseException | None) -> None:
            if resp is None:
                done(self._error(exc or ConnectionError("no response")))
            elif resp.status in (200, 201):
                if revision is not None:
                    revision(_modified_index(resp.body))
                done(None)
            elif resp.status == 404 and _error_doc(resp).get("errorCode") == _ECODE_KEY_NOT_FOUND:
                # A delete (or prevExist update) of a key that is gone: the caller knows whether that
                # is its own earlier attempt, applied but unanswered, or an expiry.
                done(KeyGone(f"{key}: key not found"))
            else:
                done(self._status_error(resp))

        return finish

    def current_revision(self) -> int:
        return self._get(None, "/")[0]

    def list_page(self, prefix: str, start: bytes, limit: int, revision: int = 0) -> ListPage:
        """A LIST on v2: one recursive GET of the prefix (v2 has no pages, as Kubernetes 1.5 listed);
        `start`, `limit` and `revision` are ignored."""
        resp = self._admin_request(
            b"GET", self._target(prefix, "recursive=true"), max(self.timeout, _LIST_TIMEOUT_S)
        )
        if resp.status == 200:
            keys = _count_leaves(json.loads(resp.body)["node"])
            return ListPage(keys, len(resp.body), int(resp.headers["x-etcd-index"]), None)
        doc = _error_doc(resp)
        if resp.status == 404 and doc.get("errorCode") == _ECODE_KEY_NOT_FOUND:
            return ListPage(0, len(resp.body), int(doc["index"]), None)
        raise self._status_error(resp)

    def get_value(self, key: str) -> int | None:
        """GET one key: bytes of the response body, or None when the key does not exist."""
        resp = self._admin_request(b"GET", self._target(key), self.timeout)
        if resp.status == 200:
            return len(resp.body)
        if resp.status == 404 and _error_doc(resp).get("errorCode") == _ECODE_KEY_NOT_FOUND:
            return None
        raise self._status_error(resp)

    def count_prefix(self, prefix: str) -> int:
        body = self._get(None, prefix, "recursive=true")[1]
        return 0 if body is None else _count_leaves(body["node"])

    def delete_prefix(self, prefix: str) -> int:
        # v2 answers a recursive delete with the directory node only, so count first (a writer
        # racing with the delete makes the count approximate; callers delete between runs).
        count = self.count_prefix(prefix)
        if count:
            resp = self._admin_request(b"DELETE", self._target(prefix, "recursive=true"), _LIST_TIMEOUT_S)
            if resp.status == 404 and _error_doc(resp).get("errorCode") == _ECODE_KEY_NOT_FOUND:
                return 0
            if resp.status not in (200, 201):
                raise self._status_error(resp)
        return count

    def list_keys(self, prefix: str, revision: int = 0) -> tuple[int, dict[str, int]]:
        """(X-Etcd-Index, {key: createdIndex}) of every key under `prefix`. The v2 store cannot be
        read at an older index: `revision` is ignored, the listing is the current one."""
        index, body = self._get(None, prefix, "recursive=true")
        if body is None:
            return index, {}
        return index, {str(n["key"]): int(n["createdIndex"]) for n in _walk(body["node"]) if not n.get("dir")}

    def delete_own(self, keys: Collection[str], prefix: str, created_after: int) -> int:
        """Delete the keys of `keys` under `prefix` created after index `created_after`, each only if
        unchanged since it was listed (compareAndDelete on its modifiedIndex), then the directories
        created after `created_after` that this left empty; never any other key. Returns how many
        keys were deleted."""
        _, body = self._get(None, prefix, "recursive=true")
        if body is None:
            return 0
        nodes = list(_walk(body["node"]))
        leaves = [n for n in nodes if not n.get("dir")]
        doomed = [n for n in leaves if n["key"] in keys and int(n["createdIndex"]) > created_after]
        window = threading.BoundedSemaphore(_DELETE_WINDOW)
        deleted: list[str] = []
        failures: list[EtcdError] = []

        def finisher(key: str) -> Done:
            def finish(resp: Response | None, exc: BaseException | None) -> None:
                try:
                    if resp is None:
                        failures.append(self._error(exc or ConnectionError("no response")))
                    elif resp.status in (200, 201):
                        deleted.append(key)
                    elif _error_doc(resp).get("errorCode") not in (_ECODE_KEY_NOT_FOUND, _ECODE_TEST_FAILED):
                        failures.append(self._status_error(resp))
                finally:
                    window.release()

            return finish

        for n in doomed:
            window.acquire()
            target = self._target(n["key"], f"prevIndex={int(n['modifiedIndex'])}")
            self._pool.submit(b"DELETE", target, b"", self.timeout, finisher(n["key"]))
        for _ in range(_DELETE_WINDOW):
            window.acquire()
        if failures:
            raise failures[0]
        # v2 made the directories on the way to each key: remove those the run made, deepest first.
        # dir=true removes only an empty directory, so one that holds anyone's key stays.
        made = [n["key"] for n in nodes if n.get("dir") and int(n["createdIndex"]) > created_after]
        for key in sorted(made, key=lambda k: k.count("/"), reverse=True):
            self._admin_request(b"DELETE", self._target(key, "dir=true"), self.timeout)
        parts = prefix.strip("/").split("/")
        for depth in range(len(parts) - 1, 0, -1):  # and the prefix's parents, if the run made them
            parent = "/" + "/".join(parts[:depth])
            _, doc = self._get(None, parent)
            if doc is None or int(doc["node"].get("createdIndex", 0)) <= created_after:
                break
            resp = self._admin_request(b"DELETE", self._target(parent, "dir=true"), self.timeout)
            if resp.status not in (200, 201):
                break  # not empty: someone else's keys are in it
        return len(deleted)

    def get_prefix(self, prefix: str) -> dict[str, bytes]:
        body = self._get(None, prefix, "recursive=true")[1]
        if body is None:
            return {}
        nodes = _walk(body["node"])
        return {str(n["key"]): str(n.get("value", "")).encode() for n in nodes if not n.get("dir")}

    def delete_keys(self, keys: Iterable[str]) -> None:
        for key in keys:
            resp = self._admin_request(b"DELETE", self._target(key), self.timeout)
            if resp.status not in (200, 201) and _error_doc(resp).get("errorCode") != _ECODE_KEY_NOT_FOUND:
                raise self._status_error(resp)

    def _not_v2(self, what: str) -> EtcdError:
        return EtcdError(f"etcd's v2 API has no {what}: etcdbench asks it with the v3 API")

    def put_leased(self, key: str, value: bytes, ttl_s: float) -> bool:
        raise self._not_v2("leases")

    def status(self) -> ServerStatus:
        raise self._not_v2("member status")

    def compact(self, revision: int) -> None:
        raise self._not_v2("compaction")

    def defragment(self) -> None:
        raise self._not_v2("defragmentation")

    def db_size(self) -> int | None:
        return None  # the v2 store lives in memory; its snapshot size is not exposed by the API

    def server_version(self) -> str:
        resp = self._admin_request(b"GET", b"/version", self.timeout)
        try:
            return str(json.loads(resp.body)["etcdserver"])
        except (ValueError, KeyError, TypeError):
            raise EtcdError(
                f"{self.url} is not an etcd server: GET /version did not answer etcd's version"
            ) from None

    # -- watch -------------------------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int) -> Iterator[WatchItem]:
        # Not a generator itself: the flag is cleared now, so a cancel() that comes before the
        # first next() still stops the watch.
        self._cancel.clear()
        start = max(start_revision, 1)  # v2 indexes start at 1; waitIndex=0 would mean "from now"
        if self.watch_mode == "stream":
            return self._watch_stream(prefix, start)
        return self._watch_poll(prefix, start)

    def watch_many(self, prefix: str, start_revision: int, count: int) -> Iterator[tuple[int, WatchItem]]:
        """One watch (v2 has one watch per request): EtcdError for more."""
        if count != 1:
            raise EtcdError(f"etcd's v2 API cannot carry {count} watches on one stream")
        return ((0, item) for item in self.watch(prefix, start_revision))

    def _not_cancelled(self) -> bool:
        return not self._cancel.is_set()

    def _watch_connection(self) -> Connection:
        conn = self._connection()
        with self._lock:
            self._watch_conns.add(conn)
        return conn

    def _drop_watch_connection(self, conn: Connection) -> None:
        with self._lock:
            self._watch_conns.discard(conn)
        conn.close()

    def _index_cleared(self, resp: Response) -> bool:
        return resp.status == 400 and _error_doc(resp).get("errorCode") == _ECODE_EVENT_INDEX_CLEARED

    def _relist(self, conn: Connection, prefix: str) -> Relist:
        # v2 has no paginated GET: one recursive GET, as Kubernetes 1.5 relisted.
        started = time.monotonic()
        resp = conn.request(
            b"GET", self._target(prefix, "recursive=true"), timeout=max(self.timeout, _LIST_TIMEOUT_S)
        )
        took = time.monotonic() - started
        if resp.status == 200:
            index, body = int(resp.headers["x-etcd-index"]), json.loads(resp.body)
        elif resp.status == 404 and (doc := _error_doc(resp)).get("errorCode") == _ECODE_KEY_NOT_FOUND:
            index, body = int(doc["index"]), None
        else:
            raise self._status_error(resp)
        keys = 0 if body is None else _count_leaves(body["node"])
        return Relist("v2-401", index, keys, took, len(resp.body))

    def _watch_poll(self, prefix: str, index: int) -> Iterator[WatchItem]:
        conn = self._watch_connection()
        # The request is the same but for its waitIndex: build the rest once.
        head = self._target(prefix, "wait=true&recursive=true&waitIndex=")
        send, read, keep_waiting = conn.send, conn.read_response, self._not_cancelled
        sent = False  # the request for `index` is already out
        try:
            while not self._cancel.is_set():
                try:
                    if not sent:
                        send(b"GET", head + b"%d" % index, timeout=_WATCH_WAKEUP_S)
                    sent = False
                    # Waits for the event as long as it takes, looking at the cancel flag every second.
                    # Unlike a stream, a long poll is never dropped in silence: etcd unregisters a
                    # non-stream watcher as it queues the one event, which its response then carries.
                    resp = read(_WATCH_WAKEUP_S, keep_waiting)
                    if resp.status == 200:
                        if not resp.body:
                            continue  # the server ended the wait without an event: ask again
                        event = _event(json.loads(resp.body))
                        index = event.revision + 1
                        # Ask for the next event before handing this one over, so that etcd finds it
                        # while the caller decodes this one: Kubernetes 1.5's watcher, too, fetched in
                        # one goroutine and decoded in another. A failed send is retried just above.
                        try:
                            send(b"GET", head + b"%d" % index, timeout=_WATCH_WAKEUP_S)
                            sent = True
                        except OSError:
                            pass
                        yield event
                        continue
                    if self._index_cleared(resp):
                        relist = self._relist(conn, prefix)
                        yield relist
                        index = relist.revision + 1
                        continue
                except OSError:
                    if not self._cancel.is_set():
                        self._reconnect_pause()  # etcd down or restarting: ask again from the same index
                    continue
                if resp.status >= 500:  # e.g. no leader yet after a restart: ask again
                    self._reconnect_pause()
                    continue
                raise self._status_error(resp)
        finally:
            self._drop_watch_connection(conn)

    def _watch_stream(self, prefix: str, index: int) -> Iterator[WatchItem]:
        conn = self._watch_connection()
        probe = self._watch_connection()  # asks the store's index while the stream is silent
        head = self._target(prefix, "wait=true&recursive=true&stream=true&waitIndex=")
        # A hidden key (never listed nor watched) that does not exist: a cheap 404 which, like every
        # v2 keys answer, carries X-Etcd-Index. Under the prefix, so whoever may watch it may read it.
        probe_target = self._target(prefix.rstrip("/") + "/_etcdbench_index_probe")
        live_from = -1  # the open stream's X-Etcd-Index; -1 until its head has come
        dropped = False  # the stream fell silent while the store moved past it

        def keep_waiting() -> bool:
            nonlocal dropped
            if self._cancel.is_set():
                return False
            if live_from < 0:
                return True  # no head yet: etcd is slow, which a reopen would not cure
            # Through the response head the stream covers live_from; after that, each event it sent.
            moved = self._store_index(probe, probe_target) > max(index - 1, live_from)
            # An event that arrived during the probe shows the watcher is alive after all.
            dropped = moved and not conn.readable()
            return not dropped

        try:
            while not self._cancel.is_set():
                live_from, dropped = -1, False
                try:
                    resp, chunks = conn.open_stream(
                        b"GET", head + b"%d" % index, timeout=_WATCH_WAKEUP_S, keep_waiting=keep_waiting
                    )
                    if resp.status != 200:
                        resp = Response(resp.status, resp.headers, b"".join(chunks))
                        if self._index_cleared(resp):
                            relist = self._relist(conn, prefix)
                            yield relist
                            index = relist.revision + 1
                            continue
                        if resp.status >= 500:
                            self._reconnect_pause()
                            continue
                        raise self._status_error(resp)
                    # The watcher's start index: an event at or below it came from the history and is
                    # the only one this response will ever carry (see the module docstring).
                    live_from = int(resp.headers.get("x-etcd-index", "0"))
                    for line in _lines(chunks):
                        event = _event(json.loads(line))
                        yield event
                        index = event.revision + 1
                        if event.revision <= live_from:
                            conn.close()  # the response is not over: the connection cannot be reused
                            break
                    else:
                        self.stream_reopens += 1  # etcd ended the stream: reopen from the next index
                except OSError:
                    if self._cancel.is_set():
                        break
                    if dropped:
                        # etcd dropped the watcher (the read timed out, the connection is closed):
                        # reopen from the next index at once; a 401 then tells that history was lost.
                        self.stream_reopens += 1
                    else:
                        self._reconnect_pause()  # etcd down or restarting: reopen from the same index
        finally:
            self._drop_watch_connection(conn)
            self._drop_watch_connection(probe)

    def _store_index(self, probe: Connection, target: bytes) -> int:
        """The store's current index, or a huge one when the probe fails (reopening is always safe)."""
        try:
            return int(probe.request(b"GET", target, timeout=self.timeout).headers["x-etcd-index"])
        except (OSError, KeyError, ValueError):
            return sys.maxsize

    def _reconnect_pause(self) -> None:
        self.reconnects += 1
        self._cancel.wait(_RECONNECT_PAUSE_S)

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            conns = list(self._watch_conns)
        for conn in conns:
            conn.abort()  # wakes a watch waiting for its response at once

    def close(self) -> None:
        self.cancel()
        self._pool.close()
        with self._admin_lock:
            self._admin.close()


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The newline-delimited JSON events of a stream, each as soon as its chunk arrives."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line
