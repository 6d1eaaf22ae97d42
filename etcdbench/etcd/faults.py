"""Injecting the faults of a run (etcdbench.config.faults says what each kind does) on their schedule."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from etcdbench.backends.base import Admin
from etcdbench.config.faults import NEEDS_CLUSTER, Fault
from etcdbench.errors import UsageError

LEADER_WAIT_S = 20.0  # how long kill-member/kill-leader wait for a leader to be elected first


class Etcd(Protocol):
    """What a fault needs from the etcd under test."""

    pid: int

    @property
    def running(self) -> bool: ...

    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def kill(self) -> None: ...
    def restart(self, timeout: float = 20.0) -> None: ...


class Cluster(Protocol):
    """What a cluster fault needs: the members, and which of them leads."""

    @property
    def members(self) -> Sequence[Etcd]: ...

    def wait_for_leader(self, timeout: float = 20.0) -> int: ...


class FaultInjector:
    """Runs the faults of one run in a thread, from t0; `timeline` says what happened when."""

    def __init__(
        self, faults: list[Fault], etcd: Etcd | None, admin: Admin, cluster: Cluster | None = None
    ) -> None:
        self.faults = sorted(faults, key=lambda f: f.at_s)
        self.etcd = etcd  # on a cluster: member 0
        self.admin = admin
        self.cluster = cluster
        self.timeline: list[dict[str, Any]] = []
        self.on_restart: Callable[[int], None] | None = None  # told etcd's new pid (CPU attribution)
        self._stop = threading.Event()
        self._abort = threading.Event()  # an interrupted run: cut the fault in progress short
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self._t0 = 0.0

    def start(self, t0: float) -> None:
        self._t0 = t0
        self._thread.start()

    def stop(self) -> None:
        """Wait for the fault in progress to finish (a paused etcd is always resumed)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def abort(self, timeout: float) -> None:
        """Cut the fault in progress short (the run was interrupted): a paused etcd is resumed at once,
        a stopped member is not started again. Waits for the fault thread at most `timeout` s."""
        self._abort.set()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _now(self) -> float:
        return round(time.monotonic() - self._t0, 3)

    def _run(self) -> None:
        for fault in self.faults:
            if self._stop.wait(max(0.0, self._t0 + fault.at_s - time.monotonic())):
                return
            record: dict[str, Any] = {"fault": str(fault), "started_s": self._now()}
            try:
                record.update(self._inject(fault))
            except Exception as exc:  # a fault that failed is recorded, the run goes on
                record["error"] = f"{type(exc).__name__}: {exc}"
            record["ended_s"] = self._now()
            self.timeline.append(record)

    def _inject(self, fault: Fault) -> dict[str, Any]:
        """Inject one fault; return what the record should say besides its times (e.g. the member)."""
        etcd = self.etcd
        if fault.kind in NEEDS_CLUSTER:
            return self._inject_member(fault)
        if fault.kind == "compact":
            self.admin.compact(self.admin.current_revision())
        elif fault.kind == "defrag":
            self.admin.defragment()
        elif etcd is None:
            raise UsageError(f"--fault {fault}: needs the embedded etcd (no --endpoints)")
        elif fault.kind == "pause":
            etcd.pause()
            try:
                self._abort.wait(fault.duration_s)  # not cut short by stop(), only by an interrupt
            finally:
                etcd.resume()
        elif fault.kind == "restart":
            etcd.kill()
            if self._abort.wait(fault.duration_s):
                raise RuntimeError("the run was interrupted before etcd was started again")
            etcd.restart()
            if self.on_restart is not None:
                self.on_restart(etcd.pid)
        else:
            etcd.kill()
        return {}

    def _inject_member(self, fault: Fault) -> dict[str, Any]:
        cluster = self.cluster
        if cluster is None or len(cluster.members) < 2:
            raise UsageError(f"--fault {fault}: needs an embedded cluster (--cluster-size 3)")
        leader = cluster.wait_for_leader(LEADER_WAIT_S)
        if fault.kind == "kill-leader":
            index = leader
        else:  # the first follower that is running
            index = next(i for i, m in enumerate(cluster.members) if i != leader and m.running)
        member = cluster.members[index]
        member.kill()
        if self._abort.wait(fault.duration_s):
            raise RuntimeError(f"the run was interrupted before member {index} was started again")
        member.restart()
        if self.on_restart is not None:
            self.on_restart(member.pid)
        return {"member": index}
