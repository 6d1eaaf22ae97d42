"""What every section of client_vs_go.py runs on: fresh local etcds, the Go reference client, `etcdbench
watch` runs read back as typed figures, one watcher trial, and the load other processes put on the host."""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from reference import PutReport, WatcherReport, last_json, run_etcdref

from etcdbench.backends import make_backend
from etcdbench.backends.base import Endpoint
from etcdbench.backends.credentials import Credentials
from etcdbench.encoding.codec import get_codec
from etcdbench.encoding.objects import build_object
from etcdbench.etcd.certs import Pki, TemporaryPki
from etcdbench.etcd.local import LocalEtcd, TlsFiles, find_etcd_binary
from etcdbench.metrics.cpu import ProcessSampler
from etcdbench.results.io import load

HERE = Path(__file__).resolve().parent
PYWATCH = HERE / "pywatch.py"

POD_BYTES = 3636  # etcdbench's protobuf Pod as stored (mean over its 1,000 objects)
PREFIX = "/registry/pods/"
GO_CONNS, GO_INFLIGHT = 4, 64  # the Go writer at max: 64 puts in flight over 4 gRPC connections


@dataclass(frozen=True)
class TlsEtcd:
    """A local etcd serving only TLS with client certificates, as `--tls` sets it up."""

    server: LocalEtcd
    pki: Pki

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(
            (self.server.client_url,), Credentials(self.pki.ca, self.pki.client_cert, self.pki.client_key)
        )

    @property
    def etcdref_flags(self) -> list[str]:
        """etcdref's flags for it (`put`, `watch`)."""
        return ["-cacert", self.pki.ca, "-cert", self.pki.client_cert, "-key", self.pki.client_key]


@contextlib.contextmanager
def tls_etcd(binary: str) -> Iterator[TlsEtcd]:
    """A TlsEtcd with certificates made for it, all removed on exit."""
    with TemporaryPki() as pki:
        files = TlsFiles(
            pki.server_cert, pki.server_key, pki.ca, client_cert=pki.client_cert, client_key=pki.client_key
        )
        with LocalEtcd(binary, tls=files) as server:
            yield TlsEtcd(server, pki)


@dataclass(frozen=True)
class EtcdbenchRun:
    """The figures the sections read from one `etcdbench watch` run (the first run of its results file)."""

    counters: dict[str, int]
    watch_events_per_s: float
    write_rate_achieved: float
    watch_p99_us: float | None
    slip_p99_us: float | None
    passed: bool
    client_bound_reasons: list[str]  # empty when the run was not client-bound
    writers_cpu: float  # cores, all writer processes
    writer_max_cpu: float  # cores, the busiest writer process
    preload: dict[str, Any] | None

    @classmethod
    def from_run(cls, run: dict[str, Any]) -> EtcdbenchRun:
        verdict, latency, cpu = run["verdict"], run["latency_us"], run["cpu"]
        return cls(
            counters=run["counters"],
            watch_events_per_s=run["watch_events_per_s"],
            write_rate_achieved=run["write_rate_achieved"],
            watch_p99_us=latency["watch"]["p99"],
            slip_p99_us=latency["schedule_slip"]["p99"],
            passed=verdict["pass"],
            client_bound_reasons=verdict["client_bound_reasons"] if verdict["client_bound"] else [],
            writers_cpu=cpu["writers"],
            writer_max_cpu=cpu["writer_max"],
            preload=run.get("preload"),
        )

    @property
    def writer_us_per_write(self) -> float | None:
        """Writer CPU µs per write achieved."""
        rate = self.write_rate_achieved
        return self.writers_cpu * 1e6 / rate if rate else None


@dataclass(frozen=True)
class Trial:
    """One watcher behind the Go writer on a fresh etcd."""

    put: PutReport
    watch: WatcherReport
    catch_up_s: float  # from the last write to the watcher seeing it; nan if it stopped idle


class Bench:
    def __init__(self, args: argparse.Namespace, etcdref: str | None) -> None:
        self.args = args
        self.etcdref = etcdref
        self.etcd_bin = find_etcd_binary(args.etcd_bin)
        self.tmp = Path(tempfile.mkdtemp(prefix="etcdbench-bench-"))
        self.values: dict[str, Path] = {}
        self.values_bytes: dict[str, int] = {}
        for encoding, suffix in (("protobuf", "pb"), ("json", "json")):
            # A real etcdbench Pod, encoded by etcdbench: its 38-'?' stamp placeholder is filled in per
            # write by the Go writer, so etcdbench's watcher decodes and accounts real objects.
            data = get_codec(encoding).encode(build_object("pod", 1))
            path = self.tmp / f"pod.{suffix}"
            path.write_bytes(data)
            self.values[encoding], self.values_bytes[encoding] = path, len(data)
        self._runs = 0

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    @contextlib.contextmanager
    def etcd(self, extra_args: Sequence[str] = ()) -> Iterator[LocalEtcd]:
        with LocalEtcd(self.etcd_bin, extra_args=tuple(extra_args)) as server:
            yield server

    def go_put(self, url: str, *extra: str, cmd: str = "put") -> PutReport:
        assert self.etcdref
        d = self.args.duration
        doc = run_etcdref(self.etcdref, cmd, "-endpoints", url, "-prefix", PREFIX, "-duration", f"{d:g}",
                          "-warmup", "2", "-conns", str(GO_CONNS), "-inflight", str(GO_INFLIGHT),
                          *extra)  # fmt: skip
        return PutReport.from_doc(doc)

    def etcdbench(self, *argv: str) -> EtcdbenchRun:
        """`etcdbench watch ARGV` (exit 0 or 1: pass or fail), read back from its results file."""
        self._runs += 1
        out = self.tmp / f"run-{self._runs}.json"
        cmd = [sys.executable, "-m", "etcdbench", "watch", *argv, "--output", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if r.returncode not in (0, 1) or not out.exists():
            raise RuntimeError(f"etcdbench watch exited {r.returncode}: {r.stderr.strip()[-400:]}")
        return EtcdbenchRun.from_run(load(out)["runs"][0])

    def watch_trial(
        self,
        watcher: str,
        api: str,
        encoding: str,
        writer: Sequence[str],
        writer_cmd: str,
        watcher_args: Sequence[str] = (),
        v3_client: str = "native",
    ) -> Trial:
        """On a fresh etcd: start `watcher` ("go" | "py"), run the Go writer, stop the watcher once it
        has seen the last write.

        `watcher_args` go on the watcher's command line (pywatch.py's or `etcdref watch`'s flags);
        `v3_client` picks etcdbench's v3 client for a "py" watcher (ETCDBENCH_V3_CLIENT)."""
        hard = self.args.duration + 120
        with self.etcd() as server:
            url = server.client_url
            admin = make_backend(api, Endpoint((url,)))
            start = admin.current_revision() + 1
            if watcher == "go":
                assert self.etcdref
                sub = "watch" if api == "v3" else "v2poll"
                flag = "-start-rev" if api == "v3" else "-start-index"
                cmd = [self.etcdref, sub, "-endpoints", url, "-prefix", PREFIX, "-duration", str(hard),
                       flag, str(start), "-until-stdin", *watcher_args]  # fmt: skip
            else:
                cmd = [sys.executable, str(PYWATCH), "--backend", api, "--encoding", encoding,
                       "--endpoints", url, "--prefix", PREFIX, "--duration", str(hard),
                       "--start-rev", str(start), "--until-stdin", *watcher_args]  # fmt: skip
            env = {**os.environ, "ETCDBENCH_V3_CLIENT": v3_client}
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            try:
                assert proc.stdin and proc.stdout
                ready = proc.stdout.readline()
                if '"ready"' not in ready:
                    raise RuntimeError(f"{watcher} watcher did not start: {ready!r}")
                put = self.go_put(url, *writer, cmd=writer_cmd)
                final = admin.current_revision()
                written_at = time.monotonic()
                proc.stdin.write(f"{final}\n")
                proc.stdin.flush()
                out, _ = proc.communicate(timeout=hard)
                catch_up = time.monotonic() - written_at
                result = WatcherReport.from_doc(last_json(out, f"{watcher} watcher"))
                if result.last_revision < final:
                    catch_up = float("nan")  # stopped by --idle, not by reaching the last write
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                admin.close()
        return Trial(put, result, catch_up)


def _own_cpu_s() -> float:
    """CPU seconds of this process and of every child it has waited for (theirs include their own
    waited-for children: etcdbench's writers and watcher, etcd, etcdref)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class OtherLoad:
    """Cores used by processes that are not ours (another test run on the same machine): every process
    on the host (etcdbench.metrics.cpu's host series) less this process and its children.

    Ours are exact once waited for, which each section does with every process it starts; the host's
    are sampled, and a process counts from its first sample on. What ours lose that way comes off the
    others: the figure errs low, never high."""

    sampler: ProcessSampler = field(default_factory=lambda: ProcessSampler({}, interval=1.0))
    started: float = 0.0
    own_at_start: float = 0.0
    sections: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self.sampler.start()
        self.started, self.own_at_start = time.monotonic(), _own_cpu_s()

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Measure the others' mean cores while the `with` body runs, as sections[name]."""
        t0, own0 = time.monotonic(), _own_cpu_s()
        yield
        self.sections[name] = self._others(t0, time.monotonic(), _own_cpu_s() - own0)

    def stop(self) -> float:
        """Mean cores used by other processes while we ran."""
        self.sampler.stop()
        return self._others(self.started, time.monotonic(), _own_cpu_s() - self.own_at_start)

    def _others(self, start: float, end: float, own_cpu_s: float) -> float:
        host = self.sampler.cores("host", start, end)  # a fraction of all cores
        if host is None:  # shorter than two samples
            return 0.0
        elapsed = max(1e-9, end - start)
        return max(0.0, host * (psutil.cpu_count() or 1) - own_cpu_s / elapsed)
