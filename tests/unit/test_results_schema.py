"""The published JSON Schema and the typed model against every committed results file."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from paths import DATA, RESULTS
from schema_check import SCHEMA_PATH, schema_problem

from etcdbench.results.io import load
from etcdbench.results.model import ResultsFile, Run
from etcdbench.results.record import Malformed
from etcdbench.results.schema import render

COMMITTED = sorted(
    [*DATA.glob("results-v*.json"), *RESULTS.glob("*.json"), *RESULTS.glob("scenarios/*.json")]
)


def test_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA_PATH.read_text() == render(), "regenerate: python -m etcdbench.results.schema"


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_committed_file_validates_and_reads_back_exactly(path: Path) -> None:
    doc = load(path)  # upgraded to the current version
    assert schema_problem(doc) is None
    assert ResultsFile.from_dict(doc).to_dict() == doc


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_committed_files_name_no_home_directory(path: Path) -> None:
    """A committed file says nothing of the machine it was made on beyond its environment block's
    facts: no user's or workspace's directory (an etcd binary under a venv is named relative to it)."""
    text = path.read_text()
    assert not [d for d in ("/home/", "/root/", "/work/", "/Users/") if d in text]


def test_model_refuses_a_key_it_does_not_know_and_a_wrong_type() -> None:
    doc = load(DATA / "results-v2.json")
    doc["runs"][0]["counters"]["surprise"] = 1
    with pytest.raises(Malformed, match=r"runs\[0\]\.counters\.surprise: not a key"):
        ResultsFile.from_dict(doc)
    doc = load(DATA / "results-v2.json")
    doc["runs"][0]["verdict"]["pass"] = "yes"
    with pytest.raises(Malformed, match=r"runs\[0\]\.verdict\.pass: must be true or false"):
        ResultsFile.from_dict(doc)
    assert schema_problem(doc) is not None
    doc = load(DATA / "results-v3.json")
    doc["runs"][0]["network"] = None  # an optional key is absent, never null
    with pytest.raises(Malformed, match=r"runs\[0\]\.network: must be an object, got null"):
        ResultsFile.from_dict(doc)
    assert schema_problem(doc) is not None


def test_the_suite_checks_what_etcdbench_writes(tmp_path: Path) -> None:
    """The plugin (tests/schema_check.py) is active: write_atomic checks before it writes."""
    import sys

    import etcdbench.cli.execute  # noqa: F401 (the Saver every command shares: loaded, so checked)
    import etcdbench.results.io as results_io

    assert results_io.write_atomic.__name__ == "write_checked"  # what io.save writes through
    held = {
        name: module.write_atomic.__name__
        for name, module in sys.modules.items()
        if name.startswith("etcdbench") and hasattr(module, "write_atomic")
    }
    assert held and set(held.values()) == {"write_checked"}, held


@pytest.mark.parametrize("knee_at", [800.0, 0.5])  # a knee found, and nothing passing down to the floor
def test_a_capacity_file_validates(knee_at: float) -> None:
    """What `etcdbench capacity` writes: its runs and the top-level `capacity` of the knee search."""
    from etcdbench.bench.capacity import search  # a later stage than results/: only this test needs it

    doc = load(DATA / "results-v3.json")
    template = doc["runs"][0]
    runs: list[dict[str, Any]] = []
    ticks = iter(range(10_000))

    def measure(rate: float) -> Run:
        run: dict[str, Any] = copy.deepcopy(template)
        run["target_rate"] = rate
        if rate > knee_at:  # failing; far above the knee, because the watcher saturated its core
            bound = ["a watcher process used 1.00 of its one core"] if rate > 2 * knee_at else []
            run["verdict"].update(
                {
                    "pass": False,
                    "reasons": ["too slow"],
                    "client_bound": bool(bound),
                    "client_bound_reasons": bound,
                }
            )
        runs.append(run)
        return Run.from_dict(run)

    found = search(measure, start=500, budget_s=1e9, clock=lambda: float(next(ticks)))
    doc["runs"] = runs
    doc["capacity"] = found.record().to_dict()
    assert schema_problem(doc) is None
