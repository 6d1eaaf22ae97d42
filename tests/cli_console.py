"""Run an etcdbench command in this process, as `etcdbench ...` would, with its output captured."""

from __future__ import annotations

import io

from rich.console import Console

from etcdbench.cli.app import run


def run_cli(*argv: str, width: int = 100) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one command, uncoloured, `width` columns wide."""
    out = Console(file=io.StringIO(), width=width, color_system=None)
    err = Console(file=io.StringIO(), width=width, color_system=None)
    code = run(list(argv), out, err)
    return code, out.file.getvalue(), err.file.getvalue()  # type: ignore[attr-defined]
