"""The delay proxy with no etcd behind it: every byte in order under jitter, bandwidth caps, refused
upstreams, back-pressure, its exit when etcdbench is killed; its flags and its effect on the verdict."""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from processes import running
from test_results import a_run

from etcdbench.backends.base import Endpoint
from etcdbench.config.network import parse_bandwidth, parse_network_duration
from etcdbench.config.run import RunConfig
from etcdbench.errors import UsageError
from etcdbench.network.proxy import DelayProxy, network_block
from etcdbench.results.model import RttMs
from etcdbench.results.verdict import verdict


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].rstrip("/"))


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
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(pid)


def _report(lag_p99_us: int) -> dict[str, Any]:
    summary = {"p50": 1, "p99": lag_p99_us, "max": lag_p99_us, "count": 100}
    rtt = {"p50": 2_050, "p99": 2_300, "max": 2_400, "count": 40}
    return {"lag_us": summary, "rtt_us": rtt, "bytes_forwarded": 5_000_000, "connections": 3, "refused": 0}


def test_a_proxy_behind_its_schedule_makes_the_run_client_bound() -> None:
    config = RunConfig(rate=100, rtt_us=2_000)
    on_time = network_block(config, _report(300), 0.2, 10.0)
    assert not on_time.proxy_fell_behind
    assert on_time.measured_rtt_ms == RttMs(p50=2.05, p99=2.3, max=2.4)
    assert on_time.proxy_cpu_ms_per_mb == 400.0  # 2 s of CPU for 5 MB
    late = network_block(config, _report(5_000), 0.2, 10.0)
    assert late.proxy_fell_behind
    run = a_run(
        **{
            "duration_s": 10.0,
            "counters.missed": 0,
            "counters.unsent": 0,
            "watch_events_per_s": 100.0,
            "write_rate_achieved": 100.0,
            "latency_us.watch.p99": 5_000,
            "latency_us.schedule_slip.p99": 100,
            "cpu": {"watcher": 0.1, "writers": 0.1},
        }
    )
    v = verdict(replace(run, network=late), config)
    assert v.pass_ and v.client_bound
    assert v.client_bound_reasons == ["the delay proxy fell behind its schedule (lag p99 5 ms)"]
    assert not verdict(replace(run, network=on_time), config).client_bound


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


def test_a_connection_made_right_after_the_shape_counts_for_the_new_run() -> None:
    """A run's connections are counted from set_shape on. The shape resets the count; once set_shape
    returned, a connection opened at once must not be lost to that reset (the parent opens its admin
    connection right after it), whatever the order in which the proxy sees the two."""
    with echo_server() as port, DelayProxy(Endpoint((f"http://127.0.0.1:{port}",))) as proxy:
        address = ("127.0.0.1", _port(proxy.endpoint.urls[0]))
        for rtt_us in range(1_000, 31_000, 1_000):  # each shape a new run
            proxy.set_shape(RunConfig(rtt_us=rtt_us))
            with socket.create_connection(address) as sock:
                sock.sendall(b"ping")
                assert sock.recv(4) == b"ping"
                assert proxy.report()["connections"] == 1, rtt_us
