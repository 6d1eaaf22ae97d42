"""Results files side by side: runs matched across files, ratios against the first file, noise.

The first file is the baseline. A file whose runs ran on several etcd versions (a matrix over `etcd`)
counts as one file per version, named `<file>@etcd-<version>`, so its cells pair across versions; the
etcd version of every run is shown beside its figures. Runs are matched by what was measured
(backend, encoding, kind, v2 watch mode, target rate, and workload and number of watchers where the
file has them); a run with no partner is listed, never silently dropped. Whether a latency
percentile moved by more than run-to-run noise is decided by `latency_noise` (docs/compare-and-gate.md).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from etcdbench.errors import UsageError
from etcdbench.metrics.latency import LatencyRecorder, fmt_us
from etcdbench.report.console import fmt_cores
from etcdbench.results.model import EtcdInfo, ResultsFile, Run, Summary
from etcdbench.results.record import ABSENT, Record, key_of

MATCH_KEYS = ("backend", "encoding", "kind", "v2_watch", "target_rate")
# Also part of what was measured, in files that have them; a file without them ran the default.
MATCH_DEFAULTS = {"workload": "update", "watchers": 1}
MATCHED_BY = ", ".join([*MATCH_KEYS, *MATCH_DEFAULTS])
# What must be alike for two files to be compared fairly; each difference becomes a warning. Not the
# host name: CI's hosted runners get a new one every job, and a name says nothing about speed; the CPU
# model and count do.
ENVIRONMENT_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("etcd server_version", ("etcd", "server_version")),
    ("cpu_model", ("cpu_model",)),
    ("cpu_count", ("cpu_count",)),
    ("etcdbench_version", ("etcdbench_version",)),
)
JSON_FORMAT = "etcdbench-compare"
JSON_VERSION = 1
# config keys already in MATCH_KEYS (config's own v2_watch is set even on v3, where it means nothing).
# `etcd` too: which etcd served a run is shown (its version) rather than warned about.
_MATCHED_CONFIG = {"backend", "encoding", "kind", "rate", "v2_watch", "etcd", *MATCH_DEFAULTS}

HDR_PRECISION = 0.001  # 3 significant figures: two values closer than this are one HDR value
Z_95 = 1.96  # two-sided 95% normal quantile for the rank interval of a percentile
PERCENTILE_KEYS = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


@dataclass(frozen=True)
class Figure:
    """One compared figure: where it is in a run and which direction is better."""

    name: str
    path: tuple[str, ...]
    lower_is_better: bool
    unit: str  # "us", "per_s", "count", "cores"


FIGURES = (
    Figure("watch p50", ("latency_us", "watch", "p50"), True, "us"),
    Figure("watch p99", ("latency_us", "watch", "p99"), True, "us"),
    Figure("watch p99.9", ("latency_us", "watch", "p999"), True, "us"),
    Figure("put p99", ("latency_us", "put", "p99"), True, "us"),
    Figure("watch events/s", ("watch_events_per_s",), False, "per_s"),
    Figure("writes/s", ("write_rate_achieved",), False, "per_s"),
    Figure("missed", ("counters", "missed"), True, "count"),
    Figure("relists", ("counters", "relists"), True, "count"),
    Figure("cpu watcher", ("cpu", "watcher"), True, "cores"),
    Figure("cpu etcd", ("cpu", "etcd"), True, "cores"),
)
HEADLINE = FIGURES[1]  # the one-line summary per matched run speaks of watch p99


@dataclass(frozen=True)
class Source:
    """One loaded results file and the short name it goes by in tables and messages."""

    name: str
    path: Path
    results: ResultsFile


@dataclass(frozen=True)
class Match:
    """The same measurement in several files: runs[i] is from sources[i], None where absent."""

    label: str
    runs: tuple[Run | None, ...]


@dataclass(frozen=True)
class Comparison:
    sources: tuple[Source, ...]
    matches: tuple[Match, ...]
    unmatched: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def baseline(self) -> Source:
        return self.sources[0]


@dataclass(frozen=True)
class Noise:
    """Whether two latency percentiles differ by no more than run-to-run noise, and why."""

    within: bool
    reason: str


@dataclass(frozen=True)
class Change:
    """A figure's move from the baseline: ratio new/base, and whether that is better or worse."""

    base: float | None
    new: float | None
    ratio: float | None  # None when either value is missing or the baseline is 0
    direction: str  # "better", "worse", "same", "n/a"
    noise: Noise | None  # latency percentiles with histograms only


def source_names(paths: list[Path]) -> list[str]:
    """File stems, unless two files share one: then the paths as given."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [str(p) for p in paths]


def json_value(node: object, path: tuple[str, ...]) -> tuple[bool, Any]:
    """(whether it is there, the value) at a path of JSON keys in typed results, as the file has it:
    rules and figures name a run's numbers by their keys in the file (`latency_us.watch.p99`)."""
    for key in path:
        if isinstance(node, Record):
            f = next((f for f in dataclasses.fields(node) if key_of(f) == key), None)
            if f is None:
                return False, None
            node = getattr(node, f.name)
            if node is ABSENT or (node is None and f.metadata.get("optional")):  # no key in the file
                return False, None
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return False, None
    return True, node


def value_at(run: Run, path: tuple[str, ...]) -> float | None:
    """The number at a dotted path in a run, or None (missing, null or not a number)."""
    _, node = json_value(run, path)
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return float(node)


def match_key(run: Run) -> tuple[Any, ...]:
    """MATCH_KEYS, then MATCH_DEFAULTS' keys (the upgrader gives old files their defaults)."""
    return (run.backend, run.encoding, run.kind, run.v2_watch, run.target_rate, run.workload, run.watchers)


def _env_version(results: ResultsFile) -> str | None:
    etcd = results.environment.etcd
    return etcd.server_version if etcd is not None and isinstance(etcd.server_version, str) else None


def etcd_version(run: Run, results: ResultsFile) -> str | None:
    """The etcd server version that served `run`: its own record, else the file's environment."""
    if run.etcd_server is not None and run.etcd_server.server_version is not None:
        return run.etcd_server.server_version
    return _env_version(results)


def split_by_etcd(sources: list[Source]) -> list[Source]:
    """Each file whose runs ran on several etcd versions becomes one source per version, in the order
    the versions first appear: `<name>@etcd-<version>`."""
    out: list[Source] = []
    for s in sources:
        runs = s.results.runs
        versions = list(dict.fromkeys(etcd_version(r, s.results) for r in runs))
        if len(versions) < 2:
            out.append(s)
            continue
        env = s.results.environment
        for version in versions:
            # Without an etcd block, one that only says the version (neither embedded nor an endpoint).
            etcd = EtcdInfo(embedded=False, endpoints=[]) if env.etcd is None else env.etcd
            part = replace(
                s.results,
                environment=replace(env, etcd=replace(etcd, server_version=version)),
                runs=[r for r in runs if etcd_version(r, s.results) == version],
            )
            out.append(Source(f"{s.name}@etcd-{version}", s.path, part))
    return out


def compare(sources: list[Source]) -> Comparison:
    """Match the runs of `sources` (the first is the baseline). UsageError with fewer than two
    sources once files of several etcd versions are split (split_by_etcd)."""
    sources = split_by_etcd(sources)
    if len(sources) < 2:
        raise UsageError(
            "compare: needs at least two results files (the first is the baseline), "
            "or one whose runs ran on several etcd versions"
        )
    base, others = sources[0], sources[1:]
    unused = [list(s.results.runs) for s in others]
    matches: list[Match] = []
    unmatched: list[str] = []
    for run in base.results.runs:
        key = match_key(run)
        partners: list[Run | None] = []
        for pool in unused:
            partner = next((r for r in pool if match_key(r) == key), None)
            if partner is not None:
                pool.remove(partner)
            partners.append(partner)
        if any(p is not None for p in partners):
            matches.append(Match(run.label, (run, *partners)))
        else:
            unmatched.append(f"{base.name}: {run.label} (no matching run in the other files)")
    for source, pool in zip(others, unused, strict=True):
        for run in pool:
            unmatched.append(f"{source.name}: {run.label} (no matching run in {base.name})")

    warnings = [*_environment_warnings(sources)]
    for m in matches:
        warnings.extend(_config_warnings(m, sources))
    return Comparison(tuple(sources), tuple(matches), tuple(unmatched), tuple(warnings))


def _environment_warnings(sources: list[Source]) -> list[str]:
    base = sources[0]
    out = []
    for s in sources:
        if not s.results.complete:
            out.append(f"{s.name} is incomplete: its run was interrupted or is still going")
    for s in sources[1:]:
        for name, path in ENVIRONMENT_KEYS:
            if s.path == base.path:  # parts of one file (split_by_etcd): one environment
                continue
            a, b = _env(base.results, path), _env(s.results, path)
            if a != b:
                out.append(f"environments differ: {name} is {a} in {base.name} but {b} in {s.name}")
    return out


def _env(results: ResultsFile, path: tuple[str, ...]) -> Any:
    return json_value(results.environment, path)[1]


_ETCD_CELL = re.compile(
    r"(?<=[\[,])etcd=[^,\]]*(,|(?=\]))"
)  # "name[etcd=3.4,backend=v2]" -> "name[backend=v2]"


def _config_warnings(match: Match, sources: list[Source]) -> list[str]:
    base_run = match.runs[0]
    assert base_run is not None
    base_config = base_run.config
    out = []
    for source, run in zip(sources[1:], match.runs[1:], strict=True):
        if run is None:
            continue
        config = run.config
        for key in sorted((set(base_config) | set(config)) - _MATCHED_CONFIG):
            a, b = base_config.get(key), config.get(key)
            if key == "scenario" and isinstance(a, str) and isinstance(b, str):
                a, b = _ETCD_CELL.sub("", a), _ETCD_CELL.sub("", b)  # shown as the etcd row instead
            if a != b:
                out.append(
                    f"{match.label}: run parameters differ: {key} is {base_config.get(key)!r} in "
                    f"{sources[0].name} but {config.get(key)!r} in {source.name}"
                )
    return out


def percentile_interval(summary: Summary, percentile: float) -> tuple[int, int] | None:
    """The 95% rank interval of a percentile, read back from the run's HDR histogram.

    For p at count n, the order statistics at n*p -+ 1.96*sqrt(n*p*(1-p)) (clamped to 1..n), as values.
    None when the run has no histogram.
    """
    blob = summary.hdr
    if not blob:
        return None
    hist = LatencyRecorder.decode(blob).hist
    n = int(hist.get_total_count())
    if n == 0:
        return None
    q = percentile / 100
    half = Z_95 * math.sqrt(n * q * (1 - q))
    lo_rank = min(n, max(1, math.floor(n * q - half)))
    hi_rank = min(n, max(1, math.ceil(n * q + half)))
    return (
        int(hist.get_value_at_percentile(100 * lo_rank / n)),
        int(hist.get_value_at_percentile(100 * hi_rank / n)),
    )


def latency_noise(base_run: Run, new_run: Run, latency: str, key: str) -> Noise | None:
    """Is the difference in latency_us[latency][key] within run-to-run noise? None: cannot tell.

    Within noise when the values differ by less than the HDR precision (0.1%), or when their 95%
    rank intervals overlap. Only for percentiles (p50, p90, p99, p999) of runs with histograms.
    """
    if key not in PERCENTILE_KEYS:
        return None
    a_sum = json_value(base_run, ("latency_us", latency))[1]
    b_sum = json_value(new_run, ("latency_us", latency))[1]
    if not isinstance(a_sum, Summary) or not isinstance(b_sum, Summary):
        return None
    a, b = json_value(a_sum, (key,))[1], json_value(b_sum, (key,))[1]
    if a is None or b is None:
        return None
    if a > 0 and abs(b - a) / a < HDR_PRECISION:
        return Noise(True, f"differs by less than the HDR precision ({HDR_PRECISION:.1%})")
    ia = percentile_interval(a_sum, PERCENTILE_KEYS[key])
    ib = percentile_interval(b_sum, PERCENTILE_KEYS[key])
    if ia is None or ib is None:
        return None
    shown = f"95% intervals [{fmt_us(ia[0])}, {fmt_us(ia[1])}] and [{fmt_us(ib[0])}, {fmt_us(ib[1])}]"
    if ia[0] <= ib[1] and ib[0] <= ia[1]:
        return Noise(True, f"{shown} overlap")
    return Noise(False, f"{shown} do not overlap")


def change(figure: Figure, base_run: Run, new_run: Run) -> Change:
    base, new = value_at(base_run, figure.path), value_at(new_run, figure.path)
    if base is None or new is None:
        return Change(base, new, None, "n/a", None)
    ratio = new / base if base else None
    noise = None
    if figure.path[0] == "latency_us":
        noise = latency_noise(base_run, new_run, figure.path[1], figure.path[2])
    better = (new < base) == figure.lower_is_better
    direction = "same" if new == base else ("better" if better else "worse")
    return Change(base, new, ratio, direction, noise)


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "us":
        return fmt_us(value)
    if unit == "cores":
        return fmt_cores(value)
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:,g}"


_STYLE = {"better": "green", "worse": "red", "same": "dim", "n/a": "dim"}


def _change_cell(figure: Figure, c: Change) -> Text:
    if c.direction == "n/a":
        return Text("-", style="dim")
    if c.direction == "same":
        return Text("same", style="dim")
    if c.ratio is None:  # baseline 0: a ratio would be infinite
        diff = fmt_value(abs((c.new or 0) - (c.base or 0)), figure.unit)
        amount = f"{'+' if (c.new or 0) > (c.base or 0) else '-'}{diff}"
    else:
        amount = f"x{c.ratio:.2f}"
    if c.noise is not None and c.noise.within:
        return Text(f"{amount} noise", style="dim")
    return Text(f"{amount} {c.direction}", style=_STYLE[c.direction])


def match_table(comparison: Comparison, match: Match) -> Table:
    sources = comparison.sources
    table = Table(
        title=match.label,
        title_justify="left",
        title_style="bold",
        header_style="bold",
        caption=f"better: ↓ lower, ↑ higher; ratio: x value / {sources[0].name}'s; "
        "noise: within run-to-run noise",
        caption_justify="left",
    )
    table.add_column("figure", no_wrap=True)
    table.add_column("better", justify="center", no_wrap=True)
    table.add_column(sources[0].name + " (base)", justify="right")
    for s in sources[1:]:
        table.add_column(s.name, justify="right")
        table.add_column("ratio", justify="right", no_wrap=True)
    base_run = match.runs[0]
    assert base_run is not None
    versions = match_versions(comparison, match)
    etcd_row: list[str | Text] = ["etcd", "", versions[0] or "-"]
    for v in versions[1:]:
        etcd_row += [v or "-", ""]
    table.add_row(*etcd_row)
    for figure in FIGURES:
        row: list[str | Text] = [
            figure.name,
            "↓" if figure.lower_is_better else "↑",
            fmt_value(value_at(base_run, figure.path), figure.unit),
        ]
        for run in match.runs[1:]:
            if run is None:
                row += ["-", Text("absent", style="dim")]
                continue
            row += [
                fmt_value(value_at(run, figure.path), figure.unit),
                _change_cell(figure, change(figure, base_run, run)),
            ]
        table.add_row(*row)
    verdict_row: list[str | Text] = ["verdict", ""]
    for i, run in enumerate(match.runs):
        cell = Text("-") if run is None else _verdict(run)
        verdict_row += [cell] if i == 0 else [cell, ""]
    table.add_row(*verdict_row)
    return table


def match_versions(comparison: Comparison, match: Match) -> list[str | None]:
    """The etcd version of each run of `match` (None where the run is absent or unrecorded)."""
    return [
        None if run is None else etcd_version(run, source.results)
        for source, run in zip(comparison.sources, match.runs, strict=True)
    ]


def _verdict(run: Run) -> Text:
    ok = run.verdict.pass_
    return Text("PASS" if ok else "FAIL", style="green" if ok else "red")


def pairs(comparison: Comparison) -> Iterator[tuple[str, Run, Run, str]]:
    """(label, baseline run, other run, other file's name) for every matched run in every other file."""
    for m in comparison.matches:
        base_run = m.runs[0]
        assert base_run is not None
        for source, run in zip(comparison.sources[1:], m.runs[1:], strict=True):
            if run is not None:
                yield m.label, base_run, run, source.name


def summary_lines(comparison: Comparison) -> list[str]:
    """Per matched run and file, how the headline figure (watch p99) moved, hyperfine-style."""
    base = comparison.baseline
    by_name = {s.name: s for s in comparison.sources}
    lines = []
    for label, base_run, run, name in pairs(comparison):
        line = f"{label}: {headline(HEADLINE, base_run, run, base.name, name)}"
        a, b = etcd_version(base_run, base.results), etcd_version(run, by_name[name].results)
        if a != b and not name.endswith(f"@etcd-{b}"):  # a split file's name already says it
            line += f" [etcd {b} vs {a}]"
        lines.append(line)
    return lines


def headline(figure: Figure, base_run: Run, run: Run, base_name: str, name: str) -> str:
    c = change(figure, base_run, run)
    what = f"{name}'s {figure.name}"
    if c.base is None or c.new is None:
        missing = base_name if c.base is None else name
        return f"{what} cannot be compared: none recorded in {missing}"
    values = f"({fmt_value(c.new, figure.unit)} vs {fmt_value(c.base, figure.unit)})"
    if c.new == c.base:
        return f"{what} was the same as {base_name}'s {values}"
    if c.base == 0 or c.new == 0:
        word = "higher" if c.new > c.base else "lower"
        text = f"{what} was {word} than {base_name}'s {values}"
    else:
        factor = max(c.new, c.base) / min(c.new, c.base)
        word = "higher" if c.new > c.base else "lower"
        text = f"{what} was {factor:.2f}x {word} than {base_name}'s {values}"
    if c.noise is not None and c.noise.within:
        text += ", within run-to-run noise"
    return text


def render(comparison: Comparison) -> RenderableType:
    parts: list[RenderableType] = []
    names = ", ".join(
        f"{s.name} = {s.path}" + (" (baseline)" if i == 0 else "") for i, s in enumerate(comparison.sources)
    )
    parts.append(Text(names))
    for w in comparison.warnings:
        parts.append(Text("warning: " + w, style="yellow"))
    for m in comparison.matches:
        parts.append(Text(""))
        parts.append(match_table(comparison, m))
    if comparison.unmatched:
        parts.append(Text(""))
        parts.append(Text(f"unmatched runs (matched by {MATCHED_BY}):"))
        parts.extend(Text("  " + u) for u in comparison.unmatched)
    lines = summary_lines(comparison)
    if lines:
        parts.append(Text(""))
        parts.append(Text("summary", style="bold"))
        parts.extend(Text("  " + line) for line in lines)
    elif not comparison.matches:
        parts.append(Text(""))
        parts.append(Text("no run matched: nothing to compare", style="yellow"))
    return Group(*parts)


# --- machine-readable and markdown forms ------------------------------------------------------------


def _noise_dict(noise: Noise | None) -> dict[str, Any] | None:
    return None if noise is None else {"within": noise.within, "reason": noise.reason}


def _verdict_word(run: Run | None) -> str | None:
    return None if run is None else ("PASS" if run.verdict.pass_ else "FAIL")


def match_dict(match: Match, versions: list[str | None] | None = None) -> dict[str, Any]:
    """One matched run as plain data: each figure's value per file and its change from the baseline."""
    base_run = match.runs[0]
    assert base_run is not None
    figures = []
    for figure in FIGURES:
        changes: list[dict[str, Any] | None] = []
        for run in match.runs[1:]:
            if run is None:
                changes.append(None)
                continue
            c = change(figure, base_run, run)
            changes.append({"ratio": c.ratio, "direction": c.direction, "noise": _noise_dict(c.noise)})
        figures.append(
            {
                "name": figure.name,
                "path": ".".join(figure.path),
                "better": "lower" if figure.lower_is_better else "higher",
                "unit": figure.unit,
                "values": [None if r is None else value_at(r, figure.path) for r in match.runs],
                "changes": changes,  # one per file after the baseline; null where the run is absent
            }
        )
    return {
        "label": match.label,
        "present": [r is not None for r in match.runs],
        "etcd_versions": versions if versions is not None else [None] * len(match.runs),
        "verdicts": [_verdict_word(r) for r in match.runs],
        "figures": figures,
    }


def comparison_dict(comparison: Comparison) -> dict[str, Any]:
    """The comparison as JSON-ready data (`compare --json`); values in the files' units (latency: µs)."""
    return {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "files": [
            {"name": s.name, "path": str(s.path), "complete": s.results.complete} for s in comparison.sources
        ],
        "baseline": comparison.baseline.name,
        "matched_by": [*MATCH_KEYS, *MATCH_DEFAULTS],
        "warnings": list(comparison.warnings),
        "matches": [match_dict(m, match_versions(comparison, m)) for m in comparison.matches],
        "unmatched": list(comparison.unmatched),
        "summary": summary_lines(comparison),
    }


def _md(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|")


def _change_words(figure: Figure, c: Change) -> str:
    cell = _change_cell(figure, c).plain
    if c.direction == "worse" and not (c.noise is not None and c.noise.within):
        return f"**{cell}**"
    return cell


def comparison_markdown(comparison: Comparison) -> list[str]:
    """The comparison as GitHub-flavoured markdown (`compare --markdown`, e.g. for a PR comment)."""
    sources = comparison.sources
    lines = [
        "### etcdbench compare",
        "",
        "Baseline: `" + sources[0].name + "`; compared: " + ", ".join(f"`{s.name}`" for s in sources[1:]),
    ]
    if comparison.warnings:
        lines.append("")
        lines.extend(f"- warning: {w}" for w in comparison.warnings)
    for m in comparison.matches:
        base_run = m.runs[0]
        assert base_run is not None
        header = ["figure", "better", f"{sources[0].name} (base)"]
        for s in sources[1:]:
            header += [s.name, "ratio"]
        lines += ["", f"#### {_md(m.label)}", ""]
        lines.append("| " + " | ".join(_md(h) for h in header) + " |")
        lines.append("|" + "|".join([":--", ":-:", *(["--:"] * (len(header) - 2))]) + "|")
        versions = match_versions(comparison, m)
        etcd_cells = ["etcd", "", versions[0] or "-"]
        for v in versions[1:]:
            etcd_cells += [v or "-", ""]
        lines.append("| " + " | ".join(etcd_cells) + " |")
        for figure in FIGURES:
            row = [
                figure.name,
                "↓" if figure.lower_is_better else "↑",
                fmt_value(value_at(base_run, figure.path), figure.unit),
            ]
            for run in m.runs[1:]:
                if run is None:
                    row += ["-", "absent"]
                else:
                    row += [
                        fmt_value(value_at(run, figure.path), figure.unit),
                        _change_words(figure, change(figure, base_run, run)),
                    ]
            lines.append("| " + " | ".join(_md(c) for c in row) + " |")
        verdicts = ["verdict", "", _verdict_word(base_run) or "-"]
        for run in m.runs[1:]:
            verdicts += [_verdict_word(run) or "-", ""]
        lines.append("| " + " | ".join(verdicts) + " |")
    if comparison.unmatched:
        lines += ["", f"Unmatched runs (matched by {MATCHED_BY}):", ""]
        lines.extend(f"- {u}" for u in comparison.unmatched)
    summary = summary_lines(comparison)
    if summary:
        lines += ["", "**Summary**", ""]
        lines.extend(f"- {line}" for line in summary)
    elif not comparison.matches:
        lines += ["", "No run matched: nothing to compare."]
    return lines
