"""The delay proxy (--rtt, --jitter, --bandwidth) in front of a real etcd: it delays by what was asked,
carries v2 and v3 runs with exact books, and never outlives a run (the proxy alone, with no etcd:
tests/unit/test_delay_proxy_sockets.py).

Accuracy is checked at a large RTT (40 ms) against the median, so that a busy machine's scheduling
noise (~1 ms) is small beside it; nothing else here asserts a time."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from processes import running
from tls_pki import Pki, client_creds

from etcdbench.backends.base import Endpoint
from etcdbench.backends.transport.http1 import Connection, Server
from etcdbench.backends.v3 import V3Backend
from etcdbench.bench.target import Target, run_watch
from etcdbench.config.run import RunConfig
from etcdbench.errors import EXIT_INTERRUPTED, UsageError
from etcdbench.etcd import LocalEtcd
from etcdbench.network.proxy import DelayProxy

RTT_MS = 40.0
TOLERANCE = 0.10


# ---------------------------------------------------------------------------------------- helpers


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/"))


def _spawned(proc: psutil.Process) -> bool:
    try:
        return "spawn_main" in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def _revision(server: LocalEtcd) -> int:
    v3 = V3Backend(Endpoint((server.client_url,)))
    try:
        return v3.current_revision()
    finally:
        v3.close()


def _window(proxy: DelayProxy, seconds: float = 600.0) -> None:
    now = time.monotonic_ns()
    proxy.measure(now, now + round(seconds * 1e9))


# ---------------------------------------------------------------------------------------- accuracy


def test_measured_rtt_is_within_ten_percent_of_the_asked(etcd_server: LocalEtcd) -> None:
    """Both the proxy's own probes and a client asking etcd for /version through it see the asked
    RTT (median, +etcd's answer time, which is small beside 40 ms)."""
    endpoint = Endpoint((etcd_server.client_url,))
    with DelayProxy(endpoint) as proxy:
        proxy.set_shape(RunConfig(rtt_us=round(RTT_MS * 1000)))
        _window(proxy)
        conn = Connection([Server("127.0.0.1", _port(proxy.endpoint.urls[0]))])
        times = []
        for _ in range(30):
            start = time.perf_counter()
            response = conn.request(b"GET", b"/version", timeout=5.0)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status == 200
        conn.close()
        report = proxy.report()
    client_ms = statistics.median(times[1:])  # the first one also paid for the connection
    probes_ms = report["rtt_us"]["p50"] / 1000
    assert report["rtt_us"]["count"] >= 10
    assert abs(client_ms - RTT_MS) <= TOLERANCE * RTT_MS, times
    assert abs(probes_ms - RTT_MS) <= TOLERANCE * RTT_MS, report["rtt_us"]


def test_jitter_spreads_the_round_trip_around_the_asked_value(etcd_server: LocalEtcd) -> None:
    with DelayProxy(Endpoint((etcd_server.client_url,))) as proxy:
        proxy.set_shape(RunConfig(rtt_us=40_000, jitter_us=10_000))
        _window(proxy)
        time.sleep(2.0)  # probes every 50 ms
        rtt = proxy.report()["rtt_us"]
    assert abs(rtt["p50"] / 1000 - RTT_MS) <= TOLERANCE * RTT_MS, rtt
    assert rtt["max"] - rtt["p50"] > 2_000, rtt  # two hops of ±10 ms: the spread is visible


# ---------------------------------------------------------------------------------------- runs


def _run_through_proxy(server: LocalEtcd, config: RunConfig) -> tuple[dict[str, Any], int]:
    """The run as its results file keeps it, and the proxy's pid."""
    with Target(endpoints=[server.client_url]) as target:
        run = target.run(config)
        assert target.proxy is not None
        pid = target.proxy.pid
        assert running(pid)
    return run.to_dict(), pid


@pytest.mark.parametrize("backend", ["v2", "v3"])
def test_a_run_through_the_proxy_keeps_exact_books(
    etcd_server: LocalEtcd, fresh_prefix: str, backend: str
) -> None:
    config = RunConfig(
        backend=backend,
        encoding="json",
        rate=50,
        objects=20,
        duration_s=2,
        warmup_s=0.5,
        prefix=fresh_prefix,
        rtt_us=4_000,
        jitter_us=1_000,
    )
    run, pid = _run_through_proxy(etcd_server, config)
    c = run["counters"]
    assert c["attempted"] == c["writes"] == c["written"] == c["received"] == config.total_writes
    assert c["missed"] == c["duplicates"] == c["out_of_order"] == c["errors"] == 0
    net = run["network"]
    assert net["rtt_ms_asked"] == 4.0 and net["jitter_ms"] == 1.0
    assert set(net["measured_rtt_ms"]) == {"p50", "p99", "max"}
    assert net["measured_rtt_ms"]["p50"] is not None and net["rtt_probes"] > 0
    assert net["proxy_cpu_cores"] is not None and net["forwarded_mb"] > 0
    assert net["connections"] >= 3  # admin, writer, watcher
    assert "proxy" in run["cpu"]
    assert isinstance(net["proxy_fell_behind"], bool)
    assert net["proxy_scheduling"] in ("realtime", "nice -10", "normal")
    assert run["verdict"]["client_bound"] == (
        net["proxy_fell_behind"] or bool(run["verdict"]["client_bound_reasons"])
    )
    assert not running(pid)


def test_measured_rtt_is_within_ten_percent_at_the_scenario_rate(
    etcd_server: LocalEtcd, fresh_prefix: str
) -> None:
    """During a run at the 5,000-node cluster's 500 writes/s of Pods, the probes through the proxy
    still read the asked RTT (median): the proxy keeps its schedule under the load it carries."""
    config = RunConfig(
        rate=500, objects=200, duration_s=3, warmup_s=0.5, prefix=fresh_prefix, rtt_us=round(RTT_MS * 500)
    )
    run, _ = _run_through_proxy(etcd_server, config)
    asked = config.rtt_us / 1000
    assert run["counters"]["missed"] == 0
    assert abs(run["network"]["measured_rtt_ms"]["p50"] - asked) <= TOLERANCE * asked, run["network"]


@pytest.mark.parametrize("backend", ["v2", "v3"])
def test_tls_passes_through_the_proxy(tls_etcd: LocalEtcd, pki: Pki, fresh_prefix: str, backend: str) -> None:
    """TLS with client certificates, end to end through the proxy: its bytes are opaque to it."""
    config = RunConfig(
        backend=backend, rate=50, objects=20, duration_s=1, warmup_s=0, prefix=fresh_prefix, rtt_us=4_000
    )
    results = run_watch(config, endpoints=[tls_etcd.client_url], etcd_bin=None, credentials=client_creds(pki))
    (run,) = results.runs
    c = run.counters
    assert c.written == c.received == config.total_writes and c.missed == c.errors == 0
    assert run.network is not None
    assert run.network.connections >= 3 and run.network.forwarded_mb > 0


def test_no_rtt_means_no_proxy(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    config = RunConfig(rate=20, objects=5, duration_s=1, warmup_s=0, prefix=fresh_prefix)
    with Target(endpoints=[etcd_server.client_url]) as target:
        run = target.run(config)
        assert target.proxy is None
    assert "network" not in run.to_dict() and "proxy" not in run.cpu


def test_the_proxy_is_gone_after_a_failed_run(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    v3 = V3Backend(Endpoint((etcd_server.client_url,)))
    try:
        v3.put_async(fresh_prefix + "someone-elses", b"x", lambda exc: None)
        deadline = time.monotonic() + 10
        while not v3.count_prefix(fresh_prefix) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        v3.close()
    config = RunConfig(rate=20, objects=5, duration_s=1, warmup_s=0, prefix=fresh_prefix, rtt_us=2_000)
    pid = 0
    with (
        pytest.raises(UsageError, match="already holds"),
        Target(endpoints=[etcd_server.client_url]) as target,
    ):
        try:
            target.run(config)
        finally:
            assert target.proxy is not None
            pid = target.proxy.pid
    assert pid and not running(pid)


def test_the_proxy_is_gone_after_ctrl_c(etcd_server: LocalEtcd, fresh_prefix: str, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "etcdbench", "watch", "--endpoints", etcd_server.client_url,
        "--prefix", fresh_prefix, "--rate", "50", "--objects", "10", "--duration", "60", "--warmup", "0",
        "--rtt", "10ms", "--output", str(tmp_path / "r.json"),
    ]  # fmt: skip
    first = _revision(etcd_server)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 90
        proxy = None
        children: list[psutil.Process] = []
        while proxy is None or len(children) < 3:  # the proxy, a writer, the watcher
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
            children = parent.children(recursive=True)
            for child in children:
                with contextlib.suppress(psutil.Error):
                    if any(c.status == psutil.CONN_LISTEN for c in child.net_connections("tcp")):
                        proxy = child
        while _revision(etcd_server) < first + 10 + 30:  # the preload's 10 objects, then 30 writes
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not write"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert proxy is not None
    # etcdbench's own processes (multiprocessing's resource tracker exits on its own, a moment later)
    ours = [c for c in children if c.pid == proxy.pid or _spawned(c)]
    _, alive = psutil.wait_procs(ours, timeout=5)
    assert not alive, alive
