"""E: peak memory of all etcdbench processes together, and the results file size, of a long run."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from harness import Bench, EtcdbenchRun
from table import Table, log, status

from etcdbench.results.io import load

T_RSS_MB = 200.0  # the targets, for a run of a million events
T_RESULTS_BYTES = 1_000_000
# Our own etcd, compacted as the kube-apiserver compacts it (periodically) and with room to spare:
# 1M updates of a 3.6 kB Pod without compaction are ~3.7 GB of history, past etcd's default 2 GiB
# quota (a run then stops writing at ~520k events with "database space exceeded").
MEMORY_RUN_ETCD_ARGS = (
    "--quota-backend-bytes", str(8 * 2**30),
    "--auto-compaction-mode", "periodic",
    "--auto-compaction-retention", "1m",
)  # fmt: skip


@dataclass(frozen=True)
class Footprint:
    """Memory of one `etcdbench watch` process tree, sampled every 0.2 s while it ran."""

    peak_total_rss: int  # bytes, all processes together
    peak_total_pss: int  # shared pages divided among their users
    peak_each: dict[str, int]  # "role:pid" -> its own peak RSS
    samples: int


@dataclass(frozen=True)
class MemoryRun:
    events: int  # asked for
    footprint: Footprint
    results_bytes: int
    run: EtcdbenchRun


def sample_tree(proc: subprocess.Popen[str]) -> Footprint:
    """Sample RSS and PSS of `proc` and its descendants until it exits.

    PSS and the per-process peaks are what etcdbench.metrics.cpu does not record (it sums RSS per group
    of processes known in advance); the writers and the watcher here are started by the run itself."""
    parent = psutil.Process(proc.pid)
    peak_total = peak_pss = 0
    peak_each: dict[str, int] = {}
    samples = 0
    while proc.poll() is None:
        total = pss = 0
        try:
            procs = [parent, *parent.children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                if p.name() == "etcd":  # never ours here (etcd runs apart), but never count it
                    continue
                mem = p.memory_full_info()  # rss, and pss (shared pages divided among their users)
                rss = mem.rss
                pss += getattr(mem, "pss", rss)
                role = "parent" if p.pid == parent.pid else " ".join(p.cmdline()[-1:])[-20:]
            except psutil.Error:
                continue
            total += rss
            peak_each[f"{role}:{p.pid}"] = max(peak_each.get(f"{role}:{p.pid}", 0), rss)
        peak_total = max(peak_total, total)
        peak_pss = max(peak_pss, pss)
        samples += 1
        time.sleep(0.2)
    return Footprint(peak_total, peak_pss, peak_each, samples)


def section_e(b: Bench, t: Table) -> MemoryRun:
    args = b.args
    events = 1_000_000 if args.million else args.memory_events
    rate = args.memory_rate
    warmup = min(2.0, events / rate / 4)
    duration = events / rate - warmup
    out = b.tmp / "memory-run.json"
    log(
        f"E memory: etcdbench watch of {events:,} events ({rate:g}/s for {warmup + duration:g} s), "
        "sampling RSS"
    )
    with b.etcd(MEMORY_RUN_ETCD_ARGS) as server:
        m = _memory_run(b, server.client_url, events, rate, warmup, duration, out)
    c = m.run.counters
    written = c["written"]
    size = m.results_bytes
    peak_each = m.footprint.peak_each
    top = max(peak_each.values()) if peak_each else 0
    # The targets are for a run of a million events: judged only when one was asked for and happened.
    complete = written >= 0.99 * events and not c.get("errors")
    million: bool | None = args.million and complete
    label = f"{written:,} events written, {c['received']:,} received, {c.get('errors', 0):,} write errors"
    skip = "n/a: 1M not run (--million)" if not args.million else f"n/a: {written:,} of {events:,} written"
    peak_total = m.footprint.peak_total_rss
    t.add(
        f"E. peak RSS, all etcdbench processes together ({len(peak_each)} processes, --writers "
        f"{args.memory_writers}, {rate:g}/s; {label})",
        f"{peak_total / 2**20:,.0f} MB "
        f"(PSS {m.footprint.peak_total_pss / 2**20:,.0f} MB; largest process {top / 2**20:,.0f} MB)",
        "—",
        "—",
        f"< {T_RSS_MB:.0f} MB at 1M events",
        status(peak_total / 2**20 < T_RSS_MB) if million else skip,
    )
    t.add(
        f"E. results file size ({label})",
        f"{size / 1e3:,.0f} kB",
        "—",
        "—",
        "< 1 MB at 1M events",
        status(size < T_RESULTS_BYTES) if million else skip,
    )
    return m


def _memory_run(
    b: Bench, url: str, events: int, rate: float, warmup: float, duration: float, out: Path
) -> MemoryRun:
    args = b.args
    cmd = [sys.executable, "-m", "etcdbench", "watch", "--backend", "v3", "--encoding", "protobuf",
           "--endpoints", url, "--rate", f"{rate:g}", "--writers", str(args.memory_writers),
           "--max-inflight", str(args.max_inflight),
           "--duration", f"{duration:g}", "--warmup", f"{warmup:g}", "--output", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    footprint = sample_tree(proc)
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode not in (0, 1) or not out.exists():
        raise RuntimeError(f"memory run exited {proc.returncode}: {stderr.strip()[-300:]}")
    run = EtcdbenchRun.from_run(load(out)["runs"][0])
    return MemoryRun(events, footprint, out.stat().st_size, run)
