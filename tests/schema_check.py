"""A pytest plugin: every results file a test makes etcdbench write must match the published schema.

Documents written in the test's own process are checked as `results.io.write_atomic` writes them;
files written by etcdbench processes a test starts are found afterwards in its `tmp_path` (a results
file of the current version created since the test began). Each must validate against
docs/results.schema.json and read back exactly through the typed model (results/model.py). A failure
fails the test that wrote the file, at its teardown, naming the file and the key.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from paths import ROOT

import etcdbench.results.io as results_io
from etcdbench.results.model import FORMAT_NAME, SCHEMA_VERSION, ResultsFile

SCHEMA_PATH = ROOT / "docs" / "results.schema.json"
_VALIDATOR = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def schema_problem(doc: Any) -> str | None:
    """Why `doc` is not a results document of the current version, or None when it is one."""
    errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        return f"{first.json_path}: {first.message[:300]} ({len(errors)} schema error(s))"
    if ResultsFile.from_dict(doc).to_dict() != doc:
        return "the typed model does not read it back exactly"
    return None


@pytest.fixture(autouse=True)
def results_match_schema(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    problems: list[str] = []
    checked: set[Path] = set()
    original = results_io.write_atomic

    def write_checked(path: Path, results: dict[str, Any]) -> None:
        problem = schema_problem(results)
        if problem:
            problems.append(f"{path}: {problem}")
        checked.add(Path(path).resolve())
        original(path, results)

    # Modules that imported the function by name (cli.execute, cli.archive) get the checked one too.
    for name, module in list(sys.modules.items()):
        if name.startswith("etcdbench") and getattr(module, "write_atomic", None) is original:
            monkeypatch.setattr(module, "write_atomic", write_checked)
    # Asked for here, not after the test: tmp_path must outlive this fixture's teardown.
    tmp_path: Path | None = (
        request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    )
    started = int(time.time())  # `created` has whole seconds
    yield
    if tmp_path is not None:
        for path in sorted(tmp_path.rglob("*.json")):
            if path.resolve() in checked:
                continue
            doc = _written_by_etcdbench(path, started)
            if doc is not None and (problem := schema_problem(doc)):
                problems.append(f"{path}: {problem}")
    if problems:
        pytest.fail("results file(s) not matching docs/results.schema.json:\n" + "\n".join(problems))


def _written_by_etcdbench(path: Path, since: int) -> dict[str, Any] | None:
    """The document at `path` if it is a current results file created since `since`, else None."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # the bad-input tests write such files on purpose
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        return None
    if doc.get("schema_version") != SCHEMA_VERSION:
        return None
    try:
        created = datetime.fromisoformat(str(doc.get("created"))).timestamp()
    except ValueError:
        return None
    return doc if created >= since else None
