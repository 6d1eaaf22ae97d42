"""One run: a watcher process and N writer processes against one etcd, then the books are closed.

Order of events: the watcher and writers start (spawn) and get ready (backends connected, objects
encoded); the parent picks t0 a moment ahead and sends it to all; writers write until their schedule
ends; the parent tells the watcher how many acknowledged writes to expect; the watcher drains; the
parent reconciles writer acknowledgements with watcher sightings.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from etcdbench.backends.base import Backend, Endpoint
from etcdbench.errors import EtcdError
from etcdbench.faults import FaultInjector
from etcdbench.metrics.cpu import CpuSampler
from etcdbench.results.model import build_run
from etcdbench.scenario import RunConfig
from etcdbench.workload.timeline import NS, Timeline
from etcdbench.workload.watcher import WatcherPlan, run_watcher
from etcdbench.workload.writer import WriterPlan, run_writer

READY_TIMEOUT_S = 60.0
START_LEAD_S = 0.5  # t0 this far ahead of "all ready", so no process starts late
GRACE_S = 30.0  # how long past its schedule a writer may take to finish its last puts
MIN_PRELOAD_RATE = 100.0  # keys/s: a preload slower than this is reported as a failure, not waited for
EXPIRY_GRACE_S = 3.0  # etcd revokes expired leases in periodic batches: allow this much lateness

# Progress: (phase, seconds elapsed since t0, run seconds) — a display hook, never required.
Progress = Callable[[str, float, float], None]


class _Child:
    def __init__(self, ctx: Any, name: str, target: Callable[..., None], plan: object) -> None:
        self.name = name
        self.conn, child_conn = ctx.Pipe()
        self.proc: BaseProcess = ctx.Process(target=target, args=(plan, child_conn), name=name, daemon=True)
        # The child inherits SIGINT ignored (kept across exec): a terminal's Ctrl-C reaches the whole
        # process group, but only the parent should act on it, by stopping the children in order.
        # (Handlers can only be changed from the main thread.)
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            self.proc.start()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
            child_conn.close()

    def expect(self, what: str, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise EtcdError(f"{self.name} did not report {what!r} within {timeout:g} s")
        try:
            tag, payload = self.conn.recv()
        except EOFError:
            raise EtcdError(f"{self.name} exited unexpectedly (exit code {self.proc.exitcode})") from None
        if tag == "error":
            raise EtcdError(str(payload))
        if tag != what:
            raise EtcdError(f"{self.name} sent {tag!r}, expected {what!r}")
        return payload

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _streams(config: RunConfig) -> list[int]:
    """Watches per watcher process: `watchers` split into streams of `watchers_per_stream`."""
    full, rest = divmod(config.watchers, config.watchers_per_stream)
    return [config.watchers_per_stream] * full + ([rest] if rest else [])


def run_once(
    config: RunConfig,
    endpoint: Endpoint,
    admin: Backend,
    etcd_pids: Sequence[int] = (),
    progress: Progress | None = None,
    faults: FaultInjector | None = None,
    start_at: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """Preload, then measure `config`; `admin` is the parent's own connection (revision, db size).

    `faults`, if given, is started at t0 and has finished (etcd resumed or restarted) when this returns.
    `start_at`, if given, picks t0 (monotonic ns) once every process is ready: shards agree on it.
    """
    ctx = mp.get_context("spawn")  # gRPC and threads do not survive fork
    children: list[_Child] = []
    sampler: CpuSampler | None = None
    try:
        writers = [
            _Child(ctx, f"writer {w}", run_writer, WriterPlan(config.writer_id(w), config, endpoint))
            for w in range(config.writers)
        ]
        children.extend(writers)
        preload_keys = sum(config.preload.values()) + config.objects
        ready = [w.expect("ready", READY_TIMEOUT_S + preload_keys / MIN_PRELOAD_RATE) for w in writers]
        preload = {
            "keys": sum(r["preloaded"] for r in ready),
            "seconds": round(max(r["preload_s"] for r in ready), 3),
            "db_size_bytes": admin.db_size(),
        }

        # The watch starts after the preload: what the run writes from here on is what it must receive.
        start_revision = admin.current_revision() + 1
        watchers = [
            _Child(ctx, f"watcher {i}", run_watcher, WatcherPlan(config, endpoint, start_revision, i, n))
            for i, n in enumerate(_streams(config))
        ]
        children.extend(watchers)
        for w in watchers:
            w.expect("ready", READY_TIMEOUT_S)

        groups = {
            "watcher": [w.proc.pid or 0 for w in watchers],
            "writers": [w.proc.pid or 0 for w in writers],
        }
        if etcd_pids:
            groups["etcd"] = list(etcd_pids)
        sampler = CpuSampler(groups)
        sampler.start()
        t0_ns = start_at() if start_at else time.monotonic_ns() + round(START_LEAD_S * NS)
        timeline = Timeline(t0_ns, config.warmup_s, config.duration_s)
        for child in children:
            child.conn.send(("start", t0_ns))
        if faults is not None:
            faults.on_restart = lambda pid: sampler.add("etcd", pid) if sampler else None
            faults.start(t0_ns / NS)

        run_s = config.warmup_s + config.duration_s
        writer_results = []
        for w in writers:
            deadline = t0_ns / NS + run_s + GRACE_S
            while not w.conn.poll(0.25):
                if progress:
                    progress("writing", time.monotonic() - t0_ns / NS, run_s)
                if time.monotonic() > deadline:
                    raise EtcdError(f"{w.name} did not finish within {GRACE_S:g} s of its schedule")
            writer_results.append(w.expect("done", 0))
        if faults is not None:
            faults.stop()
        writes_end = time.monotonic()
        expiring = [expiry for r in writer_results for _, expiry in r["expiring"]]
        puts = sum(bytes(r["acked"]).count(1) for r in writer_results)
        keys = [key for r in writer_results for key, _ in (*r["deletes"], *r["expiring"])]
        until_ns = max(expiring) + round(EXPIRY_GRACE_S * NS) if expiring else 0
        for w in watchers:
            w.conn.send(("drain", (puts, keys, until_ns)))
        watcher_results = []
        for w in watchers:
            while not w.conn.poll(0.25):
                if progress:
                    progress("draining", time.monotonic() - t0_ns / NS, run_s)
            watcher_results.append(w.expect("done", 0))
        sampler.stop()
        window = (timeline.window_start_ns / NS, timeline.window_end_ns / NS)
        cpu = {name: sampler.cores(name, *window) for name in [*groups, "host"]}
        cpu["watcher_max"] = max(
            (sampler.cores_of(pid, *window) or 0.0 for pid in groups["watcher"]), default=None
        )
        cpu["writer_max"] = max(
            (sampler.cores_of(pid, *window) or 0.0 for pid in groups["writers"]), default=None
        )
        return build_run(
            config,
            writer_results,
            watcher_results,
            timeline=timeline,
            preload=preload,
            cpu=cpu,
            cpu_timeseries=sampler.timeseries(t0_ns / NS),
            drain_s=time.monotonic() - writes_end,
            faults=faults.timeline if faults is not None else None,
        )
    finally:
        if faults is not None:
            faults.stop()
        if sampler is not None:
            sampler.stop()
        for child in children:
            child.stop()
