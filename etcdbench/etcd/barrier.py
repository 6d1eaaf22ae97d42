"""Cooperating load generators (`--shard I/N`): they meet in etcd itself before and after a run.

Each shard writes slots i with i % (writers x N) among its own writer ids, so together they follow
one schedule at the full `--rate` and never share a key. To share the schedule's t0 they need one
clock: each shard announces its wall-clock "ready" time, waits until all N have, and starts at
max(ready) + a lead, converted to its own CLOCK_MONOTONIC. After the run each says "done" and waits
for the others, so that no shard deletes its keys while another's watcher still counts events; then
each deletes only its own keys (bench/target.py) and its own meeting keys.

The meeting keys live under the run id (`--run-id`, or ETCDBENCH_RUN_ID, which every pod of one
Kubernetes Job can get from the Job's uid), so a rerun never meets an earlier run's keys, and a shard
that finds its own key of a run id already there refuses to start. They are leased, as a last resort
for a shard that is SIGKILLed; every other way out removes them.

Leaving without stranding a peer: a shard removes its ready and done keys only once it has seen
every shard done (or on its way out after a failure). So a shard still waiting counts a peer as
done when the peer's done key is there, or when its ready key, seen at the start, is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Mapping

from etcdbench.backends import make_server_admin
from etcdbench.backends.base import Endpoint
from etcdbench.errors import EtcdError, UsageError
from etcdbench.interrupt import shielded

BARRIER_PREFIX = "/etcdbench/barrier/"
RUN_ID_ENV = "ETCDBENCH_RUN_ID"
LEAD_NS = 2_000_000_000  # t0 this long after the last shard was ready: time to hear about it
LEASE_TTL_S = 300  # meeting keys of a SIGKILLed shard vanish by themselves after this
POLL_S = 0.1
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # a Job's name or uid fits


def resolve_run_id(flag: str | None, shards: int, environ: Mapping[str, str] = os.environ) -> str:
    """The run id of a sharded run: --run-id, else $ETCDBENCH_RUN_ID; "" for a run of one shard
    without either. UsageError for a bad one, or none when shards must meet."""
    source, value = ("--run-id", flag) if flag is not None else (RUN_ID_ENV, environ.get(RUN_ID_ENV, ""))
    if not value:
        if shards > 1:
            raise UsageError(
                f"--run-id: the {shards} shards meet under a run id they all share: pass --run-id ID "
                f"(or set {RUN_ID_ENV}, e.g. to the Job's uid), new for every run"
            )
        return ""
    if not _RUN_ID.match(value):
        raise UsageError(f"{source}: {value!r} is not 1-63 letters, digits, '.', '_' or '-'")
    return value


class Barrier:
    def __init__(
        self, endpoint: Endpoint, prefix: str, run_id: str, shard: int, shards: int, timeout_s: float
    ) -> None:
        self.backend = make_server_admin(endpoint)  # leased keys, whatever API the run measures
        where = hashlib.sha256(prefix.encode()).hexdigest()[:16]  # one run id, several prefixes: apart
        self.root = f"{BARRIER_PREFIX}{run_id}/{where}/"
        self.run_id = run_id
        self.shard = shard
        self.shards = shards
        self.timeout_s = timeout_s
        self._mine: list[str] = []  # meeting keys this shard wrote: removed on every way out

    def _announce(self, phase: str, value: int) -> None:
        key = f"{self.root}{phase}/{self.shard}"
        if not self.backend.put_leased(key, str(value).encode(), LEASE_TTL_S):
            # Someone else's (a rerun within the lease, or two shards given one index): not ours to remove.
            raise UsageError(
                f"--run-id: shard {self.shard} of run {self.run_id} has met before (its key {key} "
                "exists): give every run a new run id, and each shard its own index"
            )
        self._mine.append(key)

    def _timeout(self, phase: str, arrived: int) -> EtcdError:
        return EtcdError(
            f"shard barrier '{phase}': {arrived} of {self.shards} shards arrived within "
            f"{self.timeout_s:g} s (same --prefix, --run-id and --shard I/{self.shards} on every shard?)"
        )

    def start_ns(self) -> int:
        """The shared t0 on this host's monotonic clock, once every shard is ready."""
        self._announce("ready", time.time_ns())
        deadline = time.monotonic() + self.timeout_s
        while True:
            ready = self.backend.get_prefix(f"{self.root}ready/")
            if len(ready) >= self.shards:
                break
            if time.monotonic() > deadline:
                raise self._timeout("ready", len(ready))
            time.sleep(POLL_S)
        t0_wall = max(int(v) for v in ready.values()) + LEAD_NS
        return time.monotonic_ns() + (t0_wall - time.time_ns())

    def finish(self) -> None:
        """Say this shard is done and wait until every shard is (done, or gone after a failure)."""
        self._announce("done", time.time_ns())
        deadline = time.monotonic() + self.timeout_s
        while True:
            keys = self.backend.get_prefix(self.root)
            finished = [
                i
                for i in range(self.shards)
                if f"{self.root}done/{i}" in keys or f"{self.root}ready/{i}" not in keys
            ]
            if len(finished) >= self.shards:
                return
            if time.monotonic() > deadline:
                raise self._timeout("done", len(finished))
            time.sleep(POLL_S)

    def close(self) -> None:
        """Remove this shard's meeting keys (whatever happened) and disconnect."""
        with shielded(), contextlib.suppress(Exception):
            self.backend.delete_keys(reversed(self._mine))  # done before ready: see the module doc
        self._mine.clear()
        self.backend.close()
