"""The regression gate: `--fail-if 'METRIC OP VALUE'` rules checked on every matched run.

    METRIC  an alias (watch.p99, put.p99, missed, watch_events_per_s, cpu.watcher, ...) or a dotted
            path to a number in a run (latency_us.watch.p99, counters.missed, ...)
    OP      >  <  >=  <=
    VALUE   +10% / -5%: the new value's change relative to the baseline's
            250ms / 1s / 500us: an absolute latency (latencies need a unit)
            0 / 0.9 / 495: an absolute number for anything else

A rule states what is *not* allowed: it breaks when `new OP VALUE` is true. A relative rule on a latency
percentile does not break when the difference is within run-to-run noise (compare.latency_noise).
The full description is docs/compare-and-gate.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from etcdbench.config.run import parse_duration_us
from etcdbench.errors import UsageError
from etcdbench.report.compare import (
    MATCHED_BY,
    Comparison,
    Noise,
    fmt_value,
    json_value,
    latency_noise,
    pairs,
    value_at,
)
from etcdbench.results.model import Run

OPERATORS = (">=", "<=", ">", "<")
LATENCIES = ("watch", "put", "schedule_slip")
LATENCY_STATS = ("p50", "p90", "p99", "p999", "max", "mean")
COUNTERS = (  # bare names for counters.*; any other counters.NAME is reachable by its path
    "attempted",
    "written",
    "received",
    "missed",
    "duplicates",
    "out_of_order",
    "relists",
    "errors",
    "unacknowledged_seen",
    "decode_errors",
    "foreign_events",
    "stream_reopens",
    "writes",
    "missed_expiries",
    "expiries_received",
    "expiries_pending",
)


def _aliases() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for lat in LATENCIES:
        short = "slip" if lat == "schedule_slip" else lat
        for stat in (*LATENCY_STATS, "count", "out_of_range"):
            out[f"{lat}.{stat}"] = out[f"{short}.{stat}"] = ("latency_us", lat, stat)
        out[f"{lat}.p99.9"] = out[f"{short}.p99.9"] = ("latency_us", lat, "p999")
    for name in COUNTERS:
        out[name] = ("counters", name)
    return out


ALIASES = _aliases()
_RULE = re.compile(r"^\s*(?P<metric>[^\s<>=!]*)\s*(?P<op>[<>=!]*)\s*(?P<value>.*?)\s*$")
_PATH = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_RELATIVE = re.compile(r"^(?P<sign>[+-]?)(?P<num>\d+(?:\.\d+)?)\s*%$")
_DURATION = re.compile(r"^\d+(?:\.\d+)?\s*[a-zµ]+$")
_EXAMPLES = "e.g. watch.p99, put.p99, missed, watch_events_per_s, cpu.watcher"


def is_latency(path: tuple[str, ...]) -> bool:
    """A latency in microseconds: thresholds on it need a unit, and its percentiles have noise."""
    return len(path) == 3 and path[0] == "latency_us" and path[2] in LATENCY_STATS


def unit_of(path: tuple[str, ...]) -> str:
    """How compare.fmt_value shows the figure at `path`."""
    if is_latency(path):
        return "us"
    if path[0] in ("counters", "latency_us") or path == ("object_bytes",):
        return "count"
    if path[0] == "cpu":
        return "cores"
    return "per_s" if path[-1].endswith(("_per_s", "_rate", "_achieved")) else "number"


@dataclass(frozen=True)
class Rule:
    text: str
    metric: str  # as written
    path: tuple[str, ...]
    op: str
    relative: float | None  # fraction of the baseline: +10% -> 0.10
    absolute: float | None  # in the file's units (microseconds for latencies)

    @property
    def unit(self) -> str:
        return unit_of(self.path)


def parse_rule(text: str) -> Rule:
    """One `--fail-if` expression, or a UsageError naming --fail-if and what is wrong."""

    def bad(why: str) -> UsageError:
        return UsageError(f"--fail-if {text!r}: {why}")

    m = _RULE.match(text)
    if m is None or not m["metric"] or not m["op"]:
        raise bad("expected METRIC OP VALUE, e.g. 'watch.p99 > +10%' (OP is one of > < >= <=)")
    metric, op, value = m["metric"], m["op"], m["value"]
    if op not in OPERATORS:
        raise bad(f"unknown operator {op!r}; use one of > < >= <=")
    path = ALIASES.get(metric)
    if path is None:
        if not _PATH.match(metric):
            raise bad(f"{metric!r} is not a metric ({_EXAMPLES}, or a dotted path in a run)")
        path = tuple(metric.split("."))
    if not value:
        raise bad(f"missing VALUE after {op!r} (e.g. +10%, -5%, 0, 250ms)")
    latency = is_latency(path)

    rel = _RELATIVE.match(value)
    if rel is not None:
        fraction = float(rel["num"]) / 100
        return Rule(text, metric, path, op, -fraction if rel["sign"] == "-" else fraction, None)
    if _DURATION.match(value):
        if not latency:
            raise bad(f"{value!r} is a duration, but {metric} is not a latency")
        try:
            return Rule(text, metric, path, op, None, float(parse_duration_us("--fail-if", value)))
        except UsageError:
            raise bad(f"{value!r} is not a duration (use us, ms, s or m, e.g. 250ms)") from None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise bad(f"{value!r} is not a VALUE: use a change (+10%, -5%), a number, or a latency (250ms)")
    if latency:
        raise bad(f"a latency threshold needs a unit: {value}ms, {value}s or {value}us?")
    return Rule(text, metric, path, op, None, number)


@dataclass(frozen=True)
class Check:
    """One rule on one matched run in one file, against the baseline."""

    rule: Rule
    label: str
    base_name: str
    new_name: str
    base: float | None
    new: float | None
    broken: bool
    why: str  # what was compared, in words
    noise: Noise | None  # set when a crossing was judged to be within run-to-run noise


def _holds(left: float, op: str, right: float) -> bool:
    left, right = round(left, 9), round(right, 9)  # (new - base) / base is not exact in binary
    return {">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right}[op]


def _relative_change(base: float, new: float) -> float:
    if base == 0:
        return 0.0 if new == 0 else math.copysign(math.inf, new)
    return (new - base) / base


def _pct(x: float) -> str:
    return f"{x:+.0%}" if math.isinf(x) else f"{x:+.1%}"


def check_rule(
    rule: Rule,
    label: str,
    base_run: Run,
    new_run: Run,
    base_name: str,
    new_name: str,
) -> Check:
    base, new = value_at(base_run, rule.path), value_at(new_run, rule.path)

    def result(broken: bool, why: str, noise: Noise | None = None) -> Check:
        return Check(rule, label, base_name, new_name, base, new, broken, why, noise)

    if new is None or (rule.relative is not None and base is None):
        missing = new_name if new is None else base_name
        return result(True, f"no value in {missing}: the rule cannot hold")
    if rule.relative is not None:
        assert base is not None
        delta = _relative_change(base, new)
        crossed = _holds(delta, rule.op, rule.relative)
        why = f"change {_pct(delta)}"
        if crossed and rule.path[0] == "latency_us":
            noise = latency_noise(base_run, new_run, rule.path[1], rule.path[2])
            if noise is not None and noise.within:
                return result(False, f"{why}, within run-to-run noise: {noise.reason}", noise)
            if noise is not None:
                why += f"; {noise.reason}"
        return result(crossed, why)
    assert rule.absolute is not None
    return result(_holds(new, rule.op, rule.absolute), f"limit {fmt_value(rule.absolute, rule.unit)}")


def _present(run: Run, path: tuple[str, ...]) -> bool:
    """The run has this field, as a number or as null (a figure nothing was recorded for)."""
    found, node = json_value(run, path)
    if not found:
        return False
    return node is None or (isinstance(node, int | float) and not isinstance(node, bool))


def evaluate(rules: list[Rule], comparison: Comparison) -> list[Check]:
    """Every rule on every matched run of every file after the first, against the first.

    A rule whose metric no run of any file has is a UsageError (a typo, most likely), not a broken rule.
    """
    runs = [r for s in comparison.sources for r in s.results.runs]
    for rule in rules:
        if runs and not any(_present(r, rule.path) for r in runs):
            raise UsageError(
                f"--fail-if {rule.text!r}: unknown metric {rule.metric!r}: no run has a number at "
                f"{'.'.join(rule.path)} ({_EXAMPLES}; see docs/compare-and-gate.md)"
            )
    checks = []
    base = comparison.baseline
    for label, base_run, run, name in pairs(comparison):
        for rule in rules:
            checks.append(check_rule(rule, label, base_run, run, base.name, name))
    if rules and not checks:
        raise UsageError(
            f"--fail-if: no run in {', '.join(s.name for s in comparison.sources[1:])} matches a run in "
            f"{base.name} ({MATCHED_BY}): nothing to check"
        )
    return checks


def check_line(c: Check) -> Text:
    unit = c.rule.unit
    text = Text()
    text.append("BROKEN" if c.broken else "ok    ", style="bold red" if c.broken else "green")
    text.append(
        f" {c.rule.text.strip()}: {c.label}: {c.base_name} {fmt_value(c.base, unit)} -> "
        f"{c.new_name} {fmt_value(c.new, unit)} ({c.why})"
    )
    return text


def report(checks: list[Check]) -> list[Text]:
    lines = [check_line(c) for c in checks]
    broken = sum(c.broken for c in checks)
    if broken:
        lines.append(Text(f"gate: {broken} of {len(checks)} checks broken", style="bold red"))
    else:
        lines.append(Text(f"gate: all {len(checks)} checks hold", style="bold green"))
    return lines


def gate_dict(checks: list[Check]) -> dict[str, Any]:
    """The gate's checks as JSON-ready data (`compare --json`); values in the files' units."""
    return {
        "checks": [
            {
                "rule": c.rule.text.strip(),
                "run": c.label,
                "base_file": c.base_name,
                "file": c.new_name,
                "base": c.base,
                "value": c.new,
                "broken": c.broken,
                "why": c.why,
                "within_noise": c.noise is not None and c.noise.within,
            }
            for c in checks
        ],
        "broken": sum(c.broken for c in checks),
        "total": len(checks),
    }


def gate_markdown(checks: list[Check]) -> list[str]:
    """The gate as markdown: a heading with the outcome, then one list item per check."""
    broken = sum(c.broken for c in checks)
    head = (
        f"gate: {broken} of {len(checks)} checks broken" if broken else f"gate: all {len(checks)} checks hold"
    )
    lines = ["", f"**{head}**", ""]
    for c in checks:
        unit = c.rule.unit
        lines.append(
            f"- {'**BROKEN**' if c.broken else 'ok'} `{c.rule.text.strip()}`: {c.label}: {c.base_name} "
            f"{fmt_value(c.base, unit)} -> {c.new_name} {fmt_value(c.new, unit)} ({c.why})"
        )
    return lines
