"""`etcdbench run SCENARIO.toml` (a matrix of runs on one etcd) and `etcdbench capacity` (the highest
rate one watcher keeps up with). Parsing and printing live here; `cli.main` dispatches to them."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from etcdbench.bench.capacity import DEFAULT_START, search
from etcdbench.cli.execute import (
    EXIT_CODES,
    execution,
    prepare,
    server_of,
    stop_if_etcd_gone,
    verdict_code,
)
from etcdbench.cli.flags import (
    BACKGROUND_FLAGS,
    NETWORK_FLAGS,
    Handler,
    add_flags,
    add_target_flags,
    add_workload_flags,
    flag_values,
    number,
    seconds,
    whole_number,
    workload_config,
)
from etcdbench.config.file import MAX_CELLS, Overrides, Scenario, from_results, load_file
from etcdbench.config.run import (
    BACKENDS,
    DECODE_PREV,
    ENCODINGS,
    EXTERNAL_PREFIX,
    KINDS,
    MAX_RATE,
    V2_WATCH_MODES,
    RunConfig,
    flag_of,
    parse_duration_us,
)
from etcdbench.errors import EXIT_FAIL, EXIT_PASS, UsageError
from etcdbench.report.console import summary
from etcdbench.report.matrix import capacity_lines, capacity_table, conclusions, matrix_table
from etcdbench.results.io import dumps, load
from etcdbench.results.model import Run


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
    r.add_argument("--scale", type=number, help="multiply the scenario's [cluster] (e.g. 0.05 for CI)")
    r.add_argument(
        "--duration", type=seconds, help="measured time of every cell: seconds, or 30m (overrides the file)"
    )
    r.add_argument("--warmup", type=seconds, help="unmeasured time of every cell (overrides the file)")
    r.add_argument("--slo-p99", help="watch p99 limit: seconds, or 250ms (overrides the file)")
    # Selecting flags: where the matrix sets the field they pick cells; else they override [run].
    r.add_argument("--backend", help=f"these APIs, e.g. v3 or v2,v3 {_SELECTS}")
    r.add_argument("--encoding", help=f"these encodings, e.g. protobuf {_SELECTS}")
    r.add_argument("--kind", help=f"these object kinds, e.g. node {_SELECTS}")
    r.add_argument("--v2-watch", help=f"these v2 watch modes, poll or stream {_SELECTS}")
    r.add_argument("--decode-prev", help=f"an update's previous object: apiserver or always {_SELECTS}")
    r.add_argument(
        "--etcd",
        help=f"these embedded etcds: versions (3.4,3.5) or binary paths {_SELECTS}",
    )
    r.add_argument("--prefix", help="key prefix of every cell (overrides the file)")
    add_flags(r, NETWORK_FLAGS, overrides=True)
    add_flags(r, BACKGROUND_FLAGS, overrides=True)
    r.add_argument(
        "--fresh-etcd",
        action="store_true",
        help="embedded etcd: start a new one for every cell, so that no cell runs on what the cells "
        "before it left (a grown database, a long raft log); without it, cells share one etcd",
    )
    r.add_argument(
        "--max-cells",
        type=whole_number,
        default=MAX_CELLS,
        metavar="N",
        help="refuse a matrix of more than N cells, each a whole run (default %(default)s)",
    )
    add_target_flags(r, faults=True, shards=False)

    c = sub.add_parser(
        "capacity",
        help="find the highest write rate one watcher keeps up with",
        epilog=EXIT_CODES,
        formatter_class=raw,
    )
    add_workload_flags(c)
    c.add_argument(
        "--start", type=number, default=DEFAULT_START, help="first rate tried (default %(default)g)"
    )
    c.add_argument(
        "--budget",
        type=seconds,
        default=300.0,
        help="wall-clock limit of the search: seconds, or 90s, 5m (default 5m)",
    )
    c.add_argument(
        "--resolution", default="5%", help="stop bisecting within this relative width (default 5%%)"
    )
    add_target_flags(c, faults=False, shards=False)
    return {"run": _cmd_run, "capacity": _cmd_capacity}


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
    values.update(flag_values(args, NETWORK_FLAGS))
    values.update(flag_values(args, BACKGROUND_FLAGS))
    if args.tls:  # every cell on a TLS etcd (a `tls` matrix axis is dropped)
        values["tls"] = True
    only: dict[str, tuple[str, ...]] = {}
    for key, text, allowed in (
        ("backend", args.backend, BACKENDS),
        ("encoding", args.encoding, ENCODINGS),
        ("kind", args.kind, KINDS),
        ("v2_watch", args.v2_watch, V2_WATCH_MODES),
        ("decode_prev", args.decode_prev, DECODE_PREV),
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


def by_etcd(cells: tuple[RunConfig, ...]) -> list[RunConfig]:
    """The cells in run order, grouped by their etcd server (`etcd` and `tls`, in order of first
    appearance), so that each embedded etcd of a matrix starts once; within a group the file's order
    stands."""
    order = list(dict.fromkeys(map(server_of, cells)))
    return sorted(cells, key=lambda c: order.index(server_of(c)))


def _cmd_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    scenario = _scenario(args)
    if args.scale is not None and "cluster" not in scenario.document:
        err.print(f"note: --scale changes nothing: {scenario.name} has no [cluster] table", markup=False)
    if args.fresh_etcd and args.endpoints:
        raise UsageError("--fresh-etcd: starts a new embedded etcd for every cell; not with --endpoints")
    cells = by_etcd(scenario.cells)
    saver, targets = prepare(args, cells)

    # Ctrl-C, or etcd lost mid-matrix: keep the cells that ran, and the one interrupted
    with execution(targets, saver, out, err, steps=len(cells)) as runs:
        runs.fresh = args.fresh_etcd
        runs.results = replace(runs.results, scenario=scenario.document)
        for i, config in enumerate(cells):
            stop_if_etcd_gone(runs.run(config, config.scenario))
            runs.save(complete=i == len(cells) - 1)
    results = runs.results

    if args.json:
        out.print_json(dumps(results))
    else:
        out.print(summary(results))
        out.print(matrix_table(results.runs, title=scenario.name))
        for line in conclusions(results.runs):
            out.print(line, markup=False, highlight=False)
        out.print(f"results: {saver.path}", markup=False)
    return verdict_code(results.runs)


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
    saver, targets = prepare(args, [base])
    # Below this rate a step has fewer writes than writers (RunConfig refuses it): stop falling there.
    min_rate = max(1.0, base.writers / (base.warmup_s + base.duration_s))

    with execution(targets, saver, out, err, steps=0) as runs:

        def measure(rate: float) -> Run:
            # Rising past the bound would be refused mid-search: measure at the bound instead.
            config = replace(base, rate=min(rate, MAX_RATE))
            run = runs.run(config, config.label)
            stop_if_etcd_gone(run)
            runs.save(complete=False)
            return run

        found = search(measure, start=base.rate, resolution=resolution, budget_s=budget_s, min_rate=min_rate)
    runs.results = replace(runs.results, capacity=found.record())
    runs.save(complete=True)
    results = runs.results

    if args.json:
        out.print_json(dumps(results))
    else:
        assert results.capacity is not None  # set just above
        out.print(capacity_table(results.capacity, results.runs))
        for line in capacity_lines(results.capacity):
            out.print(Text(line))
        out.print(f"results: {saver.path}", markup=False)
    return EXIT_PASS if found.knee is not None else EXIT_FAIL
