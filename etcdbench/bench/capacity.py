"""Capacity search: the highest write rate at which one watcher still passes the verdict.

The search only sees a `measure(rate)` callable and a clock, so it is tested with a fake etcd of known
capacity and a fake clock. `measure` returns anything with a verdict: a `Run`, as `Target.run` does, or
another client's judged measurement (benchmarks/ searches etcd's Go client's knee the same way). Steps:

1. rise: measure `start`, `2 * start`, `4 * start`, ... until a rate fails (or, when `start` itself
   fails, fall: `start / 2`, `start / 4`, ... down to `min_rate`, until one passes);
2. bisect: measure the geometric middle of [highest pass, lowest fail] until the interval's width,
   relative to its lower end, is within `resolution`, or the budget would run out;
3. repeat the highest passing rate once. If it fails again, the boundary is not stable: the next lower
   passing rate becomes the knee and a note says why.

The budget is wall-clock seconds for the whole search. A step starts only when it and the repeat are
expected to end within the budget (each expected to take as long as the longest step so far); the
first step and the repeat always run, so a budget shorter than two steps is exceeded by the repeat.

What limited the rate is read from the run at the lowest failing rate: its verdict says whether our
own client (the watcher process or the writers) was saturated; if not, the limit was etcd.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from etcdbench.metrics.latency import fmt_us
from etcdbench.results import model
from etcdbench.results.model import CurvePoint, Limiter, Run, Verdict


class Judged(Protocol):
    """What a step measures: only its verdict steers the search."""

    @property
    def verdict(self) -> Verdict: ...


R = TypeVar("R", bound=Judged)
Clock = Callable[[], float]

DEFAULT_START = 500.0  # writes/s: what a 5,000-node cluster's heartbeats make
DEFAULT_RESOLUTION = 0.05
DEFAULT_BUDGET_S = 300.0
FACTOR = 2.0


@dataclass(frozen=True)
class Step(Generic[R]):
    rate: float
    phase: str  # "rise", "fall", "bisect" or "repeat"
    run: R
    started_s: float  # since the search started, by its clock
    took_s: float

    @property
    def passed(self) -> bool:
        return self.run.verdict.pass_


@dataclass
class Capacity(Generic[R]):
    """The outcome; for a search of `Run`s, `record()` is what the results file keeps under "capacity"."""

    steps: list[Step[R]]
    knee: float | None  # highest passing rate that held on repeat (or the next lower pass)
    lowest_fail: float | None  # lowest failing rate above the knee
    confirmed: bool  # the knee's rate passed twice (the search's pass and the repeat)
    stopped_by: str  # "resolution", "budget" or "floor" (nothing passed down to the minimum rate)
    resolution: float
    budget_s: float
    elapsed_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def relative_width(self) -> float | None:
        if self.knee is None or self.lowest_fail is None:
            return None
        return (self.lowest_fail - self.knee) / self.knee

    @property
    def limiting_step(self) -> Step[R] | None:
        """The last run at the lowest failing rate: where the limit showed."""
        at = [s for s in self.steps if s.rate == self.lowest_fail and not s.passed]
        return at[-1] if at else None

    def limited_by(self: Capacity[Run]) -> Limiter | None:
        step = self.limiting_step
        return None if step is None else limiter(step.run, step.rate)

    def record(self: Capacity[Run], first_run_index: int = 0) -> model.Capacity:
        """Step i is runs[first_run_index + i] of the results file."""
        width = self.relative_width
        curve = sorted(
            (_point(s, first_run_index + i) for i, s in enumerate(self.steps)),
            key=lambda p: (p.rate, p.run),
        )
        return model.Capacity(
            knee=self.knee,
            confirmed=self.confirmed,
            interval=[self.knee, self.lowest_fail],
            relative_width=None if width is None else round(width, 4),
            resolution=self.resolution,
            budget_s=self.budget_s,
            elapsed_s=round(self.elapsed_s, 1),
            stopped_by=self.stopped_by,
            limited_by=self.limited_by(),
            notes=list(self.notes),
            curve=curve,
        )


def search(
    measure: Callable[[float], R],
    *,
    start: float = DEFAULT_START,
    resolution: float = DEFAULT_RESOLUTION,
    budget_s: float = DEFAULT_BUDGET_S,
    min_rate: float = 1.0,
    clock: Clock = time.monotonic,
) -> Capacity[R]:
    """Find the knee: see the module docstring for the steps and how the budget is kept."""
    if not start > 0 or not resolution > 0 or not budget_s > 0 or not min_rate > 0:
        raise ValueError("start, resolution, budget_s and min_rate must be > 0")
    t0 = clock()
    steps: list[Step[R]] = []
    longest = 0.0

    def fits(steps_ahead: int) -> bool:
        return not steps or clock() - t0 + longest * steps_ahead <= budget_s

    def step(rate: float, phase: str) -> bool:
        nonlocal longest
        begin = clock()
        run = measure(rate)
        took = clock() - begin
        longest = max(longest, took)
        steps.append(Step(rate, phase, run, begin - t0, took))
        return steps[-1].passed

    best: float | None = None  # highest passing rate
    worst: float | None = None  # lowest failing rate
    stopped_by = ""
    rate = start
    while True:  # 1. rise (or fall) until the knee is bracketed
        if not fits(2 if best is not None else 1):
            stopped_by = "budget"
            break
        if step(rate, "rise" if worst is None else "fall"):
            best = rate
            if worst is not None:
                break
            rate *= FACTOR
        else:
            worst = rate
            if best is not None:
                break
            if rate <= min_rate:
                stopped_by = "floor"
                break
            rate = max(rate / FACTOR, min_rate)

    while not stopped_by and best is not None and worst is not None:  # 2. bisect
        if (worst - best) / best <= resolution:
            stopped_by = "resolution"
            break
        if not fits(2):
            stopped_by = "budget"
            break
        mid = _between(best, worst)
        if step(mid, "bisect"):
            best = mid
        else:
            worst = mid

    notes: list[str] = []
    knee = best
    confirmed = False
    if best is not None:  # 3. does the boundary hold?
        if step(best, "repeat"):
            confirmed = True
        else:
            worst = best
            lower = [s.rate for s in steps if s.passed and s.rate < best]
            knee = max(lower) if lower else None
            notes.append(
                f"{best:,.0f} writes/s passed once and failed on repeat: the boundary is not stable"
                + (f"; the knee is the next lower passing rate, {knee:,.0f}" if knee else "")
            )
    if stopped_by == "budget":
        notes.append(
            "the budget ran out before the interval reached the resolution"
            if worst is not None
            else "the budget ran out before any rate failed: the knee is at least the highest rate tried"
        )
    if stopped_by == "floor":
        notes.append(f"no rate passed, down to {steps[-1].rate:g} writes/s")
    return Capacity(
        steps=steps,
        knee=knee,
        lowest_fail=worst,
        confirmed=confirmed,
        stopped_by=stopped_by,
        resolution=resolution,
        budget_s=budget_s,
        elapsed_s=clock() - t0,
        notes=notes,
    )


def limiter(run: Run, rate: float) -> Limiter:
    """Who set the pace of a failing run at `rate`: "etcd", or etcdbench's "watcher", "writers" or both.

    The verdict's client-bound reasons name the saturated part of our client; the figures quoted come
    from the run (cores used, the writers' schedule slip)."""
    verdict = run.verdict
    cpu = run.cpu
    reasons = list(verdict.client_bound_reasons)
    parts: list[str] = []
    details: list[str] = []
    if verdict.client_bound:
        watcher = [r for r in reasons if "watcher" in r]
        writers = [r for r in reasons if "writer" in r]
        config = run.config
        if watcher:
            parts.append("watcher")
            details.append(_cores(cpu, "watcher", config.get("watchers", 1)) or watcher[0])
        if writers:
            parts.append("writers")
            slip = run.latency_us.schedule_slip.p99
            bits = [f"schedule slip p99 {fmt_us(slip)}"] if slip is not None else []
            bits.append(_cores(cpu, "writer", config.get("writers", 1)))
            details.append(", ".join(b for b in bits if b) or writers[0])
        if not parts:  # a reason this code does not recognise: quote it rather than guess
            parts.append("client")
            details.extend(reasons)
        what = "etcdbench's " + " and ".join(parts)
        text = f"{what} ({'; '.join(details)}), not etcd"
        by = "+".join(parts)
    else:
        by = "etcd"
        text = "etcd"
        host = cpu.get("host")
        if isinstance(host, int | float) and any("host CPU" in w for w in verdict.warnings):
            text += f" (host CPU {host:.0%} busy: etcd shared the machine with etcdbench)"
    return Limiter(rate=rate, by=by, text=text, reasons=list(verdict.reasons), client_bound_reasons=reasons)


def _cores(cpu: dict[str, float | None], role: str, processes: int) -> str:
    """'1.00 core'; with several processes the busiest one's, or else their total."""
    busiest = cpu.get(f"{role}_max")
    total = cpu.get(f"{role}s" if role == "writer" else role)
    if processes > 1 and isinstance(busiest, int | float):
        return f"busiest of {processes} {role}s {busiest:.2f} core"
    if processes > 1 and isinstance(total, int | float):
        return f"{total:.2f} cores for {processes} {role}s"
    value = busiest if isinstance(busiest, int | float) else total
    return f"{value:.2f} core" if isinstance(value, int | float) else ""


def _point(step: Step[Run], index: int) -> CurvePoint:
    run = step.run
    watch = run.latency_us.watch
    return CurvePoint(
        rate=step.rate,
        phase=step.phase,
        run=index,
        events_per_s=run.watch_events_per_s,
        p50_us=watch.p50,
        p99_us=watch.p99,
        missed=run.counters.missed,
        pass_=run.verdict.pass_,
        client_bound=run.verdict.client_bound,
    )


def _between(low: float, high: float) -> float:
    """The geometric middle of (low, high), rounded to the fewest significant digits that stay inside."""
    middle = math.sqrt(low * high)
    for digits in range(2, 10):
        rounded = float(f"{middle:.{digits}g}")
        if low < rounded < high:
            return rounded
    return middle
