"""Capacity search against a fake etcd of known capacity and a fake clock: no etcd, no real time."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from test_results import a_run

from etcdbench.bench.capacity import Capacity, limiter, search
from etcdbench.report.matrix import headline
from etcdbench.results.model import Limiter, Run, Verdict


class FakeEtcd:
    """Passes iff rate <= limit; above `bound_from` our own client is what saturates.

    Every measurement advances the fake clock by `step_s`."""

    def __init__(
        self,
        limit: float,
        *,
        bound_from: float | None = None,
        bound_by: str = "writers",
        step_s: float = 15.0,
        flaky: set[float] | None = None,
    ) -> None:
        self.limit = limit
        self.bound_from = bound_from
        self.bound_by = bound_by
        self.step_s = step_s
        self.flaky = flaky or set()  # rates that pass the first time and fail afterwards
        self.now = 1000.0
        self.rates: list[float] = []

    def clock(self) -> float:
        return self.now

    def measure(self, rate: float) -> Run:
        self.now += self.step_s
        repeat = rate in self.rates
        self.rates.append(rate)
        passed = rate <= self.limit and not (rate in self.flaky and repeat)
        bound = self.bound_from is not None and rate >= self.bound_from
        return fake_run(rate, passed, bound, self.bound_by)


def fake_run(rate: float, passed: bool, bound: bool = False, bound_by: str = "writers") -> Run:
    received = rate if passed else rate * 0.6
    reasons = [] if passed else [f"watcher received {received:g} events/s < {0.99 * rate:g} (99% of target)"]
    bound_reasons = []
    if bound and bound_by == "writers":
        bound_reasons = ["writers fell behind their schedule (slip p99 350.0 ms)"]
    if bound and bound_by == "watcher":
        bound_reasons = ["watcher process used 1.00 of its one core"]
    return a_run(
        **{
            "label": f"v3+protobuf pod @{rate:g}/s",
            "target_rate": rate,
            "watch_events_per_s": received,
            "config": {"writers": 2, "watchers": 1, "rate": rate},
            "counters.missed": 0 if passed else 100,
            "counters.relists": 0 if passed else 1,
            "latency_us.watch.p50": 1000,
            "latency_us.watch.p99": 3000 if passed else 2_500_000,
            "latency_us.schedule_slip.p99": 350_000 if bound and bound_by == "writers" else 200,
            "cpu": {"watcher": 1.0 if bound and bound_by == "watcher" else 0.3, "writers": 1.1, "host": 0.5},
            "verdict": {
                "pass": passed,
                "reasons": reasons,
                "client_bound": bool(bound_reasons),
                "client_bound_reasons": bound_reasons,
                "warnings": [],
            },
        }
    )


def test_finds_a_known_limit_within_the_resolution() -> None:
    etcd = FakeEtcd(1234)
    result = search(etcd.measure, start=500, resolution=0.05, budget_s=3600, clock=etcd.clock)
    assert result.knee is not None and result.lowest_fail is not None
    assert result.knee <= 1234 < result.lowest_fail
    assert (result.lowest_fail - result.knee) / result.knee <= 0.05
    assert result.confirmed and result.stopped_by == "resolution"
    assert etcd.rates[:3] == [500, 1000, 2000]  # geometric rise
    assert etcd.rates[-1] == result.knee  # the boundary repeated last
    assert [s.phase for s in result.steps][-1] == "repeat"
    assert result.limiting_step is not None
    assert result.limited_by() == Limiter(
        rate=result.lowest_fail,
        by="etcd",
        text="etcd",
        reasons=result.limiting_step.run.verdict.reasons,
        client_bound_reasons=[],
    )


@pytest.mark.parametrize("limit", [1.5, 37, 499, 500, 501, 999.9, 4096, 77_777])
def test_any_limit_is_bracketed(limit: float) -> None:
    etcd = FakeEtcd(limit)
    result = search(etcd.measure, start=500, resolution=0.02, budget_s=1e9, clock=etcd.clock)
    assert result.knee is not None and result.lowest_fail is not None
    assert result.knee <= limit < result.lowest_fail
    assert result.relative_width is not None and result.relative_width <= 0.02


def test_start_above_the_limit_falls_until_a_rate_passes() -> None:
    etcd = FakeEtcd(100)
    result = search(etcd.measure, start=500, resolution=0.05, budget_s=1e9, clock=etcd.clock)
    assert etcd.rates[:4] == [500, 250, 125, 62.5]
    assert [s.phase for s in result.steps[:4]] == ["rise", "fall", "fall", "fall"]
    assert result.knee is not None and result.knee <= 100 < (result.lowest_fail or 0)


def test_nothing_passes_down_to_the_floor() -> None:
    etcd = FakeEtcd(0.1)
    result = search(etcd.measure, start=8, resolution=0.05, budget_s=1e9, min_rate=1, clock=etcd.clock)
    assert etcd.rates == [8, 4, 2, 1]
    assert result.knee is None and result.stopped_by == "floor"
    line = headline(result.record())
    assert line.startswith("no passing rate found (lowest rate tried: 1)")


def test_budget_is_respected_and_the_result_says_so() -> None:
    etcd = FakeEtcd(1234, step_s=30)
    result = search(etcd.measure, start=500, resolution=0.001, budget_s=200, clock=etcd.clock)
    assert result.elapsed_s <= 200
    assert len(etcd.rates) == 6  # 5 search steps + the repeat fit in 200 s of 30 s steps
    assert result.stopped_by == "budget"
    assert any("budget ran out" in n for n in result.notes)
    assert result.knee is not None and result.knee <= 1234 < (result.lowest_fail or 0)
    assert etcd.rates[-1] == result.knee and result.confirmed


def test_budget_too_short_for_any_failure_reports_a_lower_bound() -> None:
    etcd = FakeEtcd(1e9, step_s=10)
    result = search(etcd.measure, start=500, budget_s=45, clock=etcd.clock)
    assert etcd.rates == [500, 1000, 2000, 2000]  # the third step leaves room for the repeat only
    assert result.elapsed_s <= 45
    assert result.knee == 2000 and result.lowest_fail is None
    line = headline(result.record())
    assert line == ("knee: at least 2,000 writes/s — no rate tried failed before the budget ran out")


def test_the_first_step_and_the_repeat_always_run() -> None:
    etcd = FakeEtcd(1234, step_s=100)
    result = search(etcd.measure, start=500, budget_s=1, clock=etcd.clock)
    assert etcd.rates == [500, 500]
    assert result.knee == 500 and result.confirmed


def test_a_boundary_that_fails_on_repeat_reports_the_next_lower_pass() -> None:
    etcd = FakeEtcd(1234)
    first = search(etcd.measure, start=500, resolution=0.05, budget_s=1e9, clock=etcd.clock)
    boundary = first.knee
    assert boundary is not None
    etcd = FakeEtcd(1234, flaky={boundary})
    result = search(etcd.measure, start=500, resolution=0.05, budget_s=1e9, clock=etcd.clock)
    assert not result.confirmed
    assert result.lowest_fail == boundary
    lower = max(s.rate for s in result.steps if s.passed and s.rate < boundary)
    assert result.knee == lower
    assert any("failed on repeat" in n and f"{lower:,.0f}" in n for n in result.notes)
    assert result.limiting_step is not None and result.limiting_step.phase == "repeat"


def test_limit_set_by_our_writers_is_reported_as_such() -> None:
    etcd = FakeEtcd(1234, bound_from=1000)
    result = search(etcd.measure, start=500, resolution=0.05, budget_s=1e9, clock=etcd.clock)
    limited = result.limited_by()
    assert limited is not None and limited.by == "writers"
    assert (
        limited.text
        == "etcdbench's writers (schedule slip p99 350.00 ms, 1.10 cores for 2 writers), not etcd"
    )
    line = headline(result.record())
    assert line.startswith("knee: 1,2") and line.endswith("— limited by " + limited.text)


def test_limit_set_by_our_watcher_is_reported_as_such() -> None:
    etcd = FakeEtcd(1234, bound_from=1200, bound_by="watcher")
    result = search(etcd.measure, start=500, resolution=0.05, budget_s=1e9, clock=etcd.clock)
    limited = result.limited_by()
    assert limited is not None and limited.by == "watcher"
    assert limited.text == "etcdbench's watcher (1.00 core), not etcd"


def test_client_bound_only_below_the_knee_leaves_etcd_as_the_limit() -> None:
    etcd = FakeEtcd(1234, bound_from=10_000)  # our client only saturates far above the knee
    result = search(etcd.measure, start=500, resolution=0.05, budget_s=1e9, clock=etcd.clock)
    limited = result.limited_by()
    assert limited is not None and limited.by == "etcd"


def test_unknown_client_bound_reason_is_quoted_not_guessed() -> None:
    run = fake_run(100, False)
    run = replace(
        run, verdict=replace(run.verdict, client_bound=True, client_bound_reasons=["gc pauses in the client"])
    )
    assert limiter(run, 100).text == "etcdbench's client (gc pauses in the client), not etcd"


def test_busiest_writer_is_quoted_when_there_are_several() -> None:
    run = fake_run(100, False, bound=True)
    run.cpu["writer_max"] = 0.97
    assert limiter(run, 100).text == (
        "etcdbench's writers (schedule slip p99 350.00 ms, busiest of 2 writers 0.97 core), not etcd"
    )


def test_host_saturation_is_mentioned_when_etcd_is_the_limit() -> None:
    run = fake_run(100, False)
    run.cpu["host"] = 0.97
    run.verdict.warnings.append("host CPU 97% busy: etcd and etcdbench competed for the same cores")
    assert limiter(run, 100).text == "etcd (host CPU 97% busy: etcd shared the machine with etcdbench)"


def test_summary_for_the_results_file() -> None:
    etcd = FakeEtcd(1234)
    result: Capacity[Run] = search(etcd.measure, start=500, resolution=0.05, budget_s=1e9, clock=etcd.clock)
    d = result.record(first_run_index=0)
    assert d.knee == result.knee and d.interval == [result.knee, result.lowest_fail]
    assert d.confirmed is True and d.stopped_by == "resolution"
    assert len(d.curve) == len(etcd.rates)
    assert [p.rate for p in d.curve] == sorted(etcd.rates)
    assert sorted(p.run for p in d.curve) == list(range(len(etcd.rates)))
    for p in d.curve:
        assert p.pass_ == (p.rate <= 1234)
        assert etcd.rates[p.run] == p.rate
    line = headline(d)
    width = (result.lowest_fail - result.knee) / result.knee  # type: ignore[operator]
    assert line == (
        f"knee: {result.knee:,.0f} writes/s (within {width:.1%}: passed at {result.knee:,.0f}, "
        f"failed at {result.lowest_fail:,.0f}) — limited by etcd"
    )


def test_bisection_rates_are_round_numbers() -> None:
    etcd = FakeEtcd(1234)
    search(etcd.measure, start=500, resolution=0.01, budget_s=1e9, clock=etcd.clock)
    for rate in etcd.rates:
        assert len(f"{rate:g}".replace(".", "").strip("0")) <= 4


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        search(lambda r: fake_run(r, True), start=0)


def test_the_search_takes_any_judged_measurement_not_only_runs() -> None:
    """benchmarks/ searches etcd's Go client's knee with the same steps: its measurement is not a Run."""

    @dataclass(frozen=True)
    class Judgement:
        rate: float
        verdict: Verdict

    def measure(rate: float) -> Judgement:
        ok = rate <= 3000
        return Judgement(rate, Verdict(pass_=ok, reasons=[] if ok else ["too fast"], client_bound=False,
                                       client_bound_reasons=[], warnings=[]))  # fmt: skip

    now = [0.0]

    def clock() -> float:
        now[0] += 1
        return now[0]

    result = search(measure, start=500, resolution=0.05, budget_s=1e9, clock=clock)
    assert result.knee is not None and result.lowest_fail is not None
    assert result.knee <= 3000 < result.lowest_fail and result.relative_width is not None
    assert result.relative_width <= 0.05 and result.confirmed
    assert [s.run.rate for s in result.steps] == [s.rate for s in result.steps]
