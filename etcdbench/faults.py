"""Faults injected into a run on a schedule: `--fault KIND@T[:D]` (T after the first write, D long;
both durations by the one rule of etcdbench.durations: a bare number is seconds, or 500ms, 1m).

- pause@T:D        SIGSTOP the embedded etcd for D seconds (a stalled disk or VM): it answers nothing
- restart@T:D      SIGKILL it, keep it down D seconds, start the same member again (same data dir)
- kill@T           SIGKILL it for good: the run must end by its deadline and say etcd never came back
- compact@T        compact the store to its current revision (v3 MVCC): a lagging v3 watch must relist
- defrag@T         defragment the backend database (it blocks the member while it runs)
- kill-member@T:D  embedded cluster only (--cluster-size N > 1): SIGKILL a member that is not the
                   leader, keep it down D seconds, restart it (it catches up from the leader)
- kill-leader@T:D  embedded cluster only: SIGKILL the current leader (the others elect a new one),
                   keep it down D seconds, restart it as a follower

compact and defrag change etcd for every client of it, so on an etcd given by --endpoints they need
--allow-disruptive-faults; both act on the v3 store (its MVCC history, its bolt database), so a v2
run, whose watch reads the v2 store's own history, refuses them.

On an embedded cluster, pause, restart and kill act on member 0: the first of the client URLs, the
one the clients are connected to first (gRPC's pick_first), so they exercise client failover.
kill-member and kill-leader pick their member when they fire and record its index as `member`.

Every fault is recorded with the times it started and ended, relative to t0.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from etcdbench.durations import parse_duration
from etcdbench.errors import UsageError

FAULT_KINDS = ("pause", "restart", "kill", "compact", "defrag", "kill-member", "kill-leader")
# signals: only an etcd that etcdbench started
NEEDS_LOCAL = ("pause", "restart", "kill", "kill-member", "kill-leader")
NEEDS_CLUSTER = ("kill-member", "kill-leader")  # and of several members
TAKES_DURATION = ("pause", "restart", "kill-member", "kill-leader")
DISRUPTIVE = ("compact", "defrag")  # change an external etcd for everyone: only with an explicit opt-in
V3_STORE = ("compact", "defrag")  # act on the v3 store: nothing a v2 watch would notice
LEADER_WAIT_S = 20.0  # how long kill-member/kill-leader wait for a leader to be elected first

_FAULT = re.compile(r"^(?P<kind>[a-z][a-z-]*)@(?P<at>[^:]+)(?::(?P<d>[^:]+))?$")


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float
    duration_s: float = 0.0

    def __str__(self) -> str:
        return f"{self.kind}@{self.at_s:g}" + (f":{self.duration_s:g}" if self.kind in TAKES_DURATION else "")


def parse_fault(text: str) -> Fault:
    """'pause@5:2', 'restart@1.5s:500ms', 'kill@1m': T and D are durations (etcdbench.durations)."""
    m = _FAULT.match(text.strip())
    shape = f"--fault: {text!r} is not KIND@SECONDS[:DURATION] with KIND one of {', '.join(FAULT_KINDS)}"
    if not m or m.group("kind") not in FAULT_KINDS:
        raise UsageError(shape)
    kind, duration = m.group("kind"), m.group("d")
    if kind in TAKES_DURATION and duration is None:
        raise UsageError(f"--fault: {text!r} needs a duration: {kind}@SECONDS:DURATION")
    if kind not in TAKES_DURATION and duration is not None:
        raise UsageError(f"--fault: {text!r}: {kind} takes no duration")
    times = []
    for part in (m.group("at"), duration or "0"):
        try:
            seconds = parse_duration("--fault", part)
        except UsageError as exc:
            raise UsageError(f"{shape} ({str(exc).removeprefix('--fault: ')})") from None
        if seconds < 0:
            raise UsageError(f"{shape} (a time after the first write is >= 0)")
        times.append(seconds)
    return Fault(kind, times[0], times[1])


def check_faults(
    faults: Sequence[Fault], *, backend: str, external: bool, cluster: bool, allow_disruptive: bool
) -> None:
    """Refuse, before anything starts, a fault this target cannot or must not take (UsageError).

    external: etcd is given by --endpoints; cluster: the embedded etcd has several members.
    """
    for f in faults:
        if f.kind in V3_STORE and backend == "v2":
            raise UsageError(
                f"--fault {f}: acts on etcd's v3 store, which a --backend v2 run does not watch "
                "(v2 keeps its own 1,000-event history); use it with --backend v3"
            )
        if f.kind in NEEDS_CLUSTER and not cluster:
            raise UsageError(f"--fault {f}: needs an embedded cluster (--cluster-size 3)")
        if f.kind in NEEDS_LOCAL and external:
            raise UsageError(f"--fault {f}: needs the embedded etcd, not --endpoints")
        if f.kind in DISRUPTIVE and external and not allow_disruptive:
            raise UsageError(
                f"--fault {f}: would {f.kind} the etcd of --endpoints for all its clients; "
                "pass --allow-disruptive-faults if that etcd is yours to disrupt"
            )


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


class Admin(Protocol):
    def compact(self, revision: int) -> None: ...
    def defragment(self) -> None: ...
    def current_revision(self) -> int: ...


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
