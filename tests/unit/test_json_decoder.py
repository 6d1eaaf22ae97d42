"""The watcher's JSON decode: into typed structs made from proto/k8s, holding every field of etcdbench's
objects, and refusing what does not fit its type."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

from etcdbench.config.run import KINDS, SIZE_PROFILES
from etcdbench.encoding.codec import JSON_DECODER, DecodeError, get_codec
from etcdbench.encoding.objects import STAMP_PLACEHOLDER, build_object
from etcdbench.encoding.schema import to_json_object, typed_decoder
from etcdbench.results.io import environment
from etcdbench.workload.accounting import format_stamp, parse_stamp

STRICT = typed_decoder(strict=True)


def test_results_record_the_typed_decoder() -> None:
    assert JSON_DECODER.startswith(f"msgspec {msgspec.__version__}, typed")
    assert environment().json_decoder == JSON_DECODER


@pytest.mark.parametrize("profile", SIZE_PROFILES)
@pytest.mark.parametrize("kind", KINDS)
def test_the_typed_decode_holds_every_field_of_etcdbenchs_objects(kind: str, profile: str) -> None:
    codec = get_codec("json")
    for index in (0, 1, 7, 1234, 149_999):
        obj = build_object(kind, index, profile)
        data = codec.encode(obj)
        # strict: a key outside the schema would raise here instead of being skipped
        typed = STRICT.decode(data)
        assert type(typed).__name__ == obj["kind"]
        # encoded back, the struct is the very object: no field was dropped, none was changed
        assert to_json_object(typed) == json.loads(data) == obj
        assert to_json_object(codec.decode(data)) == obj


def test_values_take_their_kubernetes_types() -> None:
    pod = get_codec("json").decode(get_codec("json").encode(build_object("pod", 1)))
    assert pod.metadata.creationTimestamp == datetime(2017, 3, 30, 0, 0, 1, tzinfo=UTC)
    assert pod.spec.containers[0].resources.limits["cpu"] == "500m"  # a Quantity keeps its string
    assert isinstance(pod.metadata.managedFields[0].fieldsV1, msgspec.Raw)  # Kubernetes keeps raw bytes
    assert json.loads(bytes(pod.metadata.managedFields[0].fieldsV1))["f:metadata"]
    assert pod.spec.volumes[0].configMap.name == "web-0000-config"  # an inlined VolumeSource


def test_unknown_fields_are_skipped_as_the_apiserver_drops_them_and_strict_names_them() -> None:
    obj = build_object("pod", 1)
    obj["spec"]["hostNetwork"] = True  # valid Kubernetes, outside proto/k8s
    data = get_codec("json").encode(obj)
    assert get_codec("json").decode(data).spec.nodeName == obj["spec"]["nodeName"]
    with pytest.raises(msgspec.ValidationError, match="hostNetwork"):
        STRICT.decode(data)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (b"{", "truncated"),
        (b"\xff\xfe", "malformed"),
        (b"", "truncated"),
        (b"[1]", "Expected `object`"),
        (b'{"kind":"Secret","apiVersion":"v1"}', "Secret"),
        (b'{"apiVersion":"v1","metadata":{}}', "kind"),
        (b'{"kind":"Pod","metadata":{"generation":"1"}}', r"metadata\.generation"),
        (b'{"kind":"Pod","metadata":{"creationTimestamp":"yesterday"}}', "datetime"),
        (b'{"kind":"Pod","spec":{"containers":{}}}', r"spec\.containers"),
    ],
)
def test_what_does_not_fit_its_type_is_a_decode_error_naming_where(bad: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        get_codec("json").decode(bad)


@pytest.mark.parametrize("kind", KINDS)
def test_stamp_is_read_back_through_the_decoder(kind: str) -> None:
    codec = get_codec("json")
    data = codec.encode(build_object(kind, 3))
    stamp = format_stamp(2, 41, 123_456_789)
    stamped = data.replace(STAMP_PLACEHOLDER.encode(), stamp.encode(), 1)
    assert codec.stamp(stamped) == stamp
    assert parse_stamp(codec.stamp(stamped) or "") == (2, 41, 123_456_789)


def test_an_object_without_metadata_has_no_stamp_to_read() -> None:
    with pytest.raises(DecodeError, match="metadata"):
        get_codec("json").stamp(b'{"kind":"Event","apiVersion":"v1","reason":"x"}')
    assert get_codec("json").stamp(b'{"kind":"Event","metadata":{"name":"x"}}') is None
