"""Cooperating load generators (`--shard I/N`): they meet in etcd itself before and after a run.

Each shard writes slots i with i % (writers x N) among its own writer ids, so together they follow
one schedule at the full `--rate` and never share a key. To share the schedule's t0 they need one
clock: each shard announces its wall-clock "ready" time under a lease-backed key, waits until all N
have, and starts at max(ready) + a lead, converted to its own CLOCK_MONOTONIC. After the run they
meet again, and shard 0 alone removes the prefix and the meeting keys, once every shard is done.
Latency stays a same-host measurement: each shard's watcher times only its own writers' events.
"""

from __future__ import annotations

import hashlib
import threading
import time

from etcdbench.backends.base import Endpoint
from etcdbench.backends.v3 import V3Backend
from etcdbench.errors import EtcdError

BARRIER_PREFIX = "/etcdbench/barrier/"
LEAD_NS = 2_000_000_000  # t0 this long after the last shard was ready: time to hear about it
LEASE_TTL_S = 300  # meeting keys vanish by themselves if the shards die (a later run must not meet them)
POLL_S = 0.1


class Barrier:
    def __init__(self, endpoint: Endpoint, prefix: str, shard: int, shards: int, timeout_s: float) -> None:
        self.backend = V3Backend(endpoint)  # barriers use the v3 API whatever the run measures
        run = hashlib.sha256(prefix.encode()).hexdigest()[:16]
        self.root = f"{BARRIER_PREFIX}{run}/"
        self.shard = shard
        self.shards = shards
        self.timeout_s = timeout_s

    def meet(self, phase: str, value: int, wait: bool = True) -> list[int]:
        """Announce `value` for `phase` and (if `wait`) wait for every shard's; returns all values."""
        done = threading.Event()
        failed: list[BaseException] = []

        def acked(exc: BaseException | None) -> None:
            if exc is not None:
                failed.append(exc)
            done.set()

        self.backend.put_async(f"{self.root}{phase}/{self.shard}", str(value).encode(), acked, LEASE_TTL_S)
        done.wait()
        if failed:
            raise EtcdError(f"shard barrier: could not announce shard {self.shard}: {failed[0]}")
        if not wait:
            return [value]
        deadline = time.monotonic() + self.timeout_s
        while True:
            values = self.backend.get_prefix(f"{self.root}{phase}/")
            if len(values) >= self.shards:
                return [int(v) for v in values.values()]
            if time.monotonic() > deadline:
                raise EtcdError(
                    f"shard barrier '{phase}': {len(values)} of {self.shards} shards arrived within "
                    f"{self.timeout_s:g} s (same --prefix and --shard I/{self.shards} on every shard?)"
                )
            time.sleep(POLL_S)

    def start_ns(self) -> int:
        """The shared t0 on this host's monotonic clock."""
        t0_wall = max(self.meet("ready", time.time_ns())) + LEAD_NS
        return time.monotonic_ns() + (t0_wall - time.time_ns())

    def finish(self) -> bool:
        """Say this shard is done; shard 0 waits for all and returns True: the cleanup is its own.

        Only shard 0 waits, so that its removal of the meeting keys cannot strand a shard still
        polling for them.
        """
        self.meet("done", time.time_ns(), wait=self.shard == 0)
        if self.shard == 0:
            self.backend.delete_prefix(self.root)
        return self.shard == 0

    def close(self) -> None:
        self.backend.close()
