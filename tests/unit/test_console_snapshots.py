"""Whole renderings compared with committed text in tests/data/snapshots/: what `show` prints for every
committed sample and results file, the matrix table, the capacity view and `compare`. Any changed
character fails; ETCDBENCH_UPDATE_SNAPSHOTS=1 rewrites the files (a new sample gets its file the same
way), and the diff is the review of what a user will see."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_console import as_text, run_cli, snapshot
from paths import DATA, RESULTS, ROOT
from test_matrix_report import V2_V3, make_run, results_of

from etcdbench.report.matrix import capacity_lines, capacity_table, comparison, matrix_table
from etcdbench.results.model import Capacity

WIDTH = 100  # what `show` and `compare` are read at here
WIDE = 200  # the report tests' width: a table as wide as its content
SAMPLES = sorted(DATA.glob("results-v*.json"))  # one per schema version
RESULTS_FILES = [
    RESULTS / "v3-protobuf-500.json",
    RESULTS / "v2-json-poll-2000.json",  # a FAIL
    RESULTS / "ci-baseline-k8s-1.6.json",
    *sorted((RESULTS / "scenarios").glob("*.json")),  # matrices: the table and the conclusions too
]


def shown(path: Path) -> str:
    """`etcdbench show PATH`: report.console.summary, then report.matrix.comparison."""
    code, out, err = run_cli("show", str(path), width=WIDTH)
    assert (code, err) == (0, "")
    return out


def snapshot_of(path: Path) -> str:
    return "show-" + path.relative_to(ROOT).with_suffix("").as_posix().replace("/", "-") + ".txt"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_console_summary_shows_the_figures_and_verdict(path: Path) -> None:
    snapshot(snapshot_of(path), shown(path))


@pytest.mark.parametrize("path", RESULTS_FILES, ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_show_prints_the_summary_and_the_comparison_of_committed_results(path: Path) -> None:
    snapshot(snapshot_of(path), shown(path))


def test_table_has_one_row_per_run_with_the_figures() -> None:
    """v2(poll)+json @2000/s: 204 events/s, p99 840.00 ms, 3,013 missed (1 relist), FAIL, client-bound,
    cpu 0.20 0.40 0.30; the others PASS."""
    snapshot("matrix-table.txt", as_text(matrix_table(V2_V3, title="v2-vs-v3"), width=WIDE))


def test_capacity_view() -> None:
    runs = [
        make_run("v3", "protobuf", r, received=r if r <= 1800 else 0.6 * r)
        for r in (500, 1000, 2000, 1800, 1800)
    ]
    capacity = Capacity.from_dict(
        {
            "knee": 1800,
            "confirmed": True,
            "interval": [1800, 2000],
            "relative_width": 0.1111,
            "limited_by": {
                "by": "etcd",
                "text": "etcd",
                "rate": 2000,
                "reasons": [],
                "client_bound_reasons": [],
            },
            "resolution": 0.05,
            "budget_s": 600,
            "elapsed_s": 300,
            "stopped_by": "budget",
            "notes": ["the budget ran out before the interval reached the resolution"],
            "curve": [
                {
                    "rate": r.target_rate,
                    "phase": ph,
                    "run": i,
                    "events_per_s": r.watch_events_per_s,
                    "p50_us": 600,
                    "p99_us": 2000,
                    "missed": 0,
                    "pass": r.verdict.pass_,
                    "client_bound": False,
                }
                for i, (r, ph) in enumerate(
                    zip(runs, ["rise", "rise", "rise", "bisect", "repeat"], strict=True)
                )
            ],
        }
    )
    lines = capacity_lines(capacity)
    snapshot("capacity.txt", as_text(capacity_table(capacity, runs), *lines, width=WIDE))
    assert (
        lines[0] == "knee: 1,800 writes/s (within 11.1%: passed at 1,800, failed at 2,000) — limited by etcd"
    )
    assert lines[1].startswith("note: the budget ran out")
    assert len(comparison(results_of(runs, capacity=capacity))) == 3


def test_compare_prints_a_table_per_match_the_noise_and_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """One file of two etcd versions: two sources whose cells pair; a gate rule on top."""
    monkeypatch.chdir(ROOT)  # the paths in the output are the paths as given
    gate = ["--fail-if", "watch.p99 > +10%", "--fail-if", "missed > 0"]
    code, out, err = run_cli("compare", "results/scenarios/etcd-versions.json", *gate, width=WIDTH)
    assert (code, err) == (0, "")
    snapshot("compare-etcd-versions.txt", out)


def test_compare_without_a_match_lists_the_runs_of_each_side(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    files = ["results/ci-baseline-k8s-1.6.json", "results/scenarios/k8s-1.6-5000-nodes-ci.json"]
    code, out, err = run_cli("compare", *files, width=WIDTH)
    assert (code, err) == (0, "")
    snapshot("compare-unmatched.txt", out)
