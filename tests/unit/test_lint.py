"""ruff and mypy are part of the test command, so a red lint fails CI like a failing test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from paths import ROOT


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "etcdbench", "tests", "proto", "benchmarks"],
        ["ruff", "format", "--check", "etcdbench", "tests", "proto", "benchmarks"],
        [sys.executable, "-m", "mypy", "etcdbench"],
        [sys.executable, "-m", "mypy", "tests"],  # pyproject's mypy_path finds the tests' helper modules
    ],
    ids=["ruff", "ruff-format", "mypy", "mypy-tests"],
)
def test_clean(command: list[str]) -> None:
    if command[0] == "ruff":
        ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
        command = [ruff, *command[1:]]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
