"""The JSON Schema of the results file, generated from the types of results/model.py.

`python -m etcdbench.results.schema` prints it; docs/results.schema.json is that output, committed
(a test checks that it is current). Every Record class becomes a definition whose properties are its
fields: required unless the key may be absent, and no others allowed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from typing import Any, Literal

from etcdbench.results.model import SCHEMA_VERSION, ResultsFile
from etcdbench.results.record import Absent, Record, hints_of, is_optional, key_of, union_args, value_hint

_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def schema() -> dict[str, Any]:
    """The schema of a results file of the current `schema_version`."""
    defs: dict[str, Any] = {}
    root = _object(ResultsFile, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"etcdbench results file, schema_version {SCHEMA_VERSION}",
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def _object(cls: type[Record], defs: dict[str, Any]) -> dict[str, Any]:
    hints = hints_of(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        name = key_of(f)
        properties[name] = _type(value_hint(f, hints[f.name]), defs)
        if not is_optional(f):
            required.append(name)
    out: dict[str, Any] = {"type": "object"}
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):  # not dataclass's generated one
        out["description"] = " ".join(cls.__doc__.split())
    out.update(properties=properties, required=required, additionalProperties=False)
    return out


def _type(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    members = union_args(tp)
    if members is not None:
        present = [m for m in members if m is not Absent]
        if all(m in _SCALARS for m in present):
            return {"type": [_SCALARS[m] for m in present]}
        return {"anyOf": [_type(m, defs) for m in present]}
    if tp is Any:
        return {}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    origin = typing.get_origin(tp)
    if origin is Literal:
        values = list(typing.get_args(tp))
        return {"const": values[0]} if len(values) == 1 else {"enum": values}
    if origin is list:
        (item,) = typing.get_args(tp)
        return {"type": "array", "items": _type(item, defs)}
    if origin is dict:
        _, item = typing.get_args(tp)
        return {"type": "object", "additionalProperties": _type(item, defs)}
    if isinstance(tp, type) and issubclass(tp, Record):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # placed first: a class may refer to itself (Environment.shards)
            defs[tp.__name__] = _object(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    raise TypeError(f"no JSON Schema for type hint {tp!r}")


def render() -> str:
    """The schema as committed in docs/results.schema.json."""
    return json.dumps(schema(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
