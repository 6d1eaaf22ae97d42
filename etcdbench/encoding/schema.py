"""proto/k8s seen from JSON: the shapes Kubernetes' JSON gives some messages, and the typed structs the
JSON watcher decodes into.

A kube-apiserver decodes a stored JSON object into its Go struct (core/v1.Pod, ...), not into a generic
map. The JSON codec does the same with msgspec Structs that are made here, at import, from the compiled
descriptors of proto/k8s (etcdbench._pb.k8s): the protobuf encoder and the JSON decoder share one
schema, and a field added to proto/k8s is decoded in both encodings.

Kubernetes' JSON differs from the messages in four places, mapped as its Go types map them:
- meta.v1.Time is an RFC3339 string, parsed into a datetime (metav1.Time parses it too);
- resource.Quantity is its canonical string ("100m"), kept as that string;
- FieldsV1 is a JSON object that Kubernetes keeps as raw bytes (FieldsV1.Raw): msgspec.Raw, whose bytes
  the decoder still scans and validates, as Go's does;
- an embedded message marked `json:",inline"` (INLINE) has its fields in its parent's object.

A field the schema does not define is skipped, as the apiserver's decoder drops unknown fields;
`typed_decoder(strict=True)` rejects it instead, which tests use to prove that etcdbench's own objects
have none, so that every field of every object is decoded into its type.
"""

from __future__ import annotations

import functools
import operator
from datetime import datetime
from typing import Any, cast

import msgspec
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from etcdbench._pb.k8s import core_pb2

TIME = "k8s.io.apimachinery.pkg.apis.meta.v1.Time"
QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
FIELDS_V1 = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1"
# Embedded messages that Kubernetes' JSON flattens into the parent object (Go `json:",inline"`).
INLINE = {
    "k8s.io.api.core.v1.Volume": "volumeSource",
    "k8s.io.api.core.v1.ConfigMapVolumeSource": "localObjectReference",
    "k8s.io.api.core.v1.ConfigMapProjection": "localObjectReference",
}
KINDS = (core_pb2.Pod, core_pb2.Node, core_pb2.Event)  # the stored kinds; `kind` tells them apart

# The Python type of each proto scalar field type proto/k8s uses (the JSON decoder's and the protobuf
# encoder's check alike).
SCALARS: dict[int, type] = {
    FieldDescriptor.TYPE_STRING: str,
    FieldDescriptor.TYPE_BOOL: bool,
    FieldDescriptor.TYPE_INT32: int,
    FieldDescriptor.TYPE_INT64: int,
    FieldDescriptor.TYPE_UINT32: int,
    FieldDescriptor.TYPE_UINT64: int,
}


def map_value_field(field: FieldDescriptor) -> FieldDescriptor | None:
    """The value field of a map<> field's entry message, or None when field is not a map."""
    entry = field.message_type
    if entry is None or not entry.GetOptions().map_entry:
        return None
    return entry.fields_by_name["value"]


class _Structs:
    """One Struct per message, made once (messages are shared: ObjectMeta, Time, ...)."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.made: dict[str, Any] = {}

    def message(self, descriptor: Descriptor, tag: str | None = None) -> Any:
        """The Python type a message's JSON value decodes into."""
        name = descriptor.full_name
        if name == TIME:
            return datetime
        if name == QUANTITY:
            return str
        if name == FIELDS_V1:
            return msgspec.Raw
        if name not in self.made:
            fields = self._fields(descriptor)
            if tag is not None:  # a stored object: TypeMeta's apiVersion is one of its fields
                fields.insert(0, ("apiVersion", str | None, None))
            self.made[name] = msgspec.defstruct(
                descriptor.name,
                fields,
                kw_only=True,
                omit_defaults=True,  # encoded back, a decoded object gives the JSON it came from
                forbid_unknown_fields=self.strict,
                tag_field="kind" if tag is not None else None,
                tag=tag,
                gc=False,  # trees of strings, numbers and other structs: no cycle to collect
            )
        return self.made[name]

    def _fields(self, descriptor: Descriptor) -> list[tuple[str, Any, None]]:
        inline = INLINE.get(descriptor.full_name)
        out: list[tuple[str, Any, None]] = []
        for field in descriptor.fields:
            if field.name == inline and field.message_type is not None:
                out += self._fields(field.message_type)
                continue
            kind = self._field(field)
            # null is any field's zero value in Go's JSON decoder; Raw holds whatever it is given.
            out.append((field.name, kind if kind is msgspec.Raw else kind | None, None))
        return out

    def _field(self, field: FieldDescriptor) -> Any:
        value = map_value_field(field)
        if value is not None:
            return dict[str, self._value(value)]  # type: ignore[misc]
        single = self._value(field)
        return list[single] if field.is_repeated else single  # type: ignore[valid-type]

    def _value(self, field: FieldDescriptor) -> Any:
        if field.message_type is not None:
            return self.message(field.message_type)
        if field.type not in SCALARS:
            raise TypeError(f"{field.full_name}: field type {field.type} has no JSON mapping here")
        return SCALARS[field.type]


def typed_decoder(strict: bool = False) -> msgspec.json.Decoder[Any]:
    """A decoder of a stored Pod, Node or Event (chosen by its `kind`) into its typed struct."""
    structs = _Structs(strict)
    # The upb descriptor classes duck-type the pure-Python ones the builder is annotated with.
    kinds = [structs.message(cast(Descriptor, cls.DESCRIPTOR), tag=cls.DESCRIPTOR.name) for cls in KINDS]
    return msgspec.json.Decoder(functools.reduce(operator.or_, kinds))


def to_json_object(obj: msgspec.Struct) -> dict[str, Any]:
    """A decoded struct back in its JSON form (kind first): the object it was decoded from."""
    out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(obj))
    return out
