"""The interfaces the rest of etcdbench has to an etcd API: `Backend` (the load: puts, watches,
reads) and `Admin` (status, maintenance, a run's keys). Nothing outside this package knows which API
implements them.

A backend object is created inside the process that uses it (writers and the watcher are separate
processes), from an `Endpoint` that is cheap to pickle.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from etcdbench.backends.credentials import Credentials, endpoint_tls
from etcdbench.errors import EtcdError


@dataclass(frozen=True)
class Endpoint:
    """Where etcd is: one or more client URLs, e.g. ("http://127.0.0.1:2379",).

    `credentials` carries TLS files (https:// URLs need at least the CA) and an etcd user and
    password; its repr never shows the password.
    """

    urls: tuple[str, ...]
    credentials: Credentials | None = None

    @property
    def tls(self) -> bool:
        """True for https:// URLs; EtcdError when the URLs and the TLS files do not match."""
        return endpoint_tls(self.urls, self.credentials)


class WatchEvent(NamedTuple):
    """One change seen by a watcher (a NamedTuple: made once per event, in C, unlike a dataclass).

    revision: v3 mod_revision, or v2 modifiedIndex.
    value: the stored bytes, exactly as written (v2: the string value encoded as UTF-8).
    prev_value: the previous value when the server sent it (v3 prev_kv, v2 prevNode), else None.
    """

    type: str  # "PUT" or "DELETE"
    key: str
    revision: int
    value: bytes
    prev_value: bytes | None = None


@dataclass(frozen=True)
class Relist:
    """The watch lost history and had to start over (v2: 401 index cleared; v3: compacted revision).

    The watcher re-read the prefix at `revision` and resumes at `revision + 1`; every write between
    the last event seen and `revision` that was not delivered is lost. `reason` is "v2-401" or
    "v3-compacted".
    """

    reason: str
    revision: int
    keys: int
    duration_s: float = 0.0  # how long reading the prefix took
    bytes: int = 0  # bytes of the listing as received (v3: every page's response; v2: the body)


WatchItem = WatchEvent | Relist


@dataclass(frozen=True)
class ListPage:
    """One page of a LIST (v3 Range with a limit; v2 a whole recursive GET, which has no pages).

    `next_key` is where the next page starts (the last key + "\\0", as the apiserver continues), or
    None when this was the last page; `revision` is the revision the page was read at, which later
    pages of the same LIST pass back so that the LIST is one snapshot.
    """

    keys: int
    size: int  # bytes of the response as received (v3: the RangeResponse; v2: the body)
    revision: int
    next_key: bytes | None


class Reader(Protocol):
    """The reads the background load makes beside the measured writes (workload/background.py)."""

    def list_page(self, prefix: str, start: bytes, limit: int, revision: int = 0) -> ListPage:
        """Up to `limit` keys with their values under `prefix`, from key `start` (b"": the prefix),
        at `revision` (0: the current one). v2 ignores start, limit and revision: all, now."""

    def get_value(self, key: str) -> int | None:
        """GET one key: bytes of the response, or None when the key does not exist."""


class KeyGone(EtcdError):
    """The key a write needs is not there: an update (keep_lease) of a key that expired, or a delete of
    a key already gone (v2 404; v3 answers such a delete with success and deleted=0)."""


# Called once per put, from any thread, with None on success or the exception on failure.
PutCallback = Callable[[BaseException | None], None]
# Called with the revision a write made (v3 header revision, v2 modifiedIndex), before its PutCallback.
RevisionCallback = Callable[[int], None]


@dataclass(frozen=True)
class ServerStatus:
    """What one etcd member says of itself (v3 Maintenance Status)."""

    version: str  # the server version, e.g. "3.5.1"
    db_size: int  # bytes of its backend database
    leader: int  # the member id of the leader it knows, 0 while there is none
    member: int  # its own member id


class Backend(Reader, Protocol):
    """What the load uses: writers (puts, deletes, leases by TTL), watchers (one watch, or several on
    one stream) and the background load (the reads of Reader). Made by etcdbench.backends.make_backend."""

    name: str  # "v2" or "v3"
    binary_safe: bool  # False for v2: values are strings, so binary encodings must be base64-encoded
    # True when an update with keep_lease sets the key's TTL afresh (v2: ttl=S again, as Kubernetes'
    # v2 storage did for Events); False when it keeps the key's lease and so its expiry (v3).
    update_renews_ttl: bool
    # The most puts one put_many_async carries (v3: etcd's --max-txn-ops); 1: the API has no batches.
    max_txn_ops: int

    @property
    def reconnects(self) -> int:
        """Watch connections reopened after they failed (etcd down or restarting)."""

    @property
    def stream_reopens(self) -> int:
        """Live watch streams reopened because etcd dropped or ended them (v2 stream mode; else 0)."""

    def check(self) -> None:
        """Raise EtcdError with one clear line when etcd is unreachable or cannot serve this API."""

    def put_async(
        self,
        key: str,
        value: bytes,
        done: PutCallback,
        ttl_s: float = 0.0,
        keep_lease: bool = False,
        revision: RevisionCallback | None = None,
    ) -> None:
        """Start a put and return at once; `done` is called when it is acknowledged or fails.

        ttl_s > 0 makes the key expire (v3: attached to a lease, v2: the key's ttl); its expiry is a
        DELETE event. keep_lease: the key exists and is updated without losing its expiry (v3
        ignore_lease; v2 prevExist=true with ttl=ttl_s); if it is gone, `done` gets KeyGone.
        Never raises: every failure, even one before the request is sent, goes to `done`.
        `revision`, if given, learns the revision the put made (the books place a lost write in or out
        of a relist's gap by it).
        Implementations bound nothing themselves: the caller limits requests in flight.
        """

    def put_many_async(self, items: Sequence[tuple[str, bytes]], done: PutCallback) -> None:
        """Put 1 to max_txn_ops (key, value) pairs at once, without TTL (all or none); `done` once.
        ValueError for more than max_txn_ops."""

    def delete_async(self, key: str, done: PutCallback, revision: RevisionCallback | None = None) -> None:
        """Start deleting one key; `done` and `revision` as for put_async."""

    def hold_sends(self) -> None:
        """From now on, hold the calling thread's puts and deletes until flush(), so that what a
        late writer owes goes out in one system call. A backend that cannot hold sends at once."""

    def flush(self) -> None:
        """Send what hold_sends() has held."""

    def current_revision(self) -> int:
        """The store's current revision (v3 header revision, v2 X-Etcd-Index)."""

    def watch(self, prefix: str, start_revision: int) -> Iterator[WatchItem]:
        """Yield every change under `prefix` from `start_revision` on, in order, until `cancel()`.

        Never raises for history loss: that is a `Relist` item, after which events continue.
        """

    def watch_many(self, prefix: str, start_revision: int, count: int) -> Iterator[tuple[int, WatchItem]]:
        """`count` watches of `prefix` from `start_revision`, as `watch` each, on one stream where the
        API multiplexes them (v3); items are tagged with the watch's index 0..count-1. EtcdError for
        count > 1 on an API that cannot."""

    def cancel(self) -> None:
        """Stop a running `watch` or `watch_many` from another thread; the iterator then ends."""

    def close(self) -> None: ...


class Admin(Protocol):
    """The calls around the load: what the server is, its store's maintenance, and the keys of a run
    (cleanup, fault injection, the shards' meeting, relists). Made by etcdbench.backends.make_admin
    (in the run's API) or make_server_admin (etcd's own API, whatever a run measures)."""

    def check(self) -> None:
        """Raise EtcdError with one clear line when etcd is unreachable or cannot serve this API."""

    def server_version(self) -> str:
        """The etcd server version string, e.g. "3.5.1"."""

    def status(self) -> ServerStatus:
        """What the member at the first URL says of itself (EtcdError if it does not answer)."""

    def db_size(self) -> int | None:
        """Bytes of the store's backend database, when the API tells (v3 Status; v2 does not)."""

    def current_revision(self) -> int:
        """The store's current revision (v3 header revision, v2 X-Etcd-Index)."""

    def compact(self, revision: int) -> None:
        """Compact the store's history up to `revision` (physically: done when this returns)."""

    def defragment(self) -> None:
        """Defragment the backend database of the member at the first URL."""

    def count_prefix(self, prefix: str) -> int:
        """Number of keys under `prefix`."""

    def get_prefix(self, prefix: str) -> dict[str, bytes]:
        """Every key under `prefix` with its value (small prefixes only: one response)."""

    def list_keys(self, prefix: str, revision: int = 0) -> tuple[int, dict[str, int]]:
        """(revision read, {key: create revision}) of every key under `prefix`, read in pages
        (v3: all at `revision`, or the first page's when 0; v2: now)."""

    def delete_own(self, keys: Collection[str], prefix: str, created_after: int) -> int:
        """Delete the keys of `keys` that exist under `prefix` and were created after revision
        `created_after`; never any other key. Returns how many were deleted."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix`; return how many were deleted."""

    def put_leased(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Put `key`, expiring after `ttl_s`, unless it exists; False (and nothing written) if it does."""

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete these keys, one by one (a handful: meeting keys)."""

    def close(self) -> None: ...
