"""Scenario files: one run or a matrix of runs, described in TOML and expanded into `RunConfig`s.

The format is documented in docs/scenarios.md. In short:

    name = "v2-vs-v3"                 # optional, default: the file's stem
    description = "..."               # optional
    scale = 1.0                       # optional: multiplies the [cluster] table

    [cluster]                         # optional: a Kubernetes cluster the run stands for
    nodes = 5000                      # -> preload.node, objects (kind node), rate = nodes / heartbeat_s
    pods = 150000                     # -> preload.pod, objects (kind pod)
    heartbeat_s = 10

    [run]                             # RunConfig fields by their own names: duration_s, slo_p99_us, ...
    duration_s = 60

    [matrix]                          # lists; the first key varies slowest, like nested loops
    variants = [{backend = "v2", v2_watch = "poll"}, {backend = "v3"}]
    rate = [500, 1000, 2000]

Everything here is pure: load and validate a document, apply the command line's overrides, expand
the cells, and produce the normalised document that the results file keeps under "scenario" and that
`etcdbench run --from` loads again. Every mistake is one `UsageError` line naming the file and the key.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import tomllib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from etcdbench.config.run import RunConfig, flag_of, parse_duration
from etcdbench.errors import UsageError

# A matrix larger than this is refused unless `etcdbench run --max-cells N` allows it: every cell is
# a whole run, so a typo in a list (or a product of long ones) would otherwise book the host for days.
MAX_CELLS = 100
MAX_SCALE = 1000.0  # --scale / scale: 1000x the k8s-1.6 cluster is 150M pods, far past any real one
TOP_KEYS = ("name", "description", "scale", "cluster", "run", "matrix")
CLUSTER_COUNTS = {"nodes": "node", "pods": "pod", "events": "event"}  # [cluster] key -> object kind
CLUSTER_KEYS = (*CLUSTER_COUNTS, "heartbeat_s")
VARIANTS = "variants"  # [matrix] key: one axis whose values set several fields together
SET_BY_LOADER = ("scale", "scenario")  # RunConfig fields a file cannot set directly
# A field that only one backend reads; two cells differing only in it are the same run elsewhere.
ONLY_FOR_BACKEND = {"v2_watch": "v2", "decode_prev": "v3"}  # v2 decodes an update's previous object anyway
# Durations: a number is in the unit the key's name ends with; a string takes the flags' units ("30m").
DURATION_SUFFIXES = ("_s", "_us")

_FIELD_TYPES: dict[str, Any] = typing.get_type_hints(RunConfig)
FILE_FIELDS = tuple(f.name for f in fields(RunConfig) if f.name not in SET_BY_LOADER)
_DEFAULTS = RunConfig().to_dict()


class _Bad(Exception):
    """A mistake at `key` (a dotted path inside the document, or a flag when `flag` is true)."""

    def __init__(self, key: str, message: str, *, flag: bool = False) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message
        self.flag = flag


@dataclass(frozen=True)
class Overrides:
    """What the command line changes in a scenario; recorded in the normalised document.

    `values` sets RunConfig fields for every cell (a matrix axis over the same field is dropped);
    `only` keeps the cells whose field is one of the given values (e.g. --backend v3) when the matrix
    sets that field, and otherwise overrides the file's [run] value (several values: a new axis).
    """

    scale: float | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    only: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    max_cells: int = MAX_CELLS  # --max-cells: not part of the scenario, never recorded


@dataclass(frozen=True)
class Scenario:
    name: str
    document: dict[str, Any]  # normalised: scale and overrides applied, loadable by `build` again
    cells: tuple[RunConfig, ...]  # in run order; each has `scenario` = "<name>[<cell>]" and `scale`


# ---------------------------------------------------------------------------------------- loading


def load_file(path: Path, overrides: Overrides | None = None) -> Scenario:
    """A scenario file (TOML). Errors name the file: 'scenarios/x.toml: run.rate: must be > 0, got 0'."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text, so not a TOML scenario file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: TOML syntax error: {exc}") from None
    except RecursionError:
        raise UsageError(f"{path}: TOML nested too deeply to be a scenario file") from None
    return build(doc, origin=str(path), default_name=path.stem, overrides=overrides)


def from_results(path: Path, results: Mapping[str, Any], overrides: Overrides | None = None) -> Scenario:
    """The scenario a results file was made from (its "scenario" key), to run it again."""
    doc = results.get("scenario")
    if doc is None:
        raise UsageError(
            f"{path}: holds no scenario: only files written by `etcdbench run SCENARIO.toml` can be repeated"
        )
    return build(doc, origin=str(path), key_prefix="scenario.", overrides=overrides)


def build(
    doc: Any,
    *,
    origin: str,
    default_name: str = "scenario",
    key_prefix: str = "",
    overrides: Overrides | None = None,
) -> Scenario:
    """Validate a scenario document, apply `overrides`, expand its cells into RunConfigs."""
    try:
        return _build(doc, default_name, overrides or Overrides(), origin, key_prefix)
    except _Bad as bad:
        if bad.flag:  # the command line's mistake, not the file's
            raise UsageError(f"{bad.key}: {bad.message}") from None
        raise UsageError(f"{origin}: {key_prefix}{bad.key}: {bad.message}") from None


def _build(doc: Any, default_name: str, ov: Overrides, origin: str, key_prefix: str) -> Scenario:
    if not isinstance(doc, dict):
        raise _Bad("(top level)", f"must be a table, got {_tname(doc)}")
    _known_keys("", doc, TOP_KEYS, "top-level key")
    name = _string("name", doc.get("name", default_name))
    if not name.strip():
        raise _Bad("name", "must not be empty")
    description = _string("description", doc.get("description", ""))
    scale = _number("scale", doc.get("scale", 1.0))
    _check_scale("scale", scale)
    if ov.scale is not None:
        scale = ov.scale
        try:
            _check_scale("--scale", scale)
        except _Bad as bad:
            raise _Bad(bad.key, bad.message, flag=True) from None
    cluster = _cluster(_table("cluster", doc.get("cluster", {})))
    run = _fields_table("run", _table("run", doc.get("run", {})))
    axes = _matrix(_table("matrix", doc.get("matrix", {})))
    for key in run:
        if key in _axis_fields(axes):
            raise _Bad(f"run.{key}", "is also a [matrix] key: set it in one place")

    values, only, added = _split_only(run, axes, ov)
    run = {k: v for k, v in run.items() if k not in dict(added)}  # the new axis sets it now
    ov = replace(ov, values=values)  # an overriding flag is named in errors like --duration is
    run, axes = _apply_values(run, axes, values)
    axes = _apply_only(run, axes, only) + added
    count = math.prod(len(values) for _, values in axes)
    if count > ov.max_cells:  # counted before expanding: a product of long axes is itself too big to build
        raise _Bad(
            "matrix",
            f"{count:,} cells, each a whole run, is more than --max-cells {ov.max_cells}; "
            f"pass --max-cells {count} to run them all",
        )
    cells = _expand(name, scale, cluster, run, axes, ov, origin, key_prefix)

    document: dict[str, Any] = {"name": name}
    if description:
        document["description"] = description
    document["scale"] = scale
    if cluster:
        document["cluster"] = cluster
    document["run"] = _with_defaults(run, axes, cluster)
    if axes:
        document["matrix"] = {key: values for key, values in axes}
    return Scenario(name, json.loads(json.dumps(document)), cells)


def _check_scale(where: str, scale: float) -> None:
    if not scale > 0 or math.isinf(scale):
        raise _Bad(where, f"must be a finite number > 0, got {scale:g}")
    if scale > MAX_SCALE:
        raise _Bad(where, f"must be at most {MAX_SCALE:g} (docs/scenarios.md, Limits), got {scale:g}")


# ---------------------------------------------------------------------------------------- tables


def _known_keys(where: str, table: Mapping[str, Any], allowed: Iterable[str], what: str = "key") -> None:
    allowed = tuple(allowed)
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise _Bad(where + key, f"unknown {what}{hint}; allowed: {', '.join(allowed)}")


def _cluster(table: dict[str, Any]) -> dict[str, Any]:
    _known_keys("cluster.", table, CLUSTER_KEYS)
    out: dict[str, Any] = {}
    for key in CLUSTER_COUNTS:
        if key in table:
            out[key] = _whole("cluster." + key, table[key])
            if out[key] < 0:
                raise _Bad("cluster." + key, f"must be >= 0, got {out[key]}")
    if "heartbeat_s" in table:
        if not out.get("nodes"):
            raise _Bad(
                "cluster.heartbeat_s", "needs cluster.nodes > 0: the heartbeat rate is nodes / heartbeat_s"
            )
        raw = table["heartbeat_s"]
        beat = (
            _duration("cluster.heartbeat_s", raw)
            if isinstance(raw, str)
            else _number("cluster.heartbeat_s", raw)
        )
        if not beat > 0 or math.isinf(beat):
            raise _Bad("cluster.heartbeat_s", f"must be a finite number of seconds > 0, got {beat:g}")
        out["heartbeat_s"] = beat
    return out


def _fields_table(where: str, table: dict[str, Any]) -> dict[str, Any]:
    """A table of RunConfig fields: known names, values of the field's type."""
    _known_keys(where + ".", table, FILE_FIELDS, "RunConfig field")
    return {key: _field_value(f"{where}.{key}", key, value) for key, value in table.items()}


def _matrix(table: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """[matrix] as ordered axes: (field, values) or (VARIANTS, [dict of fields, ...])."""
    _known_keys("matrix.", table, (VARIANTS, *FILE_FIELDS), "matrix key (a RunConfig field or variants)")
    axes: list[tuple[str, list[Any]]] = []
    for key, values in table.items():
        where = f"matrix.{key}"
        if not isinstance(values, list):
            raise _Bad(where, f"must be a list of values, got {_tname(values)} {_quote(values)}")
        if not values:
            raise _Bad(where, "is an empty list: a matrix axis needs at least one value")
        if key == VARIANTS:
            checked = [
                _fields_table(f"{where}[{i}]", _table(f"{where}[{i}]", v)) for i, v in enumerate(values)
            ]
            for i, variant in enumerate(checked):
                if not variant:
                    raise _Bad(f"{where}[{i}]", "is empty: a variant sets at least one field")
        else:
            checked = [_field_value(f"{where}[{i}]", key, v) for i, v in enumerate(values)]
        for i, value in enumerate(checked):
            if value in checked[:i]:
                raise _Bad(f"{where}[{i}]", f"{_show(value)} is listed twice")
        axes.append((key, checked))
    variants = dict(axes).get(VARIANTS, [])
    for i, variant in enumerate(variants):
        for key in variant:
            if key in table:
                raise _Bad(
                    f"matrix.{VARIANTS}[{i}].{key}",
                    f"is also a matrix axis (matrix.{key}): set it in one place",
                )
    return axes


def _axis_fields(axes: list[tuple[str, list[Any]]]) -> set[str]:
    out: set[str] = set()
    for key, values in axes:
        if key == VARIANTS:
            out.update(k for variant in values for k in variant)
        else:
            out.add(key)
    return out


# ---------------------------------------------------------------------------------------- overrides


def _apply_values(
    run: dict[str, Any], axes: list[tuple[str, list[Any]]], values: Mapping[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, list[Any]]]]:
    """Command-line values win over the file: set in [run], removed from the matrix."""
    run = dict(run)
    new_axes: list[tuple[str, list[Any]]] = []
    for key, axis in axes:
        if key in values:
            continue
        if key == VARIANTS:
            kept: list[dict[str, Any]] = []
            for variant in axis:
                rest = {k: v for k, v in variant.items() if k not in values}
                if rest and rest not in kept:
                    kept.append(rest)
            if not kept:
                continue
            axis = kept
        new_axes.append((key, axis))
    for key, value in values.items():
        try:
            run[key] = _field_value(flag_of(key), key, value)
        except _Bad as bad:
            raise _Bad(bad.key, bad.message, flag=True) from None
    return run, new_axes


def _split_only(
    run: dict[str, Any], axes: list[tuple[str, list[Any]]], ov: Overrides
) -> tuple[dict[str, Any], dict[str, tuple[Any, ...]], list[tuple[str, list[Any]]]]:
    """A selecting flag (--backend, --encoding, --etcd, ...) selects cells where the matrix sets its
    field; where the field is a [run] value (or a default), the flag overrides it: one value sets it
    for every cell, several make a new axis (the last, varying fastest).

    -> (values to set, selections to apply, axes to add)."""
    values = dict(ov.values)
    only: dict[str, tuple[Any, ...]] = {}
    added: list[tuple[str, list[Any]]] = []
    in_matrix = _axis_fields(axes)
    for key, allowed in ov.only.items():
        if key in in_matrix:
            only[key] = allowed
        elif len(allowed) == 1:
            values[key] = allowed[0]
        else:
            try:
                added.append((key, [_field_value(flag_of(key), key, v) for v in dict.fromkeys(allowed)]))
            except _Bad as bad:
                raise _Bad(bad.key, bad.message, flag=True) from None
    return values, only, added


def _apply_only(
    run: dict[str, Any], axes: list[tuple[str, list[Any]]], only: Mapping[str, tuple[Any, ...]]
) -> list[tuple[str, list[Any]]]:
    """Keep the cells whose field is allowed (e.g. --backend v3): filter the axis that sets it."""
    for key, allowed in only.items():
        flag = flag_of(key)
        default = run.get(key, _DEFAULTS[key])
        new_axes: list[tuple[str, list[Any]]] = []
        found = False
        for axis_key, values in axes:
            if axis_key == key:
                values = [v for v in values if v in allowed]
                found = True
            elif axis_key == VARIANTS and any(key in v for v in values):
                values = [v for v in values if v.get(key, default) in allowed]
                found = True
            if not values:
                shown = ",".join(_show(a) for a in allowed)
                raise _Bad(flag, f"{shown}: the scenario has no such cell", flag=True)
            new_axes.append((axis_key, values))
        if not found and default not in allowed:
            shown = ",".join(_show(a) for a in allowed)
            raise _Bad(flag, f"{shown}: the scenario has no such cell (its {key} is {default})", flag=True)
        axes = new_axes
    return axes


# ---------------------------------------------------------------------------------------- cells


def _expand(
    name: str,
    scale: float,
    cluster: dict[str, Any],
    run: dict[str, Any],
    axes: list[tuple[str, list[Any]]],
    ov: Overrides,
    origin: str,
    key_prefix: str,
) -> tuple[RunConfig, ...]:
    choices: list[list[tuple[dict[str, Any], dict[str, str]]]] = []
    for key, axis in axes:
        if key == VARIANTS:
            choices.append(
                [(dict(v), {k: f"matrix.{VARIANTS}[{i}].{k}" for k in v}) for i, v in enumerate(axis)]
            )
        else:
            choices.append([({key: v}, {key: f"matrix.{key}"}) for v in axis])

    cells: list[RunConfig] = []
    seen: set[str] = set()  # identities as canonical JSON: a set, so a large matrix is not quadratic
    for combo in itertools.product(*choices):
        values = dict(run)
        where = {k: flag_of(k) if k in ov.values else f"run.{k}" for k in run}
        described: dict[str, Any] = {}
        for assigned, source in combo:
            values.update(assigned)
            where.update(source)
            described.update(assigned)
        _derive(values, where, cluster, scale)
        label = f"{name}[{','.join(f'{k}={_show(v)}' for k, v in described.items())}]" if axes else name
        try:
            config = RunConfig(**values, scale=scale, scenario=label)
        except UsageError as exc:
            raise _cell_error(exc, where, label, bool(axes)) from None
        identity = json.dumps(_identity(config), sort_keys=True)
        if identity not in seen:  # e.g. two v2_watch modes of a v3 cell: one run
            seen.add(identity)
            cells.append(config)
    return tuple(cells)


def _derive(values: dict[str, Any], where: dict[str, str], cluster: dict[str, Any], scale: float) -> None:
    """Fill what the [cluster] table implies, scaled; a value set explicitly is left alone."""
    counts = {CLUSTER_COUNTS[key]: scaled(cluster[key], scale) for key in CLUSTER_COUNTS if key in cluster}
    kind = values.get("kind", _DEFAULTS["kind"])
    if "rate" not in values and "heartbeat_s" in cluster:
        values["rate"] = counts["node"] / cluster["heartbeat_s"]
        where["rate"] = "cluster.heartbeat_s"
    if "objects" not in values and counts.get(kind):
        values["objects"] = counts[kind]
        where["objects"] = f"cluster.{_count_key(kind)}"
    if any(counts.values()):
        values["preload"] = {**{k: n for k, n in counts.items() if n}, **values.get("preload", {})}
        where.setdefault("preload", "cluster")


def scaled(count: int, scale: float) -> int:
    """A cluster count times the scale, rounded; a count > 0 stays >= 1 (a cluster of no nodes is none)."""
    exact = count if scale == 1 else round(count * scale)  # a float product is inexact past 2**53
    return max(exact, 1) if count > 0 else 0


def _count_key(kind: str) -> str:
    return next(key for key, k in CLUSTER_COUNTS.items() if k == kind)


def _identity(config: RunConfig) -> dict[str, Any]:
    d = config.to_dict()
    del d["scenario"]
    for key, backend in ONLY_FOR_BACKEND.items():
        if d["backend"] != backend:
            del d[key]
    return d


def _cell_error(exc: UsageError, where: dict[str, str], label: str, is_matrix: bool) -> _Bad:
    """RunConfig names the field's flag ('--rate: must be > 0'); say which key of the file set it."""
    cell = f" (cell {label})" if is_matrix else ""
    key = exc.field
    if key is None:
        return _Bad(f"cell {label}", str(exc))
    source = where.get(key)
    if source is None:  # a default that does not fit the file's other values
        return _Bad(f"{key} (default {_show(_DEFAULTS[key])}){cell}", exc.reason)
    if source.startswith("--"):
        return _Bad(source, exc.reason, flag=True)
    return _Bad(f"{source}{cell}", exc.reason)


def _with_defaults(
    run: dict[str, Any], axes: list[tuple[str, list[Any]]], cluster: dict[str, Any]
) -> dict[str, Any]:
    """[run] with every field spelled out, so the document says what ran whatever the defaults become.

    Left out: fields the matrix sets, and fields the [cluster] table derives (writing a default there
    would stop the derivation when the document is loaded again)."""
    derived = set()
    if "heartbeat_s" in cluster:
        derived.add("rate")
    if any(key in cluster for key in CLUSTER_COUNTS):
        derived.update(("objects", "preload"))
    skip = _axis_fields(axes) | derived | set(SET_BY_LOADER)
    out = {key: _DEFAULTS[key] for key in FILE_FIELDS if key not in skip}
    out.update(run)
    return {key: out[key] for key in FILE_FIELDS if key in out}


# ---------------------------------------------------------------------------------------- values


def _field_value(where: str, key: str, value: Any) -> Any:
    """`value` checked against RunConfig's annotation for `key`; ints become floats for float fields."""
    typ = _FIELD_TYPES[key]
    if isinstance(value, str) and key.endswith(DURATION_SUFFIXES):
        seconds = _duration(where, value)
        return float(seconds) if key.endswith("_s") else round(seconds * 1e6)
    if typ is bool:
        if not isinstance(value, bool):
            raise _Bad(where, f"must be true or false, got {_tname(value)} {_quote(value)}")
        return value
    if typ is float:
        return _number(where, value)
    if typ is int:
        return _whole(where, value)
    if typ is str:
        return _string(where, value)
    if typing.get_origin(typ) is tuple:  # e.g. faults: a TOML list of strings
        if not isinstance(value, list | tuple):
            raise _Bad(where, f"must be a list, got {_tname(value)} {_quote(value)}")
        (item_type, *_) = typing.get_args(typ)
        if item_type is str:
            return tuple(_string(f"{where}[{i}]", v) for i, v in enumerate(value))
        return tuple(value)
    if typing.get_origin(typ) is dict:
        table = _table(where, value)
        _, value_type = typing.get_args(typ)
        out = {}
        for k, v in table.items():
            out[k] = _whole(f"{where}.{k}", v) if value_type is int else v
        return out
    return value  # a type this loader does not know: RunConfig checks it


def _duration(where: str, text: str) -> float:
    """A duration string in a file: the flags' rule (etcdbench.config.run.parse_duration) -> seconds."""
    try:
        return parse_duration(where, text)
    except UsageError as exc:
        raise _Bad(where, exc.reason) from None


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(where, f"must be a number, got {_tname(value)} {_quote(value)}")
    if math.isnan(value):
        raise _Bad(where, "must be a number, got nan")
    return float(value)


def _whole(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(where, f"must be a whole number, got {_tname(value)} {_quote(value)}")
    return value


def _string(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad(where, f"must be a string, got {_tname(value)} {_quote(value)}")
    return value


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(where, f"must be a table, got {_tname(value)} {_quote(value)}")
    return value


def _tname(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "list", dict: "table"}
    return names.get(type(value), type(value).__name__)


def _quote(value: Any) -> str:
    return json.dumps(value, default=str)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if isinstance(value, str):
        return value
    return str(value)
