"""Faults injected into a run on a schedule: `--fault KIND@T[:D]` (T after the first write, D long;
both durations by the one rule of etcdbench.config.durations: a bare number is seconds, or 500ms, 1m).

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
from collections.abc import Sequence
from dataclasses import dataclass

from etcdbench.config.durations import parse_duration
from etcdbench.errors import UsageError

FAULT_KINDS = ("pause", "restart", "kill", "compact", "defrag", "kill-member", "kill-leader")
# signals: only an etcd that etcdbench started
NEEDS_LOCAL = ("pause", "restart", "kill", "kill-member", "kill-leader")
NEEDS_CLUSTER = ("kill-member", "kill-leader")  # and of several members
TAKES_DURATION = ("pause", "restart", "kill-member", "kill-leader")
DISRUPTIVE = ("compact", "defrag")  # change an external etcd for everyone: only with an explicit opt-in
V3_STORE = ("compact", "defrag")  # act on the v3 store: nothing a v2 watch would notice

_FAULT = re.compile(r"^(?P<kind>[a-z][a-z-]*)@(?P<at>[^:]+)(?::(?P<d>[^:]+))?$")


@dataclass(frozen=True)
class Fault:
    kind: str
    at_s: float
    duration_s: float = 0.0

    def __str__(self) -> str:
        return f"{self.kind}@{self.at_s:g}" + (f":{self.duration_s:g}" if self.kind in TAKES_DURATION else "")


def parse_fault(text: str) -> Fault:
    """'pause@5:2', 'restart@1.5s:500ms', 'kill@1m': T and D are durations (etcdbench.config.durations)."""
    m = _FAULT.match(text.strip())
    shape = f"{text!r} is not KIND@SECONDS[:DURATION] with KIND one of {', '.join(FAULT_KINDS)}"
    if not m or m.group("kind") not in FAULT_KINDS:
        raise _bad(shape)
    kind, duration = m.group("kind"), m.group("d")
    if kind in TAKES_DURATION and duration is None:
        raise _bad(f"{text!r} needs a duration: {kind}@SECONDS:DURATION")
    if kind not in TAKES_DURATION and duration is not None:
        raise _bad(f"{text!r}: {kind} takes no duration")
    times = []
    for part in (m.group("at"), duration or "0"):
        try:
            seconds = parse_duration("--fault", part)
        except UsageError as exc:
            raise _bad(f"{shape} ({exc.reason})") from None
        if seconds < 0:
            raise _bad(f"{shape} (a time after the first write is >= 0)")
        times.append(seconds)
    return Fault(kind, times[0], times[1])


def _bad(reason: str) -> UsageError:
    """A fault spec that cannot be read: about RunConfig's `faults`, given as --fault."""
    return UsageError(f"--fault: {reason}", field="faults", reason=reason)


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
