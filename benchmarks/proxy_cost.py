"""What the delay proxy costs: its CPU per MB forwarded and its lag, at a paced message rate or flat out.

    python benchmarks/proxy_cost.py --rate 5000 --size 6000 --connections 4 --seconds 10 --rtt 2ms
    python benchmarks/proxy_cost.py --bulk --seconds 5 --rtt 2ms

Messages of --size bytes go from --connections client sockets through the proxy to a sink on
127.0.0.1 (a separate process, which discards them and answers each 64 KB with 64 bytes, so both
directions carry traffic). Paced: --rate messages/s in total, on a schedule; bulk: as fast as the
client can write. Reports MB/s forwarded, the proxy's CPU (cores, and ms per MB) from its process's
own CPU times (etcdbench.metrics.cpu's sampler), and its delivery lag and probe RTT from the proxy's
report.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import threading
import time
from multiprocessing.connection import Connection

import psutil

from etcdbench.backends.base import Endpoint
from etcdbench.config.network import parse_network_duration
from etcdbench.config.run import RunConfig
from etcdbench.metrics.cpu import ProcessSampler
from etcdbench.network.proxy import DelayProxy


def _sink(conn: Connection) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    conn.send(srv.getsockname()[1])

    def serve(c: socket.socket) -> None:
        got = 0
        while data := c.recv(1 << 20):
            got += len(data)
            while got >= 65536:
                got -= 65536
                c.sendall(b"a" * 64)

    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rtt", default="2ms")
    p.add_argument("--jitter", default="0")
    p.add_argument("--rate", type=float, default=5000.0, help="messages/s in total (paced mode)")
    p.add_argument("--size", type=int, default=6000)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--bulk", action="store_true", help="write as fast as possible instead of pacing")
    args = p.parse_args()

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    sink = ctx.Process(target=_sink, args=(child,), daemon=True)
    sink.start()
    port = parent.recv()
    config = RunConfig(
        rtt_us=parse_network_duration("--rtt", args.rtt),
        jitter_us=parse_network_duration("--jitter", args.jitter),
    )
    with DelayProxy(Endpoint((f"http://127.0.0.1:{port}",))) as proxy:
        proxy.set_shape(config)
        through = int(proxy.endpoint.urls[0].rsplit(":", 1)[1])
        socks = [socket.create_connection(("127.0.0.1", through)) for _ in range(args.connections)]
        for s in socks:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(
                target=lambda s=s: [None for _ in iter(lambda: s.recv(65536), b"")], daemon=True
            ).start()
        message = b"m" * args.size
        # The proxy's own process, sampled from just before the first message to after the last left.
        sampler = ProcessSampler({"proxy": [proxy.pid]})
        sampler.start()
        start_ns = time.monotonic_ns()
        end_ns = start_ns + round(args.seconds * 1e9)
        proxy.measure(start_ns, end_ns)
        sent = 0
        i = 0
        interval = 1e9 / args.rate
        while (now := time.monotonic_ns()) < end_ns:
            if not args.bulk:
                due = start_ns + round(i * interval)
                if due > now:
                    time.sleep((due - now) / 1e9)
            socks[i % len(socks)].sendall(message)
            sent += len(message)
            i += 1
        time.sleep(max(0.1, 3 * config.rtt_us / 1e6))  # the last bytes leave the proxy
        elapsed = (time.monotonic_ns() - start_ns) / 1e9
        sampler.stop()
        cores = sampler.cores("proxy", start_ns / 1e9, start_ns / 1e9 + elapsed) or 0.0
        cpu = cores * elapsed
        report = proxy.report()
        for s in socks:
            s.close()
    sink.kill()
    mb = report["bytes_forwarded"] / 1e6
    out = {
        "mode": "bulk" if args.bulk else "paced",
        "messages_per_s": round(i / args.seconds),
        "message_bytes": args.size,
        "connections": args.connections,
        "rtt_ms_asked": config.rtt_us / 1000,
        "mb_per_s_forwarded": round(mb / args.seconds, 2),
        "proxy_cpu_cores": round(cores, 3),
        "proxy_cpu_ms_per_mb": round(cpu * 1000 / mb, 3) if mb else None,
        "proxy_lag_us": {k: report["lag_us"][k] for k in ("p50", "p99", "max", "count")},
        "probe_rtt_us": {k: report["rtt_us"][k] for k in ("p50", "p99", "max", "count")},
        "host_load_1m": round(psutil.getloadavg()[0], 2),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
