"""What each write is: the operation stream of one writer, deterministic and exactly proportioned.

Writer w of N (all shards together) owns the objects whose global index is `local * N + w`, so
writers never touch each other's keys and each can keep its own state. Three workloads:

- update: the writer's objects updated round-robin (node heartbeats: every Node once per period);
- churn: pod lifecycles in `objects` lanes: create, `churn_updates` status updates, delete, and a new
  pod in the same lane (each pod has a new name, so each key lives once, above any preloaded ones);
- mix: update/create/delete chosen by smooth weighted round-robin, so that N * total-weight operations
  hold exactly N * weight of each. Updates cycle over live objects, deletes take the next one in that
  cycle, creates add a new object. A delete with no live object left becomes a create.

`update` and `mix` start from the writer's objects already stored (the writer seeds them before the
run); `churn` starts from none.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import count, islice

from etcdbench.config.run import RunConfig
from etcdbench.encoding.objects import object_key
from etcdbench.workload.background import background_keys


@dataclass(frozen=True, slots=True)
class Op:
    action: str  # "create", "update" or "delete"
    index: int  # global object index


def own_objects(config: RunConfig, writer: int) -> int:
    """How many of the configured objects writer `writer` owns."""
    return len(range(writer, config.objects, config.total_writers))


def seeded(config: RunConfig) -> bool:
    """Whether a writer's objects must exist before its first operation."""
    return config.workload != "churn"


def op_stream(config: RunConfig, writer: int) -> Iterator[Op]:
    """The writer's operations, forever; the writer takes as many as its schedule has slots."""
    n = config.total_writers
    owned = max(own_objects(config, writer), 1)
    # New objects (churn pods, mix creates) take indexes above the preloaded ones of the same kind,
    # so a create never overwrites the standing state and a delete never eats into it.
    fresh = max(owned, -(-config.preload.get(config.kind, 0) // n))

    def glob(local: int) -> int:
        return local * n + writer

    if config.workload == "update":
        for s in count():
            yield Op("update", glob(s % owned))
    elif config.workload == "churn":
        cycle = config.churn_updates + 2
        for s in count():
            lane = s % owned
            generation, phase = divmod(s // owned, cycle)
            action = "create" if phase == 0 else "delete" if phase == cycle - 1 else "update"
            yield Op(action, glob(fresh + generation * owned + lane))
    else:
        yield from _mix(config, owned, fresh, glob)


def _mix(config: RunConfig, owned: int, fresh: int, glob: Callable[[int], int]) -> Iterator[Op]:
    weights = {op: w for op, w in config.mix_weights.items() if w > 0}
    total = sum(weights.values())
    current = dict.fromkeys(weights, 0)
    live = deque(range(owned))
    next_new = fresh
    while True:
        for op, w in weights.items():
            current[op] += w
        pick = max(current, key=lambda op: current[op])  # ties: the first in weights order
        current[pick] -= total
        if pick == "delete" and not live:
            pick = "create"
        if pick == "create":
            live.append(next_new)
            yield Op("create", glob(next_new))
            next_new += 1
        elif pick == "update":
            live.rotate(-1)
            yield Op("update", glob(live[-1]))
        else:
            yield Op("delete", glob(live.popleft()))


def written_keys(config: RunConfig, writers: Iterable[int] | None = None) -> set[str]:
    """Every key the given writers (global ids; default: this shard's) write in a run of `config`,
    the preload and the seeded objects included: what a run may overwrite, and all it may delete.

    The writers' operations are deterministic, so this is exact without asking etcd.
    """
    ids = [config.writer_id(w) for w in range(config.writers)] if writers is None else list(writers)
    counts = dict(config.preload)  # as the writer's _preload stores them
    if seeded(config):
        counts[config.kind] = max(counts.get(config.kind, 0), config.objects)
    keys: set[str] = set()
    for w in ids:
        for kind, n in counts.items():
            keys.update(config.prefix + object_key(kind, i) for i in range(w, n, config.total_writers))
        slots = len(range(w, config.total_writes, config.total_writers))
        if config.workload == "update":  # a cycle over the writer's objects: one round names them all
            slots = min(slots, max(own_objects(config, w), 1))
        ops = islice(op_stream(config, w), slots)
        keys.update(config.prefix + object_key(config.kind, op.index) for op in ops)
    if config.bg_event_rate:  # the background's Events, of the shards these writers belong to
        keys.update(background_keys(config, sorted({w // config.writers for w in ids})))
    return keys
