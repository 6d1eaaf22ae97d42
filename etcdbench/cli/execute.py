"""How `watch`, `run` and `capacity` execute their runs: everything refused before an etcd starts
(prepare), then the runs on their etcd, each appended to one results document that is saved after it
(execution); after Ctrl-C or a failure, what was measured is saved marked incomplete."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from etcdbench.backends.credentials import Credentials
from etcdbench.cli.credentials import credentials_from_args
from etcdbench.cli.flags import endpoints
from etcdbench.config.run import RunConfig
from etcdbench.errors import (
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_PASS,
    EXIT_RUNTIME,
    EXIT_USAGE,
    EtcdError,
    UsageError,
)
from etcdbench.etcd.local import resolve_etcd
from etcdbench.interrupt import Interrupted
from etcdbench.report.console import summary
from etcdbench.results.io import check_writable, default_path, dumps, save
from etcdbench.results.model import ResultsFile, Run

if TYPE_CHECKING:
    from etcdbench.bench.target import Target
    from etcdbench.workload.runner import Progress as RunProgress

MAX_CLUSTER_SIZE = 9  # embedded members on one host; etcd advises 7 at most in production

EXIT_CODES = f"""\
exit codes: {EXIT_PASS} PASS, {EXIT_FAIL} FAIL, {EXIT_USAGE} bad usage or input, {EXIT_RUNTIME} etcd
unreachable or another runtime failure, {EXIT_INTERRUPTED} interrupted (Ctrl-C or SIGTERM). An
interrupted run stops its processes and etcd, and writes what it measured so far, marked incomplete
("complete": false and the run's "incomplete" reason), unless nothing was measured yet; a second
Ctrl-C gives that up."""


class Saver:
    """The one results file of a command: written atomically after every run, or printed once at the
    end with --json; after an interrupt or a failure, what was measured, marked incomplete."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(args.json)
        self.path: Path | None = None if self.json else args.output
        if not self.json:
            check_writable(self.path if self.path is not None else Path("results") / "probe.json")

    def __call__(self, results: ResultsFile) -> None:
        if self.json:
            return
        self.path = self.path or default_path(Path("results"), results)
        save(self.path, results)

    @contextmanager
    def keeping_partial(self, runs: Execution, out: Console, err: Console) -> Iterator[None]:
        """Runs go into `runs.results` inside the block; if it ends by an exception, save what exists
        (with the interrupted run's partial figures) marked incomplete, then let the exception go on."""
        try:
            yield
        except BaseException as exc:
            partial = exc.partial if isinstance(exc, Interrupted) else None
            if isinstance(partial, Run):
                runs.add(partial)
            self._save_incomplete(runs.current(complete=False), exc, out, err)
            raise

    def _save_incomplete(self, results: ResultsFile, exc: BaseException, out: Console, err: Console) -> None:
        interrupted = isinstance(exc, KeyboardInterrupt)
        if not results.runs:
            if interrupted:
                why = (
                    "interrupted again while stopping: the run in progress was given up"
                    if isinstance(exc, Interrupted) and exc.repeated
                    else "interrupted before anything was measured"
                )
                err.print(f"{why}; no results written", markup=False, highlight=False, soft_wrap=True)
            return
        if self.json:  # stdout is still one document
            out.print_json(dumps(results))
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


# The fields of a run that choose its etcd server: runs that differ in them need an etcd each.
Server = tuple[str, bool]


def server_of(config: RunConfig) -> Server:
    """The embedded etcd `config` runs on: its binary (`etcd`) and whether it serves TLS."""
    return config.etcd, config.tls


def target_for(
    args: argparse.Namespace,
    endpoints: list[str] | None,
    credentials: Credentials | None,
    server: Server = ("", False),
) -> Target:
    """The etcd the runs of one server use: --endpoints, or one started here (bench.target)."""
    # 0.3 s of imports (the workload, cryptography): here, to keep `--help` and `show` fast
    from etcdbench.bench.target import Target

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
        etcd=server[0],
        tls=server[1],
    )


def prepare(args: argparse.Namespace, configs: Sequence[RunConfig]) -> tuple[Saver, dict[Server, Target]]:
    """What every run of a command needs, refused before any etcd starts: the credentials (the
    password prompted for, if it must be), a writable results file, and one target per server of the
    runs (in order of first appearance) that has accepted each of its runs and found its binary."""
    urls = endpoints(args)
    credentials = credentials_from_args(args)
    saver = Saver(args)
    targets: dict[Server, Target] = {}
    for config in configs:
        server = server_of(config)
        if server not in targets:
            targets[server] = target_for(args, urls, credentials, server)
        targets[server].check(config)
    if not urls:  # a version that is not installed is refused before any run
        for spec, _ in targets:
            resolve_etcd(spec, args.etcd_bin)
    return saver, targets


@contextmanager
def progress_bar(err: Console, steps: int | None) -> Iterator[Callable[[int, str], RunProgress] | None]:
    """Live progress on stderr, only on a terminal: progress_for(i, label) -> the runner's hook for
    run i. `steps`: None for a single run, 0 when the count is not known ahead (a search)."""
    if not err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("starting", total=1.0)

        def progress_for(i: int, label: str) -> RunProgress:
            head = "" if steps is None else f"[{i + 1}/{steps}] " if steps else f"[step {i + 1}] "

            def progress(phase: str, elapsed: float, run_total: float) -> None:
                done = min(max(elapsed, 0.0), run_total) / run_total if run_total > 0 else 0.0
                bar.update(task, completed=done, description=f"{head}{label}: {phase}")

            return progress

        yield progress_for


class Execution:
    """The runs of one command on their etcd, in one results document saved after each run.

    The runs of one server follow each other (a scenario's cells are grouped so): each etcd is
    started for its first run and stopped before the next one starts."""

    def __init__(
        self,
        targets: dict[Server, Target],
        saver: Saver,
        stack: ExitStack,
        results: ResultsFile,
    ) -> None:
        self.results = results
        self._targets = targets
        self._saver = saver
        self._stack = stack  # holds the etcd in use
        self.progress_for: Callable[[int, str], RunProgress] | None = None  # the live display, if any
        self.fresh = False  # a new embedded etcd for every run (`run --fresh-etcd`), not one per server
        self._server, self._target = next(iter(targets.items()))
        self._used = [self._target]  # in order: environment.etcd is the first one's

    def run(self, config: RunConfig, label: str) -> Run:
        """Run `config` on its etcd and add it to the results (not saved yet: see save)."""
        again = self.fresh and bool(self.results.runs)
        if server_of(config) != self._server or again:  # the next etcd: stop this one first
            self._stack.close()
            target = self._targets[server_of(config)]
            self._server = server_of(config)
            self._stack.enter_context(target)
            if target is not self._target:
                self._used.append(target)
            self._target = target
        i = len(self.results.runs)
        hook = self.progress_for(i, label) if self.progress_for else None
        run = self._target.run(config, hook)
        self.add(run)
        return run

    def add(self, run: Run) -> None:
        self.results = replace(self.results, runs=[*self.results.runs, run])

    def current(self, *, complete: bool) -> ResultsFile:
        """The results as they stand, each etcd described as its target knows it now (a run adds its
        server version and members); `complete`: no run is missing or cut short."""
        env = replace(self.results.environment, etcd=self._used[0].etcd_info())
        if len(self._targets) > 1:  # each etcd's own description; environment.etcd stays the first one's
            env = replace(env, etcds=[t.etcd_info() for t in self._used])
        self.results = replace(self.results, environment=env, complete=complete)
        return self.results

    def save(self, *, complete: bool) -> None:
        """Write the results as they stand; `complete`: no run is missing or cut short."""
        self._saver(self.current(complete=complete))


@contextmanager
def execution(
    targets: dict[Server, Target], saver: Saver, out: Console, err: Console, *, steps: int | None
) -> Iterator[Execution]:
    """Start the first target and yield the Execution of the runs; on the way out, by an exception
    too, save what ran (Saver.keeping_partial) and stop the etcd."""
    with ExitStack() as stack:
        target = stack.enter_context(next(iter(targets.values())))
        runs = Execution(targets, saver, stack, target.results())
        with saver.keeping_partial(runs, out, err), progress_bar(err, steps) as progress_for:
            runs.progress_for = progress_for
            yield runs


def stop_if_etcd_gone(run: Run) -> None:
    """A run etcd did not survive ends the matrix or search: the next one could only fail to start."""
    if run.incomplete is not None:
        raise EtcdError(f"{run.label}: {run.incomplete}")


def verdict_code(runs: Sequence[Run]) -> int:
    """PASS when every run passed, else FAIL."""
    return EXIT_PASS if all(r.verdict.pass_ for r in runs) else EXIT_FAIL
