"""The delay proxy as etcdbench uses it: a process of its own between every client and etcd.

`DelayProxy(endpoint)` starts the process (etcdbench.network.delay) with one listener per endpoint
URL; `proxy.endpoint` is the same endpoint with each URL pointing at its listener instead, so every
client made from it — writers, watchers, admin calls — goes through the delay. A run then:

    proxy.set_shape(config)                    # its RTT, jitter and bandwidth
    run_once(..., network=proxy)               # the runner samples proxy.pid and calls measure()
    run["network"] = proxy.network(config, run)

The process has its own interpreter (its own GIL), so its CPU is attributed apart from the writers',
the watcher's and etcd's. It ignores SIGINT and SIGTERM: after a Ctrl-C the writers and the watcher
still need etcd to finish and report. It exits when told, or when the parent's end of its pipe
closes (the parent died, even by SIGKILL); `stop()` kills it if it does not.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from etcdbench.backends.base import Endpoint
from etcdbench.config.run import RunConfig
from etcdbench.errors import EtcdError, UsageError
from etcdbench.interrupt import ChildProcesses, start_child
from etcdbench.network.delay import Shape, serve
from etcdbench.results.model import Network, RttMs, Run
from etcdbench.results.verdict import judged

START_TIMEOUT_S = 30.0
REPORT_TIMEOUT_S = 10.0
STOP_WAIT_S = 2.0
# The proxy fell behind its schedule when its delivery lag p99 exceeds this much, or this fraction of
# the asked RTT if that is more: the path it emulated was then longer than asked, and not by etcd.
LAG_BOUND_US = 1_000
LAG_BOUND_FRACTION = 0.1
PROXY_NICE = -10


def shape_of(config: RunConfig) -> Shape:
    return Shape(
        delay_ns=config.rtt_us * 1000 // 2,
        jitter_ns=config.jitter_us * 1000,
        bandwidth_bps=config.bandwidth_mbit * 1e6 / 8,
    )


def wants_proxy(config: RunConfig) -> bool:
    """Whether the run asks for an emulated network at all (else clients talk to etcd directly)."""
    return bool(config.rtt_us or config.jitter_us or config.bandwidth_mbit)


def _upstream(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.hostname is None:
        raise UsageError(f"--endpoints: {url!r} has no host")
    return parts.hostname, parts.port or 2379


def _through(url: str, port: int) -> str:
    parts = urlsplit(url if "://" in url else "http://" + url)
    return urlunsplit((parts.scheme, f"127.0.0.1:{port}", parts.path, "", ""))


def _proxy_main(upstreams: list[tuple[str, int]], control: Connection) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    serve(upstreams, control, _prioritise())


def _prioritise() -> str:
    """A real network's delay does not wait for a CPU behind the processes it serves (the kernel does
    that work ahead of them): when allowed (root, or CAP_SYS_NICE), the proxy runs at the lowest
    real-time priority (round robin; the kernel's real-time throttling, by default 5% of CPU time
    kept for other tasks, still applies), else at nice -10, else as it is. Its CPU is measured either
    way. Returns which it got."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
        return "realtime"
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, PROXY_NICE)
        return f"nice {PROXY_NICE}"
    except OSError:
        return "normal"


class DelayProxy(ChildProcesses):
    """The delay proxy process for `endpoint`; a context manager that stops it on exit."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.target = endpoint
        self.endpoint = endpoint  # through the proxy, once started
        self.pid = 0
        self.scheduling = ""  # how the process is scheduled: "realtime", "nice -10" or "normal"
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        upstreams = [_upstream(u) for u in self.target.urls]
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_proxy_main, args=(upstreams, child), name="etcdbench delay proxy", daemon=True
        )
        try:
            start_child(self._proc)
        finally:
            child.close()
        try:
            ready = self._ask(None, "ready", START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        self.pid = int(ready["pid"])
        self.scheduling = str(ready["scheduling"])
        urls = tuple(_through(u, p) for u, p in zip(self.target.urls, ready["ports"], strict=True))
        self.endpoint = Endpoint(urls, self.target.credentials)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def _ask(self, message: tuple[Any, ...] | None, reply: str, timeout: float) -> Any:
        conn = self._conn
        if conn is None:
            raise EtcdError("the delay proxy is not running")
        with self._lock:
            try:
                if message is not None:
                    conn.send(message)
                if not conn.poll(timeout):
                    raise EtcdError(f"the delay proxy did not answer {reply!r} within {timeout:g} s")
                tag, payload = conn.recv()
            except (EOFError, OSError) as exc:
                code = self._proc.exitcode if self._proc is not None else None
                raise EtcdError(f"the delay proxy exited unexpectedly (exit code {code})") from exc
        if tag == "error":
            raise EtcdError(str(payload))
        if tag != reply:
            raise EtcdError(f"the delay proxy sent {tag!r}, expected {reply!r}")
        return payload

    def _tell(self, message: tuple[Any, ...]) -> None:
        if self._conn is None:
            raise EtcdError("the delay proxy is not running")
        with self._lock:
            try:
                self._conn.send(message)
            except OSError as exc:
                raise EtcdError("the delay proxy exited unexpectedly") from exc

    def set_shape(self, config: RunConfig) -> None:
        """Delay, jitter and bandwidth of `config`, for every chunk read from now on. Waits until the
        proxy has taken it: a run's connections, counted from the shape on, all come after it."""
        self._ask(("shape", shape_of(config)), "shaped", REPORT_TIMEOUT_S)

    def measure(self, start_ns: int, end_ns: int) -> None:
        """Record lag and probe RTTs of the window [start_ns, end_ns) (monotonic ns); resets the last."""
        self._tell(("measure", start_ns, end_ns))

    def report(self) -> dict[str, Any]:
        """What the process measured in the window: lag_us and rtt_us summaries, bytes, connections."""
        report: dict[str, Any] = self._ask(("report",), "report", REPORT_TIMEOUT_S)
        return report

    def attach(self, config: RunConfig, run: Run) -> Run:
        """`run` with its `network` block (docs/results-format.md), judged again: a proxy that fell
        behind makes the run client-bound. A proxy that cannot report leaves it incomplete."""
        try:
            report = self.report()
        except EtcdError as exc:
            if run.incomplete is None:
                run = replace(run, incomplete=str(exc))
        else:
            block = network_block(config, report, run.cpu.get("proxy"), run.duration_s)
            run = replace(run, network=replace(block, proxy_scheduling=self.scheduling))
        return judged(run, config)

    def stop(self) -> None:
        """Stop the process (politely, then by SIGKILL); calling it again does nothing."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
            conn.close()
        if proc is not None:
            proc.join(STOP_WAIT_S)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _ms(us: int | None) -> float | None:
    return None if us is None else round(us / 1000, 3)


def network_block(
    config: RunConfig, report: dict[str, Any], cpu_cores: float | None, duration_s: float
) -> Network:
    """The asked path, what the probes measured, and whether the proxy kept its schedule."""
    rtt, lag = report["rtt_us"], report["lag_us"]
    bound_us = max(LAG_BOUND_US, LAG_BOUND_FRACTION * config.rtt_us)
    mb = report["bytes_forwarded"] / 1e6
    return Network(
        rtt_ms_asked=config.rtt_us / 1000,
        jitter_ms=config.jitter_us / 1000,
        bandwidth_mbit=config.bandwidth_mbit or None,
        measured_rtt_ms=RttMs(p50=_ms(rtt["p50"]), p99=_ms(rtt["p99"]), max=_ms(rtt["max"])),
        rtt_probes=rtt["count"],
        proxy_cpu_cores=None if cpu_cores is None else round(cpu_cores, 3),
        proxy_lag_p99_ms=_ms(lag["p99"]),
        proxy_lag_max_ms=_ms(lag["max"]),
        proxy_fell_behind=lag["p99"] is not None and lag["p99"] > bound_us,
        forwarded_mb=round(mb, 3),
        proxy_cpu_ms_per_mb=(
            round(cpu_cores * duration_s * 1000 / mb, 3) if cpu_cores is not None and mb > 0 else None
        ),
        connections=report["connections"],
        refused_connections=report["refused"],
    )
