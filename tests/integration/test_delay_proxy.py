"""The delay proxy (--rtt, --jitter, --bandwidth): it delays by what was asked, keeps every byte in
order, carries v2 and v3 runs with exact books, and never outlives etcdbench.

Accuracy is checked at a large RTT (40 ms) against the median, so that a busy machine's scheduling
noise (~1 ms) is small beside it; nothing else here asserts a time."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from test_secure import Pki, client_creds, pki, tls_etcd  # the TLS etcd and its certificates

__all__ = ["pki", "tls_etcd"]  # fixtures, used by name

from etcdbench.backends.base import Endpoint
from etcdbench.backends.transport.http1 import Connection, Server
from etcdbench.backends.v3 import V3Backend
from etcdbench.bench.target import Target, run_watch
from etcdbench.config.network import parse_bandwidth, parse_network_duration
from etcdbench.config.run import RunConfig
from etcdbench.errors import EXIT_INTERRUPTED, UsageError
from etcdbench.etcd import LocalEtcd
from etcdbench.network.proxy import DelayProxy, network_block
from etcdbench.results.verdict import verdict

RTT_MS = 40.0
TOLERANCE = 0.10


# ---------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that sends back every byte it receives; yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return

            def echo(c: socket.socket = conn) -> None:
                with c:
                    while data := c.recv(65536):
                        c.sendall(data)

            threading.Thread(target=echo, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        srv.close()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/"))


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


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


@pytest.mark.integration
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


@pytest.mark.integration
def test_jitter_spreads_the_round_trip_around_the_asked_value(etcd_server: LocalEtcd) -> None:
    with DelayProxy(Endpoint((etcd_server.client_url,))) as proxy:
        proxy.set_shape(RunConfig(rtt_us=40_000, jitter_us=10_000))
        _window(proxy)
        time.sleep(2.0)  # probes every 50 ms
        rtt = proxy.report()["rtt_us"]
    assert abs(rtt["p50"] / 1000 - RTT_MS) <= TOLERANCE * RTT_MS, rtt
    assert rtt["max"] - rtt["p50"] > 2_000, rtt  # two hops of ±10 ms: the spread is visible


def test_every_byte_arrives_in_order_under_jitter() -> None:
    """32 MB in writes of random sizes, echoed back through a proxy whose per-chunk delays vary more
    than the gaps between chunks: the stream that returns is the stream that was sent, and the
    close (a half-close, then the echo server's) arrives behind the last byte, not before it."""
    rng = random.Random(12)
    payload = rng.randbytes(32 * 1024 * 1024)
    with echo_server() as port, DelayProxy(Endpoint((f"http://127.0.0.1:{port}",))) as proxy:
        proxy.set_shape(RunConfig(rtt_us=4_000, jitter_us=2_000))
        sock = socket.create_connection(("127.0.0.1", _port(proxy.endpoint.urls[0])))
        received = hashlib.sha256()
        count = 0

        def read() -> None:
            nonlocal count
            while data := sock.recv(1 << 20):  # until the echo server's close comes through
                received.update(data)
                count += len(data)

        reader = threading.Thread(target=read)
        reader.start()
        pos = 0
        while pos < len(payload):
            n = rng.choice((1, 100, 6_000, 65_536, 300_000))
            sock.sendall(payload[pos : pos + n])
            pos += n
        sock.shutdown(socket.SHUT_WR)
        reader.join(120)
        assert not reader.is_alive()
        sock.close()
    assert count == len(payload)
    assert received.hexdigest() == hashlib.sha256(payload).hexdigest()


def test_bandwidth_caps_a_transfer() -> None:
    """4 MB each way at 40 Mbit/s cannot take less than 0.8 s (a lower bound only: never a speed test)."""
    size, mbit = 4 * 1024 * 1024, 40.0
    with echo_server() as port, DelayProxy(Endpoint((f"http://127.0.0.1:{port}",))) as proxy:
        proxy.set_shape(RunConfig(bandwidth_mbit=mbit))
        sock = socket.create_connection(("127.0.0.1", _port(proxy.endpoint.urls[0])))
        start = time.monotonic()
        threading.Thread(target=sock.sendall, args=(b"x" * size,), daemon=True).start()
        got = 0
        while got < size:
            got += len(sock.recv(1 << 20))
        elapsed = time.monotonic() - start
        sock.close()
    assert elapsed >= 0.95 * size * 8 / (mbit * 1e6)


def test_a_refused_upstream_is_a_reset_for_the_client() -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    with DelayProxy(Endpoint((f"http://127.0.0.1:{port}",))) as proxy:
        proxy.set_shape(RunConfig(rtt_us=2_000))
        sock = socket.create_connection(("127.0.0.1", _port(proxy.endpoint.urls[0])))
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
        sock.close()


# ---------------------------------------------------------------------------------------- runs


def _run_through_proxy(server: LocalEtcd, config: RunConfig) -> tuple[dict, int]:  # type: ignore[type-arg]
    with Target(endpoints=[server.client_url]) as target:
        run = target.run(config)
        assert target.proxy is not None
        pid = target.proxy.pid
        assert not _gone(pid)
    return run, pid


@pytest.mark.integration
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
    assert _gone(pid)


@pytest.mark.integration
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


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["v2", "v3"])
def test_tls_passes_through_the_proxy(tls_etcd: LocalEtcd, pki: Pki, fresh_prefix: str, backend: str) -> None:
    """TLS with client certificates, end to end through the proxy: its bytes are opaque to it."""
    config = RunConfig(
        backend=backend, rate=50, objects=20, duration_s=1, warmup_s=0, prefix=fresh_prefix, rtt_us=4_000
    )
    results = run_watch(config, endpoints=[tls_etcd.client_url], etcd_bin=None, credentials=client_creds(pki))
    (run,) = results["runs"]
    c = run["counters"]
    assert c["written"] == c["received"] == config.total_writes and c["missed"] == c["errors"] == 0
    assert run["network"]["connections"] >= 3 and run["network"]["forwarded_mb"] > 0


@pytest.mark.integration
def test_no_rtt_means_no_proxy(etcd_server: LocalEtcd, fresh_prefix: str) -> None:
    config = RunConfig(rate=20, objects=5, duration_s=1, warmup_s=0, prefix=fresh_prefix)
    with Target(endpoints=[etcd_server.client_url]) as target:
        run = target.run(config)
        assert target.proxy is None
    assert "network" not in run and "proxy" not in run["cpu"]


@pytest.mark.integration
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
    assert pid and _gone(pid)


@pytest.mark.integration
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


# ---------------------------------------------------------------------------------------- input


def test_network_flags_parse_with_units() -> None:
    assert parse_network_duration("--rtt", "2ms") == 2_000
    assert parse_network_duration("--rtt", "0") == 0
    assert parse_network_duration("--jitter", "250us") == 250
    assert parse_bandwidth("1gbit") == 1000.0
    assert parse_bandwidth("100Mbit") == 100.0
    assert parse_bandwidth("0") == 0.0
    assert parse_network_duration("--rtt", "2") == 2_000_000  # a bare number is seconds, as everywhere
    with pytest.raises(UsageError, match="--rtt"):
        parse_network_duration("--rtt", "2x")
    with pytest.raises(UsageError, match="--bandwidth"):
        parse_bandwidth("1GB")


def test_jitter_beyond_half_the_rtt_is_refused() -> None:
    with pytest.raises(UsageError, match="--jitter"):
        RunConfig(rtt_us=2_000, jitter_us=1_500)
    with pytest.raises(UsageError, match="--rtt"):
        RunConfig(rtt_us=-1)
    assert "rtt 2ms" in RunConfig(rtt_us=2_000).label


def test_a_scenario_file_sets_the_network() -> None:
    from etcdbench.config.file import Overrides, build

    doc = {"run": {"rtt_us": 2_000, "jitter_us": 500}, "matrix": {"bandwidth_mbit": [0, 1000]}}
    cells = build(doc, origin="t.toml").cells
    assert [(c.rtt_us, c.jitter_us, c.bandwidth_mbit) for c in cells] == [
        (2_000, 500, 0.0),
        (2_000, 500, 1000.0),
    ]
    overridden = build(doc, origin="t.toml", overrides=Overrides(values={"rtt_us": 0, "jitter_us": 0})).cells
    assert {c.rtt_us for c in overridden} == {0}
    with pytest.raises(UsageError, match=r"t.toml: run.jitter_us: 0.9ms is more than half"):
        build({"run": {"rtt_us": 1_000, "jitter_us": 900}}, origin="t.toml")


_ORPHAN = """
import os, signal, sys
from etcdbench.backends.base import Endpoint
from etcdbench.network.proxy import DelayProxy
if __name__ == "__main__":
    proxy = DelayProxy(Endpoint(("http://127.0.0.1:1",)))
    proxy.start()
    print(proxy.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_proxy_exits_when_etcdbench_is_killed(tmp_path: Path) -> None:
    """SIGKILL runs no cleanup: the proxy notices that its pipe to the parent closed, and exits."""
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(pid)


def _report(lag_p99_us: int) -> dict[str, Any]:
    summary = {"p50": 1, "p99": lag_p99_us, "max": lag_p99_us, "count": 100}
    rtt = {"p50": 2_050, "p99": 2_300, "max": 2_400, "count": 40}
    return {"lag_us": summary, "rtt_us": rtt, "bytes_forwarded": 5_000_000, "connections": 3, "refused": 0}


def test_a_proxy_behind_its_schedule_makes_the_run_client_bound() -> None:
    config = RunConfig(rate=100, rtt_us=2_000)
    on_time = network_block(config, _report(300), 0.2, 10.0)
    assert not on_time["proxy_fell_behind"]
    assert on_time["measured_rtt_ms"] == {"p50": 2.05, "p99": 2.3, "max": 2.4}
    assert on_time["proxy_cpu_ms_per_mb"] == 400.0  # 2 s of CPU for 5 MB
    late = network_block(config, _report(5_000), 0.2, 10.0)
    assert late["proxy_fell_behind"]
    run: dict[str, Any] = {
        "duration_s": 10.0,
        "counters": {"missed": 0, "relists": 0, "errors": 0, "unsent": 0},
        "watch_events_per_s": 100.0,
        "write_rate_achieved": 100.0,
        "latency_us": {"watch": {"p99": 5_000}, "schedule_slip": {"p99": 100}},
        "cpu": {"watcher": 0.1, "writers": 0.1},
        "network": late,
    }
    v = verdict(run, config)
    assert v["pass"] and v["client_bound"]
    assert v["client_bound_reasons"] == ["the delay proxy fell behind its schedule (lag p99 5 ms)"]
    run["network"] = on_time
    assert not verdict(run, config)["client_bound"]


def test_an_endpoint_named_by_host_is_resolved_once() -> None:
    with echo_server() as port, DelayProxy(Endpoint((f"http://localhost:{port}",))) as proxy:
        proxy.set_shape(RunConfig(rtt_us=2_000))
        sock = socket.create_connection(("127.0.0.1", _port(proxy.endpoint.urls[0])))
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
        sock.close()


SMALL_BUFFER = 65536


def _tcp_max(name: str) -> int:
    """The largest buffer the kernel autotunes a TCP socket's `name` (tcp_rmem, tcp_wmem) to."""
    return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])


def test_a_receiver_that_does_not_read_pushes_back_on_the_sender() -> None:
    """The proxy holds at most QUEUE_CAP_BYTES per direction, then stops reading, as a full TCP window
    would: a sender to a stalled receiver is held up instead of filling the proxy's memory."""
    from etcdbench.network.delay import QUEUE_CAP_BYTES

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    with srv, DelayProxy(Endpoint((f"http://127.0.0.1:{srv.getsockname()[1]}",))) as proxy:
        proxy.set_shape(RunConfig(rtt_us=2_000))
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        sock.connect(("127.0.0.1", _port(proxy.endpoint.urls[0])))
        stalled, _ = srv.accept()  # accepted, never read
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        sock.setblocking(False)
        sent, chunk, idle_since = 0, b"x" * 65536, time.monotonic()
        while time.monotonic() - idle_since < 1.0 and sent < 20 * QUEUE_CAP_BYTES:
            try:
                sent += sock.send(chunk)
                idle_since = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        sock.close()
        stalled.close()
    # Held up: the sender stopped well before its 20 caps. What got through is the proxy's cap plus what
    # the kernel buffers: our two sockets' small buffers and the proxy's two at most their autotuned max
    # (the doubling: Linux reserves twice what is set, for its bookkeeping).
    assert sent < 20 * QUEUE_CAP_BYTES
    assert sent <= QUEUE_CAP_BYTES + _tcp_max("tcp_rmem") + _tcp_max("tcp_wmem") + 4 * SMALL_BUFFER
