"""The versioned results file: build, write atomically, load with a version check.

History of `schema_version`:
  1 — first release: environment, runs[] with counters, latency_us (HDR), timeseries, cpu, verdict.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from etcdbench import __version__
from etcdbench.errors import UsageError

SCHEMA_VERSION = 1
FORMAT_NAME = "etcdbench-results"


def environment(**etcd: Any) -> dict[str, Any]:
    """Where a run happened: enough to tell two results files from different setups apart."""
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": psutil.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "etcdbench_version": __version__,
        "etcdbench_git": _git_revision(),
        "argv": sys.argv[1:],
        **etcd,
    }


def new_results(env: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "etcdbench", "version": __version__},
        "created": now,
        "complete": False,
        "environment": env,
        "runs": [],
    }


def write_atomic(path: Path, results: dict[str, Any]) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise UsageError(f"{path}: not an etcdbench results file")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UsageError(
            f"{path}: schema_version {version!r} is not supported (this etcdbench reads {SCHEMA_VERSION})"
        )
    return data


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


def default_path(directory: Path, results: dict[str, Any]) -> Path:
    stamp = results["created"].replace(":", "").replace("-", "").replace("+0000", "Z")
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
