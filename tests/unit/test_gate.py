"""The --fail-if gate: grammar, exit codes, both values named, and the noise rule (no etcd)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from cli_console import run_cli
from paths import RESULTS

from etcdbench.errors import UsageError
from etcdbench.report.gate import parse_rule
from etcdbench.results.io import load


def results(name: str) -> dict[str, Any]:
    return load(RESULTS / name)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """base: v3+protobuf @500/s as committed; slower: the same run with v3+json's latencies and CPU."""
    base = results("v3-protobuf-500.json")
    slower = copy.deepcopy(base)
    json_run = results("v3-json-500.json")["runs"][0]
    slower["runs"][0]["latency_us"] = json_run["latency_us"]
    slower["runs"][0]["cpu"] = json_run["cpu"]
    lossy = copy.deepcopy(base)
    lossy["runs"][0]["counters"].update(missed=5, relists=1, received=5995)
    lossy["runs"][0]["watch_events_per_s"] = 470.0
    paths = {}
    for name, doc in {"base": base, "slower": slower, "lossy": lossy}.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(doc))
    return paths


# --- grammar ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "op", "relative", "absolute"),
    [
        ("watch.p99 > +10%", ("latency_us", "watch", "p99"), ">", 0.10, None),
        ("watch_events_per_s < -5%", ("watch_events_per_s",), "<", -0.05, None),
        ("missed > 0", ("counters", "missed"), ">", None, 0.0),
        ("watch.p99 >= 250ms", ("latency_us", "watch", "p99"), ">=", None, 250_000.0),
        ("put.p99.9<=1s", ("latency_us", "put", "p999"), "<=", None, 1_000_000.0),
        ("slip.p99 > 500us", ("latency_us", "schedule_slip", "p99"), ">", None, 500.0),
        ("cpu.watcher > 0.9", ("cpu", "watcher"), ">", None, 0.9),
        ("latency_us.watch.p50 > 12.5%", ("latency_us", "watch", "p50"), ">", 0.125, None),
        ("  relists > 0  ", ("counters", "relists"), ">", None, 0.0),
    ],
)
def test_rules_parse(
    text: str, path: tuple[str, ...], op: str, relative: float | None, absolute: float | None
) -> None:
    rule = parse_rule(text)
    assert (rule.path, rule.op, rule.relative, rule.absolute) == (path, op, relative, absolute)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("watch.p99", "expected METRIC OP VALUE"),
        ("> +10%", "expected METRIC OP VALUE"),
        ("watch p99 > 1ms", "expected METRIC OP VALUE"),
        ("watch.p99 == 1ms", "unknown operator '=='"),
        ("watch.p99 >> 10%", "unknown operator '>>'"),
        ("watch.p99 >", "missing VALUE after '>'"),
        ("watch.p99 > 250", "a latency threshold needs a unit"),
        ("missed > 1s", "'1s' is a duration, but missed is not a latency"),
        ("watch.p99 > 5 fortnights", "'5 fortnights' is not a duration"),
        ("missed > lots", "'lots' is not a VALUE"),
        ("watch.p99 > ten%", "'ten%' is not a VALUE"),
        ("watch.p99 > 5parsecs", "'5parsecs' is not a duration"),
        ("watch.p99 > nan", "is not a VALUE"),
        ("watch..p99 > 1ms", "is not a metric"),
    ],
)
def test_malformed_rules_are_one_line_naming_fail_if(text: str, why: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_rule(text)
    message = str(info.value)
    assert message.startswith(f"--fail-if {text!r}: ")
    assert why in message
    assert "\n" not in message


def test_malformed_rule_exits_2_before_reading_files(tmp_path: Path) -> None:
    code, out, err = run_cli("compare", "nope.json", "nope.json", "--fail-if", "watch.p99 ~ 3")
    assert code == 2 and out == ""
    assert err.startswith("error: --fail-if 'watch.p99 ~ 3': ") and len(err.strip().splitlines()) == 1


def test_unknown_metric_is_a_usage_error(files: dict[str, Path]) -> None:
    code, _, err = run_cli(
        "compare", str(files["base"]), str(files["slower"]), "--fail-if", "watch.p98 > +1%"
    )
    assert code == 2
    assert err.startswith("error: --fail-if 'watch.p98 > +1%': unknown metric 'watch.p98'")


def gate(files: dict[str, Path], new: str, *rules: str) -> tuple[int, str]:
    """`compare base NEW --fail-if RULE...`: the exit code and stdout."""
    code, out, _ = run_cli(
        "compare", str(files["base"]), str(files[new]), *(a for r in rules for a in ("--fail-if", r))
    )
    return code, out


# --- verdicts ---------------------------------------------------------------------------------------


def test_all_rules_hold_exit_0(files: dict[str, Path]) -> None:
    code, out = gate(files, "base", "watch.p99 > +10%", "watch_events_per_s < -5%", "missed > 0")
    assert code == 0, out
    assert "gate: all 3 checks hold" in out
    assert "BROKEN" not in out


def test_broken_rules_exit_1_naming_rule_and_both_values(files: dict[str, Path]) -> None:
    code, out = gate(files, "slower", "watch.p99 > +10%", "watch_events_per_s < -5%", "cpu.watcher > 0.2")
    assert code == 1
    lines = out.splitlines()
    p99 = next(line for line in lines if "watch.p99 > +10%" in line)
    assert p99.startswith("BROKEN watch.p99 > +10%: v3+protobuf pod @500/s: base 2.91 ms -> slower 3.46 ms")
    assert "change +18.8%" in p99 and "do not overlap" in p99
    rate = next(line for line in lines if "watch_events_per_s" in line)
    assert rate.startswith("ok ") and "base 500 -> slower 500 (change +0.0%)" in rate
    cpu = next(line for line in lines if "cpu.watcher" in line)
    assert cpu.startswith("BROKEN cpu.watcher > 0.2:") and "base 0.15 -> slower 0.22 (limit 0.20)" in cpu
    assert lines[-1] == "gate: 2 of 3 checks broken"


def test_counter_and_rate_rules(files: dict[str, Path]) -> None:
    code, out = gate(files, "lossy", "missed > 0", "watch_events_per_s < -5%", "relists > +10%")
    assert code == 1
    assert "BROKEN missed > 0: v3+protobuf pod @500/s: base 0 -> lossy 5 (limit 0)" in out
    assert (
        "BROKEN watch_events_per_s < -5%: v3+protobuf pod @500/s: base 500 -> lossy 470 (change -6.0%)" in out
    )
    # a baseline of 0 makes any increase infinite
    assert "BROKEN relists > +10%: v3+protobuf pod @500/s: base 0 -> lossy 1 (change +inf%)" in out


def test_exactly_at_the_limit_holds(files: dict[str, Path]) -> None:
    # 470 is exactly -6% of 500: '< -6%' is not true, '<= -6%' is
    code, out, _ = run_cli(
        "compare", str(files["base"]), str(files["lossy"]), "--fail-if", "watch_events_per_s < -6%"
    )
    assert code == 0, out
    code, _, _ = run_cli(
        "compare", str(files["base"]), str(files["lossy"]), "--fail-if", "watch_events_per_s <= -6%"
    )
    assert code == 1


def test_latency_difference_within_noise_does_not_break(files: dict[str, Path]) -> None:
    # slower's p99.9 is 5.38 ms against 5.47 ms (-1.6%), but the 95% rank intervals overlap
    code, out, _ = run_cli(
        "compare", str(files["base"]), str(files["slower"]), "--fail-if", "watch.p999 < -1%"
    )
    assert code == 0, out
    line = next(line for line in out.splitlines() if "watch.p999" in line)
    assert line.startswith("ok ")
    assert "base 5.47 ms -> slower 5.38 ms (change -1.6%, within run-to-run noise: 95% intervals" in line


def test_absolute_latency_thresholds_ignore_noise(files: dict[str, Path]) -> None:
    code, out, _ = run_cli(
        "compare", str(files["base"]), str(files["slower"]), "--fail-if", "watch.p999 > 5ms"
    )
    assert code == 1
    assert (
        "BROKEN watch.p999 > 5ms: v3+protobuf pod @500/s: base 5.47 ms -> slower 5.38 ms (limit 5.00 ms)"
        in out
    )


def test_a_figure_with_no_value_breaks_the_rule(files: dict[str, Path], tmp_path: Path) -> None:
    external = json.loads(files["base"].read_text())
    external["runs"][0]["cpu"]["etcd"] = None  # an external etcd: its CPU is not known
    path = tmp_path / "external.json"
    path.write_text(json.dumps(external))
    code, out, _ = run_cli("compare", str(files["base"]), str(path), "--fail-if", "cpu.etcd > +10%")
    assert code == 1
    assert (
        "BROKEN cpu.etcd > +10%: v3+protobuf pod @500/s: base 0.36 -> external - (no value in external" in out
    )


def test_every_later_file_is_checked_against_the_first(files: dict[str, Path]) -> None:
    code, out, _ = run_cli(
        "compare",
        str(files["base"]),
        str(files["slower"]),
        str(files["lossy"]),
        "--fail-if",
        "watch.p50 > +10%",
    )
    assert code == 1
    assert "BROKEN watch.p50 > +10%: v3+protobuf pod @500/s: base 1.08 ms -> slower 1.28 ms" in out
    assert "ok     watch.p50 > +10%: v3+protobuf pod @500/s: base 1.08 ms -> lossy 1.08 ms" in out
    assert out.splitlines()[-1] == "gate: 1 of 2 checks broken"


def test_gate_with_nothing_matched_is_a_usage_error() -> None:
    code, out, err = run_cli(
        "compare",
        str(RESULTS / "v3-protobuf-500.json"),
        str(RESULTS / "v3-json-500.json"),
        "--fail-if",
        "missed > 0",
    )
    assert code == 2
    assert "no run matched" in out
    assert err.startswith("error: --fail-if: no run in v3-json-500 matches a run in v3-protobuf-500")


def test_relative_change_is_exact_in_decimal() -> None:
    # 1.1 * 2909 is not exact in binary; a value exactly +10% must not count as more than +10%
    base = results("v3-protobuf-500.json")["runs"][0]
    from etcdbench.report.gate import check_rule

    new = copy.deepcopy(base)
    new["latency_us"]["watch"]["mean"] = base["latency_us"]["watch"]["mean"] * 1.1
    check = check_rule(parse_rule("watch.mean > +10%"), "r", base, new, "a", "b")
    assert not check.broken
    assert math.isclose(check.new or 0, 1267.2)


def _in_document(doc: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return False, None
        doc = doc[key]
    return True, doc


def _as_json(value: Any) -> Any:
    """A value of the typed run as the file writes it (records inside lists and objects too)."""
    return json.loads(json.dumps(value, default=lambda record: record.to_dict()))


def _paths(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for key, value in doc.items():
        out += _paths(value, (*prefix, key)) if isinstance(value, dict) else [(*prefix, key)]
    return out


@pytest.mark.parametrize(
    "name", ["v3-protobuf-500.json", "v2-json-poll-1000.json", "ci-baseline-k8s-1.6.json"]
)
def test_rules_read_the_typed_run_at_the_keys_the_file_has(name: str) -> None:
    """A rule's dotted path finds in the typed run exactly what it names in the file, absent keys too."""
    from etcdbench.report.compare import json_value
    from etcdbench.report.gate import ALIASES
    from etcdbench.results.model import Run

    for doc in results(name)["runs"]:
        run = Run.from_dict(doc)
        missing = [("latency_us", "watch", "p95"), ("etcd", "max", "slow_watchers"), ("memory",), ("nope",)]
        for path in [*_paths(doc), *ALIASES.values(), *missing]:
            found, value = json_value(run, path)
            assert (found, _as_json(value)) == _in_document(doc, path)
