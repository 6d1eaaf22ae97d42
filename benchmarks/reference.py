"""The Go reference client (benchmarks/goref, built as benchmarks/.bin/etcdref): finding or building it,
running it, and its one-line JSON reports as typed figures.

Every etcdref subcommand prints one JSON line when it ends ({"error": ...} when it failed); the watchers
print {"ready": true, ...} first. benchmarks/pywatch.py, etcdbench's watcher alone, speaks the same
protocol, so one WatcherReport reads both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from table import log

HERE = Path(__file__).resolve().parent
GOREF_SRC = HERE / "goref"
BUILD_SCRIPT = HERE / "build_goref.sh"
DEFAULT_ETCDREF = HERE / ".bin" / "etcdref"
GOCODE_CLIENTV3 = Path("/usr/share/gocode/src/go.etcd.io/etcd/clientv3")


def go_reference(explicit: str | None, build: bool) -> tuple[str | None, str]:
    """(path to etcdref, how it was found) or (None, why there is none)."""
    if explicit:
        return (
            (explicit, "given with --etcdref")
            if os.access(explicit, os.X_OK)
            else (None, f"{explicit} is not executable")
        )
    if shutil.which("go") is None:
        return None, "Go is not installed (apt-get install golang-go golang-etcd-server-dev)"
    if not GOCODE_CLIENTV3.is_dir() and not os.environ.get("GOCODE"):
        return None, "etcd's Go clients are not installed (apt-get install golang-etcd-server-dev)"
    sources = max(p.stat().st_mtime for p in GOREF_SRC.glob("*.go"))
    fresh = DEFAULT_ETCDREF.exists() and DEFAULT_ETCDREF.stat().st_mtime >= sources
    if build and not fresh:
        log("building the Go reference (benchmarks/build_goref.sh)")
        r = subprocess.run(["sh", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            return None, f"build_goref.sh failed: {r.stderr.strip()[-400:]}"
        return str(DEFAULT_ETCDREF), "built now from benchmarks/goref"
    if DEFAULT_ETCDREF.exists():
        return str(DEFAULT_ETCDREF), "built earlier" + ("" if fresh else ", older than its sources")
    return None, "benchmarks/.bin/etcdref is missing and --no-build was given"


def last_json(text: str, what: str) -> dict[str, Any]:
    """The last JSON line of a reference client's output; its {"error": ...} raised."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            doc: dict[str, Any] = json.loads(line)
            if "error" in doc:
                raise RuntimeError(f"{what}: {doc['error']}")
            return doc
    raise RuntimeError(f"{what} printed no JSON result: {text[-300:]!r}")


def run_etcdref(etcdref: str, *argv: str, timeout: float = 600) -> dict[str, Any]:
    r = subprocess.run([etcdref, *argv], capture_output=True, text=True, timeout=timeout, check=False)
    return last_json(r.stdout, f"etcdref {argv[0]} (exit {r.returncode}, {r.stderr.strip()[-200:]})")


@dataclass(frozen=True)
class PutReport:
    """`etcdref put|v2put`: what the Go writer wrote in its measured interval, and its CPU."""

    writes: int
    warmup_writes: int
    writes_per_s: float
    cpu_us_per_write: float | None
    errors: int = 0
    window_writes_per_s: float = 0.0  # acknowledgements while the measured window was open, per second

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> PutReport:
        return cls(
            doc["writes"],
            doc["warmup_writes"],
            doc["writes_per_s"],
            doc.get("cpu_us_per_write"),
            doc["errors"],
            doc["window_writes_per_s"],
        )


@dataclass(frozen=True)
class WatcherReport:
    """A watcher's report (`etcdref watch|v2poll`, or benchmarks/pywatch.py).

    `received` is the distinct writes seen where the watcher counts them (pywatch: its ledger), else
    every event. `decode_errors` come from pywatch, and from Go's watcher with -decode-json (else it does
    not decode); Go's watcher reports `p99_us` (from the writes' stamps) and `window_events_per_s` when
    given the writer's -value-file."""

    events: int
    received: int
    cpu_us_per_event: float | None
    relists: int
    last_revision: int  # v2: the last index
    decode_errors: int = 0
    p99_us: float | None = None
    window_events_per_s: float | None = None  # events received while the measured window was open, per s

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> WatcherReport:
        events = doc["events"]
        return cls(
            events=events,
            received=doc.get("distinct", events),
            cpu_us_per_event=doc.get("cpu_us_per_event"),
            relists=doc.get("relists", 0),
            last_revision=doc.get("last_revision", doc.get("last_index", 0)),
            decode_errors=doc.get("decode_errors", 0),
            p99_us=doc.get("latency_us", {}).get("p99"),
            window_events_per_s=doc.get("window_events_per_s"),
        )
