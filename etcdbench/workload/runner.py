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
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from etcdbench.backends.base import Endpoint
from etcdbench.errors import EtcdError
from etcdbench.metrics.cpu import CpuSampler
from etcdbench.results.model import build_run
from etcdbench.scenario import RunConfig
from etcdbench.workload.timeline import NS, Timeline
from etcdbench.workload.watcher import WatcherPlan, run_watcher
from etcdbench.workload.writer import WriterPlan, run_writer

READY_TIMEOUT_S = 60.0
START_LEAD_S = 0.5  # t0 this far ahead of "all ready", so no process starts late
GRACE_S = 30.0  # how long past its schedule a writer may take to finish its last puts

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


def run_once(
    config: RunConfig,
    endpoint: Endpoint,
    start_revision: int,
    etcd_pid: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # gRPC and threads do not survive fork
    children: list[_Child] = []
    sampler: CpuSampler | None = None
    try:
        watcher = _Child(ctx, "watcher", run_watcher, WatcherPlan(config, endpoint, start_revision))
        children.append(watcher)
        writers = [
            _Child(ctx, f"writer {w}", run_writer, WriterPlan(w, config, endpoint))
            for w in range(config.writers)
        ]
        children.extend(writers)
        for child in children:
            child.expect("ready", READY_TIMEOUT_S)

        groups = {"watcher": [watcher.proc.pid or 0], "writers": [w.proc.pid or 0 for w in writers]}
        if etcd_pid:
            groups["etcd"] = [etcd_pid]
        sampler = CpuSampler(groups)
        sampler.start()
        t0_ns = time.monotonic_ns() + round(START_LEAD_S * NS)
        timeline = Timeline(t0_ns, config.warmup_s, config.duration_s)
        for child in children:
            child.conn.send(("start", t0_ns))

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
        writes_end = time.monotonic()
        watcher.conn.send(("drain", sum(bytes(r["acked"]).count(1) for r in writer_results)))
        while not watcher.conn.poll(0.25):
            if progress:
                progress("draining", time.monotonic() - t0_ns / NS, run_s)
        watcher_result = watcher.expect("done", 0)
        sampler.stop()
        cpu = {
            name: sampler.cores(name, timeline.window_start_ns / NS, timeline.window_end_ns / NS)
            for name in [*groups, "host"]
        }
        return build_run(
            config,
            writer_results,
            watcher_result,
            cpu=cpu,
            cpu_timeseries=sampler.timeseries(t0_ns / NS),
            drain_s=time.monotonic() - writes_end,
        )
    finally:
        if sampler is not None:
            sampler.stop()
        for child in children:
            child.stop()
