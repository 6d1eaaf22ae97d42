"""`etcdbench watch` (one watcher against writers at a target rate) and `etcdbench show` (the summary
of a results file)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from etcdbench.cli.execute import EXIT_CODES, execution, prepare, verdict_code
from etcdbench.cli.flags import Handler, add_target_flags, add_workload_flags, number, workload_config
from etcdbench.config.run import RunConfig, parse_shard
from etcdbench.errors import EXIT_PASS, EXIT_RUNTIME
from etcdbench.report.console import summary
from etcdbench.results.io import dumps, load_results, malformed


def register(sub: argparse._SubParsersAction[Any]) -> dict[str, Handler]:
    """Add `watch` and `show` to the subparsers `sub`; return their handlers by command name."""
    w = sub.add_parser(
        "watch",
        help="measure one watcher against writers at a target rate",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_workload_flags(w)
    w.add_argument(
        "--rate", type=number, default=RunConfig.rate, help="total writes/s, open loop (default %(default)g)"
    )
    w.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND@T[:D]",
        help="inject a fault T s after the first write: pause@T:D, restart@T:D, kill@T, compact@T, defrag@T; "
        "on an embedded cluster also kill-member@T:D, kill-leader@T:D (pause/restart/kill: member 0)",
    )
    w.add_argument("--shard", default="0/1", metavar="I/N", help="be load generator I of N cooperating ones")
    add_target_flags(w, faults=True, shards=True)

    s = sub.add_parser("show", help="print the summary of a results file")
    s.add_argument("file", type=Path)
    return {"watch": _cmd_watch, "show": _cmd_show}


def watch_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of `watch`'s flags."""
    shard, shards = parse_shard(args.shard)
    return workload_config(args, rate=args.rate, faults=tuple(args.fault), shard=shard, shards=shards)


def _cmd_watch(args: argparse.Namespace, out: Console, err: Console) -> int:
    config = watch_config(args)
    saver, targets = prepare(args, [config])
    with execution(targets, saver, out, err, steps=None) as runs:
        run = runs.run(config, config.label)
        runs.save(complete=run.incomplete is None)
    results = runs.results

    if args.json:
        out.print_json(dumps(results))
    else:
        out.print(summary(results))
        out.print(f"results: {saver.path}")
    if run.incomplete is not None:
        err.print(f"error: {run.label}: {run.incomplete}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_RUNTIME
    if config.shards > 1:  # a shard measured its share; the verdict on the whole rate is `merge`'s
        return EXIT_PASS
    return verdict_code(results.runs)


def _cmd_show(args: argparse.Namespace, out: Console, err: Console) -> int:
    from etcdbench.report.matrix import comparison

    results = load_results(args.file)
    with malformed(args.file):  # render first: nothing is printed for a document that cannot be
        parts = [summary(results), *comparison(results)]
    for part in parts:
        out.print(part)
    return EXIT_PASS
