"""The preload's values without an etcd: templated values equal the builder's byte for byte, classes the
templates cannot serve are built one by one, a mismatch stops the preload; progress reaches the callback."""

from __future__ import annotations

import pytest

from etcdbench.config.run import KINDS
from etcdbench.encoding.codec import get_codec
from etcdbench.encoding.objects import build_object
from etcdbench.workload import preload as preload_module
from etcdbench.workload.preload import PreloadValues, TemplateMismatch
from etcdbench.workload.runner import _Child

# Indexes where an atom's length changes: pod IPs (x.y.z.9 -> .10 -> .100 -> next /16), ReplicaSet
# numbers (web-9999 -> web-10000 at pod 300,000), pod suffixes (5 -> 7 characters past 27**5).
BOUNDARIES = [
    *range(0, 130),
    *range(250, 262),
    *range(4990, 5010),
    *range(65530, 65540),
    *range(299_995, 300_005),
    *range(14_348_905, 14_348_910),
]


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
@pytest.mark.parametrize("kind", KINDS)
def test_templated_values_are_the_builders_byte_for_byte(kind: str, encoding: str) -> None:
    codec = get_codec(encoding)
    values = PreloadValues(codec, "k8s-1.6")
    for index in BOUNDARIES:
        assert values.value(kind, index) == codec.encode(build_object(kind, index)), (kind, index)
    assert values.templated > len(BOUNDARIES) // 2  # most of them did come from templates


def test_modern_objects_are_built_one_by_one() -> None:
    codec = get_codec("json")
    values = PreloadValues(codec, "modern")
    for index in range(5):
        assert values.value("pod", index) == codec.encode(build_object("pod", index, "modern"))
    assert values.templated == 0 and values.built == 5


def test_a_class_whose_first_check_fails_is_built_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """An atom the template does not know about (here: the pod uid left out) fails the class's first
    check; its values then come from the builder, still exact."""
    real = preload_module._ATOMS["pod"]
    pod_uid = preload_module._uid

    def missing_uid(index: int) -> list[bytes]:
        return [a for a in real(index) if a != pod_uid("pod", index).encode()]

    monkeypatch.setitem(preload_module._ATOMS, "pod", missing_uid)
    codec = get_codec("protobuf")
    values = PreloadValues(codec, "k8s-1.6")
    for index in range(10, 20):
        assert values.value("pod", index) == codec.encode(build_object("pod", index))
    assert values.templated == 0


def test_a_mismatch_after_the_check_stops_the_preload(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trusted class whose sampled value differs raises: a wrong value is never stored silently."""
    codec = get_codec("json")
    values = PreloadValues(codec, "k8s-1.6")
    for index in (1, 2):  # the reference and its check
        values.value("event", index)
    real = values.slow
    monkeypatch.setattr(values, "slow", lambda kind, index: real(kind, index) + b" ")
    with pytest.raises(TemplateMismatch):
        values.value("event", preload_module.VERIFY_EVERY)


def test_preloading_reports_reach_the_progress_callback() -> None:
    """A writer's ("preloading", n) messages before "ready" go to the callback, in order."""
    import multiprocessing as mp

    child = _Child.__new__(_Child)
    child.name = "writer 0"
    ours, theirs = mp.Pipe()
    child.conn = ours
    for message in (("preloading", 100), ("preloading", 250), ("ready", {"preloaded": 300})):
        theirs.send(message)
    seen: list[int] = []
    assert child.expect("ready", 5.0, seen.append) == {"preloaded": 300}
    assert seen == [100, 250]
