"""CPU attribution: how much of a core the watcher, the writers and a local etcd used.

A Python process runs its decode loop on one core (the GIL), so a watcher near 1.0 core is saturated:
the result then describes our client, not etcd, and says so.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

SATURATED_CORES = 0.9  # of one core, for a single-threaded Python process


@dataclass
class _Series:
    times: list[float] = field(default_factory=list)  # monotonic seconds
    cpu_s: list[float] = field(default_factory=list)  # cumulative user+system seconds


class CpuSampler:
    """Samples cumulative CPU time of named process groups every `interval` seconds in a thread."""

    def __init__(self, groups: dict[str, list[int]], interval: float = 0.5) -> None:
        self.interval = interval
        self._procs: dict[str, list[psutil.Process]] = {}
        for name, pids in groups.items():
            self._procs[name] = [psutil.Process(pid) for pid in pids]
        self._series = {name: _Series() for name in [*groups, "host"]}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
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
            for p in procs:
                try:
                    t = p.cpu_times()
                    self._last[p.pid] = t.user + t.system
                except psutil.Error:
                    pass  # exited: its last sample stands
                total += self._last.get(p.pid, 0.0)
                self._pid_series[p.pid].times.append(now)
                self._pid_series[p.pid].cpu_s.append(self._last.get(p.pid, 0.0))
            self._series[name].times.append(now)
            self._series[name].cpu_s.append(total)
        host = self._series["host"]
        host.times.append(now)
        host.cpu_s.append(self._host_total() / self._ncpu)

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
        idx = [i for i, t in enumerate(s.times) if start - self.interval / 2 <= t <= end + self.interval / 2]
        if len(idx) < 2 or s.times[idx[-1]] <= s.times[idx[0]]:
            return None
        a, b = idx[0], idx[-1]
        return (s.cpu_s[b] - s.cpu_s[a]) / (s.times[b] - s.times[a])

    def timeseries(self, t0: float) -> dict[str, Any]:
        """Per-interval cores used, each point at its interval's end, seconds since t0."""
        out: dict[str, Any] = {"interval_s": self.interval}
        for name, s in self._series.items():
            out[name] = [
                [
                    round(s.times[i] - t0, 3),
                    round((s.cpu_s[i] - s.cpu_s[i - 1]) / (s.times[i] - s.times[i - 1]), 3),
                ]
                for i in range(1, len(s.times))
                if s.times[i] > s.times[i - 1]
            ]
        return out
