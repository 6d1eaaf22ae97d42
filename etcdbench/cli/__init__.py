"""Command line: parse, dispatch, print. `run(argv, out, err)` returns an exit code."""

from etcdbench.cli.app import main, run

__all__ = ["main", "run"]
