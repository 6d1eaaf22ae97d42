"""HDR latency recording in integer microseconds.

Out-of-range values are counted (hdrhistogram's `record_value` returns False for them), never dropped
silently, and a summary says how many there were.
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything later is a stall worth counting, not charting
SIGNIFICANT_FIGURES = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


class LatencyRecorder:
    """One HDR histogram plus a count of values it could not hold."""

    def __init__(self) -> None:
        self.hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
        self.out_of_range = 0

    def record_us(self, value_us: int) -> None:
        # Clock granularity can make a same-microsecond delivery read 0: that is "below 1 us".
        if not self.hist.record_value(value_us if value_us >= LOWEST_US else LOWEST_US):
            self.out_of_range += 1

    def merge(self, other: LatencyRecorder) -> None:
        self.hist.add(other.hist)
        self.out_of_range += other.out_of_range

    @property
    def count(self) -> int:
        return int(self.hist.get_total_count())

    def encode(self) -> str:
        return str(self.hist.encode().decode("ascii"))

    @classmethod
    def decode(cls, blob: str, out_of_range: int = 0) -> LatencyRecorder:
        rec = cls()
        if blob:
            rec.hist.add(HdrHistogram.decode(blob))
        rec.out_of_range = out_of_range
        return rec

    def summary(self) -> dict[str, Any]:
        """The figures a results file keeps: percentiles, max, count and the encoded histogram."""
        empty = self.count == 0
        out: dict[str, Any] = {
            name: None if empty else int(self.hist.get_value_at_percentile(p))
            for name, p in PERCENTILES.items()
        }
        out["max"] = None if empty else int(self.hist.get_max_value())
        out["mean"] = None if empty else round(float(self.hist.get_mean_value()), 1)
        out["count"] = self.count
        out["out_of_range"] = self.out_of_range
        out["hdr"] = self.encode() if not empty else ""
        return out


# The same histogram serves any positive integer: object sizes in bytes, for one.
ValueRecorder = LatencyRecorder
