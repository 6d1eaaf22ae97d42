"""The versioned results file: build, write atomically, load with a version check.

History of `schema_version`: docs/results-format.md#versions. UPGRADERS reads each older version.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from etcdbench import __version__
from etcdbench.encoding.codec import JSON_DECODER
from etcdbench.errors import EtcdbenchError, UsageError
from etcdbench.results.model import FORMAT_NAME as FORMAT_NAME  # re-exported: readers import them from io
from etcdbench.results.model import SCHEMA_VERSION as SCHEMA_VERSION
from etcdbench.results.model import Environment, EtcdInfo, ResultsFile, Tool
from etcdbench.results.record import Malformed


# UPGRADERS[n] turns a version-n document into a version-(n + 1) one; `load` chains them up to
# SCHEMA_VERSION, so a reader only ever sees the current shape.
def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 1 knew one watcher, updates only and no preload: say exactly that in version 2 terms."""
    for run in doc["runs"]:
        c = run["counters"]
        run.setdefault("scenario", None)
        run.setdefault("workload", "update")
        run.setdefault("watchers", 1)
        run.setdefault("operations", {"create": 0, "update": c["written"], "delete": 0})
        run.setdefault("preload", {"keys": 0, "seconds": 0.0, "db_size_bytes": None})
        run.setdefault("object_sizes", None)  # version 1 kept only the mean, in object_bytes
        run.setdefault("watch_events_per_s_total", run["watch_events_per_s"])
        relisted = bool(c["relists"])
        for name, value in {
            "writes": c["written"],
            "missed_relist": c["missed"] if relisted else 0,
            "missed_undelivered": 0 if relisted else c["missed"],
            "missed_expiries": 0,
            "expiries_received": 0,
            "expiries_pending": 0,
            "stream_reopens": 0,
            "watch_reconnects": 0,
            "write_retries": 0,
            "unsent": 0,
        }.items():
            c.setdefault(name, value)
    doc.setdefault("scenario", None)
    return doc


def _v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
    """Version 2 grew fields without a bump (docs/results-format.md#versions). Readers treat those as
    optional; here only what follows from a file's own figures is filled in, the rest stays absent."""
    for run in doc["runs"]:
        config = run.get("config") or {}
        watches = run.get("watches") or []
        for counters in [run["counters"], *(w["counters"] for w in watches)]:
            if counters.get("duplicates") == 0:  # no duplicate at all: none of either kind
                counters.setdefault("duplicates_retried", 0)
                counters.setdefault("duplicates_redelivered", 0)
            if config.get("shards", 1) == 1:  # one shard: no other shard's events to see
                counters.setdefault("other_shard_events", 0)
        if not config.get("ttl_s"):  # without --ttl no key expires, so none expired before its update
            run["counters"].setdefault("expired_before_update", 0)
        # Early version-2 files summed `written` (and `expiries_pending`) over the watches; it now counts
        # the writes once. A sum is told apart from the largest watch's figure only when they differ.
        c = run["counters"]
        per_watch = [w["counters"]["written"] for w in watches]
        if len(per_watch) > 1 and c["written"] == sum(per_watch) != max(per_watch):
            c["written"] = max(per_watch)
            c["expiries_pending"] = max(w["counters"]["expiries_pending"] for w in watches)
    return doc


UPGRADERS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3}


def environment(
    etcd: EtcdInfo | None = None, *, v3_client: str | None = None, tls: bool | None = None
) -> Environment:
    """Where a run happened: enough to tell two results files from different setups apart; `etcd`
    the etcd of the runs, `v3_client` and `tls` how its clients talked to it."""
    return Environment(
        host=platform.node(),
        platform=platform.platform(),
        cpu_model=_cpu_model(),
        cpu_count=psutil.cpu_count(),
        memory_bytes=psutil.virtual_memory().total,
        python=platform.python_version(),
        etcdbench_version=__version__,
        etcdbench_git=_git_revision(),
        argv=redact_argv(sys.argv[1:]),
        json_decoder=JSON_DECODER,  # what decoded the watcher's JSON values
        etcd=etcd,
        v3_client=v3_client,
        tls=tls,
    )


_USERINFO = re.compile(r"(?<=://)[^/@,\s]*@")


def redact_argv(argv: list[str]) -> list[str]:
    """The command line as a results file keeps it, without a secret that slipped into it: userinfo in
    a URL, or the password half of `--user name:password` (both refused by the CLI, so this is a
    second line of defence for documents built by other callers)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        arg = _USERINFO.sub("***@", arg)
        if arg.startswith("--user="):
            arg = arg.split(":", 1)[0] + (":***" if ":" in arg else "")
        elif i > 0 and argv[i - 1] == "--user" and ":" in arg:
            arg = arg.split(":", 1)[0] + ":***"
        out.append(arg)
    return out


def new_results(env: Environment) -> ResultsFile:
    """A results file of no runs yet, made now in `env`."""
    return ResultsFile(
        format=FORMAT_NAME,
        schema_version=SCHEMA_VERSION,
        tool=Tool(name="etcdbench", version=__version__),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        complete=False,
        environment=env,
        scenario=None,
        runs=[],
    )


def save(path: Path, results: ResultsFile) -> None:
    """Write `results` to `path` atomically (write_atomic): the one place a typed file becomes JSON."""
    write_atomic(path, results.to_dict())


def dumps(results: ResultsFile) -> str:
    """`results` as the one JSON document `--json` prints."""
    return json.dumps(results.to_dict())


def write_atomic(path: Path, results: dict[str, Any]) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file.

    EtcdbenchError (exit 3) when the disk refuses: the path was checked writable before the run."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise EtcdbenchError(f"{path}: cannot be written ({exc.strerror or type(exc).__name__})") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a results file is for sharing
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise EtcdbenchError(f"{path}: cannot be written ({exc.strerror or type(exc).__name__})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load(path: Path) -> dict[str, Any]:
    """A results file, upgraded to SCHEMA_VERSION. UsageError naming the file for anything else: not
    readable, not UTF-8, not JSON, another format or version, or not the shape `check_shape` wants."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text, so not a results file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise UsageError(f"{path}: JSON nested too deeply to be a results file") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise UsageError(f"{path}: not an etcdbench results file")
    doc: dict[str, Any] = data
    version = doc.get("schema_version")
    refusal = f"{path}: schema_version {version!r} is not supported (this etcdbench reads {SCHEMA_VERSION})"
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        raise UsageError(refusal)
    with malformed(path):
        check_shape(doc)
        while version < SCHEMA_VERSION:
            upgrade = UPGRADERS.get(version)
            if upgrade is None:  # a gap in the chain is a bug here, but the file is still not readable
                raise UsageError(refusal)
            doc = upgrade(doc)
            version += 1
            doc["schema_version"] = version
        check_shape(doc)
    return doc


def load_results(path: Path) -> ResultsFile:
    """A results file as types (`load`, then `ResultsFile.from_dict`): the same one-line UsageError
    naming the file for anything `load` refuses, and for a key or a value the types do not accept."""
    doc = load(path)
    with malformed(path):
        return ResultsFile.from_dict(doc)


# What every reader relies on, checked at load so that a hand-edited or truncated document is refused
# with the key that is wrong. A type, or a tuple of them; `dict` means a JSON object, `list` an array.
_NUMBER = (int, float)
_TOP: dict[str, Any] = {"environment": dict, "runs": list, "created": str, "complete": bool}
_OPTIONAL_TOP: dict[str, Any] = {"scenario": (dict, type(None)), "tool": dict, "capacity": dict}
_RUN: dict[str, Any] = {
    "label": str,
    "config": dict,
    "counters": dict,
    "verdict": dict,
    "latency_us": dict,
    "target_rate": _NUMBER,
    "duration_s": _NUMBER,
    "warmup_s": _NUMBER,
    "watch_events_per_s": _NUMBER,
    "write_rate_achieved": _NUMBER,
}
# Only what several readers share; the rest is checked where it is read (see `malformed`).
_OPTIONAL_RUN: dict[str, Any] = {
    "timeseries": dict,
    "cpu": dict,
    "incomplete": str,
    "scenario": (str, type(None)),
}


def _need(table: dict[str, Any], where: str, key: str, types: Any, *, optional: bool = False) -> None:
    if key not in table:
        if optional:
            return
        raise Malformed(f"{where}{key}: missing")
    value = table[key]
    numeric_bool = isinstance(value, bool) and bool not in _tuple(types)  # JSON true is no number
    if numeric_bool or not isinstance(value, types):
        names = {dict: "an object", list: "an array", str: "a string", bool: "true or false"}
        want = " or ".join(
            dict.fromkeys(names.get(t, "a number" if t in _NUMBER else "null") for t in _tuple(types))
        )
        raise Malformed(f"{where}{key}: must be {want}, got {json.dumps(value)[:40]}")


def _tuple(types: Any) -> tuple[Any, ...]:
    return types if isinstance(types, tuple) else (types,)


def check_shape(doc: dict[str, Any]) -> None:
    """Malformed (naming the key) when `doc` lacks what the readers of every version rely on."""
    for key, types in _TOP.items():
        _need(doc, "", key, types)
    for key, types in _OPTIONAL_TOP.items():
        _need(doc, "", key, types, optional=True)
    _need(doc["environment"], "environment.", "etcd", dict, optional=True)
    for i, run in enumerate(doc["runs"]):
        where = f"runs[{i}]"
        if not isinstance(run, dict):
            raise Malformed(f"{where}: must be an object")
        for key, types in _RUN.items():
            _need(run, f"{where}.", key, types)
        for key, types in _OPTIONAL_RUN.items():
            _need(run, f"{where}.", key, types, optional=True)
        for name in run["counters"]:  # a number, or a breakdown of one
            _need(run["counters"], f"{where}.counters.", name, (*_NUMBER, dict))
        _need(run["verdict"], f"{where}.verdict.", "pass", bool)
        _need(run["verdict"], f"{where}.verdict.", "reasons", list)
        for name in run["latency_us"]:
            _need(run["latency_us"], f"{where}.latency_us.", name, dict)


@contextmanager
def malformed(*paths: Path) -> Iterator[None]:
    """Reading documents that `load` accepted: a key or a type they lack, found by the code that reads
    them (an upgrader, a report), is the file's fault, not a crash: UsageError naming the file(s)."""
    try:
        yield
    except Malformed as exc:
        raise UsageError(f"{_names(paths)}: malformed results document: {exc}") from None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        what = f"no key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise UsageError(f"{_names(paths)}: malformed results document ({what})") from None


def _names(paths: tuple[Path, ...]) -> str:
    return str(paths[0]) if len(paths) == 1 else "one of " + ", ".join(str(p) for p in paths)


def check_writable(path: Path, flag: str = "--output") -> None:
    """Fail before a run, not after it, when the results cannot be saved: really create a file there."""
    if path.is_dir():
        raise UsageError(f"{flag}: {path} is a directory")
    probe = path.parent
    while not probe.exists():  # the directories will be made at save time; the nearest one must be writable
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{flag}: {probe} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise UsageError(f"{flag}: {path} cannot be written ({exc.strerror})") from None


def default_path(directory: Path, results: ResultsFile) -> Path:
    stamp = results.created.replace(":", "").replace("-", "").replace("+0000", "Z")
    return directory / f"etcdbench-{stamp[:15]}-{os.getpid()}.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_revision() -> str | None:
    src = Path(__file__).resolve().parent.parent.parent
    if not (src / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
