"""benchmarks/ is measured by running it, not by tests: these only check that it is there and starts.

No timing is asserted here; benchmarks/client_vs_go.py prints the figures (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from paths import ROOT

BENCH = ROOT / "benchmarks"
GOCODE_CLIENTV3 = Path("/usr/share/gocode/src/go.etcd.io/etcd/clientv3")
SCRIPTS = ["client_vs_go.py", "pywatch.py", "tls_cost.py", "proxy_cost.py", "cells_capacity.py"]


def test_sources_and_scripts_exist() -> None:
    for name in (
        *SCRIPTS,
        "reference.py",
        "harness.py",
        "table.py",
        "build_goref.sh",
        "RESULTS.md",
        ".gitignore",
    ):
        assert (BENCH / name).is_file(), name
    sections = {p.name for p in (BENCH / "sections").glob("*.py")}
    assert {
        "end_to_end.py",
        "watcher_cost.py",
        "v2_poll.py",
        "memory.py",
        "recording.py",
        "preload.py",
    } <= sections
    go_files = {p.name for p in (BENCH / "goref").glob("*.go")}
    assert {"main.go", "put.go", "watch.go"} <= go_files
    main = (BENCH / "goref" / "main.go").read_text()
    sources = "".join((BENCH / "goref" / name).read_text() for name in sorted(go_files))
    assert "package main" in main
    # Built against etcd's own Go clients as Debian packages them, v3 and v2.
    assert '"go.etcd.io/etcd/clientv3"' in sources
    assert '"go.etcd.io/etcd/client"' in sources
    for command in ('"put"', '"watch"', '"v2put"', '"v2poll"'):
        assert command in main, command
    assert ".bin/" in (BENCH / ".gitignore").read_text().split()
    build = (BENCH / "build_goref.sh").read_text()
    assert "GO111MODULE=off" in build and "/usr/share/gocode" in build


def test_benchmarks_use_the_package_through_its_public_doors() -> None:
    """Backends come from the factory (no v2/v3 module imported), and our own classes are called as they
    are (no signature probing)."""
    wrong = []
    for path in sorted(BENCH.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name in ("inspect", "etcdbench.backends.v2", "etcdbench.backends.v3"):
                    wrong.append(f"{path.relative_to(BENCH)}: {name}")
    assert wrong == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help_exits_zero(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


@pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed")
@pytest.mark.skipif(not GOCODE_CLIENTV3.is_dir(), reason="golang-etcd-server-dev is not installed")
def test_build_goref_builds(tmp_path: Path) -> None:
    out = tmp_path / "etcdref"
    env = dict(os.environ, ETCDREF_OUT=str(out))
    proc = subprocess.run(
        ["sh", str(BENCH / "build_goref.sh")], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and os.access(out, os.X_OK)
    usage = subprocess.run([str(out)], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "usage: etcdref" in usage.stderr
