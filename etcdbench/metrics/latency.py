"""HDR recording of positive integers: latencies in microseconds (and, in metrics/sizes.py, sizes).

Out-of-range values are counted (hdrhistogram's `record_value` returns False for them), never dropped
silently, and a summary says how many there were.

Recording is on every event's path, and hdrhistogram's pure-Python `record_value` costs ~1 µs. A
value is therefore first rounded down to the lowest value of its HDR bucket (the histogram cannot tell
them apart: same count slot, and min/max/mean are reported per bucket) and counted in a dict, which
reaches the histogram in bulk. The figures are exactly those of recording each value.
"""

from __future__ import annotations

import binascii
import zlib
from typing import Any, Self

from hdrh.codec import HdrCookieException, HdrHistogramSettingsException, HdrLengthException
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything later is a stall worth counting, not charting
SIGNIFICANT_FIGURES = 3
PENDING_MAX = 4096  # distinct bucket values held before they go to the histogram (bounds memory)
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}
_HDR_ERRORS = (HdrCookieException, HdrLengthException, HdrHistogramSettingsException)


class HdrRecorder:
    """One HDR histogram of positive integers plus a count of values it could not hold."""

    def __init__(self) -> None:
        self._hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
        # Values below 2**_exact_bits have buckets of width 1; above, each doubling halves precision.
        self._exact_bits = int(self._hist.sub_bucket_count).bit_length() - 1
        self._pending: dict[int, int] = {}  # bucket value -> count, not yet in the histogram
        self.out_of_range = 0

    def record(self, value: int) -> None:
        # Clock granularity can make a same-microsecond delivery read 0: that is "below 1 us".
        if value < LOWEST_US:
            value = LOWEST_US
        shift = value.bit_length() - self._exact_bits
        if shift > 0:
            value = value >> shift << shift
        pending = self._pending
        pending[value] = pending.get(value, 0) + 1
        if len(pending) > PENDING_MAX:
            self._flush()

    def _flush(self) -> None:
        for value, n in self._pending.items():
            if not self._hist.record_value(value, n):
                self.out_of_range += n
        self._pending.clear()

    @property
    def hist(self) -> HdrHistogram:
        """The histogram with every value recorded so far."""
        if self._pending:
            self._flush()
        return self._hist

    def merge(self, other: HdrRecorder) -> None:
        self.hist.add(other.hist)
        self.out_of_range += other.out_of_range

    @property
    def count(self) -> int:
        return int(self.hist.get_total_count())

    def encode(self) -> str:
        return str(self.hist.encode().decode("ascii"))

    @classmethod
    def decode(cls, blob: str, out_of_range: int = 0) -> Self:
        rec = cls()
        if blob:
            try:
                rec.hist.add(HdrHistogram.decode(blob))
            except (*_HDR_ERRORS, binascii.Error, zlib.error) as exc:  # hdrh's own types are not ValueError
                raise ValueError(f"not an HDR histogram: {type(exc).__name__} {exc}".strip()) from None
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


class LatencyRecorder(HdrRecorder):
    """Latencies in integer microseconds."""

    record_us = HdrRecorder.record  # the name says the unit; no extra call on every event's path


def fmt_us(us: int | float | None) -> str:
    """A microsecond figure as people read it: 850 µs, 12.30 ms, 1.20 s ("-" for none)."""
    if us is None:
        return "-"
    if us < 1_000:
        return f"{us:.0f} µs"
    if us < 1_000_000:
        return f"{us / 1_000:.2f} ms"
    return f"{us / 1_000_000:.2f} s"
