"""`etcdbench ls`: the results files in a directory, newest first, and the ones that are not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from etcdbench.errors import UsageError
from etcdbench.report.console import server_versions
from etcdbench.results.io import load_results
from etcdbench.results.model import ResultsFile


@dataclass(frozen=True)
class Entry:
    """One results file as `ls` lists it."""

    path: Path
    created: datetime | None
    etcd_version: str
    labels: tuple[str, ...]
    scenarios: tuple[str, ...]  # named scenarios the runs came from, when they did
    passed: int
    failed: int
    complete: bool


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True)
class Listing:
    directory: Path
    entries: tuple[Entry, ...]
    skipped: tuple[Skipped, ...]


def _created(results: ResultsFile) -> datetime | None:
    try:
        when = datetime.fromisoformat(results.created)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _entry(path: Path, results: ResultsFile) -> Entry:
    runs = results.runs
    passed = sum(1 for r in runs if r.verdict.pass_)
    return Entry(
        path=path,
        created=_created(results),
        etcd_version=", ".join(server_versions(results)) or "?",
        labels=tuple(r.label for r in runs),
        scenarios=tuple(dict.fromkeys(r.scenario for r in runs if r.scenario)),
        passed=passed,
        failed=len(runs) - passed,
        complete=results.complete,
    )


def scan(directory: Path) -> Listing:
    """Every `*.json` directly in `directory`: loaded when it is a results file, skipped with why if not."""
    if not directory.is_dir():
        raise UsageError(f"ls: {directory} is not a directory")
    entries: list[Entry] = []
    skipped: list[Skipped] = []
    try:
        paths = sorted(p for p in directory.iterdir() if p.suffix == ".json" and p.is_file())
    except OSError as exc:
        raise UsageError(f"ls: {directory}: cannot read: {exc.strerror or type(exc).__name__}") from None
    for path in paths:
        try:
            entries.append(_entry(path, load_results(path)))
        except UsageError as exc:  # unreadable, binary, not results, malformed: listed as skipped
            reason = str(exc).removeprefix(f"{path}: ")
            skipped.append(Skipped(path, reason))
    oldest = datetime.min.replace(tzinfo=UTC)
    entries.sort(key=lambda e: (e.created or oldest, e.path.name), reverse=True)
    return Listing(directory, tuple(entries), tuple(skipped))


def _verdicts(e: Entry) -> Text:
    text = Text()
    if e.passed:
        text.append(f"{e.passed} PASS", style="green")
    if e.failed:
        text.append(" " if e.passed else "")
        text.append(f"{e.failed} FAIL", style="red")
    if not e.passed and not e.failed:
        text.append("no runs", style="dim")
    return text


def _file_cell(e: Entry) -> Text:
    """The file name, then its scenario and run labels indented below it."""
    text = Text(e.path.name, style="bold")
    for scenario in e.scenarios:
        text.append(f"\n  scenario {scenario}")
    for label in e.labels:
        text.append(f"\n  {label}")
    return text


def render(listing: Listing) -> RenderableType:
    parts: list[RenderableType] = []
    if listing.entries:
        table = Table(header_style="bold", box=None, pad_edge=False)
        table.add_column("created (UTC)", no_wrap=True)
        table.add_column("file / runs")
        table.add_column("etcd", no_wrap=True)
        table.add_column("verdicts", no_wrap=True)
        table.add_column("complete", no_wrap=True)
        for e in listing.entries:
            when = e.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if e.created else "?"
            complete = Text("yes") if e.complete else Text("no", style="yellow")
            table.add_row(when, _file_cell(e), e.etcd_version, _verdicts(e), complete)
        parts.append(table)
    else:
        parts.append(Text(f"no etcdbench results files in {listing.directory}"))
    if listing.skipped:
        parts.append(Text(""))
        parts.append(Text(f"skipped {len(listing.skipped)} file(s) that are not readable results:"))
        parts.extend(Text(f"  {s.path.name}: {s.reason}", style="dim") for s in listing.skipped)
    return Group(*parts)
