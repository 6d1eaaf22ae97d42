"""Dataclasses that read and write themselves as JSON objects, driven by their fields' type hints.

The results model (`results/model.py`) is made of these, and the JSON Schema (`results/schema.py`) is
generated from the same hints, so the types, the files and the published schema cannot drift apart.

A field's hint says what its JSON value may be: `int`, `float` (any JSON number), `str`, `bool`,
`None` (null), `list[T]`, `dict[str, T]` (an object whose keys vary), `Literal[...]`, another Record,
a union of those, or `Any`. A key may be absent from the object when the field is declared with
metadata OPTIONAL (absent reads as None and None is written as no key, so the key never holds null),
or, where a key may also hold null, with the hint `T | None | Absent` and the default `ABSENT`.
`from_dict(d).to_dict() == d` holds for every object the hints accept; a key the class does not
declare is refused, naming it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import operator
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Self, Union


class Malformed(ValueError):
    """A results document without a key, or with a value of the wrong type, at `where`."""


class Absent(enum.Enum):
    """The value of a field whose key was not in the object (for keys that may also hold null)."""

    ABSENT = "absent"


ABSENT = Absent.ABSENT


# `field(default=None, metadata=OPTIONAL)`: a field whose key may be absent (None reads an absent key
# and writes none). `field(metadata={"key": "pass"})`: a field stored under another key (a keyword).
OPTIONAL = {"optional": True}


def key_of(f: dataclasses.Field[Any]) -> str:
    """The JSON key of field `f`."""
    return str(f.metadata.get("key", f.name))


def value_hint(f: dataclasses.Field[Any], hint: Any) -> Any:
    """What the key of field `f` (type hint `hint`) may hold when present: an OPTIONAL field's None
    stands for no key, so its key never holds null."""
    members = union_args(hint)
    if not f.metadata.get("optional") or members is None:
        return hint
    present = tuple(m for m in members if m is not type(None))
    return functools.reduce(operator.or_, present)


def is_optional(f: dataclasses.Field[Any]) -> bool:
    """Whether the key of field `f` may be absent from the object."""
    return bool(f.metadata.get("optional")) or f.default is ABSENT


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """Base of the typed results: `from_dict` checks and converts a JSON object, `to_dict` undoes it."""

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Self:
        if not isinstance(data, Mapping):
            raise Malformed(f"{where or cls.__name__}: must be an object, got {_show(data)}")
        hints = hints_of(cls)
        values: dict[str, Any] = {}
        known: set[str] = set()
        for f in dataclasses.fields(cls):
            name = key_of(f)
            known.add(name)
            if name not in data:
                if not is_optional(f):
                    raise Malformed(f"{where}{name}: missing")
                continue
            values[f.name] = _decode(value_hint(f, hints[f.name]), data[name], f"{where}{name}")
        unknown = [k for k in data if k not in known]
        if unknown:
            raise Malformed(f"{where}{unknown[0]}: not a key this etcdbench knows")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is ABSENT or (value is None and f.metadata.get("optional")):
                continue
            out[key_of(f)] = _encode(value)
        return out


_HINTS: dict[type, dict[str, Any]] = {}


def hints_of(cls: type) -> dict[str, Any]:
    """The resolved type hints of a Record's fields (the model uses `from __future__ import annotations`)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def union_args(tp: Any) -> tuple[Any, ...] | None:
    """The members of a union hint (`A | B`, `Optional[A]`), or None for any other hint."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _show(value: Any) -> str:
    return json.dumps(value, default=str)[:40]


def _fits(tp: Any, value: Any) -> bool:
    """Whether a JSON value has the shape of hint `tp` at its top level (to pick a union's member)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if tp is Absent:
        return False
    if origin is Literal:
        return value in typing.get_args(tp)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list)
    if origin is dict or (isinstance(tp, type) and issubclass(tp, Record)):
        return isinstance(value, Mapping)
    raise TypeError(f"unsupported type hint {tp!r}")


def _decode(tp: Any, value: Any, where: str) -> Any:
    members = union_args(tp)
    if members is not None:
        for member in members:
            if _fits(member, value):
                return _decode(member, value, where)
        raise Malformed(f"{where}: must be {describe(tp)}, got {_show(value)}")
    if not _fits(tp, value):
        raise Malformed(f"{where}: must be {describe(tp)}, got {_show(value)}")
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_decode(item, x, f"{where}[{i}]") for i, x in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _decode(item, x, f"{where}.{k}") for k, x in value.items()}
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(value, f"{where}.")
    return value  # a JSON scalar, kept as it was read (an int in a float field stays an int)


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_encode(x) for x in value]
    if isinstance(value, dict):
        return {k: _encode(x) for k, x in value.items()}
    return value


def describe(tp: Any) -> str:
    """What a hint accepts, in the words of an error message: 'a number or null'."""
    members = union_args(tp)
    if members is not None:
        return " or ".join(dict.fromkeys(describe(m) for m in members if m is not Absent))
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in typing.get_args(tp))
    if origin is list:
        return "an array"
    if origin is dict or (isinstance(tp, type) and issubclass(tp, Record)):
        return "an object"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(tp, "any value")
