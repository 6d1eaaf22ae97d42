"""The two ways a kube-apiserver stores an object in etcd, and the decode its watch cache performs.

- json: the object as compact JSON plus a trailing newline (what Kubernetes' JSON serializer writes).
  Decoded, as the apiserver decodes it into its Go struct, into a typed struct made from proto/k8s
  (encoding.schema), with msgspec; JSON_DECODER names the decoder and results record it as
  ``environment.json_decoder``.
- protobuf: the 4 magic bytes ``k8s\\0`` then a ``runtime.Unknown`` whose ``raw`` holds the typed
  message (Pod, Node or Event); Kubernetes writes ``contentEncoding`` and ``contentType`` as present,
  empty strings.

``stamp()`` is what the watcher calls per event: it decodes the value completely, as the apiserver's
cacher would before it could serve the event, and only then reads the stamp annotation. That keeps
the decode cost of each encoding inside the measured latency.

The dict -> message conversion is explicit and strict: every key must map to a field defined in
proto/k8s/*.proto (an undefined one raises instead of being dropped), and JSON-only shapes are mapped
by hand: RFC3339 strings <-> meta.v1.Time, quantity strings <-> resource.Quantity, a fieldsV1 object
<-> FieldsV1.Raw (its compact JSON), and the fields Kubernetes inlines in JSON (a Volume's source, a
ConfigMap reference's name) <-> their embedded messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import msgspec
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from etcdbench._pb.k8s import core_pb2, runtime_pb2
from etcdbench.config.run import ENCODINGS
from etcdbench.encoding.objects import STAMP_ANNOTATION
from etcdbench.encoding.schema import (
    FIELDS_V1,
    INLINE,
    QUANTITY,
    SCALARS,
    TIME,
    map_value_field,
    to_json_object,
    typed_decoder,
)
from etcdbench.errors import EtcdbenchError, UsageError

JSON_DECODER = f"msgspec {msgspec.__version__}, typed (proto/k8s)"  # results: environment.json_decoder
PROTOBUF_MAGIC = b"k8s\x00"

_KIND_MESSAGES: dict[str, type[Message]] = {
    "Pod": core_pb2.Pod,
    "Node": core_pb2.Node,
    "Event": core_pb2.Event,
}
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"
_COMPACT = (",", ":")


class DecodeError(EtcdbenchError):
    """A stored value is not a valid object in the expected encoding."""


class Codec(Protocol):
    name: str  # "json" | "protobuf"

    def encode(self, obj: dict[str, Any]) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...

    def stamp(self, data: bytes) -> str | None: ...


def get_codec(name: str) -> Codec:
    if name == "json":
        return JsonCodec()
    if name == "protobuf":
        return ProtobufCodec()
    raise UsageError(f"--encoding: unknown encoding {name!r}; choose {' or '.join(ENCODINGS)}")


class JsonCodec:
    """Compact JSON with Kubernetes' trailing newline."""

    name = "json"
    _decode = staticmethod(typed_decoder().decode)  # one decoder, built once, for every codec

    def encode(self, obj: dict[str, Any]) -> bytes:
        # ensure_ascii=False: Go writes UTF-8 as is, it does not \u-escape it.
        return json.dumps(obj, separators=_COMPACT, ensure_ascii=False).encode("utf-8") + b"\n"

    def decode(self, data: bytes) -> Any:
        """The object decoded into its typed struct (a Pod, Node or Event by its `kind`)."""
        try:
            return self._decode(data)
        except msgspec.DecodeError as exc:  # malformed JSON, or a value that does not fit its type
            raise DecodeError(f"json: {exc}") from exc

    def stamp(self, data: bytes) -> str | None:
        metadata = self.decode(data).metadata
        if metadata is None:
            raise DecodeError("json: value has no metadata object")
        annotations: dict[str, str] | None = metadata.annotations
        return annotations.get(STAMP_ANNOTATION) if annotations else None


class ProtobufCodec:
    """Kubernetes' protobuf storage format: b"k8s\\0" + runtime.Unknown{typeMeta, raw}."""

    name = "protobuf"

    def encode(self, obj: dict[str, Any]) -> bytes:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if not isinstance(kind, str) or kind not in _KIND_MESSAGES:
            raise ValueError(f"protobuf: cannot encode kind {kind!r}; known: {', '.join(_KIND_MESSAGES)}")
        if not isinstance(api_version, str):
            raise ValueError("protobuf: object has no apiVersion")
        body = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
        message = _KIND_MESSAGES[kind]()
        dict_to_message(body, message)
        envelope = runtime_pb2.Unknown(
            typeMeta=runtime_pb2.TypeMeta(apiVersion=api_version, kind=kind),
            raw=message.SerializeToString(deterministic=True),  # sorted map keys, as Kubernetes writes
            contentEncoding="",
            contentType="",
        )
        return PROTOBUF_MAGIC + envelope.SerializeToString()

    def decode(self, data: bytes) -> Any:
        if data[:4] != PROTOBUF_MAGIC:
            raise DecodeError(f"protobuf: value does not start with k8s\\0 (starts {data[:4]!r})")
        try:
            envelope = runtime_pb2.Unknown.FromString(data[4:])
            cls = _KIND_MESSAGES.get(envelope.typeMeta.kind)
            if cls is None:
                raise DecodeError(f"protobuf: unknown kind {envelope.typeMeta.kind!r} in envelope")
            return cls.FromString(envelope.raw)
        except ProtobufDecodeError as exc:
            raise DecodeError(f"protobuf: malformed message: {exc}") from exc

    def stamp(self, data: bytes) -> str | None:
        value: str | None = self.decode(data).metadata.annotations.get(STAMP_ANNOTATION)
        return value


# ------------------------------------------------------------------------- dict <-> message


def _is_repeated(field: FieldDescriptor) -> bool:
    # protobuf >= 6 has is_repeated; 5.x only has label (removed in 7).
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return bool(getattr(field, "label") == FieldDescriptor.LABEL_REPEATED)  # noqa: B009


def _check_scalar(field: FieldDescriptor, value: Any, path: str) -> Any:
    expected = SCALARS.get(field.type)
    if expected is None:
        raise ValueError(f"{path}: field type {field.type} is not supported by the converter")
    # bool is an int in Python; do not let True through as a number or 1 as a flag.
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(f"{path}: expected {expected.__name__}, got {type(value).__name__}")
    return value


def _parse_time(value: Any, path: str) -> int:
    if not isinstance(value, str):
        raise ValueError(f"{path}: expected an RFC3339 string, got {type(value).__name__}")
    try:
        parsed = datetime.strptime(value, _RFC3339).replace(tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"{path}: {value!r} is not RFC3339 UTC with second precision") from exc
    return int(parsed.timestamp())


def _fill_message(message: Message, value: Any, path: str) -> None:
    """Fill message from its JSON form value (special JSON shapes first)."""
    full_name = message.DESCRIPTOR.full_name
    if full_name == TIME:
        seconds = _parse_time(value, path)
        if seconds:
            message.seconds = seconds  # type: ignore[attr-defined]
        else:
            message.SetInParent()
    elif full_name == QUANTITY:
        if not isinstance(value, str):
            raise ValueError(f"{path}: expected a quantity string, got {type(value).__name__}")
        message.string = value  # type: ignore[attr-defined]
    elif full_name == FIELDS_V1:
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a fieldsV1 object, got {type(value).__name__}")
        message.Raw = json.dumps(value, separators=_COMPACT).encode()  # type: ignore[attr-defined]
    else:
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: expected an object, got {type(value).__name__}")
        dict_to_message(value, message, path)


def dict_to_message(obj: Mapping[str, Any], message: Message, path: str = "") -> None:
    """Set message's fields from obj (a Kubernetes JSON object); raise on anything undefined."""
    descriptor = message.DESCRIPTOR
    # The upb descriptor classes duck-type the pure-Python ones the helpers are annotated with.
    fields = cast("Mapping[str, FieldDescriptor]", descriptor.fields_by_name)
    inline_name = INLINE.get(descriptor.full_name)
    inlined: dict[str, Any] = {}
    message.SetInParent()  # an empty JSON object ({}) is still a present field
    for key, value in obj.items():
        where = f"{path}.{key}" if path else key
        field = fields.get(key)
        if field is None or key == inline_name:
            if inline_name is None:
                raise ValueError(f"{where}: no such field in {descriptor.full_name} (add it to proto/k8s)")
            inlined[key] = value
            continue
        if value is None:
            raise ValueError(f"{where}: null is not supported; omit the field instead")
        value_field = map_value_field(field)
        if value_field is not None:
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
            target = getattr(message, key)
            for map_key, item in value.items():
                if not isinstance(map_key, str):
                    raise ValueError(f"{where}: map keys must be strings")
                if value_field.message_type is None:
                    target[map_key] = _check_scalar(value_field, item, f"{where}.{map_key}")
                else:
                    _fill_message(target[map_key], item, f"{where}.{map_key}")
        elif _is_repeated(field):
            if not isinstance(value, list):
                raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
            target = getattr(message, key)
            for i, item in enumerate(value):
                if field.message_type is None:
                    target.append(_check_scalar(field, item, f"{where}[{i}]"))
                else:
                    _fill_message(target.add(), item, f"{where}[{i}]")
        elif field.message_type is not None:
            _fill_message(getattr(message, key), value, where)
        else:
            setattr(message, key, _check_scalar(field, value, where))
    if inlined and inline_name is not None:
        dict_to_message(inlined, getattr(message, inline_name), path)


def _message_value(message: Message) -> Any:
    full_name = message.DESCRIPTOR.full_name
    if full_name == TIME:
        seconds = message.seconds  # type: ignore[attr-defined]
        return datetime.fromtimestamp(seconds, tz=UTC).strftime(_RFC3339)
    if full_name == QUANTITY:
        return message.string  # type: ignore[attr-defined]
    if full_name == FIELDS_V1:
        return json.loads(message.Raw)  # type: ignore[attr-defined]
    return message_to_dict(message)


def message_to_dict(message: Message) -> dict[str, Any]:
    """The JSON form of a message built by dict_to_message (inverse of it, for present fields)."""
    out: dict[str, Any] = {}
    inline_name = INLINE.get(message.DESCRIPTOR.full_name)
    convert: Callable[[Any], Any]
    for field, value in message.ListFields():
        if field.name == inline_name:
            out.update(message_to_dict(value))
            continue
        value_field = map_value_field(field)
        if value_field is not None:
            convert = _message_value if value_field.message_type is not None else _identity
            out[field.name] = {k: convert(v) for k, v in value.items()}
        elif _is_repeated(field):
            convert = _message_value if field.message_type is not None else _identity
            out[field.name] = [convert(v) for v in value]
        elif field.message_type is not None:
            out[field.name] = _message_value(value)
        else:
            out[field.name] = value
    return out


def _identity(value: Any) -> Any:
    return value


def to_object(decoded: Message | msgspec.Struct, api_version: str = "v1") -> dict[str, Any]:
    """A decoded Pod/Node/Event (either codec's) back in its Kubernetes JSON form (kind and apiVersion
    first)."""
    if isinstance(decoded, msgspec.Struct):
        return to_json_object(decoded)
    return {"kind": decoded.DESCRIPTOR.name, "apiVersion": api_version, **message_to_dict(decoded)}
