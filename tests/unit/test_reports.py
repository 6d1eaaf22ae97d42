"""The processes' reports cross a multiprocessing pipe: they pickle, and keep the results file's shape."""

from __future__ import annotations

import pickle

from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.metrics.sizes import SizeRecorder
from etcdbench.results.model import BackgroundStream, BackgroundWatches, Summary
from etcdbench.workload.background import summarize
from etcdbench.workload.reports import (
    AckedDelete,
    BackgroundReport,
    Drain,
    RelistReport,
    StreamReport,
    WatchReport,
    WriterReady,
    WriterReport,
)

NONE = LatencyRecorder().summary()


def _writer() -> WriterReport:
    return WriterReport(
        writer_id=3,
        attempted=10,
        acked=b"\xff\x03",
        revisions=(100, b"\x01\x00\x00\x00"),
        deletes=[AckedDelete("/registry/pods/a", 5, 120)],
        expiring=[("/registry/pods/b", 9)],
        expired_before_update=0,
        ops_acked={"create": 5, "update": 4, "delete": 1},
        acked_in_window=10,
        errors=0,
        unsent=0,
        retries=1,
        error_sample="",
        put_latency=NONE,
        slip=NONE,
        acks_per_s=[10],
        value_bytes={"stored": SizeRecorder().summary()},
    )


def _stream() -> StreamReport:
    watch = WatchReport(
        seen={3: b"\xff\x03"},
        events=10,
        duplicates_retried=0,
        duplicates_redelivered=0,
        out_of_order=0,
        deletes_seen={"/registry/pods/a": 7},
        received_in_window=11,
        relists=[RelistReport("v3-compacted", 130, 4, 110, 0.01, 2048)],
        foreign=0,
        other_shards=0,
        decode_errors=0,
        latency=NONE,
        events_per_s=[11],
    )
    return StreamReport(stream=0, ended_ns=1, stream_reopens=0, reconnects=0, watches=[watch])


def background_report(*, slip_us: int = 0, unsent: int = 0, idle_gets: bool = False) -> BackgroundReport:
    """A background process's report: LISTs, GETs and Events at 10/s, each op `slip_us` late
    (100 samples a stream), `unsent` LISTs never sent; `idle_gets`: no GETs asked for."""
    slip = LatencyRecorder()
    for _ in range(100):
        slip.record_us(slip_us)
    none = Summary.from_dict(LatencyRecorder().summary())

    def stream(rate: float, missing: int, **own: object) -> BackgroundStream:
        return BackgroundStream.from_dict(
            {"rate": rate, "done": 5, "errors": 1, "unsent": missing, "bytes": 10, "error_sample": "E"}
            | {"latency_us": none.to_dict(), "slip_us": slip.summary() if rate else none.to_dict()}
            | own
        )

    return BackgroundReport(
        lists=stream(10.0, unsent, keys=7, pages=2, page_limit=500, prefix="/registry/pods/"),
        gets=stream(0.0 if idle_gets else 10.0, 0, not_found=1),
        events=stream(10.0, 0, inflight_at_stop=0, ttl_s=3600.0, prefix="/registry-background/events/"),
        watches=BackgroundWatches(count=1, events_received=5, bytes=100, relists=0, errors=[]),
        stopped_after_s=1.5,
    )


def test_every_report_survives_the_pipe() -> None:
    drain = Drain({3: b"\x01"}, [("/registry/pods/a", 5)], ["/registry/pods/a"], 0)
    for report in (WriterReady(10, 0.5), _writer(), _stream(), background_report(), drain):
        assert pickle.loads(pickle.dumps(report)) == report


def test_a_relist_keeps_the_results_files_fields_in_order() -> None:
    (relist,) = _stream().watches[0].relists
    assert list(relist.to_dict()) == ["reason", "revision", "keys", "after_revision", "duration_s", "bytes"]


def test_the_background_block_keeps_the_results_files_shape() -> None:
    block = summarize(background_report()).to_dict()
    streams = ["lists", "gets", "events", "watches", "stopped_after_s"]
    assert list(block) == [*streams, "slip_us", "fell_behind", "fell_behind_because"]
    common = ["rate", "done", "errors", "unsent", "bytes", "latency_us", "slip_us", "error_sample"]
    assert list(block["lists"]) == [*common, "keys", "pages", "page_limit", "prefix"]
    assert list(block["gets"]) == [*common, "not_found"]
    assert list(block["events"]) == [*common, "inflight_at_stop", "ttl_s", "prefix"]
    assert block["watches"] == {"count": 1, "events_received": 5, "bytes": 100, "relists": 0, "errors": []}
