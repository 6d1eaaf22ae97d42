"""Sizes of the values a run writes, in bytes: an HDR histogram as latencies are, so that the
writers' figures merge and keep their percentiles."""

from __future__ import annotations

from etcdbench.metrics.latency import HdrRecorder


class SizeRecorder(HdrRecorder):
    """Value sizes in bytes."""

    record_bytes = HdrRecorder.record
