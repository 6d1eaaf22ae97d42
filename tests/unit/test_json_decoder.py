"""The watcher's JSON decoder (orjson where installed) decodes exactly what the standard library does."""

from __future__ import annotations

import json

import pytest

from etcdbench.config.run import KINDS
from etcdbench.encoding import codec as codec_module
from etcdbench.encoding.codec import JSON_DECODER, DecodeError, get_codec
from etcdbench.encoding.objects import STAMP_PLACEHOLDER, build_object
from etcdbench.results.io import environment
from etcdbench.workload.accounting import format_stamp, parse_stamp


def test_orjson_is_the_decoder_and_results_record_it() -> None:
    assert JSON_DECODER.startswith("orjson ")  # pinned in pyproject.toml: installed with etcdbench
    assert environment().json_decoder == JSON_DECODER


@pytest.mark.parametrize("profile", ["k8s-1.6", "modern"])
@pytest.mark.parametrize("kind", KINDS)
def test_json_decoder_gives_the_standard_librarys_objects(kind: str, profile: str) -> None:
    codec = get_codec("json")
    for index in (0, 1, 7, 1234):
        obj = build_object(kind, index, profile)
        data = codec.encode(obj)
        decoded = codec.decode(data)
        assert decoded == json.loads(data) == obj
        # and byte for byte: the decoded object encodes to the very bytes it came from
        assert codec.encode(decoded) == data


@pytest.mark.parametrize("kind", KINDS)
def test_stamp_is_read_back_through_the_decoder(kind: str) -> None:
    codec = get_codec("json")
    data = codec.encode(build_object(kind, 3))
    stamp = format_stamp(2, 41, 123_456_789)
    stamped = data.replace(STAMP_PLACEHOLDER.encode(), stamp.encode(), 1)
    assert codec.stamp(stamped) == stamp
    assert parse_stamp(codec.stamp(stamped) or "") == (2, 41, 123_456_789)


def test_decoder_errors_stay_decode_errors() -> None:
    codec = get_codec("json")
    for bad in (b"{", b"\xff\xfe", b"", b'{"metadata": 1'):
        with pytest.raises(DecodeError):
            codec.decode(bad)


def test_standard_library_fallback_decodes_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = get_codec("json")
    data = codec.encode(build_object("pod", 5))
    fast = codec.decode(data)
    monkeypatch.setattr(codec_module, "_loads", json.loads)
    assert codec.decode(data) == fast
