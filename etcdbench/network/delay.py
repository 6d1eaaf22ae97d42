"""The delay loop: a user-space TCP proxy that holds every chunk for a one-way delay, in order.

It runs in a process of its own (etcdbench.network.proxy starts it), one listener on 127.0.0.1 per
etcd endpoint. Each accepted connection gets a connection to its endpoint, and two *flows* (client →
etcd, etcd → client). Bytes read from a flow's source at time `t` are written to its destination at

    due = max(previous due of the flow, t + delay ± jitter)          (+ the link's serialization time)

so jitter never reorders a connection's bytes, and a half-close (EOF) travels behind its data. The
bytes themselves are opaque: HTTP/1.1, HTTP/2 (gRPC) and TLS pass through alike.

One thread, one `select()` (microsecond timeouts: epoll and poll round up to whole milliseconds,
which would add half a millisecond to every hop), and a heap of timers: one entry per flow that has
bytes waiting, so the cost is per chunk read, never per byte or per thread.

What it measures, over a window the parent sets:
* lag: how late a due chunk went out (time of delivery minus due time), when the destination could take
  it. A destination that is full (a slow receiver) is the receiver's delay, not ours, and is not lag.
* probes: a built-in echo path — a socket pair through the same kind of flows, the same heap and the
  same links, answered at once at the far end — sends a timestamp every PROBE_INTERVAL_S; each
  round trip is a measured RTT (like ping, which the remote kernel answers, not the server).
* bytes forwarded, connections accepted.

A flow holding more than QUEUE_CAP_BYTES stops reading its source, so a slow receiver pushes back on
the sender as TCP would, instead of the proxy hiding it in its memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import heapq
import os
import random
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from etcdbench.metrics.latency import LatencyRecorder

RECV_SIZE = 256 * 1024
QUEUE_CAP_BYTES = 4 * 1024 * 1024  # per flow: like a generous TCP window
PROBE_INTERVAL_S = 0.05
MAX_FD = 1000  # select() takes descriptors below 1024; refuse connections beyond (counted)
MAX_LEAD_NS = 200_000
RETRY_ACCEPT_NS = 100_000_000
PR_SET_TIMERSLACK = 29
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_CMSG_SIZE = socket.CMSG_SPACE(16)
MAX_STAMP_AGE_NS = 1_000_000_000
_PROBE = struct.Struct("!qq")  # sequence number, send time (monotonic ns)


_Address = tuple[socket.AddressFamily, Any]  # family, sockaddr (as getaddrinfo gives them)


@dataclass(frozen=True)
class Shape:
    """What the path does to each chunk, in each direction."""

    delay_ns: int = 0  # one way: half the round trip
    jitter_ns: int = 0  # each chunk's delay is delay_ns + uniform(-jitter_ns, +jitter_ns)
    bandwidth_bps: float = 0.0  # bytes/s of each direction's link, shared by all connections; 0: none


class _Link:
    """One direction of the emulated wire: chunks leave it one after another at its bandwidth."""

    __slots__ = ("free_at",)

    def __init__(self) -> None:
        self.free_at = 0


class _Flow:
    """One direction of one proxied connection: bytes read from `src`, written to `dst` when due."""

    __slots__ = (
        "armed",
        "dst",
        "eof_read",
        "last_due",
        "link",
        "out",
        "pair",
        "queue",
        "queued",
        "reading",
        "src",
    )

    def __init__(self, pair: _Pair, src: socket.socket, dst: socket.socket, link: _Link) -> None:
        self.pair = pair
        self.src = src
        self.dst = dst
        self.link = link
        self.queue: deque[tuple[int, bytes | None]] = deque()  # (due ns, bytes or None for EOF)
        self.queued = 0
        self.last_due = 0
        self.out: memoryview | None = None  # bytes the destination has not taken yet
        self.armed = False  # has an entry in the timer heap
        self.reading = False
        self.eof_read = False


class _Pair:
    __slots__ = ("closed", "connected", "down", "downstream", "up", "upstream")

    def __init__(
        self, downstream: socket.socket, upstream: socket.socket, links: tuple[_Link, _Link]
    ) -> None:
        self.downstream = downstream  # the client's side
        self.upstream = upstream  # etcd's side
        self.up = _Flow(self, downstream, upstream, links[0])
        self.down = _Flow(self, upstream, downstream, links[1])
        self.connected = False
        self.closed = False


class DelayLoop:
    """The proxy's event loop. `upstreams`: (host, port) of each etcd endpoint, one listener each."""

    def __init__(self, upstreams: list[tuple[str, int]], shape: Shape = Shape()) -> None:
        self.shape = shape
        self._readers: dict[int, Callable[[], None]] = {}
        self._writers: dict[int, Callable[[], None]] = {}
        self._heap: list[tuple[int, int, Any]] = []
        self._seq = 0
        self._links = (_Link(), _Link())
        self._rng = random.Random()
        self._stopping = False
        # How early to wake for a timer: the mean lateness of a wake-up here (learnt), so that chunks
        # leave on time on average instead of a scheduler's wake-up latency late.
        self._lead = 0
        self.listeners: list[socket.socket] = []
        self.ports: list[int] = []
        for host, port in upstreams:
            lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lst.bind(("127.0.0.1", 0))
            lst.listen(512)
            lst.setblocking(False)
            self.listeners.append(lst)
            self.ports.append(lst.getsockname()[1])
            # Resolved once, here: a name lookup in the loop would stall every connection.
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, _, _, _, addr = min(infos, key=lambda i: i[0] != socket.AF_INET)  # IPv4 first
            self._readers[lst.fileno()] = self._acceptor(lst, (family, addr))
        # measurement
        self.window = (0, 0)  # monotonic ns; nothing is recorded until the parent sets it
        self.lag = LatencyRecorder()
        self.rtt = LatencyRecorder()
        self.bytes_forwarded = 0
        self.connections = 0
        self.refused = 0
        self._probe: _Prober | None = None

    # -- timers ------------------------------------------------------------------------------------

    def _arm(self, due: int, target: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, target))

    def _in_window(self, t: int) -> bool:
        return self.window[0] <= t < self.window[1]

    # -- connections -------------------------------------------------------------------------------

    def _acceptor(self, lst: socket.socket, upstream: _Address) -> Callable[[], None]:
        def accept() -> None:
            for _ in range(64):
                try:
                    sock, _ = lst.accept()
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    # e.g. out of descriptors: the listener stays readable, so rest it a moment
                    # rather than spin (at real-time priority, a spin would take a whole core)
                    self.refused += 1
                    self._readers.pop(lst.fileno(), None)
                    self._arm(
                        time.monotonic_ns() + RETRY_ACCEPT_NS,
                        _Later(lambda: self.add_reader(lst.fileno(), accept)),
                    )
                    return
                self._open(sock, upstream)

        return accept

    def _open(self, sock: socket.socket, upstream: _Address) -> None:
        family, addr = upstream
        try:
            up = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            self.refused += 1
            _reset(sock)
            return
        if max(sock.fileno(), up.fileno()) >= MAX_FD:
            self.refused += 1
            _reset(sock)
            up.close()
            return
        for s in (sock, up):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _timestamped(s)
        self.connections += 1
        pair = _Pair(sock, up, self._links)
        err = up.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            self._abort(pair)
            return
        self._writers[up.fileno()] = lambda: self._connected(pair)
        self._read_on(pair.up)  # the client's first bytes wait in the queue meanwhile

    def pipe(self, downstream: socket.socket, upstream: socket.socket) -> _Pair:
        """Proxy between two sockets already connected (the probe path)."""
        for s in (downstream, upstream):
            s.setblocking(False)
            _timestamped(s)
        pair = _Pair(downstream, upstream, self._links)
        pair.connected = True
        self._read_on(pair.up)
        self._read_on(pair.down)
        return pair

    def _connected(self, pair: _Pair) -> None:
        del self._writers[pair.upstream.fileno()]
        if pair.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._abort(pair)  # etcd refused: the client sees a reset, as it would have
            return
        pair.connected = True
        self._read_on(pair.down)
        self._deliver(pair.up, time.monotonic_ns(), timed=False)

    def _read_on(self, flow: _Flow) -> None:
        if not flow.reading and not flow.eof_read and not flow.pair.closed:
            flow.reading = True
            self._readers[flow.src.fileno()] = lambda: self._read(flow)

    def _read_off(self, flow: _Flow) -> None:
        if flow.reading:
            flow.reading = False
            self._readers.pop(flow.src.fileno(), None)

    def _forget(self, s: socket.socket) -> None:
        """Stop watching `s` for reading and writing (before it is closed or reset)."""
        with contextlib.suppress(OSError):
            fd = s.fileno()
            self._readers.pop(fd, None)
            self._writers.pop(fd, None)

    def _abort(self, pair: _Pair) -> None:
        """Both sides reset at once (a reset is not data: it is not delayed)."""
        if pair.closed:
            return
        pair.closed = True
        for s in (pair.downstream, pair.upstream):
            self._forget(s)
            _reset(s)
        for flow in (pair.up, pair.down):
            flow.queue.clear()
            flow.out = None

    def _close_if_done(self, pair: _Pair) -> None:
        if all(f.eof_read and not f.queue and f.out is None for f in (pair.up, pair.down)):
            pair.closed = True
            for s in (pair.downstream, pair.upstream):
                self._forget(s)
                s.close()

    # -- data --------------------------------------------------------------------------------------

    def _due(self, flow: _Flow, now: int, size: int) -> int:
        shape = self.shape
        delay = shape.delay_ns
        if shape.jitter_ns:
            delay = max(0, delay + self._rng.randint(-shape.jitter_ns, shape.jitter_ns))
        sent = now
        if shape.bandwidth_bps > 0:  # serialization: the chunk leaves once the link is free
            link = flow.link
            sent = max(now, link.free_at) + round(size * 1e9 / shape.bandwidth_bps)
            link.free_at = sent
        due = max(flow.last_due, sent + delay)
        flow.last_due = due
        return due

    def _read(self, flow: _Flow) -> None:
        try:
            data, anc, _, _ = flow.src.recvmsg(RECV_SIZE, _CMSG_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._abort(flow.pair)
            return
        now = _arrival(anc)
        if not data:
            flow.eof_read = True
            self._read_off(flow)
            due = self._due(flow, now, 0)
            flow.queue.append((due, None))
        else:
            due = self._due(flow, now, len(data))
            flow.queue.append((due, data))
            flow.queued += len(data)
            if flow.queued >= QUEUE_CAP_BYTES:
                self._read_off(flow)  # the sender waits, as on a full TCP window
        if not flow.armed and flow.out is None:
            flow.armed = True
            self._arm(flow.queue[0][0], flow)

    def fire(self, flow: _Flow, now: int, until: int) -> None:
        flow.armed = False
        self._deliver(flow, now, timed=True, until=until)

    def _deliver(self, flow: _Flow, now: int, *, timed: bool, until: int = 0) -> None:
        """Write what is due by `until` (default: now). `timed`: called by the flow's timer, so
        lateness is the proxy's lag."""
        until = max(until, now)
        pair = flow.pair
        if pair.closed or flow.out is not None or not pair.connected:
            return
        queue = flow.queue
        parts: list[bytes] = []
        eof = False
        record = timed and self.window[1] > 0
        while queue and queue[0][0] <= until:
            due, data = queue.popleft()
            if record and self._in_window(due):
                self.lag.record_us(max(0, now - due) // 1000)
            if data is None:
                eof = True
                break
            parts.append(data)
            flow.queued -= len(data)
            if self._in_window(due):
                self.bytes_forwarded += len(data)
        if parts:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            if not self._send(flow, memoryview(data)):
                if eof:
                    queue.appendleft((now, None))  # after the rest of the bytes
                return
        if eof:
            with contextlib.suppress(OSError):
                flow.dst.shutdown(socket.SHUT_WR)
            self._close_if_done(pair)
            return
        if not flow.reading and flow.queued < QUEUE_CAP_BYTES // 2:
            self._read_on(flow)
        if queue and not flow.armed:
            flow.armed = True
            self._arm(queue[0][0], flow)

    def _send(self, flow: _Flow, view: memoryview) -> bool:
        """Write `view`; what the destination does not take waits for it to become writable."""
        try:
            n = flow.dst.send(view)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self._abort(flow.pair)
            return False
        if n == len(view):
            return True
        flow.out = view[n:]
        self._writers[flow.dst.fileno()] = lambda: self._drain(flow)
        return False

    def _drain(self, flow: _Flow) -> None:
        assert flow.out is not None
        try:
            n = flow.dst.send(flow.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._abort(flow.pair)
            return
        flow.out = flow.out[n:] if n < len(flow.out) else None
        if flow.out is None:
            del self._writers[flow.dst.fileno()]
            self._deliver(flow, time.monotonic_ns(), timed=False)  # what fell due meanwhile

    # -- the loop ----------------------------------------------------------------------------------

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self._readers[fd] = callback

    def start_probe(self) -> None:
        self._probe = _Prober(self)

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        _fine_timer_slack()
        heap = self._heap
        while not self._stopping:
            timeout = wake = None
            if heap:
                wake = heap[0][0] - self._lead
                timeout = max(0.0, (wake - time.monotonic_ns()) / 1e9)
            try:
                r, w, _ = select.select(list(self._readers), list(self._writers), [], timeout)
            except InterruptedError:
                continue
            for fd in r:
                cb = self._readers.get(fd)
                if cb is not None:
                    cb()
            for fd in w:
                cb = self._writers.get(fd)
                if cb is not None:
                    cb()
            now = time.monotonic_ns()
            if wake is not None and not r and not w:  # woken by the timer: learn how late that is
                late = min(max(now - wake, 0), MAX_LEAD_NS)
                self._lead += (late - self._lead) // 8
            deadline = now + self._lead
            while heap and heap[0][0] <= deadline:
                _, _, target = heapq.heappop(heap)
                if isinstance(target, _Flow):
                    self.fire(target, now, deadline)
                else:
                    target.fire(now)

    def report(self) -> dict[str, Any]:
        return {
            "lag_us": self.lag.summary(),
            "rtt_us": self.rtt.summary(),
            "bytes_forwarded": self.bytes_forwarded,
            "connections": self.connections,
            "refused": self.refused,
        }

    def measure(self, start_ns: int, end_ns: int) -> None:
        """Record lag, probes and bytes due in [start_ns, end_ns) from now on (the previous are reset)."""
        self.window = (start_ns, end_ns)
        self.lag = LatencyRecorder()
        self.rtt = LatencyRecorder()
        self.bytes_forwarded = 0


class _Prober:
    """Sends a timestamp through its own proxied path every PROBE_INTERVAL_S; an echo at the far end
    returns it at once. Client end → flow → echo end → flow → client end: two hops, one round trip."""

    def __init__(self, loop: DelayLoop) -> None:
        self.loop = loop
        # TCP on loopback, like the clients' connections (and stamped by the kernel like theirs).
        self.client, proxy_down = _tcp_pair()
        proxy_up, self.echo = _tcp_pair()
        for s in (self.client, self.echo):
            s.setblocking(False)
        loop.pipe(proxy_down, proxy_up)
        loop.add_reader(self.client.fileno(), self._answer)
        loop.add_reader(self.echo.fileno(), self._echo)
        self.seq = 0
        self.stopped = False
        self._buf = b""
        loop._arm(time.monotonic_ns(), self)

    def _stop(self) -> None:
        self.stopped = True
        for s in (self.client, self.echo):
            self.loop._readers.pop(s.fileno(), None)

    def fire(self, now: int) -> None:
        if self.stopped:
            return
        self.seq += 1
        with contextlib.suppress(BlockingIOError):
            self.client.send(_PROBE.pack(self.seq, now))
        self.loop._arm(now + round(PROBE_INTERVAL_S * 1e9), self)

    def _echo(self) -> None:
        try:
            data = self.echo.recv(RECV_SIZE)
            if data:
                self.echo.sendall(data)
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._stop()  # the path closed: no more probes (a closed socket would read as ready forever)

    def _answer(self) -> None:
        try:
            data = self.client.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._stop()
            return
        self._buf += data
        now = time.monotonic_ns()
        size = _PROBE.size
        while len(self._buf) >= size:
            _, sent = _PROBE.unpack_from(self._buf)
            self._buf = self._buf[size:]
            if self.loop._in_window(sent):
                self.loop.rtt.record_us((now - sent) // 1000)


class _Later:
    """A timer that calls `callback` once."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback

    def fire(self, now: int) -> None:
        self.callback()


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected TCP sockets on 127.0.0.1."""
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        a = socket.create_connection(lst.getsockname())
        b, _ = lst.accept()
    for s in (a, b):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return a, b


def _timestamped(sock: socket.socket) -> None:
    """Have the kernel stamp received data (SO_TIMESTAMPNS; TCP gives the last segment's time)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def _arrival(anc: list[tuple[int, int, bytes]]) -> int:
    """When the bytes just read reached our socket (monotonic ns): the kernel's receive timestamp
    when there is one, so a busy loop's wake-up latency is part of the delay, not added to it."""
    now = time.monotonic_ns()
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack_from("qq", data)
            arrived = int(sec) * 1_000_000_000 + int(nsec) - (time.time_ns() - now)  # wall clock -> monotonic
            if now - MAX_STAMP_AGE_NS <= arrived <= now:  # else the wall clock stepped: use now
                return arrived
    return now


def _fine_timer_slack() -> None:
    """Linux lets a sleep end up to 50 us late by default (timer slack); ask for 1 ns instead."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dead peer or a refused connection would look."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def serve(upstreams: list[tuple[str, int]], control: Connection, scheduling: str = "normal") -> None:
    """The proxy process: report the listening ports, then serve until the parent says stop or goes.

    Control messages: ("shape", Shape) → ("shaped", None), ("measure", start_ns, end_ns), ("report",) →
    ("report", {...}), ("stop",). The parent's end closing (it exited, even by SIGKILL) stops the loop as
    well.
    """
    try:
        loop = DelayLoop(upstreams)
    except OSError as exc:
        control.send(("error", f"the delay proxy could not start: {exc}"))
        return
    loop.start_probe()

    def on_control() -> None:
        try:
            msg = control.recv()
        except (EOFError, OSError):
            loop.stop()
            return
        kind = msg[0]
        if kind == "shape":  # a new run: its connections are counted from here
            loop.shape = msg[1]
            loop.connections = loop.refused = 0
            control.send(("shaped", None))  # the parent connects its clients only after this
        elif kind == "measure":
            loop.measure(msg[1], msg[2])
        elif kind == "report":
            control.send(("report", loop.report()))
        else:
            loop.stop()

    loop.add_reader(control.fileno(), on_control)
    control.send(("ready", {"ports": loop.ports, "pid": os.getpid(), "scheduling": scheduling}))
    loop.run()
