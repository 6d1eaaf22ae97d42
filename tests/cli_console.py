"""Run an etcdbench command as `etcdbench ...` would: in this process with its output captured
(run_cli), or as its own process (etcdbench); and compare a whole rendering with a committed snapshot."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from paths import SNAPSHOTS
from rich.console import Console

from etcdbench.cli.app import run

TINY_SCENARIO = """
# Two cells on the embedded etcd: a test fixture, not a measurement.
name = "tiny"
[run]
rate = 100
duration_s = 1
warmup_s = 0.5
objects = 10
drain_s = 3
[matrix]
variants = [{backend = "v3", encoding = "protobuf"}, {backend = "v2", encoding = "json"}]
"""


def tiny_scenario(directory: Path) -> Path:
    """TINY_SCENARIO written as DIRECTORY/tiny.toml."""
    path = directory / "tiny.toml"
    path.write_text(TINY_SCENARIO)
    return path


def run_cli(*argv: str, width: int = 100) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one command, uncoloured, `width` columns wide."""
    out = Console(file=io.StringIO(), width=width, color_system=None)
    err = Console(file=io.StringIO(), width=width, color_system=None)
    code = run(list(argv), out, err)
    return code, out.file.getvalue(), err.file.getvalue()  # type: ignore[attr-defined]


def etcdbench(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`python -m etcdbench ARGV` in its own process: what a shell runs, exit code and all."""
    return subprocess.run(
        [sys.executable, "-m", "etcdbench", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def start_etcdbench(*argv: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`python -m etcdbench ARGV` started in its own process with exactly `env`, its output piped: for
    tests that watch it while it runs (its children, its files) or signal it."""
    return subprocess.Popen(
        [sys.executable, "-m", "etcdbench", *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def as_text(*renderables: Any, width: int = 100) -> str:
    """The text a `width`-column terminal shows for `renderables`, uncoloured."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    for renderable in renderables:
        console.print(renderable)
    return console.export_text()


def snapshot(name: str, actual: str) -> None:
    """`actual` must equal tests/data/snapshots/NAME; ETCDBENCH_UPDATE_SNAPSHOTS=1 rewrites the file
    instead (then review the diff: it is what a user will see)."""
    path = SNAPSHOTS / name
    # rich pads lines to the width: trailing spaces are dropped, as an editor would drop them from the file.
    actual = "".join(line.rstrip() + "\n" for line in actual.splitlines())
    if os.environ.get("ETCDBENCH_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert path.exists(), f"no snapshot {name}: run with ETCDBENCH_UPDATE_SNAPSHOTS=1, review, commit"
    assert actual == path.read_text(), f"{name} changed; review, then ETCDBENCH_UPDATE_SNAPSHOTS=1"
