"""The run's shared clock: CLOCK_MONOTONIC nanoseconds, which every process on the host reads alike."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

NS = 1_000_000_000


@dataclass(frozen=True)
class Timeline:
    t0_ns: int  # the first write's intended send time
    warmup_s: float
    duration_s: float

    @cached_property  # asked several times per event
    def window_start_ns(self) -> int:
        return self.t0_ns + round(self.warmup_s * NS)

    @cached_property
    def window_end_ns(self) -> int:
        return self.window_start_ns + round(self.duration_s * NS)

    def in_window(self, t_ns: int) -> bool:
        return self.window_start_ns <= t_ns < self.window_end_ns

    def cut(self, stop_ns: int) -> Timeline:
        """This timeline with the measured window closed at `stop_ns` (the run was interrupted then):
        empty if that was in the warm-up, unchanged if it was after the window."""
        if stop_ns >= self.window_end_ns:
            return self
        measured_ns = max(0, stop_ns - self.window_start_ns)
        return Timeline(self.t0_ns, self.warmup_s, measured_ns / NS)


class PerSecond:
    """Counts per whole second since t0 (negative times land in second 0)."""

    def __init__(self, t0_ns: int) -> None:
        self.t0_ns = t0_ns
        self.counts: list[int] = []

    def add(self, t_ns: int, n: int = 1) -> None:
        i = max(0, (t_ns - self.t0_ns) // NS)
        counts = self.counts
        if i >= len(counts):
            counts.extend([0] * (i + 1 - len(counts)))
        counts[i] += n
