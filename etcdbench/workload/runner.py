"""One run: a watcher process and N writer processes against one etcd, then the books are closed.

Order of events: the watcher and writers start (spawn) and get ready (backends connected, objects
encoded); the parent picks t0 a moment ahead and sends it to all; writers write until their schedule
ends; the parent tells the watcher how many acknowledged writes to expect; the watcher drains; the
parent reconciles writer acknowledgements with watcher sightings.

Interrupted (Ctrl-C, SIGTERM) after t0, the parent asks every process to stop and report: writers
send nothing more, finish the writes in flight and report (what they never sent is `unsent`); the
watcher gets the writers' acknowledgements and receives what it can of them for a moment. Whoever has
not reported within STOP_WAIT_S is killed and named in the partial run's `missing`. The partial run
rides on the `Interrupted` exception (`partial`); an interrupt before t0 has measured nothing.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

from etcdbench.backends.base import Admin, Endpoint
from etcdbench.config.run import RunConfig
from etcdbench.errors import EtcdError
from etcdbench.etcd.faults import FaultInjector
from etcdbench.interrupt import Interrupted, as_interrupted, shielded, start_child
from etcdbench.metrics.cpu import BACKGROUND, OWN_GROUPS, PARENT, ProcessSampler, sampling_interval
from etcdbench.metrics.etcd_view import EtcdMetricsSampler
from etcdbench.network.proxy import DelayProxy
from etcdbench.results.model import Background, EtcdView, Fault, Memory, Preload, Run
from etcdbench.workload import books
from etcdbench.workload.background import STOP_WAIT_S as BG_STOP_WAIT_S
from etcdbench.workload.background import BackgroundPlan, run_background, summarize
from etcdbench.workload.books import build_run
from etcdbench.workload.reports import BackgroundReport, Drain, StreamReport, WriterReady, WriterReport
from etcdbench.workload.timeline import NS, Timeline
from etcdbench.workload.watcher import WatcherPlan, run_watcher
from etcdbench.workload.writer import WriterPlan, run_writer

READY_TIMEOUT_S = 60.0
START_LEAD_S = 0.5  # t0 this far ahead of "all ready", so no process starts late
GRACE_S = 30.0  # how long past its schedule a writer may take to finish its last puts
MIN_PRELOAD_RATE = 100.0  # keys/s: a preload slower than this is reported as a failure, not waited for
# After an interrupt: how long the processes get to stop and report before they are killed. The
# watcher spends at most watcher.STOP_DRAIN_S of it receiving the last acknowledged writes.
STOP_WAIT_S = 5.0
EXIT_WAIT_S = 5.0  # a process that reported gets this long to exit by itself before it is killed

R = TypeVar("R")  # what a child process reports when done

# Progress: (phase, seconds elapsed since t0, run seconds) — a display hook, never required.
Progress = Callable[[str, float, float], None]


# ---------------------------------------------------------------------------------------- children


def _ignore_sigterm() -> None:
    # A SIGTERM to the whole group (systemd, a container runtime) must not kill a child before the
    # parent has asked for its books; the parent stops children with SIGKILL when it must.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _watcher_main(plan: WatcherPlan, conn: Connection) -> None:
    _ignore_sigterm()
    run_watcher(plan, conn)


def _background_main(plan: BackgroundPlan, conn: Connection) -> None:
    _ignore_sigterm()
    run_background(plan, conn)


def _writer_main(plan: WriterPlan, conn: Connection, stop_pipe: Connection) -> None:
    """run_writer, stopped early when the parent writes to `stop_pipe` (the run was interrupted)."""
    _ignore_sigterm()
    stop = threading.Event()

    def await_stop() -> None:
        try:
            stop_pipe.recv()
        except (EOFError, OSError):
            return  # the parent closed the pipe: the run ended normally
        stop.set()

    threading.Thread(target=await_stop, name="stop", daemon=True).start()
    run_writer(plan, conn, stop)


class _Child(Generic[R]):
    """A child process and its pipe; it reports an `R` when done."""

    def __init__(
        self,
        ctx: Any,
        name: str,
        target: Callable[..., None],
        plan: object,
        report_type: type[R],
        *,
        stop_pipe: bool = False,
    ) -> None:
        self.name = name
        self.report_type = report_type
        self.conn, child_conn = ctx.Pipe()
        args: tuple[object, ...] = (plan, child_conn)
        self.stop_conn: Connection | None = None
        child_stop = None
        if stop_pipe:
            child_stop, self.stop_conn = ctx.Pipe(duplex=False)
            args += (child_stop,)
        self.proc: BaseProcess = ctx.Process(target=target, args=args, name=name, daemon=True)
        try:
            start_child(self.proc)
        finally:
            child_conn.close()
            if child_stop is not None:
                child_stop.close()

    def expect(self, what: str, timeout: float, progress: Callable[[Any], None] | None = None) -> object:
        """The payload of the child's `what`; the "preloading" reports before it go to `progress`."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                raise EtcdError(f"{self.name} did not report {what!r} within {timeout:g} s")
            try:
                tag, payload = self.conn.recv()
            except EOFError:
                raise EtcdError(f"{self.name} exited unexpectedly (exit code {self.proc.exitcode})") from None
            if tag != "preloading":
                break
            if progress is not None:
                progress(payload)
        if tag == "error":
            raise EtcdError(str(payload))
        if tag != what:
            raise EtcdError(f"{self.name} sent {tag!r}, expected {what!r}")
        return payload

    def done(self, timeout: float) -> R:
        """The child's report, which it sends when done."""
        return self._typed(self.expect("done", timeout))

    def _typed(self, payload: object) -> R:
        if not isinstance(payload, self.report_type):
            what = self.report_type.__name__
            raise EtcdError(f"{self.name} reported a {type(payload).__name__}, not a {what}")
        return payload

    def tell(self, message: object) -> None:
        """Send to a child that may be gone already (then there is nothing to tell)."""
        with contextlib.suppress(OSError):
            self.conn.send(message)

    def ask_to_stop(self) -> None:
        if self.stop_conn is not None:
            with contextlib.suppress(OSError):
                self.stop_conn.send(None)

    def report(self, deadline: float) -> R | None:
        """The child's report if it comes by `deadline` (monotonic s); None if not, or if it sent an
        error (or anything else) or died."""
        try:
            if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                return None
            tag, payload = self.conn.recv()
        except (EOFError, OSError):
            return None
        return payload if tag == "done" and isinstance(payload, self.report_type) else None


def _stop_children(children: Sequence[_Child[Any]], grace_s: float) -> None:
    """Let each child exit by itself for up to `grace_s` (all together), then SIGKILL what is left."""
    deadline = time.monotonic() + grace_s
    for child in children:
        if child.proc.is_alive():
            child.proc.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.proc.is_alive():
            child.proc.kill()
            child.proc.join()
        child.conn.close()
        if child.stop_conn is not None:
            child.stop_conn.close()


def drain_message(reports: Sequence[WriterReport], *, wait_for_expiries: bool) -> Drain:
    """What the watchers must see before they may stop, from the writers that reported."""
    deletes = [(d.key, d.intended_ns) for r in reports for d in r.deletes]
    keys = [key for key, _ in deletes]
    expiring = [expiry for r in reports for _, expiry in r.expiring] if wait_for_expiries else []
    if wait_for_expiries:
        keys += [key for r in reports for key, _ in r.expiring]
    until_ns = max(expiring) + round(books.EXPIRY_GRACE_S * NS) if expiring else 0
    return Drain({r.writer_id: r.acked for r in reports}, deletes, keys, until_ns)


def _streams(config: RunConfig) -> list[int]:
    """Watches per watcher process: `watchers` split into streams of `watchers_per_stream`."""
    full, rest = divmod(config.watchers, config.watchers_per_stream)
    return [config.watchers_per_stream] * full + ([rest] if rest else [])


def _memory(sampler: ProcessSampler, groups: list[str], window: tuple[float, float]) -> dict[str, Memory]:
    """RSS trends over the measured window: all etcdbench processes together, each group, and etcd."""
    out = {}
    own = tuple(g for g in OWN_GROUPS if g == PARENT or g in groups)
    for name, members in [("etcdbench", own), *((g, (g,)) for g in (PARENT, *groups))]:
        trend = sampler.memory(members, *window)
        if trend is not None:
            out[name] = Memory.from_dict(trend.to_dict())
    return out


# ---------------------------------------------------------------------------------------- measurement


class _Measurement:
    """A run from t0 on: the processes, what they reported so far, and how to close the books."""

    def __init__(
        self,
        config: RunConfig,
        writers: list[_Child[WriterReport]],
        watchers: list[_Child[StreamReport]],
        timeline: Timeline,
        sampler: ProcessSampler,
        groups: dict[str, list[int]],
        preload: Preload,
        faults: FaultInjector | None,
        etcd_metrics: EtcdMetricsSampler | None = None,
        background: _Child[BackgroundReport] | None = None,
    ) -> None:
        self.config = config
        self.background = background  # the apiserver's other traffic, if the run has any
        self.background_result: Background | None = None
        self.etcd_metrics = etcd_metrics
        self.writers = writers
        self.watchers = watchers
        self.timeline = timeline
        self.sampler = sampler
        self.groups = groups
        self.preload = preload
        self.faults = faults
        self.writer_results: dict[int, WriterReport] = {}
        self.watcher_results: dict[int, StreamReport] = {}
        self.drained = False  # the watchers were told what to expect
        self.writes_end = 0.0

    @property
    def t0(self) -> float:
        return self.timeline.t0_ns / NS

    def collect(self, progress: Progress | None) -> Run:
        """The whole run: the writers' schedules, the watchers' drain, then the books."""
        run_s = self.config.warmup_s + self.config.duration_s
        deadline = self.t0 + run_s + GRACE_S
        for i, w in enumerate(self.writers):
            while not w.conn.poll(0.25):
                if progress:
                    progress("writing", time.monotonic() - self.t0, run_s)
                if time.monotonic() > deadline:
                    raise EtcdError(f"{w.name} did not finish within {GRACE_S:g} s of its schedule")
            with shielded():  # an interrupt mid-message would lose the report it is reading
                self.writer_results[i] = w.done(0)
        if self.faults is not None:
            self.faults.stop()
        self.writes_end = time.monotonic()
        stop_ns = time.monotonic_ns()
        self._drain(wait_for_expiries=True)
        self._stop_background(stop_ns)
        for i, stream in enumerate(self.watchers):
            while not stream.conn.poll(0.25):
                if progress:
                    progress("draining", time.monotonic() - self.t0, run_s)
            with shielded():
                self.watcher_results[i] = stream.done(0)
        return self._build(self.timeline, since=self.writes_end)

    def _stop_background(self, at_ns: int) -> None:
        """The writers ended: stop the background load and take its counts (EtcdError if it failed)."""
        bg = self.background
        if bg is None:
            return
        with shielded():
            bg.tell(("stop", at_ns))
        bg.conn.poll(STOP_WAIT_S + BG_STOP_WAIT_S)  # an interrupt meanwhile: stop() collects it
        with shielded():  # an interrupt mid-message would lose the report it is reading
            self.background_result = summarize(bg.done(0))

    def _drain(self, *, wait_for_expiries: bool, collecting: bool = False) -> None:
        """Tell the watchers what the writers that reported had acknowledged."""
        message = drain_message(list(self.writer_results.values()), wait_for_expiries=wait_for_expiries)
        with shielded(collecting=collecting):  # half a message would leave a watcher unable to read on
            for w in self.watchers:
                w.tell(("drain", message))
        self.drained = True

    def stop(self, interrupt: Interrupted, progress: Progress | None) -> Run:
        """After an interrupt: stop every process, gather what it measured (bounded), close the books."""
        deadline = time.monotonic() + STOP_WAIT_S
        if progress:
            progress("stopping", time.monotonic() - self.t0, self.config.warmup_s + self.config.duration_s)
        if self.faults is not None:
            self.faults.abort(timeout=1.0)  # a paused etcd is resumed: it must answer the last puts
        for i, w in enumerate(self.writers):
            if i not in self.writer_results:
                w.ask_to_stop()
        with shielded(collecting=True):
            for stream in self.watchers:
                stream.tell(("stop", interrupt.at_ns))
            if self.background is not None and self.background_result is None:
                self.background.tell(("stop", interrupt.at_ns))
        for i, w in enumerate(self.writers):
            if i not in self.writer_results and (written := w.report(deadline)) is not None:
                self.writer_results[i] = written
        if not self.drained:
            self._drain(wait_for_expiries=False, collecting=True)  # expiries not yet due stay pending
        for i, stream in enumerate(self.watchers):
            if i not in self.watcher_results and (watched := stream.report(deadline)) is not None:
                self.watcher_results[i] = watched
        if self.background is not None and self.background_result is None:
            loaded = self.background.report(deadline)
            if loaded is not None:
                self.background_result = summarize(loaded)
        missing = [w.name for i, w in enumerate(self.writers) if i not in self.writer_results]
        missing += [s.name for i, s in enumerate(self.watchers) if i not in self.watcher_results]
        if self.background is not None and self.background_result is None:
            missing.append(self.background.name)
        return self._build(
            self.timeline.cut(interrupt.at_ns),
            since=interrupt.at_ns / NS,
            incomplete=self._reason(interrupt, missing),
            missing=missing,
        )

    def _reason(self, interrupt: Interrupted, missing: list[str]) -> str:
        t, cfg = self.timeline, self.config
        if interrupt.at_ns < t.window_start_ns:
            when = (
                f"{max(0, interrupt.at_ns - t.t0_ns) / NS:.1f} s into the {cfg.warmup_s:g} s warm-up, "
                "before the measured window"
            )
        elif interrupt.at_ns < t.window_end_ns:
            when = f"after {(interrupt.at_ns - t.window_start_ns) / NS:.1f} s of {cfg.duration_s:g} s"
        else:
            when = f"while the watcher drained, after the whole {cfg.duration_s:g} s"
        reason = f"interrupted by {interrupt.signal} {when}"
        if missing:
            one = len(missing) == 1
            reason += (
                f"; {', '.join(missing)} did not report within {STOP_WAIT_S:g} s and "
                f"{'was' if one else 'were'} killed: what {'it' if one else 'they'} measured is missing"
            )
        return reason

    def _build(
        self, timeline: Timeline, *, since: float, incomplete: str | None = None, missing: Sequence[str] = ()
    ) -> Run:
        """The run's figures; `since`: when the writes ended (or the run was interrupted), for drain_s."""
        self.sampler.stop()
        etcd_view = etcd_series = None
        if self.etcd_metrics is not None:
            self.etcd_metrics.stop()  # after the drain: etcd has sent all it will send
            view = self.etcd_metrics.view()
            etcd_series = view.pop("series")
            etcd_view = EtcdView.from_dict(view)
        drain_s = time.monotonic() - since
        window = (timeline.window_start_ns / NS, timeline.window_end_ns / NS)
        groups = self.groups
        cpu = {name: self.sampler.cores(name, *window) for name in [*groups, "host"]}
        for key, group in (("watcher_max", "watcher"), ("writer_max", "writers")):  # the busiest process
            cpu[key] = max(
                (self.sampler.cores_of(pid, *window) or 0.0 for pid in groups[group]), default=None
            )
        return build_run(
            self.config,
            [self.writer_results[i] for i in sorted(self.writer_results)],
            [self.watcher_results[i] for i in sorted(self.watcher_results)],
            timeline=timeline,
            preload=self.preload,
            cpu=cpu,
            cpu_timeseries=self.sampler.timeseries(self.t0, [*groups, "host"]),
            rss_timeseries=self.sampler.rss_timeseries(self.t0, [PARENT, *groups]),
            memory=_memory(self.sampler, [*groups], window),
            drain_s=drain_s,
            faults=[Fault.from_dict(f) for f in self.faults.timeline] if self.faults is not None else None,
            incomplete=incomplete,
            missing=missing,
            etcd=etcd_view,
            etcd_series=etcd_series,
            background=self.background_result,
        )


def run_once(
    config: RunConfig,
    endpoint: Endpoint,
    admin: Admin,
    etcd_pids: Sequence[int] = (),
    progress: Progress | None = None,
    faults: FaultInjector | None = None,
    start_at: Callable[[], int] | None = None,
    network: DelayProxy | None = None,
    etcd_metrics: EtcdMetricsSampler | None = None,
) -> Run:
    """Preload, then measure `config`; `admin` is the parent's own connection (revision, db size).

    `network`, if given, is the delay proxy every client goes through: its CPU is sampled as "proxy"
    and it measures over the same window.
    `etcd_metrics`, if given, scrapes etcd's own counters from just before t0 until the watchers drained.
    `faults`, if given, is started at t0 and has finished (etcd resumed or restarted) when this returns.
    `start_at`, if given, picks t0 (monotonic ns) once every process is ready: shards agree on it.
    An interrupt raises `Interrupted`, with the partial run as `partial` once t0 has passed.
    """
    ctx = mp.get_context("spawn")  # gRPC and threads do not survive fork
    children: list[_Child[Any]] = []
    sampler: ProcessSampler | None = None
    measurement: _Measurement | None = None
    interrupted = finished = False
    try:
        writers = [
            _Child(
                ctx,
                f"writer {w}",
                _writer_main,
                WriterPlan(config.writer_id(w), config, endpoint),
                WriterReport,
                stop_pipe=True,
            )
            for w in range(config.writers)
        ]
        children.extend(writers)
        preload_keys = sum(config.preload.values()) + config.objects
        stored = [0] * len(writers)  # keys each writer has preloaded so far

        def preloading(w: int) -> Callable[[Any], None]:
            def report(n: Any) -> None:
                stored[w] = int(n)
                if progress:
                    share = min(sum(stored) / max(preload_keys, 1), 1.0)
                    total = config.warmup_s + config.duration_s
                    progress(f"preload {sum(stored):,}/{preload_keys:,} keys", share * total, total)

            return report

        ready: list[WriterReady] = []
        for i, w in enumerate(writers):
            r = w.expect("ready", READY_TIMEOUT_S + preload_keys / MIN_PRELOAD_RATE, preloading(i))
            if not isinstance(r, WriterReady):
                raise EtcdError(f"{w.name} reported ready with {r!r}")
            ready.append(r)
        preload = Preload(
            keys=sum(r.preloaded for r in ready),
            seconds=round(max(r.preload_s for r in ready), 3),
            db_size_bytes=admin.db_size(),
        )

        # The watch starts after the preload: what the run writes from here on is what it must receive.
        start_revision = admin.current_revision() + 1
        watchers = [
            _Child(
                ctx,
                f"watcher {i}",
                _watcher_main,
                WatcherPlan(config, endpoint, start_revision, i, n),
                StreamReport,
            )
            for i, n in enumerate(_streams(config))
        ]
        children.extend(watchers)
        for stream in watchers:
            stream.expect("ready", READY_TIMEOUT_S)
        background = None
        if config.background:  # the apiserver's other traffic: its watches start where the measured one does
            background = _Child(
                ctx,
                "background",
                _background_main,
                BackgroundPlan(config, endpoint, start_revision),
                BackgroundReport,
            )
            children.append(background)
            background.expect("ready", READY_TIMEOUT_S)

        groups = {
            "watcher": [w.proc.pid or 0 for w in watchers],
            "writers": [w.proc.pid or 0 for w in writers],
        }
        if background is not None:
            groups[BACKGROUND] = [background.proc.pid or 0]
        if etcd_pids:
            groups["etcd"] = list(etcd_pids)
        if network is not None:
            groups["proxy"] = [network.pid]
        run_s = config.warmup_s + config.duration_s
        sampler = ProcessSampler({**groups, PARENT: [os.getpid()]}, sampling_interval(run_s))
        sampler.start()
        t0_ns = start_at() if start_at else time.monotonic_ns() + round(START_LEAD_S * NS)
        timeline = Timeline(t0_ns, config.warmup_s, config.duration_s)
        if network is not None:
            network.measure(timeline.window_start_ns, timeline.window_end_ns)
        if etcd_metrics is not None:
            etcd_metrics.start(t0=t0_ns / NS)
        with shielded():  # every process gets t0, or the run has not started
            for child in children:
                child.conn.send(("start", t0_ns))
            measurement = _Measurement(
                config,
                writers,
                watchers,
                timeline,
                sampler,
                groups,
                preload,
                faults,
                etcd_metrics,
                background,
            )
        if faults is not None:
            faults.on_restart = lambda pid: sampler.add("etcd", pid) if sampler else None
            faults.start(t0_ns / NS)
        run = measurement.collect(progress)
        finished = True
        return run
    except KeyboardInterrupt as exc:
        interrupted = True
        if measurement is None:
            raise  # nothing measured yet
        interrupt = as_interrupted(exc)
        interrupt.partial = measurement.stop(interrupt, progress)
        raise interrupt from None
    finally:
        with shielded():  # a second Ctrl-C must not leave processes behind
            if faults is not None:
                if interrupted:
                    faults.abort(timeout=1.0)
                else:
                    faults.stop()
            if sampler is not None:
                sampler.stop()
            if etcd_metrics is not None:
                etcd_metrics.stop()
            # Children that reported are exiting by themselves; any other is stuck or being given up.
            _stop_children(children, EXIT_WAIT_S if finished else 0.0)
