"""Durations, read by one rule everywhere (docs/scenarios.md, "Durations"): every duration flag, the
duration strings of scenario files and the times of --fault."""

from __future__ import annotations

import re

from etcdbench.errors import UsageError

MAX_DURATION_S = 7 * 24 * 3600.0  # a week-long soak at most (docs/scenarios.md, "Limits")

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)?\s*$")
_UNIT_US = {"us": 1, "µs": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}
DURATION_HINT = "seconds (10), or with a unit (250ms, 90s, 30m, 1h)"


def parse_duration(flag: str, text: str) -> float:
    """Every duration etcdbench reads, flag or scenario string, by one rule -> seconds.

    A bare number is seconds ('10', '0.5'); or a number with one of the units us, µs, ms, s, m, h
    ('500us', '250ms', '90s', '30m', '1.5h'). A sign is kept, so that RunConfig names a negative value.
    """
    m = _DURATION.match(text)
    if not m:
        reason = f"{text!r} is not a duration: {DURATION_HINT}"
        raise UsageError(f"{flag}: {reason}", reason=reason)
    us = float(m.group(1)) * _UNIT_US[m.group(2) or "s"]
    if not abs(us) <= MAX_DURATION_S * 1e6:  # a 400-digit number is a float infinity
        reason = f"{text!r} is longer than {MAX_DURATION_S / 86400:g} days"
        raise UsageError(f"{flag}: {reason}", reason=reason)
    return us / 1e6


def parse_duration_us(flag: str, text: str) -> int:
    """parse_duration in whole microseconds: '1s', '250ms', '500us', '2m', '1' (a second)."""
    return round(parse_duration(flag, text) * 1e6)
