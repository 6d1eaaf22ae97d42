"""compare: matching, ratios, noise and warnings, from the committed results files (no etcd)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from cli_console import as_text, run_cli, snapshot
from paths import RESULTS

from etcdbench.metrics.latency import LatencyRecorder
from etcdbench.report.compare import (
    FIGURES,
    Source,
    change,
    compare,
    latency_noise,
    percentile_interval,
    render,
    source_names,
    summary_lines,
)
from etcdbench.results.io import load
from etcdbench.results.model import ResultsFile, Run, Summary


def results(name: str) -> dict[str, Any]:
    """A committed results file as a document, to edit before it is typed (`sources`, `first_run`)."""
    return load(RESULTS / name)


def first_run(doc: dict[str, Any]) -> Run:
    return Run.from_dict(doc["runs"][0])


def slower() -> dict[str, Any]:
    """v3+protobuf @500/s again, but with the latencies and CPU the v3+json @500/s run measured."""
    new = results("v3-protobuf-500.json")
    json_run = results("v3-json-500.json")["runs"][0]
    new["runs"][0]["latency_us"] = copy.deepcopy(json_run["latency_us"])
    new["runs"][0]["cpu"] = copy.deepcopy(json_run["cpu"])
    return new


def sources(*docs: tuple[str, dict[str, Any]]) -> list[Source]:
    return [Source(name, Path(f"{name}.json"), ResultsFile.from_dict(doc)) for name, doc in docs]


def figure(name: str) -> Any:
    return next(f for f in FIGURES if f.name == name)


def test_runs_match_on_what_was_measured_and_the_rest_are_listed() -> None:
    c = compare(
        sources(
            ("A", results("v3-protobuf-500.json")),
            ("B", slower()),
            ("C", results("v3-json-500.json")),
        )
    )
    assert [m.label for m in c.matches] == ["v3+protobuf pod @500/s"]
    assert [r is not None for r in c.matches[0].runs] == [True, True, False]
    assert c.unmatched == ("C: v3+json pod @500/s (no matching run in A)",)


def test_no_match_at_all_lists_both_sides() -> None:
    c = compare(sources(("A", results("v3-protobuf-500.json")), ("B", results("v3-protobuf-2000.json"))))
    assert c.matches == ()
    assert c.unmatched == (
        "A: v3+protobuf pod @500/s (no matching run in the other files)",
        "B: v3+protobuf pod @2000/s (no matching run in A)",
    )
    assert "no run matched: nothing to compare" in as_text(render(c), width=200)


def test_ratios_and_directions_against_the_baseline() -> None:
    base, new = first_run(results("v3-protobuf-500.json")), first_run(slower())
    p99 = change(figure("watch p99"), base, new)
    assert (p99.base, p99.new) == (2909, 3457)
    assert p99.ratio == pytest.approx(3457 / 2909)
    assert p99.direction == "worse"
    assert p99.noise is not None and not p99.noise.within
    cpu = change(figure("cpu watcher"), base, new)
    assert cpu.ratio == pytest.approx(0.223 / 0.152) and cpu.direction == "worse"
    assert change(figure("watch events/s"), base, new).direction == "same"
    # the v3+json run was faster at p99.9, but only within noise
    p999 = change(figure("watch p99.9"), base, new)
    assert p999.direction == "better" and p999.noise is not None and p999.noise.within
    assert change(figure("watch p99"), new, base).direction == "better"


def test_higher_is_better_for_rates() -> None:
    base = results("v3-protobuf-500.json")
    new = copy.deepcopy(base)
    new["runs"][0]["watch_events_per_s"] = 400.0
    c = change(figure("watch events/s"), first_run(base), first_run(new))
    assert c.ratio == pytest.approx(0.8) and c.direction == "worse"


def test_summary_line_is_hyperfine_style() -> None:
    c = compare(sources(("A", results("v3-protobuf-500.json")), ("B", slower())))
    assert summary_lines(c) == [
        "v3+protobuf pod @500/s: B's watch p99 was 1.19x higher than A's (3.46 ms vs 2.91 ms)"
    ]
    back = compare(sources(("B", slower()), ("A", results("v3-protobuf-500.json"))))
    assert summary_lines(back) == [
        "v3+protobuf pod @500/s: A's watch p99 was 1.19x lower than B's (2.91 ms vs 3.46 ms)"
    ]
    same = compare(sources(("A", results("v3-protobuf-500.json")), ("B", results("v3-protobuf-500.json"))))
    assert summary_lines(same) == [
        "v3+protobuf pod @500/s: B's watch p99 was the same as A's (2.91 ms vs 2.91 ms)"
    ]


def test_within_noise_is_said_in_the_summary() -> None:
    base = results("v3-protobuf-500.json")
    new = copy.deepcopy(base)
    w = new["runs"][0]["latency_us"]["watch"]
    w["p99"] = 3100  # inside the baseline's own 95% interval for p99 (2535..3159 us)
    (line,) = summary_lines(compare(sources(("A", base), ("B", new))))
    assert line.endswith("was 1.07x higher than A's (3.10 ms vs 2.91 ms), within run-to-run noise")


def ranks_to_values(summary: Summary) -> list[int]:
    """Every recorded value, in order, expanded from the histogram: rank r is out[r - 1]."""
    assert summary.hdr is not None
    hist = LatencyRecorder.decode(summary.hdr).hist
    out: list[int] = []
    for item in hist.get_recorded_iterator():
        out += [int(hist.get_highest_equivalent_value(item.value_iterated_to))] * int(
            item.count_added_in_this_iter_step
        )
    return out


@pytest.mark.parametrize(("key", "p"), [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)])
def test_percentile_interval_is_the_order_statistics_at_the_rank_bounds(key: str, p: float) -> None:
    summary = first_run(results("v3-protobuf-500.json")).latency_us.watch
    values = ranks_to_values(summary)
    n = len(values)
    assert n == summary.count == 5000
    half = 1.96 * math.sqrt(n * p * (1 - p))
    lo, hi = max(1, math.floor(n * p - half)), min(n, math.ceil(n * p + half))
    interval = percentile_interval(summary, p * 100)
    assert interval == (values[lo - 1], values[hi - 1])
    assert interval[0] <= getattr(summary, key) <= interval[1]


def test_sample_intervals_exactly() -> None:
    watch = first_run(results("v3-protobuf-500.json")).latency_us.watch
    assert percentile_interval(watch, 50.0) == (1075, 1090)
    assert percentile_interval(watch, 99.0) == (2535, 3159)
    assert percentile_interval(watch, 99.9) == (5047, 7967)  # at n = 5000 it reaches the maximum
    nothing = Summary(
        p50=None, p90=None, p99=None, p999=None, max=None, mean=None, count=0, out_of_range=0, hdr=""
    )
    assert percentile_interval(nothing, 99.0) is None


def test_noise_rule() -> None:
    base_doc, new_doc = results("v3-protobuf-500.json"), slower()
    base, new = first_run(base_doc), first_run(new_doc)
    p99 = latency_noise(base, new, "watch", "p99")
    assert p99 is not None and not p99.within
    assert p99.reason == "95% intervals [2.54 ms, 3.16 ms] and [3.27 ms, 3.73 ms] do not overlap"
    p999 = latency_noise(base, new, "watch", "p999")
    assert p999 is not None and p999.within and p999.reason.endswith("overlap")
    same = latency_noise(base, base, "watch", "p99")
    assert same is not None and same.within and "HDR precision" in same.reason
    assert latency_noise(base, new, "watch", "max") is None  # no interval for a maximum
    new_doc["runs"][0]["latency_us"]["watch"]["hdr"] = ""
    assert latency_noise(base, first_run(new_doc), "watch", "p99") is None


def test_environment_and_parameter_differences_are_warned_with_what_differs() -> None:
    base = results("v3-protobuf-500.json")
    new = slower()
    new["environment"]["etcd"]["server_version"] = "3.4.23"
    new["environment"]["host"] = "ci-runner"  # hosted runners: a new name every job, never a warning
    new["environment"]["cpu_model"] = "AMD EPYC 9654"
    new["environment"]["cpu_count"] = 8
    new["environment"]["etcdbench_version"] = "0.2.0"
    new["runs"][0]["config"]["duration_s"] = 30.0
    new["complete"] = False
    c = compare(sources(("A", base), ("B", new)))
    assert c.warnings == (
        "B is incomplete: its run was interrupted or is still going",
        "environments differ: etcd server_version is 3.5.1 in A but 3.4.23 in B",
        "environments differ: cpu_model is AMD EPYC in A but AMD EPYC 9654 in B",
        "environments differ: cpu_count is 2 in A but 8 in B",
        "environments differ: etcdbench_version is 0.1.0 in A but 0.2.0 in B",
        "v3+protobuf pod @500/s: run parameters differ: duration_s is 10.0 in A but 30.0 in B",
    )
    shown = as_text(render(c), width=200)
    assert "warning: environments differ: etcd server_version is 3.5.1 in A but 3.4.23 in B" in shown


def test_table_shows_values_ratios_and_directions() -> None:
    base = results("v2-json-poll-1000.json")
    new = copy.deepcopy(base)
    new["runs"][0]["counters"]["missed"] = 0
    shown = as_text(render(compare(sources(("A", new), ("B", base)))), width=200)
    # watch p99 1.07 s in both: "same"; missed 0 -> 3,013: "+3,013 worse" (a difference, not an infinite
    # ratio); the summary line says B's watch p99 was the same as A's.
    snapshot("compare-table.txt", shown)


def test_source_names_are_stems_unless_two_clash() -> None:
    assert source_names([Path("a/x.json"), Path("b/y.json")]) == ["x", "y"]
    assert source_names([Path("a/x.json"), Path("b/x.json")]) == ["a/x.json", "b/x.json"]


def test_workload_and_watchers_are_part_of_the_match_with_defaults_for_older_files() -> None:
    old = results("v3-protobuf-500.json")  # written before `workload` and `watchers` existed
    same = results("v3-protobuf-500.json")
    same["runs"][0].update(workload="update", watchers=1)
    churn = results("v3-protobuf-500.json")
    churn["runs"][0].update(workload="churn", watchers=1, label="v3+protobuf pod @500/s churn")
    three = results("v3-protobuf-500.json")
    three["runs"][0].update(workload="update", watchers=3, label="v3+protobuf pod @500/s x3 watchers")
    c = compare(sources(("A", old), ("B", same), ("C", churn), ("D", three)))
    assert [[r is not None for r in m.runs] for m in c.matches] == [[True, True, False, False]]
    assert c.unmatched == (
        "C: v3+protobuf pod @500/s churn (no matching run in A)",
        "D: v3+protobuf pod @500/s x3 watchers (no matching run in A)",
    )
    assert "matched by backend, encoding, kind, v2_watch, target_rate, workload, watchers" in as_text(
        render(c), width=200
    )


# --- --json and --markdown: the whole output for fixed inputs ----------------------------------------

GATE = ["--fail-if", "watch.p99 > +10%", "--fail-if", "missed > 0"]


@pytest.fixture
def three_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """base (v3+protobuf @500/s), slower (the same with v3+json's latencies), other (v3+json: unmatched);
    written in the working directory so that the paths in the output are the names as given."""
    slow = slower()
    slow["environment"]["host"] = "another-runner"  # a host name never warns
    slow["environment"]["cpu_model"] = "Other CPU"
    docs = {"base": results("v3-protobuf-500.json"), "slower": slow, "other": results("v3-json-500.json")}
    for name, doc in docs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    monkeypatch.chdir(tmp_path)
    return [f"{name}.json" for name in docs]


def test_markdown_output_is_tables_warnings_summary_and_gate(three_files: list[str]) -> None:
    code, out, err = run_cli("compare", *three_files, "--markdown", *GATE, width=80)
    assert (code, err) == (1, "")  # watch p99 got worse beyond noise: the gate breaks in markdown too
    snapshot("compare.md", out)
    assert "| watch p99 | ↓ | 2.91 ms | 3.46 ms | **x1.19 worse** | - | absent |" in out
    assert "host" not in out


def test_json_output_parses_with_values_changes_and_gate(three_files: list[str]) -> None:
    code, out, err = run_cli("compare", *three_files, "--json", *GATE, width=80)
    assert (code, err) == (1, "")
    snapshot("compare.json", out)
    doc = json.loads(out)
    assert (doc["format"], doc["version"], doc["baseline"]) == ("etcdbench-compare", 1, "base")
    assert [f["name"] for f in doc["files"]] == ["base", "slower", "other"]
    assert doc["warnings"] == ["environments differ: cpu_model is AMD EPYC in base but Other CPU in slower"]
    (match,) = doc["matches"]
    assert match["present"] == [True, True, False] and match["verdicts"] == ["PASS", "PASS", None]
    p99 = next(f for f in match["figures"] if f["path"] == "latency_us.watch.p99")
    assert p99["values"] == [2909, 3457, None]
    assert p99["changes"][0]["direction"] == "worse" and p99["changes"][0]["noise"]["within"] is False
    assert p99["changes"][1] is None
    assert doc["unmatched"] == ["other: v3+json pod @500/s (no matching run in base)"]
    gate = doc["gate"]
    assert (gate["broken"], gate["total"]) == (1, 2)
    assert [(c["rule"], c["broken"]) for c in gate["checks"]] == [
        ("watch.p99 > +10%", True),
        ("missed > 0", False),
    ]


def test_json_without_rules_has_no_gate_and_exits_0(three_files: list[str]) -> None:
    code, out, _ = run_cli("compare", *three_files[:2], "--json")
    assert code == 0 and json.loads(out)["gate"] is None


def test_json_and_markdown_exclude_each_other(three_files: list[str]) -> None:
    code, _, err = run_cli("compare", *three_files[:2], "--json", "--markdown")
    assert code == 2 and "not allowed with argument" in err
