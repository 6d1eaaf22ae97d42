"""Size profiles: the default stays byte-identical, "modern" sizes follow the documented distributions."""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest

from etcdbench.config.run import ENCODINGS, KINDS, SIZE_PROFILES
from etcdbench.encoding.codec import get_codec, to_object
from etcdbench.encoding.objects import (
    STAMP_ANNOTATION,
    STAMP_PLACEHOLDER,
    build_object,
    object_key,
    resource_of,
    size_profile_of,
)

SAMPLES = 2_000
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

Sizes = dict[str, dict[str, list[int]]]  # kind -> encoding -> size of object i


@pytest.fixture(scope="module")
def modern_sizes() -> Sizes:
    codecs = [get_codec(enc) for enc in ENCODINGS]
    sizes: Sizes = {kind: {enc: [] for enc in ENCODINGS} for kind in KINDS}
    for kind in KINDS:
        for i in range(SAMPLES):
            obj = build_object(kind, i, "modern")
            for codec in codecs:
                sizes[kind][codec.name].append(len(codec.encode(obj)))
    return sizes


# ----------------------------------------------------------------------- profiles


def test_profiles_and_validation() -> None:
    assert SIZE_PROFILES == ("k8s-1.6", "modern")
    assert [size_profile_of(p) for p in SIZE_PROFILES] == list(SIZE_PROFILES)
    with pytest.raises(ValueError, match=r"unknown size profile 'huge'; choose one of k8s-1\.6, modern"):
        size_profile_of("huge")
    with pytest.raises(ValueError, match="unknown size profile"):
        build_object("pod", 0, "huge")


# sha256 over the JSON and protobuf encodings of indexes 0, 1, 31, 4,999 and 149,999: the objects of
# the commit before size profiles existed. A change here invalidates committed results.
GOLDEN = {
    "pod": "5face6b13b2fc72d1027df6d1ae77df436eb783550ba4cf17e6186c83f8aec14",
    "node": "0e0b852d5a62f15e2b29b06b12d456595e7fd12542138301422394c2e01dbaf2",
    "event": "c3ea9e901131c4dda0a6487412f21cfa9076077180d0199a43731e9284976103",
}


@pytest.mark.parametrize("kind", KINDS)
def test_default_profile_is_the_2017_objects_byte_for_byte(kind: str) -> None:
    digest = hashlib.sha256()
    for i in (0, 1, 31, 4_999, 149_999):
        assert build_object(kind, i) == build_object(kind, i, "k8s-1.6")
        for enc in ENCODINGS:
            digest.update(get_codec(enc).encode(build_object(kind, i)))
    assert digest.hexdigest() == GOLDEN[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_modern_is_deterministic_and_keeps_keys(kind: str) -> None:
    for i in (0, 7, 1_234, 149_999):
        obj = build_object(kind, i, "modern")
        again = build_object(kind, i, "modern")
        assert obj == again and obj is not again
        for enc in ENCODINGS:
            codec = get_codec(enc)
            assert codec.encode(obj) == codec.encode(again)
        meta = obj["metadata"]
        name = f"{meta['namespace']}/{meta['name']}" if kind != "node" else meta["name"]
        assert object_key(kind, i) == f"{resource_of(kind)}/{name}"
    assert build_object(kind, 1, "modern") != build_object(kind, 2, "modern")


# ----------------------------------------------------------------------- distributions


def _pct(values: list[int], p: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def test_modern_pod_sizes(modern_sizes: Sizes) -> None:
    sizes = modern_sizes["pod"]["json"]
    assert 10_000 <= statistics.median(sizes) <= 20_000
    regular = [s for s in sizes if s <= 50_000]
    assert sum(10_000 <= s <= 20_000 for s in regular) >= 0.8 * len(regular)  # most Pods
    outliers = [s for s in sizes if s > 50_000]
    assert outliers and 0.003 <= len(outliers) / len(sizes) <= 0.03
    assert all(55_000 <= s <= 90_000 for s in outliers)  # around 70 KB
    assert max(regular) < 35_000  # a gap between the body and the outliers


def test_modern_node_sizes(modern_sizes: Sizes) -> None:
    sizes = modern_sizes["node"]["json"]
    assert 8_000 <= statistics.median(sizes) <= 30_000
    assert min(sizes) < 8_000
    assert 100_000 < max(sizes) <= 180_000
    assert _pct(sizes, 0.9) < 60_000  # a heavy tail, not a heavy body


def test_modern_event_sizes(modern_sizes: Sizes) -> None:
    sizes = modern_sizes["event"]["json"]
    assert 700 <= min(sizes) <= max(sizes) <= 2_000
    assert max(sizes) - min(sizes) > 400  # message length varies


@pytest.mark.parametrize("kind", KINDS)
def test_protobuf_is_smaller_than_json(modern_sizes: Sizes, kind: str) -> None:
    json_sizes, pb_sizes = modern_sizes[kind]["json"], modern_sizes[kind]["protobuf"]
    assert all(pb < js for pb, js in zip(pb_sizes, json_sizes, strict=True))
    assert sum(pb_sizes) < 0.9 * sum(json_sizes)


# ----------------------------------------------------------------------- validity


def _indexes(sizes: Sizes, kind: str) -> list[int]:
    """Every 20th index plus the largest objects (the outliers, the longest image lists)."""
    json_sizes = sizes[kind]["json"]
    largest = sorted(range(SAMPLES), key=json_sizes.__getitem__)[-10:]
    return sorted({*range(0, SAMPLES, 20), *largest})


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_modern_round_trips_and_stamps(modern_sizes: Sizes, kind: str, encoding: str) -> None:
    codec = get_codec(encoding)
    for i in _indexes(modern_sizes, kind):
        obj = build_object(kind, i, "modern")
        assert obj["metadata"]["annotations"][STAMP_ANNOTATION] == STAMP_PLACEHOLDER
        data = codec.encode(obj)
        assert data.count(STAMP_PLACEHOLDER.encode()) == 1
        decoded = codec.decode(data)
        assert to_object(decoded) == obj
        assert codec.stamp(data) == STAMP_PLACEHOLDER


def _unique(values: list[Any]) -> bool:
    return len(values) == len(set(values))


def _check_meta(meta: dict[str, Any]) -> None:
    for key, value in meta.get("labels", {}).items():
        assert QUALIFIED_NAME.match(key) and LABEL_VALUE.match(value), (key, value)
    for key in meta["annotations"]:
        assert QUALIFIED_NAME.match(key), key
    assert _unique([(m["manager"], m.get("subresource")) for m in meta["managedFields"]])
    for entry in meta["managedFields"]:
        assert entry["fieldsType"] == "FieldsV1" and entry["fieldsV1"]


def _check_pod(pod: dict[str, Any]) -> None:
    meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
    containers = spec["containers"]
    assert 2 <= len(containers) <= 5
    assert [c["name"] for c in containers] == [s["name"] for s in status["containerStatuses"]]
    volumes = {v["name"] for v in spec["volumes"]}
    assert len(volumes) == len(spec["volumes"]) and all(DNS_LABEL.match(v) for v in volumes)
    assert _unique([c["name"] for c in containers]) and all(DNS_LABEL.match(c["name"]) for c in containers)
    for c in containers:
        assert _unique([e["name"] for e in c["env"]]) and all(ENV_NAME.match(e["name"]) for e in c["env"])
        assert _unique([m["mountPath"] for m in c["volumeMounts"]])
        assert {m["name"] for m in c["volumeMounts"]} <= volumes
        assert all(len(p["name"]) <= 15 for p in c["ports"])
    assert 10 <= sum(len(c["env"]) for c in containers) <= 400
    _check_meta(meta)
    assert len(meta["managedFields"]) == 4
    applied = json.loads(meta["annotations"][LAST_APPLIED])
    assert applied["metadata"]["name"] == meta["name"]
    assert STAMP_ANNOTATION not in applied["metadata"]["annotations"]
    assert [c["env"] for c in applied["spec"]["containers"]] == [c["env"] for c in containers]
    controller = meta["managedFields"][0]["fieldsV1"]["f:spec"]["f:containers"]
    for c in containers:
        managed_env = controller[f'k:{{"name":"{c["name"]}"}}']["f:env"]
        assert len(managed_env) == len(c["env"])


def _check_node(node: dict[str, Any]) -> None:
    images = node["status"]["images"]
    assert 10 <= len(images) <= 600
    assert all(1 <= len(img["names"]) <= 3 and "@sha256:" in img["names"][0] for img in images)
    sizes = [img["sizeBytes"] for img in images]
    assert sizes == sorted(sizes, reverse=True)  # largest first, as the kubelet reports
    assert _unique([img["names"][0] for img in images])
    _check_meta(node["metadata"])


def _check_event(event: dict[str, Any]) -> None:
    assert event["type"] in ("Normal", "Warning")
    assert event["count"] >= 1 and (event["count"] == 1 or event["type"] == "Warning")
    assert event["lastTimestamp"] >= event["firstTimestamp"]
    assert 20 <= len(event["message"]) <= 1_000
    _check_meta(event["metadata"])


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "pod": _check_pod,
    "node": _check_node,
    "event": _check_event,
}


@pytest.mark.parametrize("kind", KINDS)
def test_modern_objects_are_valid(modern_sizes: Sizes, kind: str) -> None:
    for i in _indexes(modern_sizes, kind):
        CHECKS[kind](build_object(kind, i, "modern"))


def test_modern_varies_what_it_should() -> None:
    pods = [build_object("pod", i, "modern") for i in range(300)]
    assert {len(p["spec"]["containers"]) for p in pods} == {2, 3, 4, 5}
    events = [build_object("event", i, "modern") for i in range(300)]
    assert {e["type"] for e in events} == {"Normal", "Warning"}
    assert len({e["reason"] for e in events}) >= 8


def test_builders_are_fast_enough() -> None:
    """Generous bounds (about 20x the measured time): 10,000 Pods or 5,000 Nodes take seconds."""
    for kind, count in (("pod", 500), ("node", 250), ("event", 1_000)):
        start = time.perf_counter()
        for i in range(count):
            build_object(kind, i, "modern")
        assert time.perf_counter() - start < 10.0, kind
