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
class OpsReport:
    """One background op stream (LISTs, GETs or Event creates) on its open-loop schedule."""

    rate: float
    done: int
    errors: int
    unsent: int
    bytes: int
    latency_us: Summary
    slip_us: Summary
    error_sample: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rate": self.rate,
            "done": self.done,
            "errors": self.errors,
            "unsent": self.unsent,
            "bytes": self.bytes,
            "latency_us": self.latency_us,
            "slip_us": self.slip_us,
        }
        if self.error_sample:
            out["error_sample"] = self.error_sample
        return out


@dataclass(frozen=True)
class BackgroundWatches:
    count: int
    events_received: int
    bytes: int
    relists: int
    errors: list[str]


@dataclass(frozen=True)
class BackgroundReport:
    """The background process: its three op streams, its watches, and when it stopped."""

    lists: OpsReport
    list_keys: int
    list_pages: int
    list_page_limit: int
    list_prefix: str
    gets: OpsReport
    gets_not_found: int
    events: OpsReport
    events_inflight_at_stop: int  # Event puts still unanswered when the process stopped waiting
    event_ttl_s: float
    events_prefix: str
    watches: BackgroundWatches
    stopped_after_s: float

    def active(self) -> list[OpsReport]:
        """The op streams the run asked for (rate > 0)."""
        return [s for s in (self.lists, self.gets, self.events) if s.rate > 0]

    def to_dict(self) -> dict[str, Any]:
        """The shape of a run's `background` block (docs/results-format.md)."""
        w = self.watches
        return {
            "lists": {
                **self.lists.to_dict(),
                "keys": self.list_keys,
                "pages": self.list_pages,
                "page_limit": self.list_page_limit,
                "prefix": self.list_prefix,
            },
            "gets": {**self.gets.to_dict(), "not_found": self.gets_not_found},
            "events": {
                **self.events.to_dict(),
                "inflight_at_stop": self.events_inflight_at_stop,
                "ttl_s": self.event_ttl_s,
                "prefix": self.events_prefix,
            },
            "watches": {
                "count": w.count,
                "events_received": w.events_received,
                "bytes": w.bytes,
                "relists": w.relists,
                "errors": list(w.errors),
            },
            "stopped_after_s": self.stopped_after_s,
        }


def report_to(conn: Connection, who: str, work: Callable[[], object]) -> None:
    """A child process's end: send ("done", what `work` returns) or ("error", why it failed, naming
    `who`) to the parent, which owns the exit code, then close the pipe."""
    try:
        conn.send(("done", work()))
    except Exception as exc:
        conn.send(("error", f"{who}: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()
