"""etcdbench's own watcher code path, alone in a process, on a prefix someone else writes.

benchmarks/client_vs_go.py runs this against the Go reference writer (benchmarks/goref) to measure
what etcdbench's watcher costs, side by side with the Go reference watcher. It is exactly the
per-event work of an `etcdbench watch` run: the backend's watch (v3: one gRPC stream with prev_kv and
progress_notify; v2: Kubernetes 1.5's one-request-per-event poll), then `WatchBook.event` — full decode
of the new object (and of the previous one as --decode-prev says, as `etcdbench watch` does), the
stamp read back, the ledger and the HDR latency histogram.

Protocol (same as `etcdref watch|v2poll`): one JSON line {"ready": true, ...} once the watch is set
up, then one JSON line with the figures when it ends: at --duration, or with --until-stdin once the
revision read from stdin was seen (or --idle seconds pass without an event after that line).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint, Relist
from etcdbench.config.run import DECODE_PREV, RunConfig
from etcdbench.encoding.codec import get_codec
from etcdbench.workload.timeline import NS, Timeline
from etcdbench.workload.watcher import WatchBook


def _cpu() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


def _emit(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


@dataclass
class Progress:
    """How far the watch got, and where stdin says it should get (written by one thread, read by another:
    each field is one int, replaced whole)."""

    target_rev: int = 0  # from stdin; 0 until it says
    target_at_ns: int = 0
    last_rev: int = 0  # events and relists
    first_ns: int = 0  # the first event's arrival
    last_ns: int = 0

    def saw(self, revision: int, event: bool) -> None:
        self.last_rev = revision
        if event:
            now = time.monotonic_ns()
            self.first_ns = self.first_ns or now
            self.last_ns = now

    def reached(self, now_ns: int, idle_s: float) -> bool:
        """The target revision was seen, or nothing came for `idle_s` since it was given."""
        if not self.target_rev:
            return False
        quiet_since = max(self.last_ns, self.target_at_ns)
        return self.last_rev >= self.target_rev or now_ns - quiet_since > idle_s * NS


def new_book(started_ns: int, prev_on_put: bool = True) -> WatchBook:
    """A WatchBook whose window is the whole run: the Go writer stamps its warm-up writes too. Every
    writer id is ours (the Go writer is writer 0 unless told otherwise)."""
    timeline = Timeline(started_ns - 3600 * NS, 0.0, 7 * 24 * 3600.0)
    return WatchBook(timeline, own_writers=range(10_000), prev_on_put=prev_on_put)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("v2", "v3"), default="v3")
    ap.add_argument("--encoding", choices=("json", "protobuf"), default="protobuf")
    ap.add_argument("--decode-prev", choices=DECODE_PREV, default="apiserver", help="as etcdbench watch's")
    ap.add_argument("--endpoints", required=True)
    ap.add_argument("--prefix", default="/registry/pods/")
    ap.add_argument("--duration", type=float, default=10.0, help="stop after this many seconds")
    ap.add_argument("--start-rev", type=int, default=0, help="first revision/index (0: current + 1)")
    ap.add_argument("--until-stdin", action="store_true")
    ap.add_argument("--idle", type=float, default=3.0)
    ap.add_argument(
        "--transport-only",
        action="store_true",
        help="receive events through the backend's watch but skip WatchBook.event (no decode, no books): "
        "what the transport alone costs",
    )
    args = ap.parse_args(argv)

    backend = make_backend(args.backend, Endpoint(tuple(args.endpoints.split(","))), v2_watch="poll")
    backend.check()
    codec = get_codec(args.encoding)
    base64_values = not backend.binary_safe and args.encoding == "protobuf"
    start = args.start_rev or backend.current_revision() + 1
    started_ns = time.monotonic_ns()
    book = new_book(
        started_ns, RunConfig(backend=args.backend, decode_prev=args.decode_prev).decodes_prev_on_put
    )
    progress = Progress()
    transported = 0  # --transport-only: events received, none of them read
    done = threading.Event()

    def reader() -> None:
        for line in sys.stdin:
            if line.strip().isdigit():
                progress.target_at_ns = time.monotonic_ns()
                progress.target_rev = int(line)

    def control() -> None:
        deadline = started_ns + round(args.duration * NS)
        while not done.is_set():
            now = time.monotonic_ns()
            if now >= deadline or progress.reached(now, args.idle):
                break
            time.sleep(0.05)
        backend.cancel()

    if args.until_stdin:
        threading.Thread(target=reader, daemon=True).start()
    threading.Thread(target=control, daemon=True).start()
    items = backend.watch(args.prefix, start)
    _emit({"ready": True, "start_rev": start})
    cpu0 = _cpu()
    for item in items:
        if isinstance(item, Relist):
            book.relist(item)
            progress.saw(item.revision, event=False)
            continue
        if args.transport_only:
            transported += 1
        else:
            book.event(item, codec, base64_values)
        progress.saw(item.revision, event=True)
    cpu1 = _cpu()
    done.set()
    backend.close()
    ledger = book.ledger
    events = transported + ledger.events + book.foreign + book.decode_errors + book.other_shards
    cpu_s = (cpu1[0] - cpu0[0]) + (cpu1[1] - cpu0[1])
    active_s = (progress.last_ns - progress.first_ns) / NS
    lat = book.latency.summary()
    _emit(
        {
            "cmd": "pywatch",
            "backend": args.backend,
            "encoding": args.encoding,
            "transport_only": args.transport_only,
            "decode_prev": args.decode_prev,
            "events": events,
            "distinct": ledger.distinct + transported,  # transport only: every event, none read
            "duplicates": ledger.duplicates,
            "out_of_order": ledger.out_of_order,
            "foreign": book.foreign,
            "decode_errors": book.decode_errors,
            "relists": len(book.relists),
            "last_revision": progress.last_rev,
            "seconds": round((time.monotonic_ns() - started_ns) / NS, 3),
            "active_seconds": round(active_s, 3),
            "events_per_s_active": round((events - 1) / active_s, 3) if active_s > 0 else None,
            "cpu_user_s": round(cpu1[0] - cpu0[0], 6),
            "cpu_sys_s": round(cpu1[1] - cpu0[1], 6),
            "cpu_us_per_event": round(cpu_s * 1e6 / events, 3) if events else None,
            "latency_us": {k: lat[k] for k in ("p50", "p90", "p99", "max", "count")},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
