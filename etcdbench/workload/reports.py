"""What the writer, watcher and background processes send their parent, and what the parent tells the
watchers: typed values, pickled through the multiprocessing pipes.

Each message is (tag, payload). A child sends ("ready", ...), a writer ("preloading", keys stored) before
it, then ("done", its report) or ("error", text); the parent sends ("start", t0 ns), and to watchers
("drain", Drain) and, on an interrupt, ("stop", at ns).

A latency or size travels as its summary (`HdrRecorder.summary()`: percentiles and the encoded HDR
histogram), the shape a results file keeps; the parent only merges them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from etcdbench.results.model import BackgroundStream, BackgroundWatches

Summary = dict[str, Any]  # HdrRecorder.summary()


class AckedDelete(NamedTuple):
    key: str
    intended_ns: int
    revision: int  # the revision etcd reported for the delete; 0: it did not say


@dataclass(frozen=True)
class WriterReady:
    """A writer connected and stored its share of the preload."""

    preloaded: int  # keys
    preload_s: float


@dataclass(frozen=True)
class WriterReport:
    """Everything one writer did from t0 on (docs/methodology.md defines each figure)."""

    writer_id: int
    attempted: int  # writes on its schedule
    acked: bytes  # SeqSet bits of the acknowledged puts
    revisions: tuple[int, bytes]  # Revisions.encode(): the revision of each acknowledged put
    deletes: list[AckedDelete]
    expiring: list[tuple[str, int]]  # (key, latest expected expiry in monotonic ns), by key
    expired_before_update: int
    ops_acked: dict[str, int]  # create/update/delete -> acknowledged
    acked_in_window: int
    errors: int
    unsent: int
    retries: int
    error_sample: str
    put_latency: Summary  # intended send -> acknowledged, in the window
    slip: Summary  # intended send -> handed to the client, in the window
    acks_per_s: list[int]
    value_bytes: dict[str, Summary]  # encoding (and "stored") -> sizes of the values written


@dataclass(frozen=True)
class Drain:
    """The parent to the watchers once the writers reported: what to expect before they may stop."""

    acked: dict[int, bytes]  # writer -> acknowledged seq bits
    deletes: list[tuple[str, int]]  # (key, intended ns) of each acknowledged delete
    keys: list[str]  # keys whose DELETE event is due (deletes, and expiries if waited for)
    until_ns: int  # when the last expiry waited for is due (monotonic ns), or 0


@dataclass(frozen=True)
class RelistReport:
    """A relist a watch went through; writes with a revision in (after_revision, revision] were never
    delivered (the gap)."""

    reason: str  # "v2-401" or "v3-compacted"
    revision: int
    keys: int
    after_revision: int  # the highest revision delivered before it
    duration_s: float
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # fields in the order a results file keeps them


@dataclass(frozen=True)
class WatchReport:
    """One watch's books: the ledger of puts, the deletes by key, latency and time series."""

    seen: dict[int, bytes]  # writer -> SeqSet bits of the puts seen
    events: int
    duplicates_retried: int
    duplicates_redelivered: int
    out_of_order: int
    deletes_seen: dict[str, int]  # key -> first receive time (monotonic ns)
    received_in_window: int
    relists: list[RelistReport]
    foreign: int
    other_shards: int
    decode_errors: int
    latency: Summary  # intended send -> event decoded here, puts and deletes, in the window
    events_per_s: list[int]


@dataclass(frozen=True)
class StreamReport:
    """One watcher process: its stream and the watches it carried."""

    stream: int
    ended_ns: int
    stream_reopens: int  # v2 stream only: the server dropped the stream and it was reopened
    reconnects: int
    watches: list[WatchReport]


@dataclass(frozen=True)
class BackgroundReport:
    """The background process: its three op streams and its watches as the results file keeps them
    (each stream with what only it has: a LIST's keys and pages, a GET's misses, an Event's TTL), and
    when it stopped. `background.summarize` adds the merged slip and whether it fell behind."""

    lists: BackgroundStream
    gets: BackgroundStream
    events: BackgroundStream
    watches: BackgroundWatches
    stopped_after_s: float

    def active(self) -> list[BackgroundStream]:
        """The op streams the run asked for (rate > 0)."""
        return [s for s in (self.lists, self.gets, self.events) if s.rate > 0]


def report_to(conn: Connection, who: str, work: Callable[[], object]) -> None:
    """A child process's end: send ("done", what `work` returns) or ("error", why it failed, naming
    `who`) to the parent, which owns the exit code, then close the pipe."""
    try:
        conn.send(("done", work()))
    except Exception as exc:
        conn.send(("error", f"{who}: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()
