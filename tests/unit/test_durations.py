"""Every duration, flag or scenario key, is read by one rule (etcdbench.config.run.parse_duration): a bare
number is seconds, or a number with one of the units us, ms, s, m, h."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from etcdbench.cli.app import build_parser
from etcdbench.cli.flags import NETWORK_FLAGS, flag_values, workload_config
from etcdbench.cli.run import _overrides
from etcdbench.config.faults import parse_fault
from etcdbench.config.run import parse_duration, parse_duration_us
from etcdbench.errors import UsageError

Read = Callable[[argparse.Namespace], float]  # the parsed flag, in seconds


def _config(field: str) -> Read:
    return lambda args: float(getattr(workload_config(args, rate=100), field))


# (command, flag, how its value is read back in seconds)
FLAGS: list[tuple[str, str, Read]] = [
    ("watch", "--duration", lambda a: a.duration),
    ("watch", "--warmup", lambda a: a.warmup),
    ("watch", "--drain", lambda a: a.drain),
    ("watch", "--ttl", lambda a: a.ttl),
    ("watch", "--slo-p99", lambda a: _config("slo_p99_us")(a) / 1e6),
    ("watch", "--rtt", lambda a: flag_values(a, NETWORK_FLAGS)["rtt_us"] / 1e6),
    ("capacity", "--duration", lambda a: a.duration),
    ("capacity", "--budget", lambda a: a.budget),
    ("capacity", "--slo-p99", lambda a: _config("slo_p99_us")(a) / 1e6),
    ("run", "--duration", lambda a: _overrides(a).values["duration_s"]),
    ("run", "--warmup", lambda a: _overrides(a).values["warmup_s"]),
    ("run", "--slo-p99", lambda a: _overrides(a).values["slo_p99_us"] / 1e6),
    ("run", "--rtt", lambda a: _overrides(a).values["rtt_us"] / 1e6),
]
IDS = [f"{command} {flag}" for command, flag, _ in FLAGS]


def parsed(command: str, flag: str, value: str) -> argparse.Namespace:
    argv = [command, "x.toml"] if command == "run" else [command]
    return build_parser().parse_args([*argv, flag, value])


@pytest.mark.parametrize(("command", "flag", "read"), FLAGS, ids=IDS)
@pytest.mark.parametrize(("text", "seconds"), [("2", 2.0), ("2s", 2.0), ("2000ms", 2.0), ("0.5", 0.5)])
def test_every_duration_flag_reads_a_bare_number_as_seconds_and_takes_units(
    command: str, flag: str, read: Read, text: str, seconds: float
) -> None:
    assert read(parsed(command, flag, text)) == pytest.approx(seconds)


@pytest.mark.parametrize(("command", "flag", "read"), FLAGS, ids=IDS)
def test_every_duration_flag_refuses_the_same_way(command: str, flag: str, read: Read) -> None:
    with pytest.raises(UsageError, match=rf"{flag}: '2 fortnights' is not a duration: seconds \(10\)"):
        read(parsed(command, flag, "2 fortnights"))


def test_budget_120_is_two_minutes() -> None:
    """Issue 13: `--budget 120` was refused for want of a unit while `--duration 10` was seconds."""
    assert build_parser().parse_args(["capacity", "--budget", "120"]).budget == 120.0
    assert build_parser().parse_args(["capacity", "--budget", "2m"]).budget == 120.0
    assert build_parser().parse_args(["capacity"]).budget == 300.0  # the default, 5m


@pytest.mark.parametrize(
    ("text", "us"),
    [("1", 1_000_000), ("250ms", 250_000), ("500us", 500), ("500µs", 500), ("1.5m", 90_000_000),
     ("1h", 3_600_000_000), ("0", 0)],
)  # fmt: skip
def test_one_parser_in_microseconds(text: str, us: int) -> None:
    assert parse_duration_us("--x", text) == us
    assert parse_duration("--x", text) == us / 1e6


@pytest.mark.parametrize("text", ["", "s", "1d", "1 fortnight", "1e3", "inf", "nan", "--1"])
def test_one_parser_refuses(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--x: .* is not a duration"):
        parse_duration("--x", text)


def test_too_long_is_refused_not_overflowed() -> None:
    with pytest.raises(UsageError, match=r"^--x: .* is longer than 7 days"):
        parse_duration("--x", "9" * 400)


@pytest.mark.parametrize(
    ("text", "at_s", "duration_s"),
    [
        ("pause@5:2", 5.0, 2.0),
        ("pause@500ms:2s", 0.5, 2.0),
        ("restart@1m:1.5", 60.0, 1.5),
        ("kill@0", 0.0, 0.0),
    ],
)
def test_fault_times_are_durations_by_the_same_rule(text: str, at_s: float, duration_s: float) -> None:
    fault = parse_fault(text)
    assert (fault.at_s, fault.duration_s) == (at_s, duration_s)


@pytest.mark.parametrize(("text", "why"), [("pause@1x:1", "'1x' is not a duration"), ("pause@-1:1", ">= 0")])
def test_a_bad_fault_time_is_refused_naming_the_fault(text: str, why: str) -> None:
    with pytest.raises(UsageError, match=rf"^--fault: '{text}' is not KIND@SECONDS\[:DURATION\] .*{why}"):
        parse_fault(text)
