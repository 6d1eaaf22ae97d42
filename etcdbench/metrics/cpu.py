"""CPU and memory attribution: how much of a core, and how much RSS, the watcher, the writers, the
parent and a local etcd used.

A Python process runs its decode loop on one core (the GIL), so a watcher near 1.0 core is saturated:
the result then describes our client, not etcd, and says so. RSS over time shows whether a long run
(a soak) holds its memory flat.
"""

from __future__ import annotations

import itertools
import threading
import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

SATURATED_CORES = 0.9  # of one core, for a single-threaded Python process
SAMPLE_S = 0.5  # sampling interval of runs up to 20 minutes
# A stored series never has more points than this: a long run's samples are grouped into wider steps
# (0.5 s CPU samples of a 30-minute run would be ~3,600 points per process group), which keeps the
# results file of a soak small. The averages and the memory summary use every sample.
MAX_SERIES_POINTS = 600
SAMPLES_PER_STEP = 4  # a long run is sampled this often per stored step, and no more
SERIES_STEPS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
RSS_STEP_S = 1.0  # the finest RSS series stored: one point per second
NO_RSS = -1  # a sample in which no process of the group was alive
# The etcdbench process groups of a run. The parent runs the others: its RSS is sampled, not its CPU.
# A run has a background group only when it has a background load.
PARENT = "parent"
BACKGROUND = "background"
OWN_GROUPS = (PARENT, "watcher", "writers", BACKGROUND)


@dataclass
class _Series:
    # array('d'/'q'): 8 bytes per sample instead of a float object each; a soak takes many samples.
    times: array[float] = field(default_factory=lambda: array("d"))  # monotonic seconds
    cpu_s: array[float] = field(default_factory=lambda: array("d"))  # cumulative user+system seconds
    rss: array[int] = field(default_factory=lambda: array("q"))  # bytes, summed over the group


def series_step(span_s: float, finest: float) -> float:
    """The finest step (at least `finest`) that keeps a series of `span_s` within MAX_SERIES_POINTS."""
    for step in SERIES_STEPS_S:
        if step >= finest and span_s / step <= MAX_SERIES_POINTS:
            return step
    return SERIES_STEPS_S[-1]


def sampling_interval(run_s: float) -> float:
    """How often to sample a run of `run_s` seconds: every SAMPLE_S, or SAMPLES_PER_STEP times per
    stored step of a longer run. The sampler then holds at most SAMPLES_PER_STEP * MAX_SERIES_POINTS
    samples per series however long the run (its own memory stays flat in a soak); CPU averages lose
    nothing (CPU time is cumulative: only the window's edges move, by half an interval at most)."""
    return max(SAMPLE_S, series_step(run_s, SAMPLE_S) / SAMPLES_PER_STEP)


def _kept(times: Sequence[float], step: float, interval: float) -> list[int]:
    """Indices of the samples that end each stored step: the first, then each at least `step` after the
    last kept one (less half a sampling interval of jitter, so that step == interval keeps them all),
    and the last, which ends the run's final, shorter step."""
    if not times:
        return []
    kept = [0]
    for i in range(1, len(times)):
        if times[i] - times[kept[-1]] >= step - interval / 2:
            kept.append(i)
    if kept[-1] != len(times) - 1:
        kept.append(len(times) - 1)
    return kept


def cores_series(
    times: Sequence[float], cpu_s: Sequence[float], t0: float, step: float, interval: float
) -> list[list[float]]:
    """Cumulative CPU seconds sampled every `interval` as `[seconds since t0, cores]` per `step`, each
    point the mean over the step that ends at its time."""
    kept = _kept(times, step, interval)
    return [
        [round(times[b] - t0, 3), round((cpu_s[b] - cpu_s[a]) / (times[b] - times[a]), 3)]
        for a, b in itertools.pairwise(kept)
        if times[b] > times[a]
    ]


def peak_series(
    times: Sequence[float], values: Sequence[int], t0: float, step: float, interval: float
) -> list[list[float]]:
    """Samples taken every `interval` as `[seconds since t0, value]` per `step`, each point the highest
    sample of the step that ends at its time (the first point: the first sample); NO_RSS is no sample."""
    points: list[list[float]] = []
    kept = _kept(times, step, interval)
    for a, b in zip([-1, *kept], kept, strict=False):
        peak = max(values[a + 1 : b + 1])
        if peak != NO_RSS:
            points.append([round(times[b] - t0, 3), peak])
    return points


@dataclass(frozen=True)
class MemoryTrend:
    start_bytes: int
    end_bytes: int
    max_bytes: int
    slope_bytes_per_min: float  # least-squares fit over every sample in the span

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_bytes": self.start_bytes,
            "end_bytes": self.end_bytes,
            "max_bytes": self.max_bytes,
            "slope_bytes_per_min": round(self.slope_bytes_per_min),
        }


def memory_trend(points: Iterable[tuple[float, int]]) -> MemoryTrend | None:
    """First, last and highest RSS of (time s, bytes) samples, and the fitted growth per minute."""
    pts = list(points)
    if len(pts) < 2:
        return None
    n = len(pts)
    mean_t = sum(t for t, _ in pts) / n
    mean_v = sum(v for _, v in pts) / n
    var = sum((t - mean_t) ** 2 for t, _ in pts)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in pts) / var if var > 0 else 0.0
    return MemoryTrend(pts[0][1], pts[-1][1], max(v for _, v in pts), slope * 60)


class ProcessSampler:
    """Samples cumulative CPU time and RSS of named process groups every `interval` seconds in a thread."""

    def __init__(self, groups: dict[str, list[int]], interval: float = SAMPLE_S) -> None:
        self.interval = interval
        self._procs: dict[str, list[psutil.Process]] = {}
        for name, pids in groups.items():
            self._procs[name] = [psutil.Process(pid) for pid in pids]
        self._series = {name: _Series() for name in [*groups, "host"]}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-sampler", daemon=True)
        self._ncpu = psutil.cpu_count() or 1
        self._last: dict[int, float] = {}
        self._pid_series: dict[int, _Series] = {p: _Series() for pids in groups.values() for p in pids}
        self._host_last: dict[int, float] = {}
        self._host_acc = 0.0

    def add(self, name: str, pid: int) -> None:
        """Count another process in a group from now on (e.g. etcd after a restart)."""
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return
        self._pid_series.setdefault(pid, _Series())
        self._procs[name].append(proc)

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def stop(self) -> None:
        """Take a last sample and end the thread; calling it again does nothing."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        now = time.monotonic()
        for name, procs in self._procs.items():
            total = 0.0
            rss = NO_RSS
            for p in procs:
                try:
                    with p.oneshot():
                        t = p.cpu_times()
                        mem = p.memory_info().rss
                    self._last[p.pid] = t.user + t.system
                    rss = max(rss, 0) + mem
                except psutil.Error:
                    pass  # exited: its last CPU sample stands, and it holds no memory
                total += self._last.get(p.pid, 0.0)
                self._pid_series[p.pid].times.append(now)
                self._pid_series[p.pid].cpu_s.append(self._last.get(p.pid, 0.0))
            series = self._series[name]
            series.times.append(now)
            series.cpu_s.append(total)
            series.rss.append(rss)
        host_cores = self._host_total() / self._ncpu  # slow (every process): before the series grows
        host = self._series["host"]
        host.times.append(now)
        host.cpu_s.append(host_cores)

    def _host_total(self) -> float:
        """Running total of CPU seconds used by every process on the host.

        Summed per process rather than read from /proc/stat: on some VMs (seen on Firecracker
        guests) /proc/stat loses most ticks, while per-process times stay exact. A process first
        seen now contributes from now on.
        """
        seen: dict[int, float] = {}
        for p in psutil.process_iter():
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            seen[p.pid] = cur = t.user + t.system
            prev = self._host_last.get(p.pid)
            if prev is not None and cur >= prev:
                self._host_acc += cur - prev
        self._host_last = seen
        return self._host_acc

    def cores(self, name: str, start: float, end: float) -> float | None:
        """Average cores used by a group between two monotonic times (host: fraction of all cores)."""
        return self._average(self._series[name], start, end)

    def cores_of(self, pid: int, start: float, end: float) -> float | None:
        """Average cores used by one sampled process between two monotonic times."""
        return self._average(self._pid_series[pid], start, end)

    def _average(self, s: _Series, start: float, end: float) -> float | None:
        # Read while the sampler thread runs, a sample may be half-appended: its time, not yet its CPU.
        n = min(len(s.times), len(s.cpu_s))
        low, high = start - self.interval / 2, end + self.interval / 2
        idx = [i for i, t in enumerate(s.times[:n]) if low <= t <= high]
        if len(idx) < 2 or s.times[idx[-1]] <= s.times[idx[0]]:
            return None
        a, b = idx[0], idx[-1]
        return (s.cpu_s[b] - s.cpu_s[a]) / (s.times[b] - s.times[a])

    def timeseries(self, t0: float, names: Sequence[str]) -> dict[str, Any]:
        """Cores used per step, each point `[seconds since t0, cores]` at its step's end.

        The step is the sampling interval, or wider for a long run (see MAX_SERIES_POINTS).
        """
        step = self._step(self.interval)
        out: dict[str, Any] = {"interval_s": step}
        for name in names:
            s = self._series[name]
            out[name] = cores_series(s.times, s.cpu_s, t0, step, self.interval)
        return out

    def rss_timeseries(self, t0: float, names: Sequence[str]) -> dict[str, Any]:
        """RSS per step, each point `[seconds since t0, bytes]`: the highest sample of the group (summed
        over its processes) in the step ending there. One point per second, or wider for a long run."""
        step = self._step(RSS_STEP_S)
        out: dict[str, Any] = {"interval_s": step}
        for name in names:
            s = self._series[name]
            out[name] = peak_series(s.times, s.rss, t0, step, self.interval)
        return out

    def memory(self, names: Sequence[str], start: float, end: float) -> MemoryTrend | None:
        """RSS of the groups `names` together, sampled between two monotonic times: see memory_trend."""
        ref = self._series[names[0]]
        points = []
        for i, t in enumerate(ref.times):
            if start <= t <= end:
                values = [self._series[n].rss[i] for n in names]
                if all(v != NO_RSS for v in values):
                    points.append((t, sum(values)))
        return memory_trend(points)

    def _step(self, finest: float) -> float:
        times = self._series["host"].times
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        return series_step(span, max(finest, self.interval))
