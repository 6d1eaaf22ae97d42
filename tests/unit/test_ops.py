"""The operation streams: exact proportions, disjoint writers, lifecycles in order."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest

from etcdbench.config.run import RunConfig, parse_mix
from etcdbench.errors import UsageError
from etcdbench.workload.ops import Op, op_stream, own_objects


def take(config: RunConfig, writer: int, n: int) -> list[Op]:
    return list(islice(op_stream(config, writer), n))


def test_update_cycles_over_the_writers_own_objects() -> None:
    config = RunConfig(objects=10, writers=3)
    ops = take(config, 1, 8)
    assert [o.index for o in ops] == [1, 4, 7, 1, 4, 7, 1, 4]
    assert {o.action for o in ops} == {"update"}
    assert [own_objects(config, w) for w in range(3)] == [4, 3, 3]


@pytest.mark.parametrize(
    "weights", ["update=90,create=5,delete=5", "update=1,create=1,delete=1", "create=3,delete=2"]
)
def test_mix_counts_are_exact_per_full_cycle(weights: str) -> None:
    config = RunConfig(workload="mix", mix=weights, objects=50)
    w = parse_mix(weights)
    cycles = 20
    ops = take(config, 0, sum(w.values()) * cycles)
    counts = Counter(o.action for o in ops)
    assert counts == Counter({op: n * cycles for op, n in w.items() if n})


def test_mix_never_touches_a_deleted_object_and_creates_new_ones() -> None:
    config = RunConfig(workload="mix", mix="update=2,create=1,delete=1", objects=4)
    live = set(range(4))
    for op in take(config, 0, 400):
        if op.action == "create":
            assert op.index not in live
            live.add(op.index)
        else:
            assert op.index in live
            if op.action == "delete":
                live.remove(op.index)


def test_writers_own_disjoint_objects_in_every_workload() -> None:
    for workload in ("update", "churn", "mix"):
        config = RunConfig(workload=workload, writers=3, objects=9)
        seen = [{o.index for o in take(config, w, 300)} for w in range(3)]
        assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2]), workload
        assert all(i % 3 == w for w in range(3) for i in seen[w])


def test_churn_runs_each_pod_through_create_updates_delete() -> None:
    config = RunConfig(workload="churn", churn_updates=2, objects=3)
    history: dict[int, list[str]] = {}
    for op in take(config, 0, 3 * 4 * 3):  # 3 lanes x 4 steps x 3 generations
        history.setdefault(op.index, []).append(op.action)
    assert len(history) == 9  # every pod a new name
    assert all(steps == ["create", "update", "update", "delete"] for steps in history.values())


def test_mix_parses_weights() -> None:
    assert parse_mix("update=90, create=5") == {"update": 90, "create": 5}


@pytest.mark.parametrize(
    "mix", ["update=x", "upsert=1", "update=1,update=2", "update=0", "update=5,delete=5"]
)
def test_bad_mix_is_refused_with_the_flag_named(mix: str) -> None:
    with pytest.raises(UsageError, match=r"^--mix: "):
        parse_mix(mix)
