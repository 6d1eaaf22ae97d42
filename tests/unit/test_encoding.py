"""Objects and codecs: round trips, Kubernetes' wire layout, placeholder stamping, sizes."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from etcdbench.config.run import ENCODINGS, KINDS, SIZE_PROFILES
from etcdbench.encoding.codec import (
    PROTOBUF_MAGIC,
    DecodeError,
    JsonCodec,
    ProtobufCodec,
    get_codec,
    to_object,
)
from etcdbench.encoding.objects import (
    STAMP_ANNOTATION,
    STAMP_PLACEHOLDER,
    STAMP_WIDTH,
    build_object,
    object_key,
    resource_of,
)
from etcdbench.errors import UsageError

NEW_STAMP = "0000001712345678901:00000000000000000042"[:STAMP_WIDTH]
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


# ----------------------------------------------------------------------- a tiny protobuf wire reader


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def wire_fields(data: bytes) -> Iterator[tuple[int, int, Any, bytes]]:
    """(field number, wire type, value, raw tag bytes) for each field of one message, in wire order."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        tag = data[start:pos]
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        else:  # 64- and 32-bit fields do not occur in Kubernetes objects
            raise AssertionError(f"unexpected wire type {wire_type} for field {number}")
        yield number, wire_type, value, tag


def field(data: bytes, number: int) -> Any:
    """The value of the first occurrence of field number."""
    for n, _, value, _ in wire_fields(data):
        if n == number:
            return value
    raise AssertionError(f"field {number} not present")


def numbers(data: bytes) -> list[int]:
    return [n for n, _, _, _ in wire_fields(data)]


def restamped(data: bytes, stamp: str = NEW_STAMP) -> bytes:
    placeholder = STAMP_PLACEHOLDER.encode()
    assert data.count(placeholder) == 1
    return data.replace(placeholder, stamp.encode("ascii"))


# ----------------------------------------------------------------------- objects


def test_resources_and_keys_follow_kubernetes_layout() -> None:
    assert [resource_of(k) for k in KINDS] == ["pods", "minions", "events"]
    assert re.fullmatch(r"pods/team-\d\d/web-\d{4}-[a-z0-9]{10}-[a-z0-9]{5}", object_key("pod", 7))
    assert object_key("node", 42) == "minions/node-00042"
    assert re.fullmatch(
        r"events/team-\d\d/web-\d{4}-[a-z0-9]{10}-[a-z0-9]{5}\.[0-9a-f]+", object_key("event", 7)
    )
    with pytest.raises(ValueError, match="unknown kind"):
        resource_of("deployment")
    with pytest.raises(ValueError, match="unknown kind"):
        build_object("deployment", 0)


@pytest.mark.parametrize("kind", KINDS)
def test_keys_are_unique_and_match_metadata(kind: str) -> None:
    keys = {object_key(kind, i) for i in range(20_000)}
    assert len(keys) == 20_000
    obj = build_object(kind, 123)
    meta = obj["metadata"]
    expected = f"{resource_of(kind)}/{meta['namespace']}/{meta['name']}" if kind != "node" else None
    assert object_key(kind, 123) == (expected or f"minions/{meta['name']}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("profile", SIZE_PROFILES)
def test_objects_are_deterministic_valid_api_objects(kind: str, profile: str) -> None:
    obj = build_object(kind, 5, profile)
    assert obj == build_object(kind, 5, profile)
    assert obj is not build_object(kind, 5, profile)
    assert obj != build_object(kind, 6, profile)
    assert obj["apiVersion"] == "v1"
    assert obj["kind"] == {"pod": "Pod", "node": "Node", "event": "Event"}[kind]
    meta = obj["metadata"]
    assert UUID_RE.match(meta["uid"])
    assert RFC3339_RE.match(meta["creationTimestamp"])
    assert meta["annotations"][STAMP_ANNOTATION] == STAMP_PLACEHOLDER
    assert ("namespace" in meta) == (kind != "node")
    assert "resourceVersion" not in meta  # the apiserver never stores it
    for entry in meta["managedFields"]:
        assert entry["fieldsType"] == "FieldsV1"
        assert isinstance(entry["fieldsV1"], dict) and entry["fieldsV1"]


def test_pod_shape() -> None:
    pod = build_object("pod", 31)
    spec, status = pod["spec"], pod["status"]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert len(spec["containers"]) == 2
    for c in spec["containers"]:
        assert c["image"] and c["env"] and c["ports"] and c["volumeMounts"]
        assert set(c["resources"]) == {"limits", "requests"}
    assert {next(k for k in v if k != "name") for v in spec["volumes"]} == {
        "configMap",
        "projected",
        "emptyDir",
    }
    assert spec["nodeName"].startswith("node-")
    assert status["phase"] == "Running"
    assert [s["state"]["running"]["startedAt"] for s in status["containerStatuses"]]


def test_node_shape() -> None:
    node = build_object("node", 3)
    status = node["status"]
    assert {c["type"] for c in status["conditions"]} == {
        "Ready",
        "MemoryPressure",
        "DiskPressure",
        "PIDPressure",
    }
    assert len(status["images"]) == 20
    assert status["capacity"]["pods"] == "110"
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250


# ----------------------------------------------------------------------- codecs


def test_get_codec() -> None:
    assert ENCODINGS == ("json", "protobuf")
    assert [get_codec(name).name for name in ENCODINGS] == list(ENCODINGS)
    with pytest.raises(UsageError) as err:
        get_codec("yaml")
    assert str(err.value) == "--encoding: unknown encoding 'yaml'; choose json or protobuf"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("index", [0, 1, 4_999, 149_999])
@pytest.mark.parametrize("profile", SIZE_PROFILES)
def test_json_round_trip(kind: str, index: int, profile: str) -> None:
    obj = build_object(kind, index, profile)
    data = JsonCodec().encode(obj)
    assert data.endswith(b"}\n") and b", " not in data.split(b'"')[0]
    assert data == json.dumps(obj, separators=(",", ":")).encode() + b"\n"
    assert to_object(JsonCodec().decode(data)) == obj


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("index", [0, 1, 4_999, 149_999])
@pytest.mark.parametrize("profile", SIZE_PROFILES)
def test_protobuf_round_trip(kind: str, index: int, profile: str) -> None:
    obj = build_object(kind, index, profile)
    message = ProtobufCodec().decode(ProtobufCodec().encode(obj))
    assert type(message).__name__ == obj["kind"]
    assert to_object(message) == obj  # every field survives, nothing is dropped


@pytest.mark.parametrize(
    ("kind", "prefix"), [("node", b"\n\x04Node"), ("pod", b"\n\x03Pod"), ("event", b"\n\x05Event")]
)
def test_protobuf_envelope_bytes(kind: str, prefix: bytes) -> None:
    data = ProtobufCodec().encode(build_object(kind, 0))
    type_meta = b"\n\x02v1\x12" + prefix[1:]
    # k8s\0, Unknown.typeMeta (1, len), TypeMeta{apiVersion=1 "v1", kind=2}, then Unknown.raw (2).
    assert data.startswith(PROTOBUF_MAGIC + b"\n" + bytes([len(type_meta)]) + type_meta + b"\x12")
    if kind == "node":
        assert data.startswith(b"k8s\x00\n\n\n\x02v1\x12\x04Node\x12")  # as in a real stored Node
    unknown = data[4:]
    assert numbers(unknown) == [1, 2, 3, 4]
    # contentEncoding and contentType are present and empty, as Kubernetes writes them.
    assert unknown.endswith(b"\x1a\x00\x22\x00")


def test_protobuf_field_numbers_match_kubernetes() -> None:
    pod = build_object("pod", 0)
    raw = field(ProtobufCodec().encode(pod)[4:], 2)
    assert numbers(raw) == [1, 2, 3]  # metadata, spec, status
    meta = field(raw, 1)
    tags = {n: tag for n, _, _, tag in wire_fields(meta)}
    assert tags[1] == b"\x0a"  # name
    assert tags[12] == b"\x62"  # annotations (map entries)
    assert tags[17] == b"\x8a\x01"  # managedFields
    assert set(tags) == {1, 2, 3, 5, 8, 11, 12, 13, 17}
    assert field(meta, 1).decode() == pod["metadata"]["name"]
    assert field(meta, 3).decode() == pod["metadata"]["namespace"]
    assert field(field(meta, 8), 1) == 1490832000  # creationTimestamp: Time.seconds of 2017-03-30
    owner = field(meta, 13)
    assert field(owner, 1) == b"ReplicaSet" and field(owner, 6) == 1  # kind, controller
    managed = field(meta, 17)
    assert field(managed, 1) == b"kube-controller-manager"  # manager
    assert json.loads(field(field(managed, 7), 1)) == pod["metadata"]["managedFields"][0]["fieldsV1"]
    annotations = {field(e, 1).decode(): field(e, 2).decode() for n, _, e, _ in wire_fields(meta) if n == 12}
    assert annotations == pod["metadata"]["annotations"]

    spec = field(raw, 2)
    assert field(spec, 10).decode() == pod["spec"]["nodeName"]
    assert numbers(spec).count(2) == 2  # two containers
    container = field(spec, 2)
    assert (
        field(container, 1) == b"app"
        and field(container, 2).decode() == pod["spec"]["containers"][0]["image"]
    )
    limits = field(field(container, 8), 1)  # resources.limits entry: key=1, value=Quantity{string=1}
    assert field(limits, 1) == b"cpu" and field(field(limits, 2), 1) == b"500m"
    volume = field(spec, 1)
    assert field(volume, 1) == b"config"
    assert field(field(field(field(volume, 2), 19), 1), 1).endswith(b"-config")  # volumeSource.configMap.name
    status = field(raw, 3)
    assert field(status, 1) == b"Running"
    assert (
        field(field(field(field(field(status, 8), 2), 2), 1), 1) > 1490832000
    )  # ...running.startedAt.seconds

    node_raw = field(ProtobufCodec().encode(build_object("node", 0))[4:], 2)
    node_status = field(node_raw, 3)
    assert numbers(node_status).count(8) == 20  # images
    assert field(field(node_status, 6), 1) == b"\x08\x8a\x50"  # daemonEndpoints.kubeletEndpoint.Port=10250
    event_raw = field(ProtobufCodec().encode(build_object("event", 0))[4:], 2)
    assert field(event_raw, 8) == 1  # count
    assert field(event_raw, 9) == b"Normal"  # type
    assert field(event_raw, 14) == b"kubelet"  # reportingComponent


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("profile", SIZE_PROFILES)
def test_placeholder_replacement_stays_decodable(kind: str, encoding: str, profile: str) -> None:
    codec = get_codec(encoding)
    obj = build_object(kind, 9, profile)
    encoded = codec.encode(obj)
    assert codec.stamp(encoded) == STAMP_PLACEHOLDER
    stamped = restamped(encoded)
    assert len(stamped) == len(encoded)
    assert codec.stamp(stamped) == NEW_STAMP
    expected = copy.deepcopy(obj)
    expected["metadata"]["annotations"][STAMP_ANNOTATION] = NEW_STAMP
    assert to_object(codec.decode(stamped)) == expected
    # Stamping is the same as encoding the stamped object from scratch.
    assert stamped == codec.encode(expected)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_stamp_is_none_without_annotation(encoding: str) -> None:
    codec = get_codec(encoding)
    obj = build_object("event", 0)
    del obj["metadata"]["annotations"][STAMP_ANNOTATION]
    assert codec.stamp(codec.encode(obj)) is None
    del obj["metadata"]["annotations"]
    assert codec.stamp(codec.encode(obj)) is None


def test_decode_errors() -> None:
    with pytest.raises(DecodeError, match="k8s"):
        ProtobufCodec().decode(b'{"kind":"Pod"}')
    with pytest.raises(DecodeError, match="malformed"):
        ProtobufCodec().decode(PROTOBUF_MAGIC + b"\x0a\xff")
    with pytest.raises(DecodeError, match="unknown kind"):
        ProtobufCodec().decode(PROTOBUF_MAGIC + b"\n\x0c\n\x02v1\x12\x06Secret")
    with pytest.raises(DecodeError):
        JsonCodec().decode(b"k8s\x00\n")
    with pytest.raises(DecodeError, match="Expected `object`"):
        JsonCodec().stamp(b"[1]")


def test_protobuf_encode_rejects_what_it_cannot_represent() -> None:
    pod = build_object("pod", 0)
    pod["spec"]["hostNetwork"] = True  # valid Kubernetes, but not in our proto: must not vanish silently
    with pytest.raises(ValueError, match=r"spec\.hostNetwork: no such field"):
        ProtobufCodec().encode(pod)
    pod = build_object("pod", 0)
    pod["spec"]["volumes"][0]["hostPath"] = {"path": "/"}
    with pytest.raises(ValueError, match="hostPath: no such field"):
        ProtobufCodec().encode(pod)
    pod = build_object("pod", 0)
    pod["spec"]["priority"] = "high"
    with pytest.raises(ValueError, match=r"spec\.priority: expected int"):
        ProtobufCodec().encode(pod)
    pod = build_object("pod", 0)
    pod["status"]["startTime"] = "yesterday"
    with pytest.raises(ValueError, match="RFC3339"):
        ProtobufCodec().encode(pod)
    with pytest.raises(ValueError, match="cannot encode kind"):
        ProtobufCodec().encode({"kind": "Secret", "apiVersion": "v1"})


def test_sizes() -> None:
    """Pod ~6 KB JSON (the 2017 envelope assumed 4 KB), Node ~7 KB JSON / ~5.3 KB protobuf (a real one
    was 5,508 bytes), Event ~1 KB; protobuf well under JSON, as the protobuf proposal measured."""
    sizes = {
        kind: {enc: len(get_codec(enc).encode(build_object(kind, 0))) for enc in ENCODINGS} for kind in KINDS
    }
    # The figures documented in docs/methodology.md ("Objects and their sizes"); update both together.
    assert sizes == {
        "pod": {"json": 5_989, "protobuf": 3_630},
        "node": {"json": 6_954, "protobuf": 5_327},
        "event": {"json": 1_108, "protobuf": 659},
    }
    assert 3_000 <= sizes["pod"]["json"] <= 8_000
    assert 4_000 <= sizes["node"]["json"] <= 9_000
    assert 4_000 <= sizes["node"]["protobuf"] <= 7_000
    assert sizes["event"]["json"] < 2_000
    for kind in KINDS:
        assert sizes[kind]["protobuf"] < 0.8 * sizes[kind]["json"], sizes
